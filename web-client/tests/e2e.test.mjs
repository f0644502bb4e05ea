// Browser end-to-end test: the real consult-sfu binary and three headless Chromium instances
// (clinic, specialist, patient) in one consult; then the receive-only and waiting-room paths.
// Run: npm test (needs target/release/consult-sfu, or CONSULT_SFU_BIN, and /usr/bin/chromium).

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { joinUrl, launchBrowser, procUsage, randomRoom, sleep, startServer, waitFor } from './lib/harness.mjs';
import { describeOutbound, inboundVideo, layersOf, outboundVideo, remoteVideoMids, tileLabel } from './lib/stats.mjs';

const MEDIA_TIMEOUT_MS = 60_000;
const LEAVE_TIMEOUT_MS = 10_000;
const SAMPLE_GAP_MS = 2_000;
const SIMULCAST_TIMEOUT_MS = 10_000;
const RIDS = ['f', 'h', 'q']; // sorted, as outboundVideo() returns them

let server;
let usageAtStart;

before(async () => {
  server = await startServer();
  usageAtStart = procUsage(server.pid);
});

after(async () => {
  if (!server) return;
  const end = procUsage(server.pid);
  if (end && usageAtStart) {
    console.log(
      `consult-sfu: ${(end.cpuSeconds - usageAtStart.cpuSeconds).toFixed(2)} s CPU during the tests ` +
        `(${end.cpuSeconds.toFixed(2)} s total), peak RSS ${(end.peakRssKiB / 1024).toFixed(1)} MiB`,
    );
  }
  await server.stop();
});

/** In-page: a summary of the inbound RTP streams, each mapped to its publisher when possible. */
async function inboundStats(page) {
  return page.evaluate(async () => {
    const c = window.consult;
    const pc = c?.pc;
    const base = { state: c?.state, participantId: c?.participantId, pcState: pc?.connectionState ?? null };
    if (!pc) return { ...base, inbound: [] };
    const trackMid = new Map(pc.getTransceivers().map((t) => [t.receiver.track?.id, t.mid]));
    const inbound = [];
    (await pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      const mid = r.mid ?? trackMid.get(r.trackIdentifier) ?? null;
      inbound.push({
        key: `${r.kind}:${r.ssrc}`,
        kind: r.kind,
        mid,
        from: (mid != null && c.tracks.get(mid)?.participantId) || null,
        framesDecoded: r.framesDecoded ?? 0,
        samples: r.totalSamplesReceived ?? 0,
        packets: r.packetsReceived ?? 0,
        size: r.frameWidth ? `${r.frameWidth}x${r.frameHeight}` : '',
      });
    });
    return { ...base, inbound };
  });
}

/** Which streams progressed between two samples of one page, and whether that is enough. */
function judge(a, b, others) {
  const before = new Map(a.inbound.map((s) => [s.key, s]));
  const moving = { video: [], audio: [] };
  for (const s of b.inbound) {
    const p = before.get(s.key);
    if (!p) continue;
    if (s.kind === 'video' && s.framesDecoded > p.framesDecoded && p.framesDecoded > 0) moving.video.push(s);
    if (s.kind === 'audio' && s.samples > p.samples && p.samples > 0) moving.audio.push(s);
  }
  // Each of the two others must be seen: by publisher id when the page could map it, else by stream.
  const covers = (list) => {
    const mapped = new Set(list.map((s) => s.from).filter(Boolean));
    if (list.every((s) => s.from)) return others.every((id) => mapped.has(id));
    return new Set(list.map((s) => s.mid ?? s.key)).size >= others.length;
  };
  return { ok: covers(moving.video) && covers(moving.audio), moving };
}

function describeStats(name, s) {
  const rows = s.inbound.map(
    (x) => `    ${x.kind} mid=${x.mid} from=${x.from} frames=${x.framesDecoded} samples=${x.samples} packets=${x.packets} ${x.size}`,
  );
  return `  ${name}: state=${s.state} pc=${s.pcState} id=${s.participantId}\n${rows.join('\n') || '    (no inbound-rtp)'}`;
}

