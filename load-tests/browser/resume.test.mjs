// Reconnect and resume, with real Chromium through the link emulator (issue 7): a 3-party
// consult, the clinic and a specialist on the SFU's side, the patient (publishing camera and
// microphone) behind linkem. The patient's link drops for 4 s, its address changes, its
// signaling socket drops, and it drops for 40 s (longer than the reconnect grace period); the
// consult must ride through each without anyone pressing anything.
//
// Everything is measured from getStats() per remote participant (sampleConsult in netlab.mjs)
// against the moment linkem's schedule changes the link. The specialist only watches (no camera)
// to keep the CPU load of three browsers on a 2-core machine down; it still counts as a
// participant everyone must see exactly once.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';

import { ADDR_WEAK, sampleConsult, startLab } from './netlab.mjs';

// The link changes this long after linkem starts, in outage-4s.toml, outage-40s.toml and
// address-change.toml; the three browsers join well before (measured: 10-20 s).
const STEP_AT_S = 40;
const SAMPLE_MS = 100;
// The issue's bound: media flows again within 3 s of the link coming back.
const RECOVER_S = 3;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const until = (t) => sleep(Math.max(0, t - Date.now()));
const secs = (ms) => (ms / 1000).toFixed(2);

/** Joins clinic, specialist and patient and waits until video flows both ways. */
async function joinConsult(lab, room) {
  const clinic = await lab.browser('sfu');
  await clinic.goto(lab.url(room, 'Clinic', 'clinic'));
  await clinic.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 30_000 });
  const specialist = await lab.browser('sfu', { receiveOnly: true });
  await specialist.goto(lab.url(room, 'Specialist', 'specialist'));
  const patient = await lab.browser('weak');
  await patient.goto(lab.url(room, 'Patient', 'patient'));
  for (const p of [specialist, patient]) {
    await p.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 45_000 });
  }
  const pages = { clinic, specialist, patient };
  const ids = {};
  for (const [name, page] of Object.entries(pages)) ids[name] = await page.evaluate(() => window.consult.participantId);
  // Media both ways before anything happens to the link.
  const deadline = Date.now() + 30_000;
  for (;;) {
    const [c, p] = [await sampleConsult(clinic), await sampleConsult(patient)];
    if ((c.from[ids.patient]?.frames ?? 0) > 20 && (p.from[ids.clinic]?.frames ?? 0) > 20 && (p.from[ids.clinic]?.audio ?? 0) > 0) break;
    if (Date.now() > deadline) throw new Error(`no media both ways 30 s after joining: clinic ${JSON.stringify(c)} patient ${JSON.stringify(p)}`);
    await sleep(250);
  }
  return { pages, ids };
}

/** Samples every page every SAMPLE_MS in the background until stop(). */
function recorder(pages) {
  const series = Object.fromEntries(Object.keys(pages).map((n) => [n, []]));
  let running = true;
  const loop = (async () => {
    while (running) {
      // All pages at once: one after the other, each page was sampled only every ~0.35 s,
      // and a recovery time is known only to the sample that first shows it.
      await Promise.all(Object.entries(pages).map(async ([name, page]) => {
        try {
          const s = await sampleConsult(page);
          series[name].push({ t: Date.now(), s });
        } catch (e) {
          series[name].push({ t: Date.now(), s: null, error: String(e) });
        }
      }));
      await sleep(SAMPLE_MS);
    }
  })();
  return {
    series,
    stop: async () => {
      running = false;
      await loop;
    },
  };
}

const val = (s, who, key) => s?.from?.[who]?.[key] ?? 0;

/**
 * When the counter `key` of what `series` receives from `who` (an id, or a function of the
 * sample giving one) grows again at or after `fromT`: the first sample that grew over the one
 * before it and kept growing at the next, so a single late packet does not count. Returns the
 * time (ms since epoch) or null. A counter that went down (a new peer connection) counts as a
 * fresh start, not as growth.
 */
function flowingAt(series, who, key, fromT) {
  const at = (i) => {
    const { s } = series[i];
    const id = typeof who === 'function' ? who(s) : who;
    return { v: val(s, id, key), pc: s?.pcId, id };
  };
  for (let i = 1; i + 1 < series.length; i++) {
    if (series[i].t < fromT || !series[i].s || !series[i - 1].s || !series[i + 1].s) continue;
    const [a, b, c] = [at(i - 1), at(i), at(i + 1)];
    if (a.pc === b.pc && b.pc === c.pc && a.id === b.id && b.id === c.id && b.v > a.v && c.v > b.v) return series[i].t;
  }
  return null;
}

