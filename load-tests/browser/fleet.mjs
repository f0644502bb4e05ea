// Chromium bot fleet: N headless Chromium participants (several tabs per browser) in M consults,
// joined through the real web client by link with a fake camera and microphone, ramped in at a
// set rate, held for a set time. Collects every bot's getStats() and the SFU's CPU, RSS and
// /metrics; writes a JSON report and a markdown table of medians and p95s; stops by itself.
//
// Usage (after `cargo build --release` and `npm ci` in web-client/):
//   node load-tests/browser/fleet.mjs [--bots 6] [--rooms 2] [--tabs 3] [--ramp 1] [--duration 30]
//                                     [--server http://HOST:PORT --sfu-pid PID] [--out DIR] [--smoke]
//
// --bots N       participants in all; --rooms M consults (bots fill rooms in order: clinic,
//                specialist, then patients); --tabs K pages per Chromium (cheaper than K browsers)
// --ramp R       joins per second; --duration S seconds of steady state after the last join
// --server URL   use a running SFU (else one is started on 127.0.0.1, port 0); --sfu-pid for its CPU.
//                A cluster: several URLs, comma-separated: bots open their links on the nodes in
//                turn (the server redirects each to its consult's node) and /metrics is summed
//                over the nodes
// --out DIR      where fleet.json and fleet.md go (default load-tests/results; --smoke: a temp dir)
// --smoke        exit 1 unless every bot decoded video and played audio from every other bot of its
//                consult (media flowed; no timing is judged)

import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { launchBrowser, joinUrl, procUsage, sleep, startServer } from '../../web-client/tests/lib/harness.mjs';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '../..');

function parseArgs(argv) {
  const flags = new Set(['smoke']);
  const out = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    if (flags.has(key)) out[key] = true;
    else if (i + 1 < argv.length) out[key] = argv[++i];
    else throw new Error(`${a} needs a value`);
  }
  const known = ['bots', 'rooms', 'tabs', 'ramp', 'duration', 'server', 'sfu-pid', 'out', 'smoke'];
  for (const k of Object.keys(out)) if (!known.includes(k)) throw new Error(`unknown option --${k}`);
  const num = (k, dflt, min) => {
    const v = out[k] === undefined ? dflt : Number(out[k]);
    if (!Number.isFinite(v) || v < min) throw new Error(`--${k} must be a number >= ${min}, got ${out[k]}`);
    return v;
  };
  const bots = num('bots', 6, 2);
  const rooms = num('rooms', Math.max(1, Math.floor(bots / 3)), 1);
  if (Math.ceil(bots / rooms) > 8) throw new Error(`${bots} bots in ${rooms} rooms is over 8 per consult`);
  if (Math.floor(bots / rooms) < 2) throw new Error(`${bots} bots in ${rooms} rooms leaves a consult with one participant`);
  return {
    bots,
    rooms,
    tabs: num('tabs', 3, 1),
    ramp: num('ramp', 1, 0.01),
    duration: num('duration', 30, 1),
    server: out.server ?? null,
    sfuPid: out['sfu-pid'] ? Number(out['sfu-pid']) : null,
    out: out.out ?? (out.smoke ? mkdtempSync(join(tmpdir(), 'consult-fleet-')) : join(REPO, 'load-tests/results')),
    smoke: Boolean(out.smoke),
  };
}

const median = (xs) => quantile(xs, 0.5);
function quantile(xs, q) {
  const v = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  return v[Math.min(v.length - 1, Math.max(0, Math.ceil(q * v.length) - 1))];
}
const log = (...a) => console.log(`[fleet ${new Date().toISOString().slice(11, 19)}]`, ...a);

/** In-page: records when the call connected and when the first remote frame was decoded,
 *  in ms since navigation (performance.now()), then stops polling. */
function installTimers() {
  const f = (window.__fleet = { joinedMs: null, firstFrameMs: null });
  const timer = setInterval(async () => {
    const c = window.consult;
    if (f.joinedMs === null && c?.state === 'connected') f.joinedMs = performance.now();
    if (f.firstFrameMs === null && c?.pc) {
      const stats = await c.pc.getStats();
      stats.forEach((r) => {
        if (f.firstFrameMs === null && r.type === 'inbound-rtp' && r.kind === 'video' && r.framesDecoded > 0) {
          f.firstFrameMs = performance.now();
        }
      });
    }
    if (f.joinedMs !== null && f.firstFrameMs !== null) clearInterval(timer);
  }, 100);
}

