// A small network lab for weak-link tests: the SFU and "good" browsers in one network namespace,
// a "weak" browser in another, joined through linkem (load-tests/linkem), which shapes the link
// between them from a profile file. Everything is created here and removed on close; traffic
// stays inside these namespaces (198.51.100.0/30).

import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

import { BASE_FLAGS, FAKE_MEDIA_FLAGS } from '../../web-client/tests/lib/harness.mjs';

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const require = createRequire(join(REPO, 'web-client/package.json'));
const { chromium } = require('playwright-core');

export const SERVER_BIN = process.env.CONSULT_SFU_BIN || join(REPO, 'target/release/consult-sfu');
export const LINKEM_BIN = process.env.LINKEM_BIN || join(REPO, 'target/release/linkem');
export const PROFILES = join(REPO, 'load-tests/profiles');
export const ADDR_SFU = '198.51.100.1';
export const ADDR_WEAK = '198.51.100.2';

// The Chromium flags measured to work here, shared with the web client's own browser tests.
const FLAGS = [...BASE_FLAGS, ...FAKE_MEDIA_FLAGS];

function ip(...args) {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** Lines of a child's output, kept for failure messages, plus waiting for one that matches. */
function watch(proc, max = 300) {
  const lines = [];
  const waiters = [];
  const add = (line) => {
    if (!line) return;
    lines.push(line);
    if (lines.length > max) lines.shift();
    for (const w of waiters.splice(0)) if (!w(line)) waiters.push(w);
  };
  // A chunk may end inside a line (linkem's `t=40.0s ... b address` was once cut in two and
  // the address-change test failed on it): the rest comes with the stream's next chunk.
  const follow = (stream) => {
    let partial = '';
    stream?.on('data', (chunk) => {
      const parts = (partial + String(chunk)).split('\n');
      partial = parts.pop();
      parts.forEach(add);
    });
    stream?.on('end', () => add(partial));
  };
  follow(proc.stdout);
  follow(proc.stderr);
  return {
    text: () => lines.join('\n'),
    waitFor(re, ms, what) {
      return new Promise((res, rej) => {
        const t = setTimeout(() => rej(new Error(`${what}: no ${re} within ${ms} ms:\n${lines.join('\n')}`)), ms);
        const hit = lines.map((l) => re.exec(l)).find(Boolean);
        if (hit) {
          clearTimeout(t);
          return res(hit);
        }
        waiters.push((line) => {
          const m = re.exec(line);
          if (m) {
            clearTimeout(t);
            res(m);
          }
          return !!m;
        });
        proc.once('exit', (code) => rej(new Error(`${what} exited (${code}):\n${lines.join('\n')}`)));
      });
    },
  };
}

async function stopProc(proc) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill('SIGTERM');
  const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

/**
 * Creates namespace `<tag>s` (SFU side), starts linkem with `profile` (which creates `<tag>w`,
 * the weak side), then the SFU inside the SFU namespace.
 */
export async function startLab(profile, { tag = `cl${process.pid % 10000}`, duration = 300, logCsv, sfuArgs = [], blockWeakUdp = false } = {}) {
  for (const bin of [SERVER_BIN, LINKEM_BIN]) {
    if (!existsSync(bin)) throw new Error(`${bin} missing: run cargo build --release --workspace`);
  }
  const nsSfu = `${tag}s`;
  const nsWeak = `${tag}w`;
  const cleanup = [];
  const lab = { nsSfu, nsWeak, browsers: [] };
  lab.close = async () => {
    for (const b of lab.browsers.splice(0)) await b.close().catch(() => {});
    for (const fn of cleanup.reverse()) await fn();
    // LAB_SFU_LOG=dir keeps each lab's SFU log, for looking at decisions after a passing run.
    if (process.env.LAB_SFU_LOG && lab.sfuLog) {
      writeFileSync(join(process.env.LAB_SFU_LOG, `sfu-${profile}-${Date.now()}.log`), lab.sfuLog.text());
    }
  };
  try {
    ip('netns', 'add', nsSfu);
    cleanup.push(() => {
      try {
        ip('netns', 'del', nsSfu);
      } catch {
        /* already gone */
      }
    });
    ip('-n', nsSfu, 'link', 'set', 'lo', 'up');

    const linkArgs = ['--profile', join(PROFILES, `${profile}.toml`), '--ns-a', nsSfu, '--ns-b', nsWeak,
      '--addr-a', ADDR_SFU, '--addr-b', ADDR_WEAK, '--duration', String(duration), '--keep-ns-a', '--exit-with-parent'];
    if (logCsv) linkArgs.push('--log-csv', logCsv);
    const linkem = spawn(LINKEM_BIN, linkArgs, { stdio: ['ignore', 'pipe', 'pipe'] });
    cleanup.push(() => stopProc(linkem));
    lab.linkemLog = watch(linkem);
    await lab.linkemLog.waitFor(/^LINKEM_READY/, 20_000, 'linkem');
    lab.linkemStarted = Date.now();

    const dbDir = mkdtempSync(join(tmpdir(), 'consult-lab-db-'));
    cleanup.push(() => rmSync(dbDir, { recursive: true, force: true }));
    const sfu = spawn('ip', ['netns', 'exec', nsSfu, SERVER_BIN, '--http-addr', `${ADDR_SFU}:0`,
      '--udp-addr', '0.0.0.0:0', '--public-ip', ADDR_SFU, '--web-root', join(REPO, 'web-client'), ...sfuArgs],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CONSULT_ALLOW_OPEN_JOIN: '1', CONSULT_DB_PATH: join(dbDir, 'consults.sqlite'), CONSULT_LOG: process.env.CONSULT_LOG || 'info,consult_sfu::room::adapt=debug' } });
    cleanup.push(() => stopProc(sfu));
    lab.sfuPid = sfu.pid;
    lab.sfuLog = watch(sfu, Number(process.env.LAB_SFU_LOG_LINES) || 5000);
    const m = await lab.sfuLog.waitFor(/CONSULT_READY http=(\S+)/, 30_000, 'consult-sfu');
    lab.base = `http://${m[1]}`;
    if (blockWeakUdp) {
      // A clinic firewall that lets only TCP out: every UDP packet the weak side sends is
      // dropped (DNS is not needed: everything is by address).
      const nft = (rules) => execFileSync('ip', ['netns', 'exec', nsWeak, 'nft', '-f', '-'], { input: rules });
      nft('table inet consultfw {\n chain out {\n  type filter hook output priority 0;\n  meta l4proto udp counter drop\n }\n}\n');
      lab.weakUdpDropped = () =>
        Number(/packets (\d+)/.exec(execFileSync('ip', ['netns', 'exec', nsWeak, 'nft', 'list', 'chain', 'inet', 'consultfw', 'out'], { encoding: 'utf8' }))?.[1] ?? 0);
    }
  } catch (e) {
    await lab.close();
    throw e;
  }

  /** GET a path of the SFU from inside its namespace. */
  lab.get = (path) =>
    execFileSync('ip', ['netns', 'exec', nsSfu, 'curl', '-sf', '--max-time', '3', `${lab.base}${path}`], {
      encoding: 'utf8',
    });

  /** A headless Chromium in `side` ('sfu' or 'weak'), one page at `url`. */
  lab.browser = async (side, { receiveOnly = false } = {}) => {
    const ns = side === 'weak' ? nsWeak : nsSfu;
    const dir = mkdtempSync(join(tmpdir(), 'consult-lab-'));
    const wrapper = join(dir, 'chromium-in-ns');
    writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${ns} /usr/bin/chromium "$@"\n`);
    chmodSync(wrapper, 0o755);
    const ctx = await chromium.launchPersistentContext(join(dir, 'profile'), {
      executablePath: wrapper,
      headless: true,
      args: [...FLAGS, `--unsafely-treat-insecure-origin-as-secure=${lab.base}`],
    });
    const close = async () => {
      await ctx.close().catch(() => {});
      rmSync(dir, { recursive: true, force: true });
    };
    lab.browsers.push({ close });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    if (receiveOnly) {
      // A subscriber that only watches: no camera or microphone to publish.
      await page.addInitScript(() => {
        navigator.mediaDevices.getUserMedia = () =>
          Promise.reject(new DOMException('receive-only test participant', 'NotFoundError'));
      });
    }
    return page;
  };

  lab.url = (room, name, role, extra = '') =>
    `${lab.base}/?room=${room}&name=${encodeURIComponent(name)}&role=${role}&lang=en${extra}`;
  return lab;
}

/** One sample of what a page receives: the first remote video and all remote audio. */
export async function sample(page) {
  return page.evaluate(async () => {
    const pc = window.consult?.pc;
    const out = { t: performance.now(), video: null, audio: { samples: 0, concealed: 0, silent: 0 }, layers: [] };
    if (!pc) return out;
    const stats = await pc.getStats();
    for (const s of stats.values()) {
      if (s.type !== 'inbound-rtp') continue;
      if (s.kind === 'video' && (!out.video || (s.framesDecoded ?? 0) > out.video.framesDecoded)) {
        out.video = {
          framesDecoded: s.framesDecoded ?? 0,
          frameHeight: s.frameHeight ?? 0,
          freezeCount: s.freezeCount ?? 0,
          freezeSeconds: s.totalFreezesDuration ?? 0,
          pauseCount: s.pauseCount ?? 0,
          pauseSeconds: s.totalPausesDuration ?? 0,
          bytes: s.bytesReceived ?? 0,
          fps: s.framesPerSecond ?? 0,
          nacks: s.nackCount ?? 0,
          lost: s.packetsLost ?? 0,
          packets: s.packetsReceived ?? 0,
          rtx: s.retransmittedPacketsReceived ?? -1,
        };
      }
      if (s.kind === 'audio') {
        out.audio.samples += s.totalSamplesReceived ?? 0;
        out.audio.concealed += s.concealedSamples ?? 0;
        out.audio.silent += s.silentConcealedSamples ?? 0;
      }
    }
    const layers = window.consult?.layers;
    if (layers) out.layers = [...layers.values()].map((l) => (l.layer ? `${l.layer}${l.temporal ?? ''}` : `paused:${l.paused}`));
    return out;
  });
}

/** Samples `pages` every `everyMs` for `ms`, calling `onSample(name, sample, secondsSinceStart)`. */
export async function record(pages, ms, everyMs, onSample) {
  const start = Date.now();
  while (Date.now() - start < ms) {
    const t = (Date.now() - start) / 1000;
    for (const [name, page] of Object.entries(pages)) onSample(name, await sample(page), t);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/**
 * Longest time (s) without a newly decoded frame, over samples taken after `fromS`, from the
 * samples themselves: each sample's own page clock (`s.t`), not the harness's, so the time the
 * other pages' getStats took does not count. Still only as exact as the sampling: a gap G is
 * seen as G plus or minus one sampling interval.
 */
export function longestFreeze(series, fromS) {
  let longest = 0;
  let lastT = null;
  let lastFrames = null;
  const at = ({ t, s }) => (typeof s.t === 'number' ? s.t / 1000 : t);
  for (const e of series) {
    if (!e.s.video) continue;
    if (lastFrames === null || e.s.video.framesDecoded > lastFrames) {
      if (lastT !== null && e.t > fromS) longest = Math.max(longest, at(e) - lastT);
      lastT = at(e);
      lastFrames = e.s.video.framesDecoded;
    }
  }
  if (lastT !== null) longest = Math.max(longest, at(series.at(-1)) - lastT);
  return longest;
}

/**
 * Longest stall (s) of the rendered video after `fromS`, as the browser measures it frame by
 * frame (WebRTC stats: a freeze is a frame shown for longer than max(3x the mean frame time,
 * mean + 150 ms); a pause is no frame for 5 s or more). Exact, unlike the sampled gap, but it
 * only counts a stall once it has ended: one still going on at the end is taken from the
 * samples. Several freezes ending between two samples count as their mean.
 */
export function longestStall(series, fromS) {
  let longest = 0;
  for (let i = 1; i < series.length; i++) {
    const a = series[i - 1].s.video;
    const b = series[i].s.video;
    if (!a || !b || series[i].t <= fromS) continue;
    for (const [count, secs] of [['freezeCount', 'freezeSeconds'], ['pauseCount', 'pauseSeconds']]) {
      const n = b[count] - a[count];
      if (n > 0) longest = Math.max(longest, (b[secs] - a[secs]) / n);
    }
  }
  // A stall still going on when sampling stopped.
  const last = series.at(-1);
  let sinceFrame = 0;
  for (let i = series.length - 1; i > 0; i--) {
    if ((series[i].s.video?.framesDecoded ?? 0) > (series[i - 1].s.video?.framesDecoded ?? 0)) {
      sinceFrame = (last.s.t - series[i].s.t) / 1000;
      break;
    }
  }
  return Math.max(longest, sinceFrame);
}

/** Concealed audio share between two samples. */
export function concealment(a, b) {
  const samples = b.audio.samples - a.audio.samples;
  return samples > 0 ? (b.audio.concealed - b.audio.silent - (a.audio.concealed - a.audio.silent)) / samples : 1;
}

/**
 * One sample of what a page receives, per remote participant (through `window.consult.tracks`,
 * mid -> participant), plus the consult state the resume tests look at. Counters are summed
 * over that participant's inbound streams; `pcId` tells peer connections apart (a fresh join
 * builds a new one and its counters start again from zero). Added for resume.test.mjs.
 */
export async function sampleConsult(page) {
  return page.evaluate(async () => {
    const c = window.consult;
    const out = {
      state: c?.state ?? null,
      self: c?.participantId ?? null,
      participants: c?.participants ? [...c.participants].map(([id, p]) => [id, p?.name ?? null, p?.audio_muted ?? null]) : [],
      reconnecting: c?.reconnecting ? [...c.reconnecting] : null,
      resumes: c?.resumes ?? null,
      pcState: c?.pcState ?? null,
      pcId: null,
      from: {},
    };
    const pc = c?.pc;
    if (!pc) return out;
    pc.__labId ??= Math.random().toString(36).slice(2, 8);
    out.pcId = pc.__labId;
    const stats = await pc.getStats();
    for (const s of stats.values()) {
      if (s.type !== 'inbound-rtp') continue;
      const who = c.tracks?.get(s.mid)?.participantId ?? `mid:${s.mid}`;
      const e = (out.from[who] ??= { frames: 0, audio: 0, audioPackets: 0, videoPackets: 0 });
      if (s.kind === 'video') {
        e.frames += s.framesDecoded ?? 0;
        e.videoPackets += s.packetsReceived ?? 0;
      } else if (s.kind === 'audio') {
        // Samples really received and decoded: concealment (made up while packets are missing)
        // keeps totalSamplesReceived growing during an outage, so it is taken out.
        e.audio += (s.totalSamplesReceived ?? 0) - (s.concealedSamples ?? 0);
        e.audioPackets += s.packetsReceived ?? 0;
      }
    }
    return out;
  });
}

/** Prometheus text format (GET /metrics): `name{labels} value` lines into a Map (labels kept in the key). */
export function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const cut = line.lastIndexOf(' ');
    out.set(line.slice(0, cut), Number(line.slice(cut + 1)));
  }
  return out;
}
