// Adaptation benchmark: one publisher on a good link, one receive-only subscriber behind the
// step-down profile (2 Mbit/s -> 250 kbit/s at 20 s -> 2 Mbit/s at 40 s), one good subscriber.
// Writes, per second, the server's estimate towards the weak subscriber, its chosen layer, the
// received frame rate, height and freezes, as CSV, a PNG plot and a markdown summary.
//
// Usage (as root, after `cargo build --release --workspace` and `npm ci` in web-client/):
//   node load-tests/bench/adaptation.mjs [--profile step-down] [--seconds 60] [--out load-tests/results]

import { mkdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';

import { REPO, sample, startLab } from '../browser/netlab.mjs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const PROFILE = args.profile ?? 'step-down';
const SECONDS = Number(args.seconds ?? 60);
const OUT = args.out ?? join(REPO, 'load-tests/results');
const STEP = Number(args.step ?? 20);
const RECOVER = Number(args.recover ?? 40);

function weakStatus(lab) {
  try {
    const status = JSON.parse(lab.get('/status'));
    const p = status.rooms.flatMap((r) => r.participants).find((x) => x.role === 'patient');
    const video = p?.subscriptions.find((s) => s.kind === 'video');
    return { estimate: p?.estimate_bps ?? null, target: video?.target ?? video?.paused ?? null, temporal: video?.target_temporal ?? null, current: video?.current ?? null };
  } catch {
    return { estimate: null, target: null, temporal: null, current: null };
  }
}

async function plot(rows, file) {
  const require = createRequire(join(REPO, 'web-client/package.json'));
  const { chromium } = require('playwright-core');
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox', '--disable-gpu'] });
  try {
    const page = await browser.newPage({ viewport: { width: 1000, height: 560 } });
    await page.setContent('<canvas id="c" width="1000" height="560"></canvas>');
    await page.evaluate(({ rows, step, recover, profile }) => {
      const c = document.getElementById('c').getContext('2d');
      const W = 1000, H = 560, L = 70, R = 70, T = 40, B = 60;
      c.fillStyle = '#fff'; c.fillRect(0, 0, W, H);
      const tMax = Math.max(...rows.map((r) => r.t));
      const x = (t) => L + (t / tMax) * (W - L - R);
      const maxKbps = 2500;
      const yK = (k) => H - B - (Math.min(k, maxKbps) / maxKbps) * (H - T - B);
      const yF = (f) => H - B - (Math.min(f, 40) / 40) * (H - T - B);
      c.fillStyle = '#fde2e2';
      c.fillRect(x(step), T, x(recover) - x(step), H - T - B);
      c.strokeStyle = '#ccc'; c.beginPath();
      for (let k = 0; k <= maxKbps; k += 500) { c.moveTo(L, yK(k)); c.lineTo(W - R, yK(k)); }
      c.stroke();
      const line = (key, y, color) => {
        c.strokeStyle = color; c.lineWidth = 2; c.beginPath();
        let started = false;
        for (const r of rows) {
          if (r[key] == null) continue;
          if (!started) { c.moveTo(x(r.t), y(r[key])); started = true; } else c.lineTo(x(r.t), y(r[key]));
        }
        c.stroke();
      };
      line('link_kbps', yK, '#999');
      line('estimate_kbps', yK, '#1565c0');
      line('recv_kbps', yK, '#2e7d32');
      line('fps', yF, '#ef6c00');
      c.fillStyle = '#6a1b9a';
      for (const r of rows) {
        const h = { q: 180, h: 360, f: 720 }[r.target] ?? 0;
        if (h) c.fillRect(x(r.t) - 2, yK(h * 3) - 2, 4, 4);
      }
      c.fillStyle = '#000'; c.font = '14px sans-serif';
      c.fillText(`consult-sfu adaptation, profile ${profile}: link (grey), estimate (blue), received kbps (green), fps (orange, right axis), target layer (purple: q=540, h=1080, f=2160 on the kbps axis)`, 10, 20);
      for (let k = 0; k <= maxKbps; k += 500) c.fillText(String(k), 20, yK(k) + 4);
      for (let f = 0; f <= 40; f += 10) c.fillText(String(f), W - R + 10, yF(f) + 4);
      for (let t = 0; t <= tMax; t += 10) c.fillText(`${t}s`, x(t) - 8, H - B + 20);
      c.fillText('kbps', 20, T - 5); c.fillText('fps', W - R + 10, T - 5);
    }, { rows, step: STEP, recover: RECOVER, profile: PROFILE });
    await page.locator('#c').screenshot({ path: file });
  } finally {
    await browser.close();
  }
}

const lab = await startLab(PROFILE, { duration: SECONDS + 60 });
const rows = [];
try {
  const room = 'bench-adapt';
  const pub = await lab.browser('sfu');
  await pub.goto(lab.url(room, 'Clinic', 'clinic'));
  await pub.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 30_000 });
  const good = await lab.browser('sfu', { receiveOnly: true });
  await good.goto(lab.url(room, 'Doctor', 'specialist'));
  const weak = await lab.browser('weak', { receiveOnly: true });
  await weak.goto(lab.url(room, 'Patient', 'patient'));
  await weak.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 45_000 });

  let prev = null;
  while ((Date.now() - lab.linkemStarted) / 1000 < SECONDS) {
    const t = (Date.now() - lab.linkemStarted) / 1000;
    const s = await sample(weak);
    const st = weakStatus(lab);
    const link = t < STEP || t >= RECOVER ? 2000 : 250;
    const row = {
      t: Math.round(t * 10) / 10,
      link_kbps: PROFILE === 'step-down' ? link : null,
      estimate_kbps: st.estimate != null ? Math.round(st.estimate / 1000) : null,
      target: st.target,
      temporal: st.temporal,
      current: st.current,
      height: s.video?.frameHeight ?? 0,
      fps: s.video?.fps ?? 0,
      recv_kbps: prev?.video && s.video ? Math.round(((s.video.bytes - prev.video.bytes) * 8) / (s.t - prev.t)) : null,
      freezes: s.video?.freezeCount ?? 0,
      freeze_s: Math.round((s.video?.freezeSeconds ?? 0) * 100) / 100,
      concealed_pct: prev ? Math.round(((s.audio.concealed - s.audio.silent - (prev.audio.concealed - prev.audio.silent)) / Math.max(1, s.audio.samples - prev.audio.samples)) * 1000) / 10 : null,
    };
    rows.push(row);
    prev = s;
    process.stdout.write(`\r${row.t}s est=${row.estimate_kbps} target=${row.target} current=${row.current} ${row.height}p ${row.fps}fps   `);
    await new Promise((r) => setTimeout(r, 1000));
  }
  process.stdout.write('\n');
} finally {
  await lab.close();
}

