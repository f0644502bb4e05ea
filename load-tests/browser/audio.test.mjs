// Audio robustness in real Chromium, as negotiated and as sent: Opus with in-band FEC and DTX,
// Opus RED (RFC 2198) where both ends negotiate it, DTX when the microphone is muted the way the
// web client mutes (track.enabled = false), and what the redundancy buys on a lossy rural link.
//
// What is on the wire is read from the packets themselves: SRTP encrypts the RTP payload but
// not the header, so a small raw-socket capture (python3, AF_PACKET, inside the lab's network
// namespaces) counts the payload types the publisher sends to the SFU and the SFU forwards to
// the subscriber. getStats() cannot show RED: Chromium names the codec NetEq decoded after
// splitting the RED packet (audio/opus) on the receiving side, and the primary codec on the
// sending side.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

import { ADDR_SFU, ADDR_WEAK, startLab } from './netlab.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Keeps the SDPs the server sends (before the client touches them: it adds usedtx=1). */
function keepServerSdp() {
  window.__serverSdp = [];
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', (e) => {
        try {
          const m = JSON.parse(e.data);
          if (typeof m.sdp === 'string') window.__serverSdp.push({ type: m.type, sdp: m.sdp });
        } catch {
          /* not JSON */
        }
      });
    }
  };
}

/**
 * The audio m-sections of an SDP: mid, direction, payload types in m-line order (the first is
 * what the other side sends with), and per payload type its codec name and fmtp parameters.
 */
function audioSections(sdp) {
  return sdp.split(/\r?\n(?=m=)/).filter((s) => s.startsWith('m=audio')).map((s) => {
    const lines = s.split(/\r?\n/);
    const pts = lines[0].split(' ').slice(3);
    const codecs = new Map();
    for (const l of lines) {
      const r = /^a=rtpmap:(\d+) ([^/]+)\/(\d+)/.exec(l);
      if (r) codecs.set(r[1], { name: r[2].toLowerCase(), rate: Number(r[3]), fmtp: {} });
    }
    for (const l of lines) {
      const f = /^a=fmtp:(\d+) (.*)$/.exec(l);
      if (!f || !codecs.has(f[1])) continue;
      for (const kv of f[2].split(';')) {
        const [k, v = ''] = kv.trim().split('=');
        if (k) codecs.get(f[1]).fmtp[k] = v;
      }
    }
    const mid = lines.find((l) => l.startsWith('a=mid:'))?.slice(6) ?? null;
    const dir = lines.find((l) => /^a=(sendrecv|sendonly|recvonly|inactive)$/.test(l))?.slice(2) ?? null;
    const ptOf = (name) => [...codecs].find(([, c]) => c.name === name && c.rate === 48000)?.[0] ?? null;
    return { mid, dir, pts, codecs, opus: codecs.get(ptOf('opus')), opusPt: ptOf('opus'), redPt: ptOf('red') };
  });
}

const section = (sdp, mid) => audioSections(sdp).find((s) => s.mid === mid);
const fmtpText = (c) => Object.entries(c?.fmtp ?? {}).map(([k, v]) => `${k}=${v}`).join(';');

/** What a page's peer connection applied, its microphone mid and what it receives from whom. */
function descriptions(page) {
  return page.evaluate(() => {
    const c = window.consult;
    const pc = c.pc;
    return {
      local: pc.currentLocalDescription?.sdp ?? '',
      remote: pc.currentRemoteDescription?.sdp ?? '',
      server: window.__serverSdp ?? [],
      micMid: pc.getTransceivers().find((t) => t.sender.track?.kind === 'audio')?.mid ?? null,
      tracks: [...(c.tracks ?? [])].map(([mid, t]) => ({ mid, participantId: t.participantId, kind: t.kind })),
      self: c.participantId,
    };
  });
}

/**
 * Audio RTP counters of a page over `ms`: outbound (packets sent by the microphone) or inbound
 * (per mid), with the codec getStats names for each stream. Rates from the stats' own clocks.
 */
