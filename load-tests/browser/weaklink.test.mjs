// Browser tests through the link emulator: a publisher on a good link and two receive-only
// subscribers, one of them behind a shaped link. What one weak subscriber gets must never
// lower what the good one gets.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { concealment, longestFreeze, longestStall, parseMetrics, record, startLab } from './netlab.mjs';

const TOP_HEIGHT = 720; // the fake camera's 1280x720 is the f layer
const LOW_HEIGHT = 180; // q layer: 320x180

/**
 * What the publisher's camera encoder sends per rid, and why it holds back (WebRTC's
 * qualityLimitationReason: cpu, bandwidth): a good subscriber below the top layer because the
 * publisher's encoder never sent it is not the SFU's choice.
 */
async function publisherLayers(pub) {
  return pub.evaluate(async () => {
    const pc = window.consult?.pc;
    if (!pc) return 'no peer connection';
    const out = [];
    for (const s of (await pc.getStats()).values()) {
      if (s.type === 'outbound-rtp' && s.kind === 'video' && s.rid) {
        out.push(`${s.rid}: ${s.frameWidth ?? 0}x${s.frameHeight ?? 0} ${Math.round(s.framesPerSecond ?? 0)} fps, limited by ${s.qualityLimitationReason}`);
      }
    }
    return out.sort().join('; ');
  }).catch((e) => String(e));
}

async function joinAll(lab, room) {
  const pub = await lab.browser('sfu');
  await pub.goto(lab.url(room, 'Clinic', 'clinic'));
  await pub.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 30_000 });
  const good = await lab.browser('sfu', { receiveOnly: true });
  await good.goto(lab.url(room, 'Doctor', 'specialist'));
  const weak = await lab.browser('weak', { receiveOnly: true });
  await weak.goto(lab.url(room, 'Patient', 'patient'));
  for (const p of [good, weak]) {
    await p.waitForFunction(() => window.consult?.state === 'connected', null, { timeout: 45_000 });
  }
  return { pub, good, weak };
}

function summary(series) {
  return series
    .filter((_, i) => i % 4 === 0)
    .map(({ t, s }) => `${t.toFixed(1)}s h=${s.video?.frameHeight} f=${s.video?.framesDecoded} ${s.layers.join(',')}`)
    .join('\n');
}

test('rural-3g subscriber gets the low layer and steady audio; the good one keeps the top layer', { timeout: 150_000 }, async () => {
  const lab = await startLab('rural-3g');
  try {
    const { pub, good, weak } = await joinAll(lab, 'weak-rural');
    const series = { good: [], weak: [] };
    await record({ good, weak }, 40_000, 250, (name, s, t) => series[name].push({ t, s }));

    const settled = (xs) => xs.filter(({ t }) => t >= 5);
    const weakHeights = settled(series.weak).map(({ s }) => s.video?.frameHeight ?? 0);
    const last = series.weak.at(-1).s;
    assert.ok(last.video && last.video.framesDecoded > 100, `weak decodes video:\n${summary(series.weak)}`);
    // The low layer, apart from at most one step-up probe the link refused (the allocator
    // tries again after a back-off; a failed try costs about a second of the middle layer).
    const above = weakHeights.filter((h) => h > LOW_HEIGHT).length;
    const excursions = weakHeights.filter((h, i) => h > LOW_HEIGHT && (i === 0 || weakHeights[i - 1] <= LOW_HEIGHT)).length;
    assert.ok(weakHeights.every((h) => h > 0) && above <= weakHeights.length * 0.1 && excursions <= 1,
      `weak on the low layer (${above} of ${weakHeights.length} samples above ${LOW_HEIGHT}p in ${excursions} excursions):\n${summary(series.weak)}`);
    const conceal = concealment(settled(series.weak)[0].s, last);
    assert.ok(conceal < 0.05, `weak audio concealment ${(conceal * 100).toFixed(1)} %`);
    // The freeze as the browser measures it, frame by frame; the sampled gap (every 250 ms plus
    // the getStats calls) must agree within its sampling error.
    const stall = longestStall(series.weak, 5);
    const freeze = longestFreeze(series.weak, 5);
    assert.ok(stall < 2 && freeze < 2.5,
      `weak video froze for ${stall.toFixed(2)} s (WebRTC stats; sampled: ${freeze.toFixed(2)} s):\n${summary(series.weak)}`);

    const goodHeights = settled(series.good).map(({ s }) => s.video?.frameHeight ?? 0);
    const below = goodHeights.filter((h) => h < TOP_HEIGHT).length;
    assert.ok(below <= 2, `good subscriber left the top layer in ${below} samples; publisher sends ${await publisherLayers(pub)}:\n${summary(series.good)}`);
    // Loss recovery as the weak browser saw it. Its retransmissions count includes the padding
    // str0m sends as resends of old packets, so it dwarfs the NACKs.
    const v = last.video;
    console.log(`rural-3g recovery: weak sent ${v.nacks} NACKs; ${v.lost} of ${v.packets + v.lost} video packets never arrived; ${v.rtx} came on the resend stream (padding included); Chrome counted ${v.freezeCount} freezes, ${v.freezeSeconds.toFixed(2)} s in all`);
    const first = settled(series.weak)[0];
    const fps = (last.video.framesDecoded - (first.s.video?.framesDecoded ?? 0)) / (series.weak.at(-1).t - first.t);
    console.log(`rural-3g: weak ${weakHeights.at(-1)}p at ${fps.toFixed(1)} fps after the first 5 s (${above} of ${weakHeights.length} samples above ${LOW_HEIGHT}p), concealment ${(conceal * 100).toFixed(2)} %, longest freeze ${stall.toFixed(2)} s (sampled ${freeze.toFixed(2)} s); good ${goodHeights.at(-1)}p (${below} of ${goodHeights.length} samples below ${TOP_HEIGHT}p)`);
  } catch (e) {
    console.log(lab.sfuLog?.text().split('\n').filter((l) => /subscription target|WARN|ERROR/.test(l)).slice(-40).join('\n'));
    throw e;
  } finally {
    await lab.close();
  }
});

