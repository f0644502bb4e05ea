// Scaling benchmark: consult-sfu against rawloop (bare str0m forwarding, the "raw limit") and
// Janus VideoRoom (a real SFU, Debian's janus 1.1.2) with synthetic participants (synth), for
// several room counts. Per run: forwarded packets per CPU second of the target, CPU per
// subscribed stream, RSS per participant, latency p50/p99, loss. Writes scale.json, scale.csv,
// scale.png to the output folder and prints markdown tables with the ratios ours/rawloop and
// ours/Janus.
//
// Usage (after `cargo build --release -p consult-sfu -p consult-bots` and `npm ci` in web-client/;
// root, for Janus's network namespace; janus is installed with apt-get if missing):
//   node load-tests/bench/scale.mjs [--sizes 10,30,60] [--per-room 3] [--duration 20]
//                                   [--pause 3] [--idle-wait 180] [--out load-tests/results]
//                                   [--targets consult-sfu,rawloop,janus] [--pin 1,0] [--name scale]
//
// --pin SERVER,BOTS puts the target on one CPU and synth on another (taskset), so the bots'
// scheduling is not counted as forwarding latency and the target's CPU is its own; each target
// then runs with the threads one core gives it (tokio sizes its pool from the CPU mask). Output
// files are named `--name` (default `scale`, or `scale-pinned` with --pin).
//
// Before each run it waits while `pgrep -c chromium` is non-zero, then (up to --idle-wait s) until
// other processes use under 0.3 cores; it records the load average and busy cores before the run,
// the cores used by other processes during it and the sha256 of the binaries, and repeats a run
// (up to twice) that Chromium or other processes disturbed.
//
// CPU and RSS are sampled by this script from /proc/PID/{stat,status} every 250 ms (for Janus
// that covers all its threads). "Forwarded" packets and bytes are what the bots received
// (synth's steady-state receive rate and RTP payload bytes), the same source for every target:
// Janus has no /metrics. consult-sfu's and rawloop's /metrics out counters are kept in the rows
// for reference (pkts_out_per_s_metrics). Rates use synth's steady window (from 2 s after the
// last participant connected to the end of the run), located from synth's JSON (wall_s and
// steady.seconds). Latency is synth's in that steady state (latency_*_whole_run: the whole run,
// joins included); loss is over the whole run.
//
// Janus runs with a config this script writes into a temp dir: only the VideoRoom plugin and the
// WebSocket transport, no event handlers or loggers, debug_level 3. Janus's ICE (libnice)
// gathers no candidates on loopback, so Janus and its synth run in a network namespace this
// script creates (`scale-janus-PID`: lo plus a veth pair with 203.0.113.1/24, removed
// afterwards), with ICE enforced to that interface; no traffic leaves the namespace.

import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, readdirSync, writeFileSync, mkdtempSync, rmSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '../..');
const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const SIZES = (args.sizes ?? '10,30,60').split(',').map(Number);
const PER_ROOM = Number(args['per-room'] ?? 3);
const DURATION = Number(args.duration ?? 20);
const PAUSE = Number(args.pause ?? 3);
const IDLE_WAIT = Number(args['idle-wait'] ?? 180); // max seconds to wait for an idle machine before a run
const BUSY_LIMIT = 0.3; // cores used by other processes that count as "not idle"
const OUT = args.out ?? join(REPO, 'load-tests/results');
const JANUS_NS = `scale-janus-${process.pid}`;
const JANUS_IP = '203.0.113.1';
const JANUS_PORT = 8188; // inside the namespace: always free
const JANUS_LIB = '/usr/lib/x86_64-linux-gnu/janus';
const BIN = join(REPO, 'target/release');
const ALL_TARGETS = [
  { name: 'consult-sfu', bin: join(BIN, 'consult-sfu'), args: ['--http-addr', '127.0.0.1:0', '--udp-addr', '127.0.0.1:0', '--log', 'warn'], ready: 'CONSULT_READY' },
  { name: 'rawloop', bin: join(BIN, 'rawloop'), args: ['--http-addr', '127.0.0.1:0', '--udp-addr', '127.0.0.1:0'], ready: 'RAWLOOP_READY' },
  { name: 'janus', bin: '/usr/bin/janus', janus: true },
];
const PIN = args.pin ? args.pin.split(',').map(Number) : null;
if (PIN && (PIN.length !== 2 || PIN.some((c) => !Number.isInteger(c) || c < 0 || c >= cpus().length) || PIN[0] === PIN[1])) {
  console.error(`scale: --pin wants two different CPU numbers below ${cpus().length}, e.g. --pin 1,0`);
  process.exit(2);
}
const NAME = args.name ?? (PIN ? 'scale-pinned' : 'scale');
// [command, args] of a program, on its CPU when pinned (taskset execs it: same pid).
const pinned = (role, bin, argv) => (PIN ? ['taskset', ['-c', String(role === 'target' ? PIN[0] : PIN[1]), bin, ...argv]] : [bin, argv]);
const TARGETS = ALL_TARGETS.filter((t) => (args.targets ?? 'consult-sfu,rawloop,janus').split(',').includes(t.name));
const SYNTH = join(BIN, 'synth');
const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
const NPROC = cpus().length;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const now = () => performance.now() / 1000;
const log = (...a) => console.log(`[scale ${new Date().toISOString().slice(11, 19)}]`, ...a);

