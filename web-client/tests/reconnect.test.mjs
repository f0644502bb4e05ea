// The reconnect policy's pure parts (js/reconnect.js), without a browser.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  InboundStall, RECONNECT_CAP_MS, RX_STALL_MS, isNodeUrl, jittered, reconnectDelay,
} from '../js/reconnect.js';

test('reconnect delays back off 0.5, 1, 2, then 3 s, each within +-30 %', () => {
  const want = [500, 1000, 2000, 3000, 3000, 3000];
  want.forEach((base, i) => {
    const n = i + 1;
    assert.equal(reconnectDelay(n, () => 0.5), base, `attempt ${n}, no jitter`);
    assert.equal(reconnectDelay(n, () => 0), Math.round(base * 0.7), `attempt ${n}, earliest`);
    assert.equal(reconnectDelay(n, () => 0.999999), Math.round(base * 1.3), `attempt ${n}, latest`);
  });
  assert.ok(reconnectDelay(1000, () => 1) <= RECONNECT_CAP_MS * 1.3);
  assert.equal(jittered(700, () => 0.5), 700);
});

test('only ws(s)://host[:port]/ws is a node to follow; wss only from an https page', () => {
  const cases = [
    ['ws://10.0.0.2:8080/ws', 'http:', true],
    ['wss://node-b.consult.example.vn/ws', 'https:', true],
    ['wss://node-b.consult.example.vn/ws', 'http:', true],
    ['ws://node-b.consult.example.vn/ws', 'https:', false],
    ['http://node-b/ws', 'http:', false],
    ['ws://node-b/other', 'http:', false],
    ['ws://node-b/ws?x=1', 'http:', false],
    ['ws://node-b/ws#x', 'http:', false],
    ['ws://user:pw@node-b/ws', 'http:', false],
    ['javascript:alert(1)', 'http:', false],
    ['not a url', 'http:', false],
    [42, 'http:', false],
    [null, 'http:', false],
  ];
  for (const [url, page, want] of cases) assert.equal(isNodeUrl(url, page), want, `${url} from ${page}`);
});

test('inbound media stalls only after it flowed, while something is expected', () => {
  const w = new InboundStall(0);
  // Nothing received yet: waiting for the first packet is not a stall.
  assert.equal(w.update(0, true, RX_STALL_MS * 3), null);
  assert.equal(w.stalled, false);
  // Flowing.
  assert.equal(w.update(10, true, 4000), null);
  assert.equal(w.update(20, true, 4300), null);
  // Stopped growing: a stall after RX_STALL_MS, reported once.
  assert.equal(w.update(20, true, 4300 + RX_STALL_MS - 1), null);
  assert.equal(w.update(20, true, 4300 + RX_STALL_MS), 'stalled');
  assert.equal(w.silentFor, RX_STALL_MS);
  assert.equal(w.update(20, true, 4300 + RX_STALL_MS * 2), null);
  // Packets again: recovered, once.
  assert.equal(w.update(25, true, 7000), 'recovered');
  assert.equal(w.update(30, true, 7300), null);
  // Nobody publishes to us any more: silence is no stall.
  assert.equal(w.update(30, false, 9000), null);
  assert.equal(w.update(30, false, 9000 + RX_STALL_MS * 5), null);
  assert.equal(w.stalled, false);
});