/** In-page: cumulative counters of every inbound stream, keyed by the publisher it comes from. */
function readStats() {
  const c = window.consult;
  if (!c?.pc) return Promise.resolve(null);
  const trackMid = new Map(c.pc.getTransceivers().map((t) => [t.receiver.track?.id, t.mid]));
  return c.pc.getStats().then((stats) => {
    const streams = [];
    stats.forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      const mid = r.mid ?? trackMid.get(r.trackIdentifier) ?? null;
      streams.push({
        kind: r.kind,
        from: (mid != null && c.tracks.get(mid)?.participantId) || null,
        packetsReceived: r.packetsReceived ?? 0,
        packetsLost: Math.max(0, r.packetsLost ?? 0),
        jitter: r.jitter ?? null,
        framesDecoded: r.framesDecoded ?? 0,
        fps: r.framesPerSecond ?? null,
        frameHeight: r.frameHeight ?? null,
        freezeCount: r.freezeCount ?? 0,
        freezeS: r.totalFreezesDuration ?? 0,
        concealed: r.concealedSamples ?? 0,
        samples: r.totalSamplesReceived ?? 0,
      });
    });
    return { at: performance.now(), state: c.state, id: c.participantId, streams, timers: window.__fleet ?? null };
  });
}

/** /metrics of every node (comma-separated URLs), summed per series. */
async function readMetrics(bases) {
  const all = await Promise.all(bases.split(',').map(readNodeMetrics));
  if (all.some((m) => m === null)) return null;
  const sum = {};
  for (const m of all) for (const [k, v] of Object.entries(m)) sum[k] = (sum[k] ?? 0) + v;
  return sum;
}

function readNodeMetrics(base) {
  return fetch(`${base}/metrics`)
    .then((r) => r.text())
    .then((text) => {
      const m = {};
      for (const line of text.split('\n')) {
        const x = /^(consult_[a-z_]+)(\{[^}]*\})?\s+([0-9.eE+-]+)$/.exec(line);
        if (x) m[x[1] + (x[2] ?? '')] = Number(x[3]);
      }
      return m;
    })
    .catch(() => null);
}

/** CPU seconds of every Chromium process (browsers, renderers, GPU/utility), from /proc. */
function chromiumCpuSeconds() {
  let total = 0;
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      if (!/^chrom/.test(comm)) continue;
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) / 100;
    } catch {
      /* exited */
    }
  }
  return total;
}