// A stall: no growth for at least this long (video runs at 20 fps, 5 fps on its lowest
// temporal layer; audio at 50 packets/s).
const STALL_MS = 600;

/** Stalls of a counter: [{ start, end }], from the last sample that grew to the next one that
 * did (end null: still stalled at the last sample). */
function stalls(series, who, key) {
  const xs = series.filter(({ s }) => s);
  const out = [];
  let lastGrowth = xs[0]?.t ?? 0;
  for (let i = 1; i < xs.length; i++) {
    if (val(xs[i].s, who, key) > val(xs[i - 1].s, who, key)) {
      if (xs[i].t - lastGrowth >= STALL_MS) out.push({ start: lastGrowth, end: xs[i].t });
      lastGrowth = xs[i].t;
    }
  }
  if (xs.length && xs.at(-1).t - lastGrowth >= STALL_MS) out.push({ start: lastGrowth, end: null });
  return out;
}

/**
 * How long after `event` (ms since epoch) a counter grows again for good: the end of the last
 * stall that is still going on at the event or starts within 3 s after it (an outage's stall
 * began before the link came back; an address change's just after). 0 if nothing stalled;
 * null if it never grew again.
 */
function recoveryAfter(series, who, key, event) {
  const relevant = stalls(series, who, key).filter((x) => (x.end === null || x.end > event) && x.start < event + 3000);
  if (!relevant.length) return 0;
  const last = relevant.at(-1);
  return last.end === null ? null : last.end - event;
}

/** Whether the counter stood still over every sample pair inside [t1, t2]. */
function stalled(series, who, key, t1, t2) {
  const xs = series.filter(({ t, s }) => s && t >= t1 && t <= t2);
  return xs.length >= 2 && xs.every((x, i) => i === 0 || val(x.s, who, key) <= val(xs[i - 1].s, who, key));
}

/** Longest time (ms) without the counter growing, over samples in [t1, t2]. */
function longestGap(series, who, key, t1, t2) {
  const xs = series.filter(({ t, s }) => s && t >= t1 && t <= t2);
  let longest = 0;
  let last = xs[0]?.t ?? t1;
  for (let i = 1; i < xs.length; i++) {
    if (val(xs[i].s, who, key) > val(xs[i - 1].s, who, key)) {
      longest = Math.max(longest, xs[i].t - last);
      last = xs[i].t;
    }
  }
  return Math.max(longest, (xs.at(-1)?.t ?? t2) - last);
}

/** Each page must list exactly the other two participants, each once (by id and by name). */
function checkRoster(series, expected, fromT = 0) {
  const problems = [];
  for (const [name, xs] of Object.entries(series)) {
    const want = Object.keys(expected).filter((n) => n !== name).sort();
    for (const { t, s } of xs) {
      if (!s || t < fromT) continue;
      const names = s.participants.map(([, n]) => n).sort();
      const wantNames = want.map((n) => expected[n]).sort();
      if (JSON.stringify(names) !== JSON.stringify(wantNames)) {
        problems.push(`${name} at ${new Date(t).toISOString()}: ${JSON.stringify(s.participants)} (want ${wantNames.join(', ')})`);
      }
    }
  }
  return problems;
}

const NAMES = { clinic: 'Clinic', specialist: 'Specialist', patient: 'Patient' };