function audioRates(page, dir, ms) {
  return page.evaluate(async ({ dir, ms }) => {
    const pc = window.consult.pc;
    const read = async () => {
      const stats = await pc.getStats();
      const out = new Map();
      for (const s of stats.values()) {
        if (s.type !== dir || s.kind !== 'audio') continue;
        const codec = stats.get(s.codecId);
        out.set(s.mid ?? s.id, {
          t: s.timestamp,
          packets: dir === 'outbound-rtp' ? s.packetsSent ?? 0 : s.packetsReceived ?? 0,
          bytes: dir === 'outbound-rtp' ? s.bytesSent ?? 0 : s.bytesReceived ?? 0,
          mime: codec?.mimeType ?? null,
          pt: codec?.payloadType ?? null,
        });
      }
      return out;
    };
    const a = await read();
    await new Promise((r) => setTimeout(r, ms));
    const b = await read();
    return [...b].map(([mid, y]) => {
      const x = a.get(mid) ?? { t: y.t, packets: 0, bytes: 0 };
      const secs = (y.t - x.t) / 1000 || ms / 1000;
      return { mid, mime: y.mime, pt: y.pt, pps: (y.packets - x.packets) / secs, kbps: ((y.bytes - x.bytes) * 8) / secs / 1000 };
    });
  }, { dir, ms });
}

// A capture of UDP packets inside one namespace: per RTP payload type, packets and bytes (RTCP
// apart). Only IPv4 packets whose source (or destination) port is the SFU's media port, and
// not the copy of our own outgoing packets (on `lo` every packet shows twice).
const CAPTURE_PY = `
import json, socket, struct, sys, time
mode, port, secs = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.ntohs(3))
s.settimeout(0.2)
print("CAPTURE_READY", flush=True)
end = time.time() + secs
pts = {}
rtcp = 0
while time.time() < end:
    try:
        data, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[1] != 0x0800 or addr[2] == socket.PACKET_OUTGOING or len(data) < 28 or data[9] != 17:
        continue
    ihl = (data[0] & 15) * 4
    sport, dport = struct.unpack("!HH", data[ihl:ihl + 4])
    if (mode == "to" and dport != port) or (mode == "from" and sport != port):
        continue
    p = data[ihl + 8:]
    if len(p) < 12 or p[0] >> 6 != 2:
        continue
    if 192 <= p[1] <= 223:
        rtcp += 1
        continue
    e = pts.setdefault(str(p[1] & 127), {"packets": 0, "bytes": 0})
    e["packets"] += 1
    e["bytes"] += len(p)
print(json.dumps({"pts": pts, "rtcp": rtcp}), flush=True)
`;

/** Starts a capture in namespace `ns` ('to': packets to `port`, 'from': packets from it). */
async function capture(ns, mode, port, secs) {
  const proc = spawn('ip', ['netns', 'exec', ns, 'python3', '-c', CAPTURE_PY, mode, String(port), String(secs)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (err += d));
  const done = new Promise((resolve, reject) => {
    proc.once('error', reject);
    proc.once('exit', (code) => {
      const last = out.trim().split('\n').at(-1);
      if (code !== 0 || !last?.startsWith('{')) reject(new Error(`capture in ${ns} failed (${code}): ${err || out}`));
      else resolve(JSON.parse(last));
    });
  });
  for (let i = 0; i < 50 && !out.includes('CAPTURE_READY') && proc.exitCode === null; i++) await sleep(100);
  return done;
}

/** Inbound audio counters summed over a page's remote audio (samples, concealment, loss, FEC). */
function audioIn(page) {
  return page.evaluate(async () => {
    const out = { samples: 0, concealed: 0, silent: 0, received: 0, lost: 0, fec: 0 };
    const pc = window.consult?.pc;
    if (!pc) return out;
    for (const s of (await pc.getStats()).values()) {
      if (s.type !== 'inbound-rtp' || s.kind !== 'audio') continue;
      out.samples += s.totalSamplesReceived ?? 0;
      out.concealed += s.concealedSamples ?? 0;
      out.silent += s.silentConcealedSamples ?? 0;
      out.received += s.packetsReceived ?? 0;
      out.lost += s.packetsLost ?? 0;
      out.fec += s.fecPacketsReceived ?? 0;
    }
    return out;
  });
}

function audioDelta(a, b) {
  const samples = b.samples - a.samples;
  const packets = b.received - a.received + (b.lost - a.lost);
  return {
    // Concealment the listener hears (comfort noise for silence is not counted), as netlab's.
    concealment: samples > 0 ? (b.concealed - b.silent - (a.concealed - a.silent)) / samples : 1,
    loss: packets > 0 ? (b.lost - a.lost) / packets : 0,
    packets,
    fec: b.fec - a.fec,
  };
}

const pct = (x) => `${(x * 100).toFixed(2)} %`;

async function join(page, lab, room, name, role) {
  await page.goto(lab.url(room, name, role));
  await page.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 45_000 });
}