function chromiumCount() {
  try {
    return Number(execFileSync('pgrep', ['-c', 'chromium']).toString().trim()) || 0;
  } catch {
    return 0; // pgrep exits 1 when nothing matches
  }
}

async function waitNoChromium() {
  const t0 = now();
  let n = chromiumCount();
  for (let i = 0; n > 0; i++) {
    if (i % 15 === 0) log(`waiting: ${n} chromium processes running`);
    await sleep(2000);
    n = chromiumCount();
  }
  return now() - t0;
}

function cpuTotals() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0);
  return { idle, total: f.reduce((a, b) => a + b, 0) };
}

const busyCores = (a, b) => (1 - (b.idle - a.idle) / Math.max(1, b.total - a.total)) * NPROC;

// Host state before a run: the machine's busy cores over 2 s (waiting up to IDLE_WAIT s for
// them to drop below BUSY_LIMIT) and the load average.
async function hostBefore() {
  const t0 = now();
  let busy;
  for (let i = 0; ; i++) {
    const a = cpuTotals();
    await sleep(2000);
    busy = busyCores(a, cpuTotals());
    if (busy < BUSY_LIMIT || now() - t0 > IDLE_WAIT) break;
    if (i % 5 === 0) log(`waiting: the machine is busy (${busy.toFixed(2)} cores used by others)`);
  }
  const loadavg = readFileSync('/proc/loadavg', 'utf8').trim().split(/\s+/).slice(0, 3).map(Number);
  return { loadavg, busy_cores_2s: Math.round(busy * 100) / 100, idle: busy < BUSY_LIMIT, waited_idle_s: Math.round(now() - t0 - 2) };
}

function procCpu(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK; // utime, stime (fields 14, 15)
}

function procRssKb(pid) {
  const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/);
  return m ? Number(m[1]) : null;
}

async function metrics(http) {
  try {
    const res = await fetch(`http://${http}/metrics`, { signal: AbortSignal.timeout(1000) });
    const out = {};
    for (const line of (await res.text()).split('\n')) {
      const m = line.match(/^(consult_[a-z_]+)\s+([0-9.e+-]+)$/);
      if (m) out[m[1]] = Number(m[2]);
    }
    return out;
  } catch {
    return null;
  }
}

