// Data saver and dynacast, end to end: one camera publisher (clinic) and two audio-only
// subscribers (specialist with ?datasaver=1, patient without) in two headless Chromium instances.
//  1. The data-saver subscriber receives the lowest layer (q, <= 180 lines) while the other one
//     receives a higher layer: one subscriber's preference does not lower another's.
//  2. Once the data-saver subscriber is the only one left, the server asks the publisher to send
//     q only (`publish_layers`), and the publisher's h and f encodings stop; turning data saver
//     off brings a higher layer back.
// Run: npm test (needs target/release/consult-sfu, or CONSULT_SFU_BIN, and /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { joinUrl, launchBrowser, randomRoom, sleep, startServer, waitFor } from './lib/harness.mjs';
import { bytesByRid, describeOutbound, inboundVideo, layersOf, outboundVideo, remoteVideoMids } from './lib/stats.mjs';

const JOIN_TIMEOUT_MS = 15_000;
const LAYER_TIMEOUT_MS = 15_000;
const DYNACAST_TIMEOUT_MS = 15_000; // the server waits 5 s before stopping a layer nobody needs
const RESUME_TIMEOUT_MS = 10_000;
const FLAT_WINDOW_MS = 3_000;

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

/** Keeps the microphone but not the camera: only the publisher encodes video (cheaper). */
function audioOnly() {
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => gum({ audio: c?.audio ?? true });
}

/** One line of what the server sees of a participant's link and video subscriptions. */
async function serverViewOf(participantId) {
  try {
    const { rooms } = await fetch(`${server.baseUrl}/status`).then((r) => r.json());
    const p = rooms.flatMap((r) => r.participants).find((x) => x.participant_id === participantId);
    if (!p) return 'not in /status';
    const kbit = (b) => (b == null ? '-' : `${Math.round(b / 1000)}k`);
    const video = p.subscriptions
      .filter((x) => x.kind === 'video')
      .map((x) => `${x.track_id} target=${x.target ?? x.paused}${x.target_temporal ?? ''} current=${x.current}`);
    return (
      `estimate=${kbit(p.estimate_bps)} pad=${kbit(p.pad_bps)} probe=${kbit(p.probe_bps)} ` +
      `loss out=${p.egress_loss?.toFixed(3)} in=${p.ingress_loss?.toFixed(3)} rtt=${p.rtt_ms} ms queue=${p.queue_delay_ms} ms ` +
      `quality=${p.quality} ${video.join(', ')}`
    );
  } catch (e) {
    return `no /status: ${e}`;
  }
}

async function diagnostics(bots) {
  const out = [];
  for (const b of bots) {
    const log = await b.page.evaluate(() => window.consult?.log?.slice(-30).join('\n    ')).catch((e) => String(e));
    out.push(`  ${b.name} log:\n    ${log}`);
    if (b.page.__logs.length) out.push(`  ${b.name} console:\n    ${b.page.__logs.slice(-10).join('\n    ')}`);
  }
  out.push(`  server log (tail):\n${server.log().split('\n').slice(-30).join('\n')}`);
  return out.join('\n');
}