test('Opus: in-band FEC and DTX negotiated, RED negotiated and on the wire both ways of the SFU, DTX when muted', { timeout: 150_000 }, async () => {
  const lab = await startLab('good');
  try {
    const sfuPort = Number(/CONSULT_READY http=\S+ udp=\S+:(\d+)/.exec(lab.sfuLog.text())?.[1]);
    assert.ok(sfuPort > 0, 'the SFU printed its UDP port');
    const pub = await lab.browser('sfu');
    await pub.addInitScript(keepServerSdp);
    await join(pub, lab, 'audio-opus', 'Clinic', 'clinic');
    const sub = await lab.browser('weak', { receiveOnly: true });
    await sub.addInitScript(keepServerSdp);
    await join(sub, lab, 'audio-opus', 'Patient', 'patient');
    const pubId = await pub.evaluate(() => window.consult.participantId);
    // Until the subscriber's audio from the publisher flows.
    await sub.waitForFunction(async (id) => {
      const c = window.consult;
      const mid = [...c.tracks].find(([, t]) => t.participantId === id && t.kind === 'audio')?.[0];
      if (mid == null) return false;
      for (const s of (await c.pc.getStats()).values()) {
        if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.mid === mid && s.packetsReceived > 100) return true;
      }
      return false;
    }, pubId, { timeout: 30_000, polling: 500 });

    // --- Negotiated: the publisher's microphone m-section, as its peer connection applied it.
    const p = await descriptions(pub);
    assert.ok(p.micMid != null, 'the publisher sends a microphone track');
    const pubLocal = section(p.local, p.micMid);
    const pubRemote = section(p.remote, p.micMid);
    assert.ok(pubLocal?.opus && pubRemote?.opus, `Opus on the microphone's m-section:\n${p.local}\n${p.remote}`);
    assert.equal(pubLocal.opus.fmtp.useinbandfec, '1', `publisher's own Opus fmtp: ${fmtpText(pubLocal.opus)}`);
    // The far end's fmtp is what configures the encoder: FEC and DTX both.
    assert.equal(pubRemote.opus.fmtp.useinbandfec, '1', `Opus fmtp the publisher's encoder follows: ${fmtpText(pubRemote.opus)}`);
    assert.equal(pubRemote.opus.fmtp.usedtx, '1', `Opus fmtp the publisher's encoder follows: ${fmtpText(pubRemote.opus)}`);
    const serverAnswer = p.server.find((m) => m.type === 'answer');
    const serverPub = serverAnswer && section(serverAnswer.sdp, p.micMid);
    console.log(`negotiated: publisher offers opus ${fmtpText(pubLocal.opus)}; the SFU answers opus ${fmtpText(serverPub?.opus)}; applied ${fmtpText(pubRemote.opus)}${serverPub?.opus?.fmtp.usedtx ? '' : ' (usedtx=1 added by the web client, call.js withOpusDtx)'}`);

    // --- RED: does the SFU offer it? Its own SDP (the answer to the publisher, and the offer
    // that carries the publisher's audio to the subscriber) says.
    const s = await descriptions(sub);
    const audioMid = s.tracks.find((t) => t.participantId === pubId && t.kind === 'audio')?.mid;
    assert.ok(audioMid != null, `the subscriber knows the publisher's audio mid: ${JSON.stringify(s.tracks)}`);
    const serverOffer = [...s.server].reverse().find((m) => m.type === 'offer' && section(m.sdp, audioMid));
    const offered = serverOffer && section(serverOffer.sdp, audioMid);
    assert.ok(offered?.opus, `the SFU offered the publisher's audio on mid ${audioMid}`);
    const subLocal = section(s.local, audioMid);
    const subRemote = section(s.remote, audioMid);
    const serverRed = !!(serverPub?.redPt && offered.redPt);
    if (!serverRed) {
      console.log(`red: the SFU does not offer red/48000/2 (answer to the publisher: ${serverPub?.pts.join(' ')}, offer to the subscriber: ${offered.pts.join(' ')}); Opus goes without RED, the in-band FEC above is all the redundancy`);
    } else {
      // Both ends: Chromium sends RED when red is the first codec of the far end's m-line.
      assert.ok(pubRemote.redPt && pubRemote.pts[0] === pubRemote.redPt,
        `the publisher's encoder is told red first: m=audio ... ${pubRemote.pts.join(' ')}`);
      assert.ok(subLocal?.redPt && subRemote?.redPt, `the subscriber negotiated RED: ${subLocal?.pts.join(' ')}`);
      assert.equal(subLocal.codecs.get(subLocal.redPt).fmtp[`${subLocal.opusPt}/${subLocal.opusPt}`], '',
        `the subscriber's red fmtp names its Opus: ${fmtpText(subLocal.codecs.get(subLocal.redPt))}`);
    }

    // --- As sent: 5 s of packets on the wire, from the publisher to the SFU (SFU namespace) and
    // from the SFU to the subscriber (the subscriber's namespace), with getStats alongside.
    const SECS = 5;
    const [upWire, downWire, pubOut, subIn] = await Promise.all([
      capture(lab.nsSfu, 'to', sfuPort, SECS),
      capture(lab.nsWeak, 'from', sfuPort, SECS),
      audioRates(pub, 'outbound-rtp', SECS * 1000),
      audioRates(sub, 'inbound-rtp', SECS * 1000),
    ]);
    const wire = (w, red, opus) => ({
      red: w.pts[red]?.packets ?? 0,
      redBytes: w.pts[red]?.bytes ?? 0,
      opus: w.pts[opus]?.packets ?? 0,
      opusBytes: w.pts[opus]?.bytes ?? 0,
    });
    const up = wire(upWire, pubRemote.redPt, pubRemote.opusPt);
    const down = wire(downWire, subRemote?.redPt, subRemote?.opusPt);
    const inbound = subIn.find((x) => x.mid === audioMid);
    const outbound = pubOut.find((x) => x.mid === p.micMid) ?? pubOut[0];
    assert.ok(inbound && outbound, `audio stats: ${JSON.stringify({ pubOut, subIn })}`);
    const size = (n, bytes) => (n ? Math.round(bytes / n) : 0);
    console.log(`wire: publisher -> SFU ${up.red} red (pt ${pubRemote.redPt}, ${size(up.red, up.redBytes)} B each) and ${up.opus} plain opus packets in ${SECS} s; SFU -> subscriber ${down.red} red (pt ${subRemote?.redPt}, ${size(down.red, down.redBytes)} B) and ${down.opus} plain opus; all payload types ${JSON.stringify(upWire.pts)} / ${JSON.stringify(downWire.pts)}`);
    console.log(`getstats: publisher's outbound audio codec ${outbound.mime} (pt ${outbound.pt}), ${outbound.kbps.toFixed(1)} kbit/s; subscriber's inbound ${inbound.mime} (pt ${inbound.pt}), ${inbound.kbps.toFixed(1)} kbit/s`);
    if (serverRed) {
      // Every audio packet, both legs, is RED: the SFU forwards it as it came (it unwraps the
      // primary only for a subscriber without RED, src/forward/red.rs).
      assert.ok(up.red >= 40 * SECS * 0.8 && up.opus <= up.red * 0.05,
        `the publisher sends RED: ${up.red} red and ${up.opus} opus packets in ${SECS} s`);
      assert.ok(down.red >= 40 * SECS * 0.8 && down.opus <= down.red * 0.05,
        `the SFU forwards RED: ${down.red} red and ${down.opus} opus packets in ${SECS} s`);
      if (inbound.mime?.toLowerCase() === 'audio/red') {
        console.log('red: the subscriber\'s getStats names the inbound codec audio/red');
      } else {
        // Chromium reports the codec its jitter buffer decoded after splitting RED, not the
        // payload type on the wire; the capture above is the proof.
        assert.equal(inbound.mime?.toLowerCase(), 'audio/opus', `inbound audio codec ${inbound.mime}`);
        console.log(`red: negotiated by both ends and on the wire both legs (${down.red} red packets reached the subscriber in ${SECS} s), but the subscriber's getStats names the inbound codec ${inbound.mime}: Chromium reports the codec decoded after RED is split, never audio/red`);
      }
    }

    // --- DTX: muted the way the web client mutes (its microphone button: track.enabled = false,
    // the encoder still runs on silence), the packet rate falls from one per 20 ms frame to
    // DTX's occasional comfort-noise update. Then back.
    const unmuted = outbound;
    await pub.click('#btn-mic');
    const state = await pub.evaluate(() => ({
      muted: window.consult.muted.audio,
      enabled: window.consult.pc.getSenders().find((x) => x.track?.kind === 'audio')?.track.enabled,
    }));
    assert.deepEqual(state, { muted: true, enabled: false }, 'the microphone button mutes by disabling the track');
    await sleep(1000); // DTX starts after a few frames of silence
    const muted = (await audioRates(pub, 'outbound-rtp', SECS * 1000)).find((x) => x.mid === p.micMid);
    await pub.click('#btn-mic');
    await sleep(500);
    const again = (await audioRates(pub, 'outbound-rtp', SECS * 1000)).find((x) => x.mid === p.micMid);
    console.log(`dtx: unmuted ${unmuted.pps.toFixed(1)} pkt/s (${unmuted.kbps.toFixed(1)} kbit/s), muted ${muted.pps.toFixed(1)} pkt/s (${muted.kbps.toFixed(2)} kbit/s), unmuted again ${again.pps.toFixed(1)} pkt/s`);
    assert.ok(unmuted.pps > 40, `unmuted: ${unmuted.pps.toFixed(1)} packets/s (20 ms frames: 50)`);
    assert.ok(muted.pps < 15, `muted: ${muted.pps.toFixed(1)} packets/s, DTX should send far fewer`);
    assert.ok(again.pps > 40, `unmuted again: ${again.pps.toFixed(1)} packets/s`);
  } finally {
    await lab.close();
  }
});