/** Client logs and the SFU's lines about reconnecting, for failure messages. */
async function diagnostics(lab, pages) {
  const out = [];
  for (const [name, page] of Object.entries(pages ?? {})) {
    const log = await page.evaluate(() => window.consult?.log ?? []).catch((e) => [`(no log: ${e})`]);
    out.push(`--- ${name} window.consult.log (last 40):`, ...log.slice(-40));
  }
  const sfu = (lab?.sfuLog?.text() ?? '').split('\n').map((l) => l.replace(/\x1b\[[0-9;]*m/g, ''))
    .filter((l) => /resum|reconnect|grace|ice|left|joined|WARN|ERROR/i.test(l)).slice(-60);
  out.push('--- SFU log (resume/reconnect/ICE/WARN/ERROR, last 60):', ...sfu);
  out.push('--- linkem:', ...(lab?.linkemLog?.text() ?? '').split('\n').filter((l) => /t=|NAT|OUTAGE|total/.test(l)).slice(-20));
  return out.join('\n');
}

/**
 * RESUME_TIMELINE=1: the patient's and clinic's client logs and the SFU's ICE lines around
 * `event`, each line with its time (s) relative to it, to see where a recovery's time goes.
 */
async function printTimeline(lab, pages, event) {
  const lines = [];
  for (const [name, page] of Object.entries(pages)) {
    const { origin, log } = await page.evaluate(() => ({ origin: performance.timeOrigin, log: window.consult?.log ?? [] }));
    for (const l of log) {
      const m = /^(\d+\.\d+) (.*)$/.exec(l);
      if (!m) continue;
      const t = origin + Number(m[1]) * 1000 - event;
      if (t > -3000 && t < 8000) lines.push([t, `${name}: ${m[2]}`]);
    }
  }
  for (const l of (lab.sfuLog?.text() ?? '').split('\n')) {
    const clean = l.replace(/\x1b\[[0-9;]*m/g, '');
    const m = /^(\d{4}-\d\d-\d\dT[\d:.]+Z)\s+(.*)$/.exec(clean);
    if (!m || !/ice|ICE|nominat|resum|restart|path|reflexive|State change|signaling|Remove failed|offer|answer/i.test(m[2])) continue;
    const t = Date.parse(m[1]) - event;
    if (t > -3000 && t < 8000) lines.push([t, `sfu: ${m[2].slice(0, 220)}`]);
  }
  lines.sort((a, b) => a[0] - b[0]);
  console.log(lines.map(([t, l]) => `# ${(t / 1000).toFixed(3)} ${l}`).join('\n'));
}

function summary(series, who, fromT) {
  return series
    .filter((_, i) => i % 5 === 0)
    .map(({ t, s }) => {
      const id = typeof who === 'function' ? who(s) : who;
      return `${secs(t - fromT)}s ${s ? `pc=${s.pcId} ${s.pcState} frames=${val(s, id, 'frames')} audio=${val(s, id, 'audio')} reconnecting=${JSON.stringify(s.reconnecting)} n=${s.participants.length}` : 'error'}`;
    })
    .join('\n');
}

/** When linkem logged its first line matching `re` (its `t=12.3s` is from its start), in ms
 * since epoch; `fallback` if there is none. */
function linkemEventAt(lab, re, fallback) {
  const line = lab.linkemLog.text().split('\n').find((l) => re.test(l));
  const m = line && /t=(\d+(?:\.\d+)?)s/.exec(line);
  return m ? lab.linkemStarted + Number(m[1]) * 1000 : fallback;
}

/** Runs `body(lab)` in a lab, with diagnostics on failure and cleanup always. */
async function inLab(profile, opts, body) {
  const lab = await startLab(profile, opts);
  const ctx = { pages: null };
  let failed = false;
  try {
    await body(lab, ctx);
  } catch (e) {
    failed = true;
    console.log(await diagnostics(lab, ctx.pages));
    throw e;
  } finally {
    await lab.close();
    // linkem's totals (written when it stops): how much the NAT dropped for lack of a binding,
    // i.e. what the SFU still sent to an old address.
    if (failed) console.log(lab.linkemLog.text().split('\n').filter((l) => /total:/.test(l)).join('\n'));
  }
}

/** Recovery times (ms after `event`) of the four streams between patient and clinic, the
 * patient keeping its identity and peer connection. */
function recoveriesAfter(rec, ids, event) {
  return {
    patientGetsVideo: recoveryAfter(rec.series.patient, ids.clinic, 'frames', event),
    patientGetsAudio: recoveryAfter(rec.series.patient, ids.clinic, 'audio', event),
    clinicGetsVideo: recoveryAfter(rec.series.clinic, ids.patient, 'frames', event),
    clinicGetsAudio: recoveryAfter(rec.series.clinic, ids.patient, 'audio', event),
  };
}

function formatMs(r) {
  return Object.entries(r).map(([k, ms]) => `${k} ${ms === null ? 'never' : `${secs(ms)} s`}`).join(', ');
}

const worstMs = (r) => Math.max(...Object.values(r).map((ms) => (ms === null ? Infinity : ms)));

/** When each of the four streams flows (absolute times) from `fromT` on, for a patient that
 * came back as a new participant (`patientId` may be a function of the sample). */
function recoveries(rec, ids, fromT, patientId = ids.patient) {
  const pid = typeof patientId === 'function' ? patientId : () => patientId;
  return {
    patientGetsVideo: flowingAt(rec.series.patient, ids.clinic, 'frames', fromT),
    patientGetsAudio: flowingAt(rec.series.patient, ids.clinic, 'audio', fromT),
    clinicGetsVideo: flowingAt(rec.series.clinic, pid, 'frames', fromT),
    clinicGetsAudio: flowingAt(rec.series.clinic, pid, 'audio', fromT),
  };
}

function formatRecoveries(r, fromT) {
  return Object.entries(r).map(([k, t]) => `${k} ${t === null ? 'never' : `${secs(t - fromT)} s`}`).join(', ');
}

test('4 s outage on the patient\'s link: audio and video flow both ways again within 3 s, nobody duplicated', { timeout: 150_000 }, async () => {
  await inLab('outage-4s', { duration: 120 }, async (lab, ctx) => {
    const { pages, ids } = await joinConsult(lab, 'resume-outage4');
    ctx.pages = pages;
    const down = lab.linkemStarted + STEP_AT_S * 1000;
    const up = down + 4000;
    assert.ok(Date.now() < down - 3000, `joined too late for the outage at ${STEP_AT_S} s (${secs(Date.now() - lab.linkemStarted)} s)`);
    const rec = recorder(pages);
    await until(up + 12_000);
    await rec.stop();

    const { series } = rec;
    // The emulator really cut the link: nothing from the patient while it was down.
    assert.ok(stalled(series.clinic, ids.patient, 'frames', down + 1000, up),
      `clinic kept decoding the patient's video during the outage:\n${summary(series.clinic, ids.patient, down)}`);
    const r = recoveriesAfter(rec, ids, up);
    console.log(`# outage 4 s: media flowing again after the link returned: ${formatMs(r)}`);
    assert.ok(worstMs(r) <= RECOVER_S * 1000,
      `media not flowing both ways within ${RECOVER_S} s: ${formatMs(r)}\nclinic <- patient:\n${summary(series.clinic, ids.patient, up)}\npatient <- clinic:\n${summary(series.patient, ids.clinic, up)}`);

    // Same participant throughout (no leave and join), each listed exactly once everywhere.
    const roster = checkRoster(series, NAMES);
    assert.deepEqual(roster, [], `rosters:\n${roster.slice(0, 10).join('\n')}`);
    const selfIds = new Set(series.patient.map(({ s }) => s?.self).filter(Boolean));
    assert.deepEqual([...selfIds], [ids.patient], 'the patient kept its participant id');
    const clinicSees = new Set(series.clinic.flatMap(({ s }) => s?.participants.filter(([, n]) => n === 'Patient').map(([id]) => id) ?? []));
    assert.deepEqual([...clinicSees], [ids.patient], 'the clinic saw one patient id');
    const last = series.clinic.at(-1).s;
    assert.ok(!last.reconnecting?.includes(ids.patient), `clinic still shows the patient reconnecting: ${JSON.stringify(last.reconnecting)}`);
    const seenReconnecting = series.clinic.some(({ s }) => s?.reconnecting?.includes(ids.patient));
    console.log(`# outage 4 s: clinic showed the patient as reconnecting: ${seenReconnecting}; patient resumes: ${series.patient.at(-1).s.resumes}`);
  });
});

async function addressChange(profile, label) {
  await inLab(profile, { duration: 120 }, async (lab, ctx) => {
    const { pages, ids } = await joinConsult(lab, `resume-${profile}`);
    ctx.pages = pages;
    const change = lab.linkemStarted + STEP_AT_S * 1000;
    assert.ok(Date.now() < change - 3000, `joined too late for the change at ${STEP_AT_S} s (${secs(Date.now() - lab.linkemStarted)} s)`);
    const rec = recorder(pages);
    await until(change + 10_000);

    // Signaling after the change: a mute toggle must reach the others (the signaling TCP
    // connection's old NAT binding is gone too, so this needs a reconnect or resume).
    const muteSent = Date.now();
    await pages.patient.evaluate(() => window.consult.toggleMute('audio'));
    let muteSeen = null;
    while (Date.now() - muteSent < 10_000) {
      const seen = await pages.clinic.evaluate((id) => window.consult.participants.get(id)?.audio_muted, ids.patient);
      if (seen === true) {
        muteSeen = Date.now();
        break;
      }
      await sleep(100);
    }
    // Keep recording to 20 s after the change, so a late recovery is measured, not "never".
    await until(change + 20_000);
    await rec.stop();

    const { series } = rec;
    // The change really happened: linkem logged the rebind, and media stopped for a moment.
    assert.match(lab.linkemLog.text(), /NAT rebind #1/, 'linkem did not rebind');
    if (profile === 'address-change') assert.match(lab.linkemLog.text(), /b address 198\.51\.100\.2 -> 198\.51\.100\.6/, 'linkem did not move the client');
    // The moment linkem applied the change (its main loop moves the address within ~0.1 s).
    const applied = Math.min(linkemEventAt(lab, /NAT rebind #1/, change), linkemEventAt(lab, /b address .* -> /, Infinity));
    console.log(`# ${label}: applied ${secs(applied - change)} s after the scheduled time`);
    const r = recoveriesAfter(rec, ids, applied);
    const gap = longestGap(series.clinic, ids.patient, 'frames', change - 2000, change + 9000);
    console.log(`# ${label}: media flowing again after the change: ${formatMs(r)} (longest gap in the patient's video at the clinic ${secs(gap)} s)`);
    if (process.env.RESUME_TIMELINE === '1') await printTimeline(lab, pages, applied);
    console.log(`# ${label}: mute toggle ${muteSeen ? `reached the clinic after ${secs(muteSeen - muteSent)} s` : 'did NOT reach the clinic within 10 s'}; patient resumes: ${series.patient.at(-1).s.resumes}`);
    assert.ok(worstMs(r) <= RECOVER_S * 1000,
      `media not flowing both ways within ${RECOVER_S} s of the change: ${formatMs(r)}\nclinic <- patient:\n${summary(series.clinic, ids.patient, change)}\npatient <- clinic:\n${summary(series.patient, ids.clinic, change)}`);
    const roster = checkRoster(series, NAMES);
    assert.deepEqual(roster, [], `rosters:\n${roster.slice(0, 10).join('\n')}`);
    const selfIds = new Set(series.patient.map(({ s }) => s?.self).filter(Boolean));
    assert.deepEqual([...selfIds], [ids.patient], 'the patient kept its participant id');
    assert.ok(muteSeen, `mute toggle 10 s after the ${label} did not reach the clinic within 10 s`);
  });
}

// Chromium puts the new address into ICE only about 2.0 s after the change (its network list
// follows the OS with a delay: NetworkChangeNotifierLinux's ip_address_online_delay, 2000 ms;
// 1000 ms on Android; measured 2.03-2.08 s in every run), so ICE is connected on the new path
// at about 2.3 s and media flows at 2.4-2.7 s (sampled every ~0.15 s).
// Wi-Fi gives way to 3G: the client's own address changes (Chromium sees its interface's
// address go and a new one come) and the server sees it behind a new NAT address and port.
test('address change mid-consult (Wi-Fi to 3G: new client address, new NAT address): media resumes within 3 s', { timeout: 150_000 }, () =>
  addressChange('address-change', 'address change'));

// The same seen only from the server: the carrier NAT rebinds (new address and port), the
// client's own address stays, so nothing changes for Chromium locally.
test('NAT rebinding mid-consult (new address and port seen by the server only): media resumes within 3 s', { timeout: 150_000 }, () =>
  addressChange('nat-rebind', 'NAT rebinding'));

async function signalingDrop(how) {
  await inLab('clinic-2m', { duration: 100 }, async (lab, ctx) => {
    const { pages, ids } = await joinConsult(lab, `resume-drop-${how}`);
    ctx.pages = pages;
    const rec = recorder(pages);
    await sleep(3000);
    const before = await pages.patient.evaluate(() => ({ id: window.consult.participantId, resumes: window.consult.resumes }));
    const dropped = Date.now();
    if (how === 'client') {
      await pages.patient.evaluate(() => window.consult.dropSignaling());
    } else {
      // The server's end of the patient's TCP connections is destroyed (SOCK_DESTROY): the
      // SFU's socket fails and the patient gets a RST, as when a proxy or the server drops it.
      const out = execFileSync('ip', ['netns', 'exec', lab.nsSfu, 'ss', '-K', '-t', 'dst', ADDR_WEAK], { encoding: 'utf8' });
      assert.ok(out.split('\n').length > 2, `no TCP connection from the patient to destroy:\n${out}`);
    }
    await pages.patient.waitForFunction((n) => window.consult.resumes > n, before.resumes ?? 0, { timeout: 20_000 });
    const resumed = Date.now();
    await sleep(Math.max(0, dropped + 8000 - Date.now()));

    // A mute toggle after the resume reaches the others, and so does unmuting.
    const mute = async (want) => {
      const t0 = Date.now();
      await pages.patient.evaluate(() => window.consult.toggleMute('audio'));
      await Promise.all([pages.clinic, pages.specialist].map((p) =>
        p.waitForFunction(([id, m]) => window.consult.participants.get(id)?.audio_muted === m, [ids.patient, want], { timeout: 5000 })));
      return Date.now() - t0;
    };
    const muteMs = await mute(true);
    const unmuteMs = await mute(false);
    await rec.stop();

    const { series } = rec;
    const gap = longestGap(series.clinic, ids.patient, 'frames', dropped - 1000, resumed + 3000);
    const gapBack = longestGap(series.patient, ids.clinic, 'frames', dropped - 1000, resumed + 3000);
    if (process.env.RESUME_TIMELINE === '1') await printTimeline(lab, pages, dropped);
    console.log(`# signaling drop (${how}): resumed after ${secs(resumed - dropped)} s; longest video gap clinic <- patient ${secs(gap)} s, patient <- clinic ${secs(gapBack)} s; mute reached both others after ${secs(muteMs)} s, unmute ${secs(unmuteMs)} s`);
    assert.ok(gap <= 1000, `the clinic's video from the patient stopped for ${secs(gap)} s:\n${summary(series.clinic, ids.patient, dropped)}`);
    assert.ok(gapBack <= 1000, `the patient's video from the clinic stopped for ${secs(gapBack)} s:\n${summary(series.patient, ids.clinic, dropped)}`);
    const after = await pages.patient.evaluate(() => ({ id: window.consult.participantId, resumes: window.consult.resumes, pcId: window.consult.pc?.__labId }));
    assert.equal(after.id, before.id, 'same participant id after the resume');
    assert.ok(after.resumes >= 1, `resumes ${after.resumes}`);
    const pcs = new Set(series.patient.map(({ s }) => s?.pcId).filter(Boolean));
    assert.equal(pcs.size, 1, 'the patient kept its peer connection');
    const roster = checkRoster(series, NAMES);
    assert.deepEqual(roster, [], `rosters:\n${roster.slice(0, 10).join('\n')}`);
    const last = series.clinic.at(-1).s;
    assert.ok(!last.reconnecting?.includes(ids.patient), `clinic still shows the patient reconnecting: ${JSON.stringify(last.reconnecting)}`);
  });
}

test('patient\'s signaling socket drops while media flows (client side, dropSignaling): media never stops, signaling resumes', { timeout: 120_000 }, () =>
  signalingDrop('client'));

test('server drops the patient\'s signaling socket while media flows: media never stops, signaling resumes', { timeout: 120_000 }, () =>
  signalingDrop('server'));

test('40 s outage: after the grace period the others see the patient leave; it comes back by itself as a new participant', { timeout: 200_000 }, async () => {
  // The issue's default grace period is 30 s; 10 s here keeps the test short. The outage
  // (40 s) is longer than detection plus grace either way.
  const GRACE_S = 10;
  await inLab('outage-40s', { duration: 170, sfuArgs: ['--reconnect-grace', String(GRACE_S)] }, async (lab, ctx) => {
    const { pages, ids } = await joinConsult(lab, 'resume-outage40');
    ctx.pages = pages;
    const down = lab.linkemStarted + STEP_AT_S * 1000;
    const up = down + 40_000;
    assert.ok(Date.now() < down - 3000, `joined too late for the outage at ${STEP_AT_S} s (${secs(Date.now() - lab.linkemStarted)} s)`);
    const rec = recorder(pages);
    await until(up);
    // Back: the patient joins again by itself, as a participant with a new id.
    const newPatient = (s) => s?.participants.find(([id, n]) => n === 'Patient' && id !== ids.patient)?.[0] ?? null;
    const backDeadline = up + 60_000;
    let newId = null;
    while (Date.now() < backDeadline) {
      newId = newPatient(rec.series.clinic.at(-1)?.s);
      const r = newId && recoveries(rec, ids, up, newPatient);
      if (r && Object.values(r).every((t) => t !== null)) break;
      await sleep(500);
    }
    await sleep(2000);
    await rec.stop();

    const { series } = rec;
    const clinic = series.clinic;
    const firstReconnecting = clinic.find(({ t, s }) => t >= down && s?.reconnecting?.includes(ids.patient))?.t ?? null;
    const left = clinic.find(({ t, s }) => t >= down && s && !s.participants.some(([id]) => id === ids.patient))?.t ?? null;
    const backT = clinic.find(({ t, s }) => t >= up && newPatient(s))?.t ?? null;
    const r = recoveries(rec, ids, up, newPatient);
    console.log(`# outage 40 s (grace ${GRACE_S} s): clinic shows the patient reconnecting ${firstReconnecting ? `${secs(firstReconnecting - down)} s` : 'never'} after the link dropped, sees it leave ${left ? `${secs(left - down)} s` : 'never'} after (${firstReconnecting && left ? `${secs(left - firstReconnecting)} s after reconnecting` : '-'})`);
    console.log(`# outage 40 s: after the link returned, the patient is back as a new participant after ${backT ? `${secs(backT - up)} s` : 'never'}; media: ${formatRecoveries(r, up)}`);
    assert.ok(firstReconnecting, `the clinic never showed the patient as reconnecting:\n${summary(clinic, ids.patient, down)}`);
    // The server shows a participant it hears nothing from for 3 s as reconnecting, long
    // before ICE or signaling call it lost (that took 22 s); the rest is the clinic's poll.
    assert.ok(firstReconnecting - down <= 6000, `the clinic showed the patient as reconnecting only ${secs(firstReconnecting - down)} s after the link dropped`);
    assert.ok(left, `the clinic never saw the patient leave during the outage:\n${summary(clinic, ids.patient, down)}`);
    assert.ok(left < up, `the patient left only after the link returned (${secs(left - down)} s after it dropped)`);
    assert.ok(left - firstReconnecting >= (GRACE_S - 1.5) * 1000, `left ${secs(left - firstReconnecting)} s after showing as reconnecting, before the ${GRACE_S} s grace period`);
    // Before the grace period was over it was listed (as reconnecting), not gone.
    const early = clinic.filter(({ t }) => t >= firstReconnecting && t < left);
    assert.ok(early.every(({ s }) => !s || s.participants.some(([id]) => id === ids.patient)), 'listed until it left');
    // Specialist sees the leave too.
    assert.ok(series.specialist.some(({ t, s }) => t >= down && t < up && s && !s.participants.some(([id]) => id === ids.patient)),
      'the specialist never saw the patient leave');
    assert.ok(backT, `the patient never came back:\n${summary(clinic, newPatient, up)}`);
    assert.ok(Object.values(r).every((t) => t !== null),
      `media not flowing both ways after the patient came back: ${formatRecoveries(r, up)}\nclinic <- patient:\n${summary(clinic, newPatient, up)}\npatient <- clinic:\n${summary(series.patient, ids.clinic, up)}`);
    // Afterwards everybody lists the other two once, the old patient id nowhere.
    const roster = checkRoster(series, NAMES, Math.max(...Object.values(r)) + 1000);
    assert.deepEqual(roster, [], `rosters after the return:\n${roster.slice(0, 10).join('\n')}`);
    const final = await pages.patient.evaluate(() => window.consult.participantId);
    assert.notEqual(final, ids.patient, 'the patient came back with a new participant id');
    assert.equal(final, newId);
  });
});