async function pageDiagnostics(bots) {
  const out = [];
  for (const bot of bots) {
    const log = await bot.page.evaluate(() => window.consult?.log?.slice(-25).join('\n    ')).catch((e) => String(e));
    out.push(`  ${bot.name} log:\n    ${log}`);
    if (bot.page.__logs.length) out.push(`  ${bot.name} console:\n    ${bot.page.__logs.slice(-10).join('\n    ')}`);
  }
  out.push(`  server log (tail):\n${server.log().split('\n').slice(-40).join('\n')}`);
  return out.join('\n');
}

async function metricsText() {
  const res = await fetch(`${server.baseUrl}/metrics`);
  return res.ok ? res.text() : `HTTP ${res.status}`;
}

test('three browsers see and hear each other, leave cleanly, and the server ends empty', { timeout: 170_000 }, async () => {
  const room = randomRoom('e2e');
  const people = [
    { name: 'clinic', display: 'Phòng khám Bắc Hà', role: 'clinic' },
    { name: 'specialist', display: 'BS. Lan', role: 'specialist' },
    { name: 'patient', display: 'Chị Hoa', role: 'patient' },
  ];
  const bots = [];
  try {
    for (const p of people) {
      const browser = await launchBrowser();
      const bot = { ...p, browser, page: await browser.newPage(p.name) };
      bots.push(bot);
      bot.openedAt = Date.now();
      await bot.page.goto(joinUrl(server.baseUrl, { room, name: p.display, role: p.role }));
      // Let each one join before the next opens (the clinic opens the room).
      await waitFor(() => bot.page.evaluate(() => window.consult?.participantId), {
        timeoutMs: 15_000,
        what: `${p.name} to receive joined`,
        describe: () => pageDiagnostics(bots),
      });
      bot.id = await bot.page.evaluate(() => window.consult.participantId);
    }
    const ids = bots.map((b) => b.id);
    assert.equal(new Set(ids).size, 3, `participant ids must be distinct: ${ids}`);

    // Media: every page decodes video and audio from both others, and it keeps flowing.
    const deadline = Date.now() + MEDIA_TIMEOUT_MS;
    let prev = await Promise.all(bots.map((b) => inboundStats(b.page)));
    let last = prev;
    for (;;) {
      await sleep(SAMPLE_GAP_MS);
      const cur = await Promise.all(bots.map((b) => inboundStats(b.page)));
      last = cur;
      const verdicts = bots.map((b, i) => {
        if (!b.firstFrameMs && cur[i].inbound.some((s) => s.kind === 'video' && s.framesDecoded > 0)) {
          b.firstFrameMs = Date.now() - b.openedAt; // resolution: one sample gap
        }
        return judge(prev[i], cur[i], ids.filter((id) => id !== b.id));
      });
      if (verdicts.every((v) => v.ok)) break;
      if (Date.now() > deadline) {
        const summary = bots.map((b, i) => describeStats(b.name, cur[i])).join('\n');
        assert.fail(
          `media did not flow between all three within ${MEDIA_TIMEOUT_MS / 1000} s ` +
            `(need 2 video + 2 audio inbound streams progressing on each page):\n${summary}\n${await pageDiagnostics(bots)}`,
        );
      }
      prev = cur;
    }
    console.log('media flowing:\n' + bots.map((b, i) => describeStats(b.name, last[i])).join('\n'));

    // Simulcast: each camera publishes the server's three layers (q, h, f). At least two of them
    // are accounted for: sending, or stopped by the server because no subscriber takes them
    // (dynacast; `active=false`). Headless VP8 may start the top one later. Each subscriber was
    // told, for each remote video, which layer it receives; and the decoded frames keep growing.
    for (const b of bots) {
      let enc = [];
      await waitFor(
        async () => {
          enc = await outboundVideo(b.page);
          const accounted = enc.filter((e) => e.bytesSent > 0 || e.active === false).length;
          return accounted >= 2 && enc.some((e) => e.bytesSent > 0);
        },
        { timeoutMs: SIMULCAST_TIMEOUT_MS, what: `${b.name} to send at least two simulcast layers (or have dynacast stop them)`, describe: () => describeOutbound(enc) },
      );
      assert.deepEqual(enc.map((e) => e.rid), RIDS, `${b.name} publishes encodings q, h, f: ${describeOutbound(enc)}`);
      b.outbound = enc;
    }
    const framesBefore = await Promise.all(bots.map((b) => inboundVideo(b.page)));
    for (const b of bots) {
      const mids = await remoteVideoMids(b.page);
      let layers = [];
      await waitFor(
        async () => {
          layers = await layersOf(b.page);
          return bots.filter((o) => o !== b).every((o) => layers.find((l) => l.mid === mids[o.id])?.layer);
        },
        { timeoutMs: SIMULCAST_TIMEOUT_MS, what: `${b.name} to get layer_changed with a layer for each remote video`, describe: () => JSON.stringify({ mids, layers }) },
      );
      for (const o of bots.filter((x) => x !== b)) {
        const { layer } = layers.find((l) => l.mid === mids[o.id]);
        assert.ok(['q', 'h', 'f'].includes(layer), `${b.name} receives a known layer of ${o.name}: ${layer}`);
        const tileLayer = await b.page.getAttribute(`[data-participant-id="${o.id}"]`, 'data-layer');
        assert.ok(['q', 'h', 'f'].includes(tileLayer), `${b.name}'s tile of ${o.name} shows the layer (data-layer=${tileLayer})`);
      }
      b.layers = layers.map((l) => `${l.participantId}:${l.layer}/t${l.temporal}`).join(' ');
    }
    await sleep(SAMPLE_GAP_MS);
    const framesAfter = await Promise.all(bots.map((b) => inboundVideo(b.page)));
    bots.forEach((b, i) => {
      for (const s of framesAfter[i]) {
        const p = framesBefore[i].find((x) => x.mid === s.mid);
        assert.ok(p && s.framesDecoded > p.framesDecoded, `${b.name} keeps decoding video mid=${s.mid} (${p?.framesDecoded} -> ${s.framesDecoded})`);
      }
    });
    for (const b of bots) console.log(`simulcast, ${b.name}: sends ${describeOutbound(b.outbound)}; receives ${b.layers}`);

    // Each tile's label names the video really decoded (getStats frameHeight), not the server's
    // target: "<height>p", or the word for the lowest layer when that is what arrives.
    for (const b of bots) {
      const mids = await remoteVideoMids(b.page);
      for (const o of bots.filter((x) => x !== b)) {
        let seen = {};
        await waitFor(
          async () => {
            seen = await tileLabel(b.page, o.id, mids[o.id]);
            if (!(seen.height > 0) || seen.shown !== String(seen.height)) return false;
            if (seen.text === `${seen.height}p`) return true;
            if (seen.text !== seen.lowWord) return false;
            const q = (await outboundVideo(o.page)).find((e) => e.rid === 'q');
            return seen.height <= (q?.frameHeight ?? 0);
          },
          { timeoutMs: SIMULCAST_TIMEOUT_MS, what: `${b.name}'s tile of ${o.name} to label the video it decodes`, describe: () => JSON.stringify(seen) },
        );
        console.log(`label, ${b.name}'s tile of ${o.name}: "${seen.text}"${seen.switching ? ' (switching)' : ''}, decoded ${seen.height} lines`);
      }
    }

    // One tile per other participant, carrying its id and role.
    for (const b of bots) {
      assert.equal(await b.page.locator('[data-participant-id]').count(), 2, `${b.name} shows exactly two remote tiles`);
      for (const o of bots.filter((x) => x !== b)) {
        const role = await b.page.getAttribute(`[data-participant-id="${o.id}"]`, 'data-role');
        assert.equal(role, o.role, `${b.name} shows ${o.name}'s tile with its role`);
      }
    }

    // Mute does not renegotiate but shows a badge on the others' tiles.
    const [clinic, specialist, patient] = bots;
    await specialist.page.click('#btn-mic');
    for (const b of [clinic, patient]) {
      await b.page.waitForSelector(`[data-participant-id="${specialist.id}"][data-audio-muted="true"] .badge-mic`, {
        state: 'visible',
        timeout: 5_000,
      });
    }

    // The patient leaves through the UI; the others drop its tile.
    await patient.page.click('#btn-leave');
    await patient.page.waitForSelector('#end-screen', { state: 'visible', timeout: 5_000 });
    assert.equal(await patient.page.evaluate(() => window.consult.state), 'left');
    for (const b of [clinic, specialist]) {
      await b.page
        .waitForSelector(`[data-participant-id="${patient.id}"]`, { state: 'detached', timeout: LEAVE_TIMEOUT_MS })
        .catch(async (e) => assert.fail(`${b.name} still shows the patient's tile: ${e.message}\n${await pageDiagnostics(bots)}`));
    }

    await clinic.page.click('#btn-leave');
    await specialist.page.click('#btn-leave');
    let metrics = '';
    await waitFor(
      async () => {
        metrics = await metricsText();
        return /^consult_participants 0$/m.test(metrics) && /^consult_rooms 0$/m.test(metrics);
      },
      {
        timeoutMs: 10_000,
        intervalMs: 300,
        what: '/metrics to show consult_participants 0 and consult_rooms 0',
        describe: () => metrics.split('\n').filter((l) => l.startsWith('consult_')).join('\n'),
      },
    );

    for (const b of bots) console.log(`time to first decoded frame, ${b.name}: ${b.firstFrameMs ?? '?'} ms after opening`);
  } finally {
    for (const b of bots) await b.browser.close();
  }
});