test('rural-3g (3 % loss each way): RED and FEC keep concealment far below the packet loss, both directions', { timeout: 150_000 }, async () => {
  const lab = await startLab('rural-3g');
  try {
    const clinic = await lab.browser('sfu', { receiveOnly: false });
    await join(clinic, lab, 'audio-rural', 'Clinic', 'clinic');
    // The patient publishes its microphone only (a camera would add nothing here but CPU).
    const patient = await lab.browser('weak');
    await patient.addInitScript(() => {
      const md = navigator.mediaDevices;
      const gum = md.getUserMedia.bind(md);
      md.getUserMedia = (c) => gum({ ...c, video: false });
    });
    await join(patient, lab, 'audio-rural', 'Patient', 'patient');
    // Settle: both hear each other, the estimate has found the link.
    for (const page of [clinic, patient]) {
      await page.waitForFunction(async () => {
        for (const s of (await window.consult.pc.getStats()).values()) {
          if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.packetsReceived > 100) return true;
        }
        return false;
      }, null, { timeout: 30_000, polling: 500 });
    }
    await sleep(3000);
    const a = { clinic: await audioIn(clinic), patient: await audioIn(patient) };
    await sleep(30_000);
    const b = { clinic: await audioIn(clinic), patient: await audioIn(patient) };
    const down = audioDelta(a.patient, b.patient); // the clinic's voice, over the 3 % downlink
    const up = audioDelta(a.clinic, b.clinic); // the patient's voice, over the 3 % uplink
    console.log(`concealment: patient hears the clinic with ${pct(down.concealment)} concealed at ${pct(down.loss)} packet loss (${down.packets} packets, ${down.fec} FEC packets counted); clinic hears the patient with ${pct(up.concealment)} concealed at ${pct(up.loss)} packet loss (${up.packets} packets, ${up.fec} FEC)`);
    // The link really loses (the bounds below are not met by a clean link by accident).
    assert.ok(down.loss >= 0.01, `downlink audio loss ${pct(down.loss)}: linkem's 3 % did not reach the stream`);
    assert.ok(down.concealment < 0.05, `the patient hears ${pct(down.concealment)} concealment`);
    // Each packet carries the previous frame again (RED), so a single loss is repaired; only a
    // run of two losses (about 0.1 % at 3 % random loss) or a late packet is concealed.
    assert.ok(down.concealment < down.loss / 2,
      `concealment ${pct(down.concealment)} not well below the packet loss ${pct(down.loss)}: the redundancy does not repair losses`);
    // The other way: the SFU forwards the patient's packets with their sequence gaps, so the
    // clinic's counters see the uplink's loss.
    assert.ok(up.loss >= 0.01, `uplink audio loss ${pct(up.loss)}: linkem's 3 % did not reach the stream`);
    assert.ok(up.concealment < 0.05, `the clinic hears ${pct(up.concealment)} concealment of the patient`);
    assert.ok(up.concealment < up.loss / 2,
      `concealment ${pct(up.concealment)} of the patient not well below the packet loss ${pct(up.loss)}`);
  } finally {
    await lab.close();
  }
});
