// Through a clinic firewall: the SFU offers a passive ICE-TCP candidate next to its UDP one.
// A patient whose network drops every UDP packet (nftables in the patient's namespace) still
// publishes and receives over TCP; a patient with UDP uses UDP. Reports the time from opening
// the link to the first remote frame on each path.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ADDR_SFU, startLab } from './netlab.mjs';

async function selectedPair(page) {
  return page.evaluate(async () => {
    const stats = await window.consult.pc.getStats();
    const byId = new Map([...stats.values()].map((s) => [s.id, s]));
    const transport = [...stats.values()].find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    // Chromium names the selected pair on the transport; fall back to the nominated pair.
    const pair = (transport && byId.get(transport.selectedCandidatePairId))
      ?? [...stats.values()].find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
    const local = pair && byId.get(pair.localCandidateId);
    const remote = pair && byId.get(pair.remoteCandidateId);
    const pairs = [...stats.values()].filter((s) => s.type === 'candidate-pair').map((s) => `${s.state}/${s.nominated}/${s.localCandidateId}`);
    return { local: local?.protocol, remote: remote?.protocol, remotePort: remote?.port, tcpType: local?.tcpType ?? null, pairs };
  });
}

/** Milliseconds from opening the link until a remote video frame was decoded (page clock). */
async function firstFrameMs(page) {
  const deadline = Date.now() + 45_000;
  while (Date.now() < deadline) {
    const at = await page.evaluate(async () => {
      const stats = await window.consult?.pc?.getStats();
      const decoded = stats && [...stats.values()].some((s) => s.type === 'inbound-rtp' && s.kind === 'video' && (s.framesDecoded ?? 0) > 0);
      return decoded ? performance.now() : null;
    });
    if (at !== null) return at;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('no remote video frame within 45 s');
}

async function consultThrough(blockUdp) {
  const lab = await startLab('good', { sfuArgs: ['--ice-tcp-addr', '0.0.0.0:0'], blockWeakUdp: blockUdp });
  try {
    const room = blockUdp ? 'fw-tcp' : 'fw-udp';
    const clinic = await lab.browser('sfu');
    await clinic.goto(lab.url(room, 'Clinic', 'clinic'));
    await clinic.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 30_000 });
    const patient = await lab.browser('weak');
    await patient.goto(lab.url(room, 'Patient', 'patient'));
    const ms = await firstFrameMs(patient);
    // Both directions: the clinic decodes the patient's video too.
    await firstFrameMs(clinic);
    const pair = await selectedPair(patient);
    const dropped = blockUdp ? lab.weakUdpDropped() : 0;
    return { ms, pair, dropped };
  } finally {
    await lab.close();
  }
}

test('a patient without UDP gets the consult over ICE-TCP; with UDP over UDP', { timeout: 200_000 }, async () => {
  const udp = await consultThrough(false);
  assert.equal(udp.pair.local, 'udp', `with UDP the selected pair is UDP: ${JSON.stringify(udp.pair)}`);
  const tcp = await consultThrough(true);
  assert.equal(tcp.pair.local, 'tcp', `without UDP the selected pair is TCP: ${JSON.stringify(tcp.pair)}`);
  assert.equal(tcp.pair.remote, 'tcp');
  assert.ok(tcp.dropped > 0, 'the firewall really dropped the patient\'s UDP');
  console.log(`first remote frame after opening the link: UDP ${Math.round(udp.ms)} ms, ICE-TCP ${Math.round(tcp.ms)} ms (${tcp.dropped} UDP packets dropped by the firewall; SFU at ${ADDR_SFU})`);
});