test('without camera and microphone a participant still joins (receive only); a patient waits for the room', { timeout: 90_000 }, async () => {
  const room = randomRoom('e2e-nomedia');
  const browser = await launchBrowser({ fakeMedia: false });
  try {
    // Patient first: the consult is not open yet, so it waits and retries.
    const patient = await browser.newPage('patient');
    await patient.goto(joinUrl(server.baseUrl, { room, name: 'Chị Hoa', role: 'patient', lang: 'vi' }));
    await patient.waitForFunction(() => window.consult?.state === 'waiting', null, { timeout: 15_000 });
    const waitingText = await patient.textContent('#error-notice');
    assert.match(waitingText, /Buổi khám chưa bắt đầu/);

    // The clinic's camera and microphone permission is denied.
    const clinic = await browser.newPage('clinic');
    await clinic.addInitScript(() => {
      navigator.mediaDevices.getUserMedia = () =>
        Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
    });
    await clinic.goto(joinUrl(server.baseUrl, { room, name: 'Phòng khám Bắc Hà', role: 'clinic', lang: 'vi' }));
    await clinic.waitForSelector('#media-notice', { state: 'visible', timeout: 10_000 });
    const notice = await clinic.textContent('#media-notice');
    assert.match(notice, /Trình duyệt chưa được phép dùng camera và micro/);
    assert.match(notice, /vẫn xem và nghe được/);
    assert.equal(await clinic.getAttribute('#media-notice', 'data-code'), 'media.denied');
    assert.equal(await clinic.isDisabled('#btn-mic'), true);
    assert.equal(await clinic.isDisabled('#btn-cam'), true);
    await clinic.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 20_000 }).catch(async (e) => {
      const log = await clinic.evaluate(() => window.consult?.log?.join('\n'));
      assert.fail(`clinic did not reach connected: ${e.message}\n${log}\n${server.log().split('\n').slice(-30).join('\n')}`);
    });

    // The waiting patient gets in within a retry period, and each sees the other's tile.
    await patient.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 15_000 });
    const clinicId = await clinic.evaluate(() => window.consult.participantId);
    const patientId = await patient.evaluate(() => window.consult.participantId);
    await patient.waitForSelector(`[data-participant-id="${clinicId}"][data-role="clinic"]`, { timeout: 5_000 });
    await clinic.waitForSelector(`[data-participant-id="${patientId}"][data-role="patient"]`, { timeout: 5_000 });
    assert.equal(await patient.isVisible('#error-notice'), false, 'the waiting notice is gone once joined');

    await patient.evaluate(() => window.consult.leave());
    await clinic.evaluate(() => window.consult.leave());
  } finally {
    await browser.close();
  }
});