/** Per bot, over the steady window: the deltas between two samples of its streams. */
function summarizeBot(bot, a, b) {
  const byKey = (s) => `${s.kind}:${s.from}`;
  const before = new Map((a?.streams ?? []).map((s) => [byKey(s), s]));
  const seconds = (b.at - (a?.at ?? b.at)) / 1000;
  const video = [];
  const audio = [];
  for (const s of b.streams) {
    const p = before.get(byKey(s)) ?? { packetsReceived: 0, packetsLost: 0, framesDecoded: 0, freezeCount: 0, freezeS: 0, concealed: 0, samples: 0 };
    const received = s.packetsReceived - p.packetsReceived;
    const lost = s.packetsLost - p.packetsLost;
    const d = {
      from: s.from,
      packets: received,
      lossPct: received + lost > 0 ? (100 * lost) / (received + lost) : null,
      jitterMs: s.jitter == null ? null : s.jitter * 1000,
    };
    if (s.kind === 'video') {
      video.push({
        ...d,
        fps: seconds > 0 ? (s.framesDecoded - p.framesDecoded) / seconds : null,
        height: s.frameHeight,
        freezes: s.freezeCount - p.freezeCount,
        freezeS: s.freezeS - p.freezeS,
        framesTotal: s.framesDecoded,
      });
    } else {
      const samples = s.samples - p.samples;
      audio.push({ ...d, concealPct: samples > 0 ? (100 * (s.concealed - p.concealed)) / samples : null, packetsTotal: s.packetsReceived });
    }
  }
  const avg = (xs) => (xs.filter(Number.isFinite).length ? xs.filter(Number.isFinite).reduce((x, y) => x + y, 0) / xs.filter(Number.isFinite).length : null);
  return {
    bot: bot.name,
    room: bot.room,
    role: bot.role,
    participantId: b.id,
    state: b.state,
    joinMs: b.timers?.joinedMs ?? null,
    firstFrameMs: b.timers?.firstFrameMs ?? null,
    windowS: seconds,
    fps: avg(video.map((v) => v.fps)),
    height: median(video.map((v) => v.height)),
    freezes: video.reduce((x, v) => x + v.freezes, 0),
    freezeS: video.reduce((x, v) => x + v.freezeS, 0),
    videoLossPct: avg(video.map((v) => v.lossPct)),
    audioLossPct: avg(audio.map((v) => v.lossPct)),
    jitterMs: avg([...video, ...audio].map((v) => v.jitterMs)),
    concealPct: avg(audio.map((v) => v.concealPct)),
    video,
    audio,
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  mkdirSync(opts.out, { recursive: true });
  const perRoom = Math.ceil(opts.bots / opts.rooms);
  const bots = [];
  for (let i = 0; i < opts.bots; i++) {
    const r = Math.floor(i / perRoom);
    const k = i % perRoom;
    bots.push({
      i,
      name: `bot${i + 1}`,
      room: `fleet-${process.pid}-${r + 1}`,
      role: k === 0 ? 'clinic' : k === 1 ? 'specialist' : 'patient',
    });
  }
  const roomSizes = new Map();
  for (const b of bots) roomSizes.set(b.room, (roomSizes.get(b.room) ?? 0) + 1);

  let server = null;
  const browsers = [];
  const deadline = Date.now() + (opts.bots / opts.ramp + opts.duration + 120) * 1000;
  const guard = setTimeout(() => {
    console.error(`fleet: still running past its deadline; stopping`);
    process.exit(2);
  }, deadline - Date.now());
  const stopAll = async () => {
    for (const b of browsers) await b.close();
    if (server) await server.stop();
  };
  process.once('SIGINT', () => stopAll().then(() => process.exit(130)));

  try {
    let base = opts.server;
    let sfuPid = opts.sfuPid;
    if (!base) {
      server = await startServer();
      base = server.baseUrl;
      sfuPid = server.pid;
    }
    log(`${opts.bots} bots in ${opts.rooms} consults, ${opts.tabs} tabs per Chromium, ${opts.ramp} joins/s, ` +
      `${opts.duration} s steady, SFU ${base}${sfuPid ? ` (pid ${sfuPid})` : ''}`);
    const metrics0 = await readMetrics(base);
    const sfu0 = sfuPid ? procUsage(sfuPid) : null;
    const chrome0 = chromiumCpuSeconds();
    const t0 = Date.now();
    const sfuSamples = [];
    const sampleSfu = () => {
      const u = sfuPid ? procUsage(sfuPid) : null;
      let rssKiB = null;
      try {
        rssKiB = Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${sfuPid}/status`, 'utf8'))[1]);
      } catch {
        /* not ours to read, or gone */
      }
      sfuSamples.push({ t: (Date.now() - t0) / 1000, cpuS: u?.cpuSeconds ?? null, rssKiB });
    };

    sampleSfu(); // RSS before anyone joined: the per-participant figure is the growth from here
    // Ramp: one join every 1/ramp s; a new Chromium every `tabs` bots.
    let progressAt = Date.now();
    for (const bot of bots) {
      if (bot.i % opts.tabs === 0) browsers.push(await launchBrowser());
      const browser = browsers.at(-1);
      bot.page = await browser.newPage(bot.name);
      await bot.page.addInitScript(installTimers);
      const entries = base.split(',');
      const url = `${joinUrl(entries[bot.i % entries.length], { room: bot.room, name: bot.name, role: bot.role, lang: 'en' })}`;
      bot.startedAt = Date.now();
      await bot.page.goto(url);
      sampleSfu();
      const next = t0 + ((bot.i + 1) / opts.ramp) * 1000;
      if (Date.now() - progressAt > 5000) {
        progressAt = Date.now();
        await progress(bots, sampleSfu, sfuSamples);
      }
      if (next > Date.now()) await sleep(next - Date.now());
    }
    log(`all ${opts.bots} bots started; waiting until every bot connected (up to 60 s)`);
    const connectDeadline = Date.now() + 60_000;
    for (;;) {
      const states = await Promise.all(bots.map((b) => b.page.evaluate(() => window.consult?.state ?? null).catch(() => null)));
      if (states.every((s) => s === 'connected') || Date.now() > connectDeadline) break;
      await sleep(500);
    }
    await sleep(2000); // first frames and layer ramp-up are the join phase, not the steady state

    const first = await Promise.all(bots.map((b) => b.page.evaluate(readStats).catch(() => null)));
    const steadyT0 = Date.now();
    const sfuA = sfuPid ? procUsage(sfuPid) : null;
    const chromeA = chromiumCpuSeconds();
    while (Date.now() - steadyT0 < opts.duration * 1000) {
      await sleep(Math.min(5000, opts.duration * 1000 - (Date.now() - steadyT0)));
      await progress(bots, sampleSfu, sfuSamples);
    }
    const last = await Promise.all(bots.map((b) => b.page.evaluate(readStats).catch(() => null)));
    const sfuB = sfuPid ? procUsage(sfuPid) : null;
    const chromeB = chromiumCpuSeconds();
    const steadyS = (Date.now() - steadyT0) / 1000;
    const metrics1 = await readMetrics(base);

    const perBot = bots.map((bot, i) => (last[i] ? summarizeBot(bot, first[i], last[i]) : { bot: bot.name, room: bot.room, role: bot.role, state: 'no stats' }));
    const q = (key) => ({ median: median(perBot.map((b) => b[key])), p95: quantile(perBot.map((b) => b[key]), 0.95) });
    const delta = (name) => (metrics0 && metrics1 && metrics1[name] != null ? metrics1[name] - (metrics0[name] ?? 0) : null);
    const rss = sfuSamples.map((s) => s.rssKiB).filter(Number.isFinite);
    const report = {
      date: new Date().toISOString(),
      machine: { cores: cpus().length, cpu: cpus()[0]?.model ?? null, memGiB: +(totalmem() / 2 ** 30).toFixed(1) },
      options: { ...opts, out: undefined },
      steadyS,
      summary: {
        joinMs: q('joinMs'),
        firstFrameMs: q('firstFrameMs'),
        fps: q('fps'),
        height: q('height'),
        freezes: q('freezes'),
        freezeS: q('freezeS'),
        videoLossPct: q('videoLossPct'),
        audioLossPct: q('audioLossPct'),
        jitterMs: q('jitterMs'),
        concealPct: q('concealPct'),
      },
      sfu: {
        cpuPctSteady: sfuA && sfuB ? (100 * (sfuB.cpuSeconds - sfuA.cpuSeconds)) / steadyS : null,
        cpuSecondsWhole: sfu0 && sfuB ? sfuB.cpuSeconds - sfu0.cpuSeconds : null,
        peakRssMiB: rss.length ? Math.max(...rss) / 1024 : null,
        idleRssMiB: rss.length ? rss[0] / 1024 : null,
        rssKiBPerParticipant: rss.length ? (Math.max(...rss) - rss[0]) / opts.bots : null,
        rtpPacketsIn: delta('consult_rtp_packets_in_total'),
        rtpPacketsOut: delta('consult_rtp_packets_out_total'),
        samples: sfuSamples,
      },
      chromium: { cpuPctSteady: (100 * (chromeB - chromeA)) / steadyS, cpuPctPerBot: (100 * (chromeB - chromeA)) / steadyS / opts.bots, cpuSecondsWhole: chromeB - chrome0 },
      bots: perBot,
    };
    writeFileSync(join(opts.out, 'fleet.json'), `${JSON.stringify(report, null, 1)}\n`);
    const md = markdown(report);
    writeFileSync(join(opts.out, 'fleet.md'), md);
    console.log(md);
    log(`wrote ${join(opts.out, 'fleet.json')} and fleet.md`);

    if (opts.smoke) {
      const problems = smokeProblems(perBot, bots, roomSizes);
      if (problems.length) {
        console.error(`fleet smoke FAILED:\n${problems.join('\n')}`);
        if (server) console.error(server.log().split('\n').slice(-30).join('\n'));
        process.exitCode = 1;
      } else {
        log(`smoke: every bot received audio and decoded video from every other bot of its consult`);
      }
    }
  } finally {
    clearTimeout(guard);
    await stopAll();
  }
}

async function progress(bots, sampleSfu, sfuSamples) {
  sampleSfu();
  const started = bots.filter((b) => b.page);
  const info = await Promise.all(
    started.map((b) =>
      b.page.evaluate(() => ({ state: window.consult?.state, f: window.__fleet })).catch(() => ({})),
    ),
  );
  const connected = info.filter((x) => x.state === 'connected').length;
  const frames = info.filter((x) => x.f?.firstFrameMs != null).length;
  const s = sfuSamples.slice(-2);
  const cpu = s.length === 2 && s[0].cpuS != null ? (100 * (s[1].cpuS - s[0].cpuS)) / Math.max(0.001, s[1].t - s[0].t) : null;
  log(`started ${started.length}/${bots.length}, connected ${connected}, first frame ${frames}` +
    (cpu != null ? `, SFU ${cpu.toFixed(0)} % of a core, RSS ${((s[1].rssKiB ?? 0) / 1024).toFixed(1)} MiB` : ''));
}

function smokeProblems(perBot, bots, roomSizes) {
  const problems = [];
  for (const b of perBot) {
    const others = roomSizes.get(b.room) - 1;
    if (b.state !== 'connected') problems.push(`${b.bot}: state ${b.state}`);
    const videoFrom = new Set((b.video ?? []).filter((v) => v.framesTotal > 0).map((v) => v.from));
    const audioFrom = new Set((b.audio ?? []).filter((a) => a.packetsTotal > 0).map((a) => a.from));
    if (videoFrom.size < others) problems.push(`${b.bot}: decoded video from ${videoFrom.size} of ${others} others`);
    if (audioFrom.size < others) problems.push(`${b.bot}: received audio from ${audioFrom.size} of ${others} others`);
    if (b.firstFrameMs == null) problems.push(`${b.bot}: no first frame recorded`);
  }
  return problems;
}

function markdown(r) {
  const f = (x, d = 0) => (x == null ? 'n/a' : Number(x).toFixed(d));
  const row = (label, k, d, unit = '') => `| ${label} | ${f(r.summary[k].median, d)}${unit} | ${f(r.summary[k].p95, d)}${unit} |\n`;
  let md = `# Chromium bot fleet, ${r.date.slice(0, 16).replace('T', ' ')} UTC\n\n`;
  md += `${r.options.bots} bots in ${r.options.rooms} consults, ${r.options.tabs} tabs per Chromium, ${r.options.ramp} joins/s, ` +
    `${f(r.steadyS, 1)} s steady window; ${r.machine.cores} cores (${r.machine.cpu}), ${r.machine.memGiB} GiB.\n\n`;
  md += '| per bot (steady window) | median | p95 |\n| --- | --- | --- |\n';
  md += row('join: link opened to media connected (ms)', 'joinMs', 0);
  md += row('first remote frame decoded (ms from link opened)', 'firstFrameMs', 0);
  md += row('received video fps (mean over remote tracks)', 'fps', 1);
  md += row('received video height (px)', 'height', 0);
  md += row('freezes', 'freezes', 0);
  md += row('frozen time (s)', 'freezeS', 2);
  md += row('video packet loss (%)', 'videoLossPct', 2);
  md += row('audio packet loss (%)', 'audioLossPct', 2);
  md += row('jitter (ms)', 'jitterMs', 1);
  md += row('audio concealment (%)', 'concealPct', 2);
  const s = r.sfu;
  md += `\nSFU: ${f(s.cpuPctSteady, 1)} % of a core in the steady window, peak RSS ${f(s.peakRssMiB, 1)} MiB ` +
    `(${f(s.idleRssMiB, 1)} MiB before the first join, then ${f(s.rssKiBPerParticipant, 0)} KiB per participant), RTP packets in/out ${f(s.rtpPacketsIn)} / ${f(s.rtpPacketsOut)}.\n`;
  md += `Chromium (all processes): ${f(r.chromium.cpuPctSteady, 0)} % of a core, ${f(r.chromium.cpuPctPerBot, 0)} % per bot.\n`;
  return md;
}

main().catch((e) => {
  console.error(`fleet: ${e.stack ?? e}`);
  process.exit(1);
});
