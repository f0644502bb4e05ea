// Unit test of the data-channel protocol (js/consultchannel.js) against an in-process fake of
// the SFU's relay: chunking, the 64-chunk window, acks, byte-identical delivery, abort, errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import {
  CHUNK_SIZE,
  ConsultChannel,
  MAX_UNACKED,
  chunkCount,
  decodeChunk,
  encodeChunk,
  imageProblem,
  sha256Hex,
} from '../js/consultchannel.js';

/** A minimal RTCDataChannel: what send() gets goes to `onSend`; deliver() feeds messages in. */
class FakeChannel extends EventTarget {
  constructor(onSend) {
    super();
    this.readyState = 'open';
    this.bufferedAmount = 0;
    this.onSend = onSend;
  }
  send(data) {
    this.onSend(data);
  }
  deliver(data) {
    const ev = new Event('message');
    ev.data = data;
    this.dispatchEvent(ev);
  }
  close() {
    this.readyState = 'closed';
    this.dispatchEvent(new Event('close'));
  }
}

/** Relays sender -> receiver like the SFU: rewrites ids, echoes chat, acks chunks (later). */
function relayPair({ ackDelayChunks = 0 } = {}) {
  const state = { maxUnacked: 0, relayId: 900, map: new Map(), sentChunks: new Map(), frames: [] };
  let sender;
  let receiver;
  const ackQueue = [];
  const senderDc = new FakeChannel((data) => {
    if (typeof data === 'string') {
      const m = JSON.parse(data);
      state.frames.push(m);
      if (m.t === 'chat') {
        const out = JSON.stringify({ t: 'chat', from: 'p1', sender: 'Dr Lan', role: 'specialist', text: m.text, at: 1 });
        senderDc.deliver(out);
        receiverDc.deliver(out);
      } else if (m.t === 'image_start') {
        const rid = state.relayId++;
        state.map.set(m.id, rid);
        state.sentChunks.set(m.id, 0);
        receiverDc.deliver(JSON.stringify({ t: 'image_start', id: rid, from: 'p1', sender: 'Dr Lan', file: m.file, mime: m.mime, size: m.size }));
      } else if (m.t === 'image_abort') {
        receiverDc.deliver(JSON.stringify({ t: 'image_abort', id: state.map.get(m.id), reason: 'aborted' }));
      }
      return;
    }
    const c = decodeChunk(data);
    const n = state.sentChunks.get(c.id) + 1;
    state.sentChunks.set(c.id, n);
    receiverDc.deliver(encodeChunk(state.map.get(c.id), c.index, c.payload));
    ackQueue.push({ id: c.id, received: n });
    state.maxUnacked = Math.max(state.maxUnacked, ackQueue.length);
    // Acks lag behind: only flush when the queue exceeds the delay (or from flush()).
    while (ackQueue.length > ackDelayChunks) {
      const a = ackQueue.shift();
      setTimeout(() => senderDc.deliver(JSON.stringify({ t: 'image_ack', ...a })), 0);
    }
  });
  const receiverDc = new FakeChannel(() => {});
  const events = { chats: [], done: [], progress: [], aborted: [], sendDone: [], sendFailed: [] };
  sender = new ConsultChannel(senderDc, {
    onChat: (m) => events.chats.push(['sender', m]),
    onOutgoingDone: (img) => events.sendDone.push(img),
    onOutgoingFailed: (img, code) => events.sendFailed.push([img, code]),
  });
  receiver = new ConsultChannel(receiverDc, {
    onChat: (m) => events.chats.push(['receiver', m]),
    onIncomingProgress: (img) => events.progress.push(img.received),
    onIncomingDone: (img) => events.done.push(img),
    onIncomingAbort: (img, r) => events.aborted.push([img, r]),
  });
  const flush = () => {
    while (ackQueue.length) {
      const a = ackQueue.shift();
      senderDc.deliver(JSON.stringify({ t: 'image_ack', ...a }));
    }
  };
  return { sender, receiver, senderDc, receiverDc, state, events, flush };
}

function randomImage(size, name = 'scan.png') {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
  return new File([bytes], name, { type: 'image/png' });
}