test('step down and up: the weak subscriber drops a layer within 2 s and is back on the top layer within 15 s', { timeout: 150_000 }, async () => {
  // step-down.toml: 2 Mbit/s, at 20 s 250 kbit/s down, at 40 s 2 Mbit/s again (from linkem start).
  const STEP = 20;
  const RECOVER = 40;
  const lab = await startLab('step-down');
  try {
    const { pub, good, weak } = await joinAll(lab, 'weak-step');
    const series = { good: [], weak: [] };
    const offset = (Date.now() - lab.linkemStarted) / 1000;
    await record({ good, weak }, Math.max(10_000, (RECOVER + 17 - offset) * 1000), 250, (name, s, t) =>
      series[name].push({ t: t + offset, s }));

    const heightAt = (xs, pred) => xs.find(({ t, s }) => pred(t, s.video?.frameHeight ?? 0));
    const beforeStep = series.weak.filter(({ t }) => t > STEP - 3 && t < STEP);
    assert.ok(beforeStep.length > 0 && beforeStep.every(({ s }) => s.video?.frameHeight === TOP_HEIGHT),
      `weak on the top layer before the step (joined at ${offset.toFixed(1)} s; publisher sends ${await publisherLayers(pub)}):\n${summary(series.weak)}`);
    // The server's layer_changed (rid and temporal layer) for the publisher's video: a lower
    // temporal layer takes effect at once, a lower spatial layer on its next keyframe.
    const topTag = beforeStep.at(-1).s.layers.find((l) => l.startsWith('f'));
    assert.ok(topTag, `weak receives the f layer before the step:\n${summary(series.weak)}`);
    // Layer tags are rid + temporal layer (f2, h1, ...); lower means a lower rid, or the same
    // rid at a lower temporal layer, or paused.
    const rank = (tag) => (tag && /^[qhf]\d?$/.test(tag) ? 'qhf'.indexOf(tag[0]) * 10 + Number(tag[1] ?? 9) : -1);
    const weakRank = (s) => Math.max(-1, ...s.layers.filter((l) => /^[qhf]/.test(l)).map(rank));
    const lowered = series.weak.find(({ t, s }) => t >= STEP && weakRank(s) < rank(topTag));
    assert.ok(lowered, `weak never dropped a layer:\n${summary(series.weak)}`);
    // Server side: when the SFU decided (its log), from the step. This is GCC's detection
    // (str0m emits a 3 s average of its estimates) plus the allocator's reaction (a temporal
    // layer at once, the spatial one after DOWN_DELAY).
    const stepAt = lab.linkemStarted + STEP * 1000;
    // Only a lower target counts (spatial, then temporal; anything but a layer is lower).
    const targets = lab.sfuLog.text().split('\n')
      .map((l) => l.replace(/\x1b\[[0-9;]*m/g, ''))
      .filter((l) => /subscription target participant=p3 track=p1-m1/.test(l))
      .map((l) => {
        const m = /target=Layer\(Layer \{ spatial: (\d), temporal: (\d) \}\)/.exec(l);
        return { t: Date.parse(l.slice(0, l.indexOf('Z') + 1)), rank: m ? Number(m[1]) * 10 + Number(m[2]) : -1 };
      });
    const beforeTarget = targets.filter(({ t }) => t < stepAt).at(-1);
    assert.ok(beforeTarget, 'the SFU logged no target for the weak subscriber before the step');
    const decided = targets.find(({ t, rank: r }) => t >= stepAt && r < beforeTarget.rank)?.t;
    assert.ok(decided, 'the SFU logged no lower target for the weak subscriber after the step');
    const serverReaction = (decided - stepAt) / 1000;
    // Client side: that decision, plus the layer_changed message crossing the now saturated
    // 250 kbit/s link (150 ms delay, up to 400 ms of queue, and TCP recovering from the drops
    // there: measured 1.5 to 2.9 s), plus the 250 ms sampling. The media itself thins out
    // when the server decides; the message only updates the tile, so it gets a looser bound.
    const reaction = lowered.t - STEP;
    assert.ok(serverReaction <= 2 && reaction <= 4,
      `dropped a layer ${serverReaction.toFixed(1)} s (server) / ${reaction.toFixed(1)} s (client) after the step:\n${summary(series.weak)}`);
    const down = heightAt(series.weak, (t, h) => t >= STEP && h > 0 && h < TOP_HEIGHT);
    assert.ok(down, `weak never left 720p:\n${summary(series.weak)}`);
    const decoded = down.t - STEP;
    assert.ok(decoded <= 6, `decoded a lower resolution ${decoded.toFixed(1)} s after the step:\n${summary(series.weak)}`);
    const up = heightAt(series.weak, (t, h) => t >= RECOVER && h === TOP_HEIGHT);
    assert.ok(up, `weak never came back to the top layer:\n${summary(series.weak)}`);
    const recovery = up.t - RECOVER;
    assert.ok(recovery <= 15, `back on top ${recovery.toFixed(1)} s after recovery:\n${summary(series.weak)}`);
    // And it stays there: a step up that falls back is oscillation (before 7ee71fc a probe
    // chain on top of the 720p keyframe made GCC back off and the step up fail about one run
    // in three; the last stretch on 720p began only after the doubled hold, 18-20 s in).
    const after = series.weak.filter(({ t }) => t >= up.t);
    const fellBack = after.filter(({ s }) => (s.video?.frameHeight ?? 0) < TOP_HEIGHT).length;
    const heldFrom = [...after].reverse().find(({ s }) => (s.video?.frameHeight ?? 0) < TOP_HEIGHT);
    const held = heldFrom ? after.find(({ t }) => t > heldFrom.t) : up;
    const goodLow = series.good.filter(({ t, s }) => t > STEP - 3 && (s.video?.frameHeight ?? 0) < TOP_HEIGHT).length;
    assert.ok(goodLow <= 2, `good subscriber dropped in ${goodLow} samples; publisher sends ${await publisherLayers(pub)}:\n${summary(series.good)}`);
    assert.ok(held && held.t - RECOVER <= 15,
      `720p did not hold within 15 s of recovery (${fellBack} of ${after.length} samples below it after ${recovery.toFixed(1)} s):\n${summary(series.weak)}`);
    // What an ops engineer's dashboard sees of the same run (GET /metrics): the switches,
    // the keyframes they asked for, the estimates. Counted, not just registered.
    const metrics = parseMetrics(lab.get('/metrics'));
    const m = (name) => metrics.get(name) ?? NaN;
    assert.ok(m('consult_layer_switches_total') >= 2, `layer switches: ${m('consult_layer_switches_total')}`);
    assert.ok(m('consult_keyframe_requests_sent_total') >= 2, `keyframe requests sent: ${m('consult_keyframe_requests_sent_total')}`);
    assert.ok(m('consult_keyframe_requests_suppressed_total') >= 0, 'keyframe requests suppressed: not exported');
    assert.ok(m('consult_subscriber_estimate_bps_count') > 0, 'no subscriber estimate observed');
    // A 250 kbit/s step reaches the histogram's low buckets.
    assert.ok(m('consult_subscriber_estimate_bps_bucket{le="300000"}') > 0, 'no estimate at or under 300 kbit/s was observed');
    assert.equal(m('consult_paused_subscriptions'), 0, 'nothing is paused after the recovery');
    console.log(`step metrics: ${['consult_layer_switches_total', 'consult_keyframe_requests_sent_total', 'consult_keyframe_requests_suppressed_total', 'consult_bwe_probe_requests_total', 'consult_subscriber_estimate_bps_count'].map((k) => `${k.replace(/^consult_/, '')}=${m(k)}`).join(' ')}`);
    console.log(`step: server decided after ${serverReaction.toFixed(1)} s, client told after ${reaction.toFixed(1)} s, lower resolution decoded after ${decoded.toFixed(1)} s, back on 720p after ${recovery.toFixed(1)} s (${fellBack} of ${after.length} samples below it afterwards; 720p held from ${held ? `${(held.t - RECOVER).toFixed(1)} s` : 'never'})`);
  } catch (e) {
    console.log(lab.sfuLog?.text().split('\n').filter((l) => /subscription target|WARN|ERROR/.test(l)).slice(-40).join('\n'));
    throw e;
  } finally {
    await lab.close();
  }
});