mkdirSync(OUT, { recursive: true });
const cols = Object.keys(rows[0]);
const csv = [cols.join(','), ...rows.map((r) => cols.map((c) => r[c] ?? '').join(','))].join('\n') + '\n';
const base = join(OUT, `adaptation-${PROFILE}`);
writeFileSync(`${base}.csv`, csv);
await plot(rows, `${base}.png`);

const firstAfter = (t0, pred) => rows.find((r) => r.t >= t0 && pred(r));
const down = firstAfter(STEP, (r) => r.height > 0 && r.height < 720);
const downTarget = firstAfter(STEP, (r) => r.target && r.target !== 'f');
const up = firstAfter(RECOVER, (r) => r.height === 720);
// Held: the last sample below 720p after the recovery came before `up` (a step up that falls
// back is oscillation, the failure a hold after a failed step up turns into seconds on 360p).
const below = up ? rows.filter((r) => r.t > up.t && r.height < 720) : [];
const heldFrom = below.length ? rows.find((r) => r.t > below.at(-1).t && r.height === 720) : up;
const last = rows.at(-1);
const settled = rows.filter((r) => r.t >= 5 && r.concealed_pct != null);
const conceal = settled.length ? settled.reduce((a, r) => a + r.concealed_pct, 0) / settled.length : null;
const md = `# Adaptation benchmark: ${PROFILE}

Run ${new Date().toISOString()} on this machine type (2 cores). One publisher and one good subscriber
in the SFU's namespace; one receive-only subscriber behind linkem with \`${PROFILE}\`
(2 Mbit/s, 250 kbit/s from ${STEP} s to ${RECOVER} s, then 2 Mbit/s). Fake camera 1280x720.
Per-second data: \`adaptation-${PROFILE}.csv\`; plot: \`adaptation-${PROFILE}.png\`.

| measure | value |
| --- | --- |
| allocator target left f after the step | ${downTarget ? `${(downTarget.t - STEP).toFixed(1)} s` : 'never'} |
| received layer below 720p after the step | ${down ? `${(down.t - STEP).toFixed(1)} s` : 'never'} |
| back on 720p after the recovery | ${up ? `${(up.t - RECOVER).toFixed(1)} s` : 'not within the run'} |
| samples below 720p after that / 720p held from | ${up ? `${below.length} of ${rows.filter((r) => r.t > up.t).length} / ${heldFrom ? `${(heldFrom.t - RECOVER).toFixed(1)} s` : 'not within the run'}` : '-'} |
| freezes (Chrome freezeCount) / total freeze time | ${last.freezes} / ${last.freeze_s} s |
| mean audio concealment after 5 s | ${conceal == null ? 'n/a' : `${conceal.toFixed(2)} %`} |
| estimate before / during / after the step | ${[STEP - 2, RECOVER - 2, SECONDS - 2].map((t) => firstAfter(t, () => true)?.estimate_kbps ?? '?').join(' / ')} kbit/s |
`;
writeFileSync(`${base}.md`, md);
console.log(md);