const run = (cmd, a) => execFileSync(cmd, a, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();

// The namespace Janus and its bots share: lo, and a veth pair whose jv0 end carries JANUS_IP
// (Janus skips loopback interfaces when it gathers ICE candidates).
function janusNetns() {
  try { run('ip', ['netns', 'del', JANUS_NS]); } catch { /* not there */ }
  run('ip', ['netns', 'add', JANUS_NS]);
  run('ip', ['-n', JANUS_NS, 'link', 'set', 'lo', 'up']);
  run('ip', ['-n', JANUS_NS, 'link', 'add', 'jv0', 'type', 'veth', 'peer', 'name', 'jv1']);
  run('ip', ['-n', JANUS_NS, 'addr', 'add', `${JANUS_IP}/24`, 'dev', 'jv0']);
  run('ip', ['-n', JANUS_NS, 'link', 'set', 'jv0', 'up']);
  run('ip', ['-n', JANUS_NS, 'link', 'set', 'jv1', 'up']);
}

function janusNetnsDel() {
  try { run('ip', ['netns', 'del', JANUS_NS]); } catch { /* already gone */ }
}

// Minimal Janus config: VideoRoom and the WebSocket transport only, everything else disabled.
function janusConfig(dir) {
  const disable = (sub, keep) => readdirSync(join(JANUS_LIB, sub)).filter((f) => f.endsWith('.so') && f !== keep).join(',');
  writeFileSync(join(dir, 'janus.jcfg'), `general: {
  configs_folder = "${dir}"
  plugins_folder = "${JANUS_LIB}/plugins"
  transports_folder = "${JANUS_LIB}/transports"
  events_folder = "${JANUS_LIB}/events"
  loggers_folder = "${JANUS_LIB}/loggers"
  log_to_stdout = true
  debug_level = 3
  debug_timestamps = false
  debug_colors = false
  session_timeout = 60
}
certificates: {}
media: {
  rtp_port_range = "20000-40000"
}
nat: {
  nice_debug = false
  ice_enforce_list = "jv0"
  ignore_mdns = true
}
plugins: { disable = "${disable('plugins', 'libjanus_videoroom.so')}" }
transports: { disable = "${disable('transports', 'libjanus_websockets.so')}" }
loggers: { disable = "${disable('loggers', '')}" }
events: { broadcast = false }
`);
  writeFileSync(join(dir, 'janus.plugin.videoroom.jcfg'), 'general: {}\n');
  writeFileSync(join(dir, 'janus.transport.websockets.jcfg'), `general: {
  json = "compact"
  ws = true
  ws_port = ${JANUS_PORT}
  ws_ip = "127.0.0.1"
  wss = false
}
admin: { admin_ws = false }
`);
}

async function startJanus(t, work) {
  const dir = mkdtempSync(join(work, 'janus-'));
  janusConfig(dir);
  janusNetns();
  // `ip netns exec` execs janus, so child.pid is Janus's pid.
  const [cmd, argv] = pinned('target', t.bin, ['-F', dir, '-C', join(dir, 'janus.jcfg')]);
  const child = spawn('ip', ['netns', 'exec', JANUS_NS, cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let err = '';
  child.stdout.on('data', (d) => (err = (err + d).slice(-20000)));
  child.stderr.on('data', (d) => (err = (err + d).slice(-20000)));
  const t0 = now();
  while (now() - t0 < 10) {
    if (child.exitCode != null) throw new Error(`janus exited (${child.exitCode}) before ready: ${err}`);
    try {
      // Ready when its WebSocket transport accepts connections (inside the namespace).
      run('ip', ['netns', 'exec', JANUS_NS, 'bash', '-c', `exec 3<>/dev/tcp/127.0.0.1/${JANUS_PORT}`]);
      return { child, pid: child.pid, http: null, stderr: () => err, janus: true };
    } catch { /* not yet */ }
    await sleep(100);
  }
  child.kill('SIGKILL');
  throw new Error(`janus did not listen on ${JANUS_PORT} within 10 s: ${err}`);
}

async function startTarget(t, work) {
  if (t.janus) return startJanus(t, work);
  // Open join: the bots join by room name, not by invite (media only).
  const env = { ...process.env, CONSULT_ALLOW_OPEN_JOIN: '1', CONSULT_DB_PATH: join(work, 'consults.sqlite') };
  const child = spawn(...pinned('target', t.bin, t.args), { stdio: ['ignore', 'pipe', 'pipe'], env });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err = (err + d).slice(-20000)));
  const t0 = now();
  while (now() - t0 < 10) {
    const m = out.match(new RegExp(`^${t.ready} http=(\\S+) udp=(\\S+)`, 'm'));
    if (m) return { child, pid: child.pid, http: m[1], udp: m[2], stderr: () => err };
    if (child.exitCode != null) throw new Error(`${t.name} exited (${child.exitCode}) before ready: ${err}`);
    await sleep(50);
  }
  child.kill('SIGKILL');
  throw new Error(`${t.name} printed no ${t.ready} line within 10 s`);
}

async function stopTarget(proc) {
  if (proc.child.exitCode == null) {
    proc.child.kill('SIGTERM');
    for (let i = 0; i < 50 && proc.child.exitCode == null; i++) await sleep(100);
    if (proc.child.exitCode == null) proc.child.kill('SIGKILL');
    for (let i = 0; i < 20 && proc.child.exitCode == null; i++) await sleep(100);
  }
  if (proc.janus) janusNetnsDel();
}

// Linear interpolation of sampled value `key` at time t.
function at(samples, t, key) {
  const s = samples.filter((x) => x[key] != null);
  if (!s.length) return null;
  if (t <= s[0].t) return s[0][key];
  for (let i = 1; i < s.length; i++) {
    if (s[i].t >= t) {
      const a = s[i - 1], b = s[i];
      return a[key] + ((b[key] - a[key]) * (t - a.t)) / Math.max(1e-9, b.t - a.t);
    }
  }
  return s.at(-1)[key];
}

// The CPUs a process may run on (shows that --pin took effect); read after taskset's exec.
async function cpusAllowed(pid) {
  for (let i = 0; i < 20; i++) {
    try {
      const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
      const list = readFileSync(`/proc/${pid}/status`, 'utf8').match(/Cpus_allowed_list:\s*(\S+)/)?.[1] ?? null;
      if (comm !== 'taskset' && comm !== 'ip') return list;
    } catch {
      return null;
    }
    await sleep(25);
  }
  return null;
}

// Which build ran: the lead may rebuild target/release between runs.
const binId = (path) => createHash('sha256').update(readFileSync(path)).digest('hex').slice(0, 12);

async function runOne(target, rooms, work) {
  const waited = await waitNoChromium();
  const host = await hostBefore();
  const participants = rooms * PER_ROOM;
  log(`${target.name}: ${rooms} rooms x ${PER_ROOM} = ${participants} participants, ${DURATION} s` +
    ` (loadavg ${host.loadavg.join(' ')}, busy cores ${host.busy_cores_2s}${waited > 1 ? `, waited ${waited.toFixed(0)} s for chromium` : ''})`);
  const targetSha = binId(target.bin);
  const proc = await startTarget(target, work);
  const rssIdleKb = procRssKb(proc.pid);
  const targetCpus = await cpusAllowed(proc.pid);
  const json = join(work, `${target.name}-${rooms}.json`);
  const samples = [];
  let chromiumSeen = 0;
  let sampling = true;
  const sampler = (async () => {
    while (sampling) {
      const t = now();
      const s = { t };
      try {
        s.cpu = procCpu(proc.pid);
        s.rss = procRssKb(proc.pid);
      } catch {
        break;
      }
      const m = proc.http ? await metrics(proc.http) : null;
      if (m) {
        s.out = m.consult_rtp_packets_out_total ?? null;
        s.in = m.consult_rtp_packets_in_total ?? null;
        s.bout = m.consult_rtp_bytes_out_total ?? null;
      }
      if (samples.length % 8 === 0) chromiumSeen = Math.max(chromiumSeen, chromiumCount());
      samples.push(s);
      await sleep(Math.max(0, 250 - (now() - t) * 1000));
    }
  })();

  const t0 = now();
  const hostA = cpuTotals();
  const targetCpuA = procCpu(proc.pid);
  const common = ['--rooms', String(rooms), '--per-room', String(PER_ROOM),
    '--duration', String(DURATION), '--json', json, '--sfu-pid', String(proc.pid)];
  // Janus's bots run in its namespace (`ip netns exec` execs synth: same pid, same /proc).
  const synthArgs = proc.janus
    ? ['--target', 'janus', '--janus-url', `ws://127.0.0.1:${JANUS_PORT}`, '--bind-ip', JANUS_IP, ...common]
    : ['--server', `http://${proc.http}`, ...common];
  const [synthCmd, synthArgv] = pinned('bots', SYNTH, synthArgs);
  const synth = proc.janus
    ? spawn('ip', ['netns', 'exec', JANUS_NS, synthCmd, ...synthArgv], { stdio: ['ignore', 'pipe', 'pipe'] })
    : spawn(synthCmd, synthArgv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const synthCpus = await cpusAllowed(synth.pid);
  let table = '';
  synth.stdout.on('data', (d) => (table += d));
  synth.stderr.on('data', (d) => {
    for (const line of String(d).split('\n')) if (line.trim()) log(`  synth: ${line.trim()}`);
  });
  const code = await new Promise((r) => synth.on('exit', (c) => r(c)));
  const hostB = cpuTotals();
  const spanS = now() - t0;
  let targetCpuB = null;
  try { targetCpuB = procCpu(proc.pid); } catch { /* died */ }
  sampling = false;
  await sampler;
  const alive = proc.child.exitCode == null;
  await stopTarget(proc);
  if (!alive) log(`  ${target.name} DIED during the run: ${proc.stderr().slice(-2000)}`);

  let r;
  try {
    r = JSON.parse(readFileSync(json, 'utf8'));
  } catch (e) {
    throw new Error(`synth exited ${code} without JSON (${e.message}); stdout:\n${table}`);
  }
  // Steady window on our clock: synth's clock starts at about t0 (spawn); it measures its steady
  // window up to wall_s. Trim 0.25 s at both ends for the sampling granularity.
  const ws = t0 + (r.wall_s - (r.steady?.seconds ?? 0)) + 0.25;
  const we = t0 + r.wall_s - 0.25;
  const secs = we - ws;
  const cpuS = secs > 1 ? at(samples, we, 'cpu') - at(samples, ws, 'cpu') : null;
  const metricsPk = (key) => (secs > 1 && samples.some((s) => s[key] != null) ? at(samples, we, key) - at(samples, ws, key) : null);
  const outPkMetrics = metricsPk('out');
  const inPk = metricsPk('in');
  // Forwarded = what the bots received in synth's steady window (same source for every target).
  const fwdPps = r.steady?.received_pps ?? null;
  const fwdBps = r.steady?.received_payload_bps ?? null;
  const cpuCores = cpuS != null && secs > 0 ? cpuS / secs : null;
  chromiumSeen = Math.max(chromiumSeen, chromiumCount());
  // Cores used by everything but the target and synth while synth ran (the lead's builds etc.).
  const otherCores = targetCpuB == null ? null
    : busyCores(hostA, hostB) - (targetCpuB - targetCpuA + (r.synth_cpu_s ?? 0)) / spanS;
  const steadyLat = r.latency_steady_ms?.samples ? r.latency_steady_ms : null;
  const layers = r.received_by_layer ?? {};
  const layerTotal = (layers.q ?? 0) + (layers.h ?? 0) + (layers.f ?? 0);
  const rssSteady = Math.max(...samples.filter((s) => s.t >= ws && s.t <= we && s.rss != null).map((s) => s.rss));
  const streams = participants * (PER_ROOM - 1) * 2; // subscribed streams: each other participant's audio + video
  const cpuPct = cpuS != null ? (cpuS / secs) * 100 : null;
  const round = (x, d = 2) => (x == null || !Number.isFinite(x) ? null : Math.round(x * 10 ** d) / 10 ** d);
  const row = {
    target: target.name,
    rooms,
    per_room: PER_ROOM,
    participants,
    joined: r.joined,
    connected: r.connected,
    failed: r.failed,
    synth_exit: code,
    target_survived: alive,
    target_cpus: targetCpus,
    synth_cpus: synthCpus,
    steady_s: round(secs),
    cpu_pct: round(cpuPct, 1),
    pkts_in_per_s: inPk == null ? null : round(inPk / secs, 0),
    pkts_out_per_s: round(fwdPps, 0),
    pkts_out_per_s_metrics: outPkMetrics == null ? null : round(outPkMetrics / secs, 0),
    bots_sent_pps: round(r.steady?.sent_pps, 0),
    fwd_pkts_per_cpu_s: fwdPps == null || !cpuCores ? null : round(fwdPps / cpuCores, 0),
    fwd_mbit_per_s: fwdBps == null ? null : round(fwdBps / 1e6, 1),
    fwd_mbit_per_cpu_s: fwdBps == null || !cpuCores ? null : round(fwdBps / 1e6 / cpuCores, 1),
    video_recv_share_q_h_f_pct: layerTotal ? ['q', 'h', 'f'].map((k) => Math.round(((layers[k] ?? 0) / layerTotal) * 100)).join('/') : null,
    cpu_pct_per_stream: round(cpuPct / streams, 3),
    subscribed_streams: streams,
    rss_mb: round(rssSteady / 1024, 1),
    rss_idle_mb: round(rssIdleKb / 1024, 1),
    rss_kb_per_participant: round(rssSteady / participants, 0),
    rss_kb_per_participant_marginal: round((rssSteady - rssIdleKb) / participants, 0),
    // Steady state (from 2 s after the last bot connected; see synth), the whole run as well.
    latency_p50_ms: round(steadyLat?.p50, 2),
    latency_p99_ms: round(steadyLat?.p99, 2),
    latency_max_ms: round(steadyLat?.max, 1),
    latency_p50_ms_whole_run: round(r.latency_ms?.p50, 2),
    latency_p99_ms_whole_run: round(r.latency_ms?.p99, 2),
    latency_max_ms_whole_run: round(r.latency_ms?.max, 1),
    loss_pct: round(r.loss_pct, 3),
    audio_loss_pct: round(r.audio_loss_pct, 3),
    kernel_udp_rcvbuf_errors: r.kernel_udp_rcvbuf_errors,
    udp_recv_dropped: r.sfu_metrics_delta?.consult_udp_recv_dropped_total ?? null,
    target_cpu_s_whole_run: r.sfu_cpu_s,
    synth_cpu_s: r.synth_cpu_s,
    synth_cpu_pct: round((r.synth_cpu_s / r.wall_s) * 100, 1),
    loadavg_before: host.loadavg.join(' '),
    busy_cores_before: host.busy_cores_2s,
    idle_before: host.idle,
    target_sha256_12: targetSha,
    synth_sha256_12: binId(SYNTH),
    waited_for_chromium_s: round(waited, 0),
    waited_idle_s: host.waited_idle_s,
    other_cores_during_run: round(otherCores, 2),
    disturbed: chromiumSeen > 0 || (otherCores ?? 0) > BUSY_LIMIT,
    chromium_during_run: chromiumSeen,
    at: new Date().toISOString(),
  };
  log(`  -> cpu ${row.cpu_pct} %, out ${row.pkts_out_per_s} pkt/s, ${row.fwd_pkts_per_cpu_s} pkt per CPU-s, ` +
    `RSS ${row.rss_mb} MB, p50/p99 ${row.latency_p50_ms}/${row.latency_p99_ms} ms, loss ${row.loss_pct} %` +
    (code !== 0 ? ` (synth exit ${code})` : ''));
  if (chromiumSeen) log(`  WARNING: ${chromiumSeen} chromium processes appeared during the run`);
  if ((otherCores ?? 0) > BUSY_LIMIT) log(`  WARNING: other processes used ${otherCores.toFixed(2)} cores during the run`);
  return { row, synth: r, samples: samples.map((s) => ({ ...s, t: round(s.t - t0, 3) })) };
}

async function plot(rows, file) {
  const require = createRequire(join(REPO, 'web-client/package.json'));
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 560 } });
    await page.setContent('<canvas id="c" width="1000" height="560"></canvas>');
    await page.evaluate(({ rows }) => {
      const c = document.getElementById('c').getContext('2d');
      const W = 1000, H = 560, L = 70, R = 80, T = 60, B = 60;
      c.fillStyle = '#fff'; c.fillRect(0, 0, W, H);
      const pMax = Math.max(...rows.map((r) => r.participants)) * 1.05;
      const nice = (v) => { const e = 10 ** Math.floor(Math.log10(v)); return [1, 2, 2.5, 5, 10].map((k) => k * e).find((k) => k >= v); };
      const cMax = nice(Math.max(10, ...rows.map((r) => r.cpu_pct ?? 0)) * 1.1);
      const lMax = nice(Math.max(1, ...rows.map((r) => r.latency_p99_ms ?? 0)) * 1.1);
      const x = (p) => L + (p / pMax) * (W - L - R);
      const yC = (v) => H - B - (v / cMax) * (H - T - B);
      const yL = (v) => H - B - (v / lMax) * (H - T - B);
      c.strokeStyle = '#ddd'; c.lineWidth = 1; c.beginPath();
      for (let i = 0; i <= 5; i++) { const y = T + ((H - T - B) * i) / 5; c.moveTo(L, y); c.lineTo(W - R, y); }
      c.stroke();
      c.strokeStyle = '#000'; c.beginPath(); c.moveTo(L, T); c.lineTo(L, H - B); c.lineTo(W - R, H - B); c.lineTo(W - R, T); c.stroke();
      const series = [
        { target: 'consult-sfu', key: 'cpu_pct', y: yC, color: '#1565c0', dash: [] },
        { target: 'rawloop', key: 'cpu_pct', y: yC, color: '#90caf9', dash: [] },
        { target: 'janus', key: 'cpu_pct', y: yC, color: '#2e7d32', dash: [] },
        { target: 'consult-sfu', key: 'latency_p99_ms', y: yL, color: '#c62828', dash: [8, 5] },
        { target: 'rawloop', key: 'latency_p99_ms', y: yL, color: '#ef9a9a', dash: [8, 5] },
        { target: 'janus', key: 'latency_p99_ms', y: yL, color: '#f9a825', dash: [8, 5] },
      ];
      for (const s of series) {
        const pts = rows.filter((r) => r.target === s.target && r[s.key] != null).sort((a, b) => a.participants - b.participants);
        c.strokeStyle = s.color; c.fillStyle = s.color; c.lineWidth = 2.5; c.setLineDash(s.dash); c.beginPath();
        pts.forEach((r, i) => (i ? c.lineTo(x(r.participants), s.y(r[s.key])) : c.moveTo(x(r.participants), s.y(r[s.key]))));
        c.stroke(); c.setLineDash([]);
        for (const r of pts) { c.beginPath(); c.arc(x(r.participants), s.y(r[s.key]), 4, 0, 7); c.fill(); }
      }
      c.fillStyle = '#000'; c.font = '15px sans-serif';
      c.fillText('Target CPU (% of one core, solid, left axis) and latency p99 (ms, dashed, right axis) vs participants', 10, 22);
      c.font = '13px sans-serif';
      const legend = [['consult-sfu CPU', '#1565c0'], ['rawloop CPU', '#90caf9'], ['janus CPU', '#2e7d32'], ['consult-sfu p99', '#c62828'], ['rawloop p99', '#ef9a9a'], ['janus p99', '#f9a825']]
        .filter(([t]) => rows.some((r) => r.target === t.split(' ')[0]));
      legend.forEach(([t, col], i) => { c.fillStyle = col; c.fillRect(L + i * 140, 36, 14, 10); c.fillStyle = '#000'; c.fillText(t, L + i * 140 + 20, 46); });
      for (let i = 0; i <= 5; i++) {
        const y = T + ((H - T - B) * (5 - i)) / 5;
        c.fillText(`${+(cMax * i / 5).toFixed(1)}%`, 15, y + 4);
        c.fillText(`${+(lMax * i / 5).toFixed(1)}`, W - R + 8, y + 4);
      }
      for (const p of [...new Set(rows.map((r) => r.participants))]) c.fillText(String(p), x(p) - 8, H - B + 18);
      c.fillText('participants', W / 2 - 40, H - B + 40);
      c.fillText('ms', W - R + 8, T - 8);
    }, { rows });
    await page.locator('#c').screenshot({ path: file });
  } finally {
    await browser.close();
  }
}