test('chunk framing: big-endian header, counts', () => {
  const buf = encodeChunk(0x01020304, 7, new Uint8Array([9, 8]));
  assert.deepEqual([...new Uint8Array(buf)], [1, 2, 3, 4, 0, 0, 0, 7, 9, 8]);
  const c = decodeChunk(buf);
  assert.equal(c.id, 0x01020304);
  assert.equal(c.index, 7);
  assert.deepEqual([...c.payload], [9, 8]);
  assert.equal(decodeChunk(new ArrayBuffer(3)), null);
  assert.equal(chunkCount(1), 1);
  assert.equal(chunkCount(CHUNK_SIZE), 1);
  assert.equal(chunkCount(CHUNK_SIZE + 1), 2);
  assert.equal(imageProblem(new File([new Uint8Array(3)], 'a.txt', { type: 'text/plain' })), 'image.notImage');
  assert.equal(imageProblem({ type: 'image/png', size: 21 * 1024 * 1024 }), 'image.tooLarge');
  assert.equal(imageProblem(new File([new Uint8Array(3)], 'a.png', { type: 'image/png' })), null);
});

test('chat is sent as {t:chat,text} and shown from the echo', async () => {
  const { sender, events, state } = relayPair();
  assert.equal(sender.sendChat('  xin chào  '), true);
  assert.equal(sender.sendChat('   '), false);
  assert.equal(sender.sendChat('x'.repeat(2001)), false);
  assert.deepEqual(state.frames, [{ t: 'chat', text: 'xin chào' }]);
  assert.deepEqual(events.chats.map(([who, m]) => [who, m.text, m.sender]), [
    ['sender', 'xin chào', 'Dr Lan'],
    ['receiver', 'xin chào', 'Dr Lan'],
  ]);
});

test('the sender stops at 64 unacknowledged chunks and resumes on acks', async () => {
  const { sender, flush } = relayPair({ ackDelayChunks: 1000 });
  const file = randomImage(3 * 1024 * 1024 + 123); // 193 chunks, the last one short
  let started;
  const p = sender.sendImage(file, (img) => (started = img));
  for (let i = 0; i < 200 && (!started || started.sent < MAX_UNACKED); i++) await new Promise((r) => setTimeout(r, 5));
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(started.sent, MAX_UNACKED, 'stops at 64 unacknowledged chunks');
  assert.equal(started.acked, 0);
  const timer = setInterval(flush, 1);
  try {
    await p;
  } finally {
    clearInterval(timer);
  }
  assert.equal(started.sent, 193);
  assert.equal(started.acked, 193);
});

test('with acks flowing, a 3 MB image completes; receivers get progress and the same SHA-256', async () => {
  const { sender, events, flush, state } = relayPair({ ackDelayChunks: 1000 });
  const file = randomImage(3 * 1024 * 1024 + 5);
  const want = await sha256Hex(new Uint8Array(await file.arrayBuffer()));
  const timer = setInterval(flush, 1);
  try {
    const img = await sender.sendImage(file);
    assert.equal(img.done, true);
    assert.equal(img.acked, img.chunks);
    assert.equal(img.sha256, want);
  } finally {
    clearInterval(timer);
  }
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(events.done.length, 1);
  const got = events.done[0];
  assert.equal(got.sha256, want);
  assert.equal(got.size, file.size);
  assert.equal(got.file, 'scan.png');
  assert.equal(got.sender, 'Dr Lan');
  assert.equal(new Uint8Array(await got.blob.arrayBuffer()).length, file.size);
  assert.ok(events.progress.length >= got.chunks - 1, 'progress reported per chunk');
  assert.ok(state.maxUnacked <= MAX_UNACKED, `never more than 64 unacked (saw ${state.maxUnacked})`);
});

test('abort: the sender stops, receivers drop the partial image; a server error fails the send', async () => {
  const { sender, events, flush, senderDc } = relayPair({ ackDelayChunks: 1000 });
  const file = randomImage(2 * 1024 * 1024);
  let img;
  const p = sender.sendImage(file, (i) => (img = i));
  while (!img || img.sent < 10) await new Promise((r) => setTimeout(r, 1));
  sender.abortImage(img.id);
  flush();
  await assert.rejects(p);
  assert.equal(events.aborted.length, 1);
  assert.equal(events.done.length, 0);
  // A forbidden error for the next image fails it.
  let second;
  const q = sender.sendImage(randomImage(100_000), (i) => (second = i));
  while (!second || !second.sha256) await new Promise((r) => setTimeout(r, 1));
  senderDc.deliver(JSON.stringify({ t: 'error', code: 'forbidden', message: 'no', id: second.id }));
  await assert.rejects(q, (e) => e.code === 'forbidden');
});