test('data saver lowers only its own subscriber; dynacast stops and restarts unneeded layers', { timeout: 120_000 }, async () => {
  const room = randomRoom('e2e-saver');
  const browsers = [];
  const bots = [];
  try {
    const pubBrowser = await launchBrowser();
    browsers.push(pubBrowser);
    const subBrowser = await launchBrowser();
    browsers.push(subBrowser);
    const join = async (name, browser, link, { camera }) => {
      const page = await browser.newPage(name);
      if (!camera) await page.addInitScript(audioOnly);
      const bot = { name, page };
      bots.push(bot);
      await page.goto(link);
      await waitFor(() => page.evaluate(() => window.consult?.participantId), {
        timeoutMs: JOIN_TIMEOUT_MS,
        what: `${name} to receive joined`,
        describe: () => diagnostics(bots),
      });
      bot.id = await page.evaluate(() => window.consult.participantId);
      return bot;
    };
    const clinic = await join('clinic', pubBrowser, joinUrl(server.baseUrl, { room, name: 'Phòng khám Bắc Hà', role: 'clinic' }), {
      camera: true,
    });
    const saver = await join(
      'specialist (data saver)',
      subBrowser,
      `${joinUrl(server.baseUrl, { room, name: 'BS. Lan', role: 'specialist' })}&datasaver=1`,
      { camera: false },
    );
    const plain = await join('patient', subBrowser, joinUrl(server.baseUrl, { room, name: 'Chị Hoa', role: 'patient' }), {
      camera: false,
    });
    assert.equal(await saver.page.evaluate(() => window.consult.dataSaver), true, '?datasaver=1 turns data saver on');
    assert.equal(await plain.page.evaluate(() => window.consult.dataSaver), false, 'data saver is off by default');
    assert.equal(await saver.page.getAttribute('#btn-saver', 'aria-checked'), 'true', 'the switch shows it is on');

    // 1. Each subscriber gets its own layer of the clinic's camera.
    const clinicVideo = async (bot) => {
      const mid = (await remoteVideoMids(bot.page))[clinic.id];
      const layer = (await layersOf(bot.page)).find((l) => l.mid === mid) ?? null;
      const inbound = (await inboundVideo(bot.page)).find((s) => s.mid === mid) ?? null;
      return { mid, layer, inbound };
    };
    let s = {};
    await waitFor(
      async () => {
        s = await clinicVideo(saver);
        return s.layer?.layer === 'q' && s.inbound?.framesDecoded > 0 && s.inbound.frameHeight > 0 && s.inbound.frameHeight <= 180;
      },
      {
        timeoutMs: LAYER_TIMEOUT_MS,
        what: 'the data-saver subscriber to receive layer q at <= 180 lines',
        describe: async () => `${JSON.stringify(s)}\n${await diagnostics(bots)}`,
      },
    );
    const saverSize = `${s.inbound.frameWidth}x${s.inbound.frameHeight}`;
    let p = {};
    await waitFor(
      async () => {
        p = await clinicVideo(plain);
        return ['h', 'f'].includes(p.layer?.layer) && p.inbound?.framesDecoded > 0;
      },
      {
        timeoutMs: LAYER_TIMEOUT_MS,
        what: 'the other subscriber to receive a layer above q',
        describe: async () => `${JSON.stringify(p)}\n${await diagnostics(bots)}`,
      },
    );
    s = await clinicVideo(saver);
    assert.equal(s.layer.layer, 'q', 'the data-saver subscriber still gets q while the other gets more');
    assert.ok(s.inbound.frameHeight <= 180, `data-saver video stays small: ${s.inbound.frameWidth}x${s.inbound.frameHeight}`);
    assert.equal(await saver.page.getAttribute(`[data-participant-id="${clinic.id}"]`, 'data-layer'), 'q');
    assert.ok(['h', 'f'].includes(await plain.page.getAttribute(`[data-participant-id="${clinic.id}"]`, 'data-layer')));
    console.log(`data saver: specialist gets q (${saverSize}); patient gets ${p.layer.layer} (${p.inbound.frameWidth}x${p.inbound.frameHeight})`);

    // 2. Dynacast: with the data-saver subscriber alone, only q is needed.
    await plain.page.evaluate(() => window.consult.leave());
    let active = null;
    await waitFor(
      async () => {
        active = await clinic.page.evaluate(() => window.consult.activeRids);
        return JSON.stringify(active) === '["q"]';
      },
      {
        timeoutMs: DYNACAST_TIMEOUT_MS,
        what: "the publisher to be asked for q only (publish_layers active=['q'])",
        describe: async () => `activeRids=${JSON.stringify(active)}\n${await diagnostics(bots)}`,
      },
    );
    const clinicLog = await clinic.page.evaluate(() => window.consult.log.filter((l) => l.includes('publish_layers')));
    assert.ok(clinicLog.some((l) => / active=q$/.test(l)), `the publisher received publish_layers active=q: ${clinicLog.join(' | ')}`);
    await sleep(1_000); // packets already in flight
    const before = await outboundVideo(clinic.page);
    await sleep(FLAT_WINDOW_MS);
    const afterFlat = await outboundVideo(clinic.page);
    const b0 = bytesByRid(before);
    const b1 = bytesByRid(afterFlat);
    assert.equal(b1.h, b0.h, `h stopped: ${describeOutbound(before)} -> ${describeOutbound(afterFlat)}`);
    assert.equal(b1.f, b0.f, `f stopped: ${describeOutbound(before)} -> ${describeOutbound(afterFlat)}`);
    assert.ok(b1.q > b0.q, `q keeps sending: ${b0.q} -> ${b1.q}`);
    console.log(`dynacast: publisher sends q only over ${FLAT_WINDOW_MS / 1000} s: ${describeOutbound(afterFlat)}`);

    // Data saver off: a higher layer is needed again and the publisher restarts it.
    await saver.page.evaluate(() => window.consult.setDataSaver(false));
    assert.equal(await saver.page.getAttribute('#btn-saver', 'aria-checked'), 'false');
    const t0 = Date.now();
    let now = afterFlat;
    // The server's view of the data-saver subscriber about once a second, printed on a miss.
    // Most runs resume in 2.1-2.4 s. In some (6 of 29 local runs before the fix), str0m's
    // estimate stands still (loss-limited state after a low probe result, every probe
    // refused): those took 3.9 s to over 10 s. The server now restarts the estimator after
    // 2 s of that (src/adapt/stall.rs); such runs resumed in 4.4-5.2 s.
    const trail = [];
    let lastTrail = 0;
    await waitFor(
      async () => {
        now = await outboundVideo(clinic.page);
        const b = bytesByRid(now);
        if (Date.now() - lastTrail >= 1_000) {
          lastTrail = Date.now();
          trail.push(`${((lastTrail - t0) / 1000).toFixed(1)} s: ${await serverViewOf(saver.id)}`);
        }
        return b.h > b1.h || b.f > b1.f;
      },
      {
        timeoutMs: RESUME_TIMEOUT_MS,
        what: 'h or f to resume after data saver was turned off',
        describe: async () =>
          `${describeOutbound(now)}\nserver's view of the subscriber:\n${trail.join('\n')}\nserver /status: ${await fetch(`${server.baseUrl}/status`).then((r) => r.text()).catch((e) => String(e))}\n${await diagnostics(bots)}`,
      },
    );
    const resumedMs = Date.now() - t0;
    const rids = await clinic.page.evaluate(() => window.consult.activeRids);
    console.log(`dynacast: data saver off -> publisher resumes within ${resumedMs} ms (active ${rids}): ${describeOutbound(now)}`);

    await saver.page.evaluate(() => window.consult.leave());
    await clinic.page.evaluate(() => window.consult.leave());
  } finally {
    for (const b of browsers) await b.close();
  }
});