// ---- main
if (TARGETS.some((t) => t.janus) && !existsSync('/usr/bin/janus')) {
  log('installing janus (apt-get install -y janus)');
  execFileSync('apt-get', ['install', '-y', 'janus'], { stdio: 'inherit' });
}
for (const t of [...TARGETS, { bin: SYNTH }]) {
  try {
    readFileSync(t.bin, { flag: 'r' }).length;
  } catch {
    console.error(`scale: ${t.bin} is missing; run: cargo build --release -p consult-sfu -p consult-bots`);
    process.exit(2);
  }
}
const work = mkdtempSync(join(tmpdir(), 'scale-'));
process.on('SIGINT', () => {
  janusNetnsDel();
  process.exit(130);
});
const runs = [];
const started = new Date().toISOString();
try {
  let first = true;
  for (const rooms of SIZES) {
    for (const target of TARGETS) {
      if (!first) await sleep(PAUSE * 1000);
      first = false;
      let run = await runOne(target, rooms, work);
      for (let retry = 0; retry < 2 && run.row.disturbed; retry++) {
        log('  repeating the run: it was disturbed by other processes');
        await sleep(PAUSE * 1000);
        run = await runOne(target, rooms, work);
      }
      runs.push(run);
    }
  }
} finally {
  janusNetnsDel();
  rmSync(work, { recursive: true, force: true });
}

