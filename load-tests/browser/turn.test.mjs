// Through a firewall that lets only TLS out: a patient whose namespace reaches nothing but the
// consult's web server (the page and signaling) and coturn's TLS port still gets the consult,
// relayed by coturn over TURN-TLS with the short-lived credentials the SFU hands out in
// `joined`. Debian's coturn is started here with `use-auth-secret` and a certificate made at
// test time, listening inside the lab's SFU namespace. Reports the time from opening the link
// to the first remote frame over TURN-TLS.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { BASE_FLAGS, FAKE_MEDIA_FLAGS } from '../../web-client/tests/lib/harness.mjs';
import { ADDR_SFU, REPO, startLab } from './netlab.mjs';

const require = createRequire(join(REPO, 'web-client/package.json'));
const { chromium } = require('playwright-core');

const TURN_TLS_PORT = 5349;
const TURN_SECRET = 'lab-turn-secret-0123456789';

/** The selected pair's local candidate, as the patient's browser reports it. */
async function selectedPair(page) {
  return page.evaluate(async () => {
    const stats = await window.consult.pc.getStats();
    const byId = new Map([...stats.values()].map((s) => [s.id, s]));
    const transport = [...stats.values()].find((s) => s.type === 'transport' && s.selectedCandidatePairId);
    const pair = (transport && byId.get(transport.selectedCandidatePairId))
      ?? [...stats.values()].find((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded');
    const local = pair && byId.get(pair.localCandidateId);
    const remote = pair && byId.get(pair.remoteCandidateId);
    return {
      type: local?.candidateType, protocol: local?.protocol, relayProtocol: local?.relayProtocol ?? null,
      url: local?.url ?? null, remote: remote && `${remote.protocol} ${remote.address}:${remote.port}`,
    };
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

/** Received audio samples so far (both directions must carry audio too). */
async function audioSamples(page) {
  return page.evaluate(async () => {
    const stats = await window.consult.pc.getStats();
    return [...stats.values()].filter((s) => s.type === 'inbound-rtp' && s.kind === 'audio')
      .reduce((n, s) => n + (s.totalSamplesReceived ?? 0), 0);
  });
}

/** coturn in namespace `ns` with TLS on ADDR_SFU:TURN_TLS_PORT; resolves once it listens. */
async function startCoturn(ns, dir) {
  const cert = join(dir, 'turn-cert.pem');
  const key = join(dir, 'turn-key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-days', '1', '-subj', '/CN=turn.lab.test', '-addext', `subjectAltName=IP:${ADDR_SFU}`,
    '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const conf = join(dir, 'turnserver.conf');
  writeFileSync(conf, [
    `listening-ip=${ADDR_SFU}`, `relay-ip=${ADDR_SFU}`, 'listening-port=3478', `tls-listening-port=${TURN_TLS_PORT}`,
    'alt-listening-port=0', 'alt-tls-listening-port=0', `cert=${cert}`, `pkey=${key}`, 'no-dtls',
    'use-auth-secret', `static-auth-secret=${TURN_SECRET}`, 'realm=consult', 'fingerprint',
    'min-port=49160', 'max-port=49200', 'no-multicast-peers', 'no-cli', `pidfile=${join(dir, 'turnserver.pid')}`,
    `userdb=${join(dir, 'turndb')}`, 'log-file=stdout', 'simple-log', 'verbose', '',
  ].join('\n'));
  const proc = spawn('ip', ['netns', 'exec', ns, 'turnserver', '-c', conf], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const ready = new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`coturn did not start:\n${lines.join('\n')}`)), 15_000);
    const feed = (chunk) => {
      for (const l of String(chunk).split('\n')) {
        if (!l) continue;
        lines.push(l);
        if (/Total General servers/.test(l)) {
          clearTimeout(t);
          res();
        }
      }
    };
    proc.stdout.on('data', feed);
    proc.stderr.on('data', feed);
    proc.once('exit', (code) => rej(new Error(`coturn exited (${code}):\n${lines.join('\n')}`)));
  });
  await ready;
  return {
    log: () => lines.join('\n'),
    async stop() {
      if (proc.exitCode !== null || proc.signalCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Chromium in namespace `ns`, trusting the lab's self-signed TURN certificate. */
async function browserIn(ns, base, closers) {
  const dir = mkdtempSync(join(tmpdir(), 'consult-turn-'));
  const wrapper = join(dir, 'chromium-in-ns');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} /usr/bin/chromium "$@"\n`);
  chmodSync(wrapper, 0o755);
  const ctx = await chromium.launchPersistentContext(join(dir, 'profile'), {
    executablePath: wrapper,
    headless: true,
    // The TURN server's certificate is self-signed (made above): not what is tested here.
    args: [...BASE_FLAGS, ...FAKE_MEDIA_FLAGS, `--unsafely-treat-insecure-origin-as-secure=${base}`, '--ignore-certificate-errors'],
  });
  closers.push(async () => {
    await ctx.close().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  });
  return ctx.pages()[0] ?? (await ctx.newPage());
}

test('a patient who can reach only the web server and coturn\'s TLS port gets the consult over TURN-TLS', { timeout: 200_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'consult-turn-lab-'));
  const closers = [];
  // The lab passes its environment on to the SFU: the secret goes there, never on a command line.
  const savedSecret = process.env.CONSULT_TURN_SECRET;
  process.env.CONSULT_TURN_SECRET = TURN_SECRET;
  let lab;
  let coturn;
  try {
    lab = await startLab('good', { sfuArgs: ['--turn-urls', `turns:${ADDR_SFU}:${TURN_TLS_PORT}?transport=tcp`, '--turn-credential-ttl', '600'] });
    if (savedSecret === undefined) delete process.env.CONSULT_TURN_SECRET;
    else process.env.CONSULT_TURN_SECRET = savedSecret;
    coturn = await startCoturn(lab.nsSfu, dir);

    // The patient's firewall: out only to the web server's port and coturn's TLS port; every
    // UDP packet and any other TCP port is dropped (so neither the SFU's UDP nor any direct
    // path can work).
    const httpPort = Number(new URL(lab.base).port);
    execFileSync('ip', ['netns', 'exec', lab.nsWeak, 'nft', '-f', '-'], {
      input: `table inet consultturn {\n chain out {\n  type filter hook output priority 0;\n  oifname "lo" accept\n`
        + `  ip daddr ${ADDR_SFU} tcp dport { ${httpPort}, ${TURN_TLS_PORT} } accept\n  counter drop\n }\n}\n`,
    });
    const dropped = () => Number(/packets (\d+)/.exec(execFileSync('ip', ['netns', 'exec', lab.nsWeak, 'nft', 'list', 'chain', 'inet', 'consultturn', 'out'], { encoding: 'utf8' }))?.[1] ?? 0);

    const room = 'turn-tls';
    const clinic = await browserIn(lab.nsSfu, lab.base, closers);
    await clinic.goto(lab.url(room, 'Clinic', 'clinic'));
    await clinic.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 30_000 });

    const patient = await browserIn(lab.nsWeak, lab.base, closers);
    await patient.goto(lab.url(room, 'Patient', 'patient'));
    const ms = await firstFrameMs(patient);
    await firstFrameMs(clinic);
    const pair = await selectedPair(patient);
    assert.equal(pair.type, 'relay', `the patient's selected pair is relayed: ${JSON.stringify(pair)}`);
    assert.equal(pair.relayProtocol, 'tls', `relayed over TLS: ${JSON.stringify(pair)}`);
    // Audio both ways too.
    const [a0, b0] = [await audioSamples(patient), await audioSamples(clinic)];
    await new Promise((r) => setTimeout(r, 2000));
    const [a1, b1] = [await audioSamples(patient), await audioSamples(clinic)];
    assert.ok(a1 > a0 && b1 > b0, `audio flows both ways (${a0}->${a1}, ${b0}->${b1})`);
    const blocked = dropped();
    assert.ok(blocked > 0, 'the firewall really dropped the patient\'s other packets');
    const allocated = /ALLOCATE processed, success/.test(coturn.log());
    if (!allocated) console.log(coturn.log());
    assert.ok(allocated, 'coturn allocated with the handed-out credentials');
    console.log(`first remote frame after opening the link over TURN-TLS: ${Math.round(ms)} ms (relay ${pair.url ?? ''}, ${blocked} other packets dropped by the firewall; SFU at ${ADDR_SFU})`);
  } finally {
    for (const fn of closers.reverse()) await fn();
    await coturn?.stop();
    await lab?.close();
    rmSync(dir, { recursive: true, force: true });
    if (savedSecret === undefined) delete process.env.CONSULT_TURN_SECRET;
    else process.env.CONSULT_TURN_SECRET = savedSecret;
  }
});
