// Unit test of the tile's video label (js/received.js): it names what getStats says is decoded,
// not the server's target, shows a pending switch, and stays out of the way of a pause.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  NOTHING_RECEIVED,
  SWITCH_GIVE_UP_MS,
  forget,
  inboundVideoByMid,
  layerView,
  onSample,
  onTarget,
} from '../js/received.js';

/** Runs events in order: ['target', {layer, paused}, t] or ['sample', height, frames, t]. */
function run(events, state = NOTHING_RECEIVED) {
  for (const [kind, a, b, c] of events) {
    state = kind === 'target' ? onTarget(state, a, b) : onSample(state, { height: a, frames: b }, c);
  }
  return state;
}

const label = (view) => (view.text ? [view.text.key, view.text.vars?.height ?? null, view.next] : null);

test('nothing decoded yet: no label, whatever the server targets', () => {
  assert.equal(layerView().text, null);
  const s = run([['target', { layer: 'f' }, 0], ['sample', 0, 0, 300]]);
  assert.deepEqual(layerView(s), { target: 'f', paused: null, height: null, level: null, text: null, next: null });
});

test('the label is the decoded height; the lowest layer keeps its word', () => {
  const s = run([['target', { layer: 'h' }, 0], ['sample', 360, 5, 300]]);
  assert.deepEqual(label(layerView(s)), ['layer.height', 360, null]);
  assert.equal(layerView(s).level, 'h');
  assert.equal(layerView(s).height, 360);
  const low = run([['target', { layer: 'q' }, 0], ['sample', 180, 5, 300]]);
  assert.deepEqual(label(layerView(low)), ['layer.q', null, null]);
  assert.equal(layerView(low).level, 'q');
});

test('a new target shows as switching until a frame of another height is decoded', () => {
  let s = run([['target', { layer: 'h' }, 0], ['sample', 360, 5, 300]]);
  s = onTarget(s, { layer: 'f' }, 1000);
  assert.deepEqual(label(layerView(s)), ['layer.height', 360, 'layer.f'], 'still 360p, on its way to f');
  assert.equal(layerView(s).target, 'f');
  s = run([['sample', 360, 40, 4000]], s);
  assert.deepEqual(label(layerView(s)), ['layer.height', 360, 'layer.f'], 'the keyframe of f has not come');
  s = run([['sample', 720, 41, 4300]], s);
  assert.deepEqual(label(layerView(s)), ['layer.height', 720, null], 'switched');
  assert.equal(layerView(s).level, 'f');
  // Down to q: "720p -> Low", then the word once q arrives.
  s = onTarget(s, { layer: 'q' }, 5000);
  assert.deepEqual(label(layerView(s)), ['layer.height', 720, 'layer.q']);
  s = run([['sample', 180, 50, 5300]], s);
  assert.deepEqual(label(layerView(s)), ['layer.q', null, null]);
});

test('back to the layer still arriving cancels the switch; a temporal change is no switch', () => {
  let s = run([['target', { layer: 'h' }, 0], ['sample', 360, 5, 300], ['target', { layer: 'f' }, 1000]]);
  s = onTarget(s, { layer: 'h' }, 1500);
  assert.equal(layerView(s).next, null);
  s = onTarget(s, { layer: 'h', paused: null }, 1600); // layer_changed for the temporal layer only
  assert.deepEqual(label(layerView(s)), ['layer.height', 360, null]);
});

test('a switch that never changes the height is given up after SWITCH_GIVE_UP_MS', () => {
  let s = run([['target', { layer: 'h' }, 0], ['sample', 360, 5, 300], ['target', { layer: 'f' }, 1000]]);
  s = run([['sample', 360, 90, 1000 + SWITCH_GIVE_UP_MS - 1]], s);
  assert.equal(layerView(s).next, 'layer.f');
  s = run([['sample', 360, 91, 1000 + SWITCH_GIVE_UP_MS]], s);
  assert.equal(layerView(s).next, null);
  assert.equal(layerView(s).level, 'f');
});

test('paused: no label (the overlay speaks); after it, only frames decoded since are labelled', () => {
  let s = run([['target', { layer: 'f' }, 0], ['sample', 720, 5, 300]]);
  s = onTarget(s, { layer: null, paused: 'bandwidth' }, 1000);
  assert.deepEqual(layerView(s), { target: null, paused: 'bandwidth', height: null, level: null, text: null, next: null });
  s = run([['sample', 720, 5, 1300], ['target', { layer: 'q' }, 5000], ['sample', 720, 5, 5300]], s);
  assert.equal(layerView(s).text, null, 'the 720p frame is from before the pause');
  s = run([['sample', 180, 6, 5600]], s);
  assert.deepEqual(label(layerView(s)), ['layer.q', null, null]);
  assert.equal(layerView(s).next, null, 'a restart is not a switch');
  assert.equal(layerView(onTarget(s, { layer: null, paused: 'unavailable' }, 6000)).paused, 'unavailable');
});

test('a mid handed to another publisher does not show the previous one\'s frames', () => {
  let s = run([['target', { layer: 'f' }, 0], ['sample', 720, 50, 300]]);
  s = forget(s);
  s = run([['target', { layer: 'h' }, 1000], ['sample', 720, 50, 1300]], s);
  assert.equal(layerView(s).text, null);
  s = run([['sample', 240, 51, 1600]], s);
  assert.deepEqual(label(layerView(s)), ['layer.height', 240, null]);
});

test('inboundVideoByMid: video inbound-rtp by mid, by track id without one, latest stream per mid', () => {
  const report = new Map(
    [
      { type: 'inbound-rtp', kind: 'video', mid: '3', frameHeight: 360, framesDecoded: 10, lastPacketReceivedTimestamp: 5 },
      { type: 'inbound-rtp', kind: 'video', mid: '3', frameHeight: 720, framesDecoded: 2, lastPacketReceivedTimestamp: 9 },
      { type: 'inbound-rtp', kind: 'video', mid: '3', frameHeight: 180, framesDecoded: 99, lastPacketReceivedTimestamp: 1 },
      { type: 'inbound-rtp', kind: 'audio', mid: '2', packetsReceived: 50 },
      { type: 'inbound-rtp', kind: 'video', trackIdentifier: 'tr-5', frameHeight: 240, framesDecoded: 7 },
      { type: 'inbound-rtp', kind: 'video', trackIdentifier: 'unknown' },
      { type: 'outbound-rtp', kind: 'video', mid: '0', frameHeight: 720 },
    ].map((r, i) => [`s${i}`, r]),
  );
  const out = inboundVideoByMid(report, (id) => (id === 'tr-5' ? '5' : null));
  assert.deepEqual(Object.fromEntries(out), { 3: { height: 720, frames: 2 }, 5: { height: 240, frames: 7 } });
});