const rows = runs.map((r) => r.row);
for (const t of TARGETS) {
  const shas = new Set(rows.filter((r) => r.target === t.name).map((r) => r.target_sha256_12));
  if (shas.size > 1) log(`WARNING: ${t.name} was rebuilt during the benchmark (${[...shas].join(', ')}): runs are not comparable`);
}
mkdirSync(OUT, { recursive: true });
const cpuModel = (readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/) ?? [])[1] ?? 'unknown';
writeFileSync(join(OUT, `${NAME}.json`), JSON.stringify({
  started,
  finished: new Date().toISOString(),
  machine: { nproc: NPROC, cpu_model: cpuModel, mem_gb: Math.round((totalmem() / 2 ** 30) * 10) / 10 },
  config: { sizes: SIZES, per_room: PER_ROOM, duration_s: DURATION, pause_s: PAUSE, pin: PIN ? { target: PIN[0], bots: PIN[1] } : null },
  rows,
  runs: runs.map((r) => ({ target: r.row.target, rooms: r.row.rooms, synth: r.synth, samples: r.samples })),
}, null, 1) + '\n');
const cols = Object.keys(rows[0]);
const cell = (v) => (v == null ? '' : /[,"\s]/.test(String(v)) ? `"${String(v).replace(/"/g, '""')}"` : v);
writeFileSync(join(OUT, `${NAME}.csv`), [cols.join(','), ...rows.map((r) => cols.map((c) => cell(r[c])).join(','))].join('\n') + '\n');
await plot(rows, join(OUT, `${NAME}.png`));

const f = (v, d = 1) => (v == null ? 'n/a' : Number(v).toFixed(d));
const ratio = (a, b, d = 2) => (a == null || b == null || !b ? 'n/a' : (a / b).toFixed(d));
let md = '| participants | target | CPU % of a core | fwd pkt/s | fwd pkt per CPU-s | fwd Mbit per CPU-s | CPU % per sub. stream | RSS MB (KB/participant) | p50 / p99 ms (steady) | loss % | video q/h/f % | idle before (other cores before / during; loadavg) |\n';
md += '| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n';
for (const r of rows) {
  md += `| ${r.participants} | ${r.target} | ${f(r.cpu_pct)} | ${f(r.pkts_out_per_s, 0)} | ${f(r.fwd_pkts_per_cpu_s, 0)} | ${f(r.fwd_mbit_per_cpu_s, 1)} | ${f(r.cpu_pct_per_stream, 3)} | ${f(r.rss_mb)} (${f(r.rss_kb_per_participant, 0)}) | ${f(r.latency_p50_ms, 2)} / ${f(r.latency_p99_ms, 1)} | ${f(r.loss_pct, 3)} | ${r.video_recv_share_q_h_f_pct ?? 'n/a'} | ${r.idle_before ? 'yes' : 'no'} (${r.busy_cores_before} / ${f(r.other_cores_during_run, 2)} cores; load ${r.loadavg_before.split(' ')[0]}) |\n`;
}
for (const other of ['rawloop', 'janus']) {
  if (!rows.some((r) => r.target === other)) continue;
  md += `\nRatio consult-sfu / ${other}:\n\n| participants | CPU % | fwd pkt per CPU-s | fwd Mbit per CPU-s | CPU per stream | RSS | p50 | p99 |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n`;
  for (const rooms of SIZES) {
    const a = rows.find((r) => r.rooms === rooms && r.target === 'consult-sfu');
    const b = rows.find((r) => r.rooms === rooms && r.target === other);
    if (!a || !b) continue;
    md += `| ${a.participants} | ${ratio(a.cpu_pct, b.cpu_pct)} | ${ratio(a.fwd_pkts_per_cpu_s, b.fwd_pkts_per_cpu_s)} | ${ratio(a.fwd_mbit_per_cpu_s, b.fwd_mbit_per_cpu_s)} | ${ratio(a.cpu_pct_per_stream, b.cpu_pct_per_stream)} | ${ratio(a.rss_mb, b.rss_mb)} | ${ratio(a.latency_p50_ms, b.latency_p50_ms)} | ${ratio(a.latency_p99_ms, b.latency_p99_ms)} |\n`;
  }
}
console.log('\n' + md);
log(`wrote ${join(OUT, `${NAME}.json`)}, ${NAME}.csv, ${NAME}.png${PIN ? ` (target on CPU ${PIN[0]}, bots on CPU ${PIN[1]})` : ''}`);
