// H264 simulcast end to end: a clinic publishes with H264 preferred (`?codec=h264`); one
// audio-only subscriber with data saver must decode H264 at the lowest layer (the switch
// happens on an IDR), the other a higher layer. Keyframe detection for H264 is separate code
// from VP8's, and H264 carries no temporal layers.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { joinUrl, launchBrowser, randomRoom, startServer, waitFor } from './lib/harness.mjs';

let server;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

function audioOnly() {
  const gum = navigator.mediaDevices.getUserMedia.bind(navigator.mediaDevices);
  navigator.mediaDevices.getUserMedia = (c) => gum({ audio: c?.audio ?? true });
}

/** The received remote video: codec, size, frames, and the layer the server says it sends. */
function received(page) {
  return page.evaluate(async () => {
    const pc = window.consult?.pc;
    if (!pc) return null;
    const stats = await pc.getStats();
    for (const r of stats.values()) {
      if (r.type !== 'inbound-rtp' || r.kind !== 'video' || !r.framesDecoded) continue;
      const codec = stats.get(r.codecId)?.mimeType ?? null;
      const layer = [...(window.consult.layers?.values() ?? [])].find((l) => l.layer)?.layer ?? null;
      return { codec, frameHeight: r.frameHeight ?? 0, framesDecoded: r.framesDecoded, layer };
    }
    return null;
  });
}

test('H264 simulcast: decoded, switched to the lowest layer for data saver, higher for the other', { timeout: 90_000 }, async () => {
  const room = randomRoom('e2e-h264');
  const browsers = [];
  try {
    const pub = await launchBrowser();
    const sub = await launchBrowser();
    browsers.push(pub, sub);
    const clinic = await pub.newPage('clinic');
    await clinic.goto(`${joinUrl(server.baseUrl, { room, name: 'Clinic', role: 'clinic' })}&codec=h264`);
    await waitFor(() => clinic.evaluate(() => window.consult?.participantId), { timeoutMs: 15_000, what: 'clinic joined' });
    const saver = await sub.newPage('saver');
    await saver.addInitScript(audioOnly);
    await saver.goto(`${joinUrl(server.baseUrl, { room, name: 'Doctor', role: 'specialist' })}&datasaver=1`);
    const plain = await sub.newPage('plain');
    await plain.addInitScript(audioOnly);
    await plain.goto(joinUrl(server.baseUrl, { room, name: 'Patient', role: 'patient' }));

    let s = null;
    await waitFor(async () => {
      s = await received(saver);
      return s?.codec === 'video/H264' && s.layer === 'q' && s.frameHeight > 0 && s.frameHeight <= 180;
    }, { timeoutMs: 25_000, what: 'the data-saver subscriber to decode H264 at <= 180 lines', describe: async () => JSON.stringify(s) });
    let p = null;
    await waitFor(async () => {
      p = await received(plain);
      return p?.codec === 'video/H264' && ['h', 'f'].includes(p.layer) && p.frameHeight > 180;
    }, { timeoutMs: 25_000, what: 'the other subscriber to decode H264 above 180 lines', describe: async () => JSON.stringify(p) });
    const before = s.framesDecoded;
    await new Promise((r) => setTimeout(r, 2000));
    const later = await received(saver);
    assert.ok(later.framesDecoded > before, `H264 keeps decoding: ${before} -> ${later.framesDecoded}`);
    console.log(`h264: data saver ${s.frameHeight}p (${s.layer}), other ${p.frameHeight}p (${p.layer})`);
  } finally {
    for (const b of browsers) await b.close().catch(() => {});
  }
});
