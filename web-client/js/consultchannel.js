// The consult data channel (`consult`, ordered; relayed by the SFU, nothing stored): chat and
// image sharing. Text frames are JSON with a `t` field; an image travels as `image_start` then
// binary chunks `[u32 BE id][u32 BE index] + payload`, 16384-byte payloads except the last.
// The server acknowledges relayed chunks to the sender (`image_ack`, cumulative `received`); the
// sender keeps at most MAX_UNACKED chunks unacknowledged and also waits on `bufferedAmount`.
// No DOM here: the UI (chat.js) listens through the handlers. Runs in node for unit tests.

export const LABEL = 'consult';
export const CHUNK_SIZE = 16384;
export const HEADER_SIZE = 8;
export const MAX_IMAGE_BYTES = 20 * 1024 * 1024;
export const MAX_UNACKED = 64;
export const MAX_CHAT_CHARS = 2000;
const BUFFER_HIGH = 1 << 20; // pause sending above 1 MiB queued in the channel
const BUFFER_LOW = 256 * 1024; // resume when bufferedamountlow fires

export function chunkCount(size) {
  return Math.ceil(size / CHUNK_SIZE);
}

/** One binary frame: 8-byte header (id, index; big-endian) then the payload bytes. */
export function encodeChunk(id, index, payload) {
  const out = new Uint8Array(HEADER_SIZE + payload.byteLength);
  const view = new DataView(out.buffer);
  view.setUint32(0, id >>> 0);
  view.setUint32(4, index >>> 0);
  out.set(payload, HEADER_SIZE);
  return out.buffer;
}

/** {id, index, payload: Uint8Array} or null when the frame is too short. */
export function decodeChunk(buffer) {
  const bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
  if (bytes.byteLength < HEADER_SIZE) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return { id: view.getUint32(0), index: view.getUint32(4), payload: bytes.subarray(HEADER_SIZE) };
}

/** Lowercase hex SHA-256 of bytes (Web Crypto: browsers and node >= 20). */
export async function sha256Hex(bytes) {
  const digest = await globalThis.crypto.subtle.digest('SHA-256', bytes);
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
}

/** Why an image may not be sent, as an i18n key, or null. */
export function imageProblem(file) {
  if (!file || !(/^image\//.test(file.type || '') || file.type === 'application/dicom')) return 'image.notImage';
  if (!(file.size > 0)) return 'image.notImage';
  if (file.size > MAX_IMAGE_BYTES) return 'image.tooLarge';
  return null;
}

export class ConsultChannel {
  /**
   * @param {RTCDataChannel} dc
   * @param {{
   *   onOpen?: () => void, onClose?: () => void,
   *   onChat?: (m: {from, sender, role, text, at}) => void,
   *   onIncomingStart?: (img) => void, onIncomingProgress?: (img) => void,
   *   onIncomingDone?: (img) => void, onIncomingAbort?: (img, reason) => void,
   *   onOutgoingProgress?: (img) => void, onOutgoingDone?: (img) => void,
   *   onOutgoingFailed?: (img, code) => void,
   *   onError?: (m: {code, message, id}) => void,
   * }} handlers
   */
  constructor(dc, handlers = {}) {
    this.dc = dc;
    this.h = handlers;
    this.incoming = new Map(); // relay id -> {id, from, sender, file, mime, size, chunks, got, parts, received}
    this.outgoing = new Map(); // our id -> {id, file, mime, size, chunks, sent, acked, ...}
    this.nextId = (Math.random() * 0x7fffffff) >>> 0;
    this.waiters = new Set(); // resolve functions of senders waiting for acks or buffer space
    this.closed = false;
    dc.binaryType = 'arraybuffer';
    dc.bufferedAmountLowThreshold = BUFFER_LOW;
    dc.addEventListener('open', () => this.h.onOpen?.());
    dc.addEventListener('close', () => this.onClosed());
    dc.addEventListener('message', (ev) => this.handle(ev.data));
    dc.addEventListener('bufferedamountlow', () => this.wake());
  }

  get open() {
    return this.dc.readyState === 'open';
  }

  /** Sends a chat message; returns false when it cannot go (closed, empty, too long). */
  sendChat(text) {
    const s = String(text ?? '').trim();
    if (!this.open || !s || [...s].length > MAX_CHAT_CHARS) return false;
    this.dc.send(JSON.stringify({ t: 'chat', text: s }));
    return true;
  }

  /**
   * Sends an image (a File or Blob with a name and type). Resolves with the outgoing record
   * once every chunk was acknowledged; rejects on abort or error. `onStart(img)` is called
   * synchronously with the record (for the UI).
   */
  async sendImage(file, onStart) {
    const problem = imageProblem(file);
    if (problem) throw Object.assign(new Error(problem), { code: problem });
    if (!this.open) throw Object.assign(new Error('channel not open'), { code: 'closed' });
    const id = this.nextId++ >>> 0;
    this.nextId >>>= 0;
    const img = {
      id,
      file: file.name || 'image',
      mime: file.type,
      size: file.size,
      chunks: chunkCount(file.size),
      sent: 0,
      acked: 0,
      done: false,
      failed: null,
      sha256: null,
      blob: file,
    };
    this.outgoing.set(id, img);
    onStart?.(img);
    try {
      const bytes = new Uint8Array(await file.arrayBuffer());
      img.sha256 = await sha256Hex(bytes);
      this.dc.send(JSON.stringify({ t: 'image_start', id, file: img.file, mime: img.mime, size: img.size }));
      for (let index = 0; index < img.chunks; index++) {
        await this.until(() => img.failed || this.closed || (index - img.acked < MAX_UNACKED && this.dc.bufferedAmount < BUFFER_HIGH));
        if (img.failed || this.closed) break;
        const start = index * CHUNK_SIZE;
        this.dc.send(encodeChunk(id, index, bytes.subarray(start, Math.min(start + CHUNK_SIZE, img.size))));
        img.sent = index + 1;
      }
      await this.until(() => img.failed || this.closed || img.acked >= img.chunks);
      if (this.closed && !img.failed) img.failed = 'closed';
      if (img.failed) throw Object.assign(new Error(`image ${id} failed: ${img.failed}`), { code: img.failed });
      img.done = true;
      this.h.onOutgoingDone?.(img);
      return img;
    } catch (err) {
      if (!img.failed) img.failed = err?.code ?? 'error';
      this.h.onOutgoingFailed?.(img, img.failed);
      throw err;
    } finally {
      this.wake();
    }
  }

  /** Stops sending one of our images (tells the others to drop it). */
  abortImage(id) {
    const img = this.outgoing.get(id);
    if (!img || img.done || img.failed) return;
    img.failed = 'aborted';
    if (this.open) this.dc.send(JSON.stringify({ t: 'image_abort', id }));
    this.wake();
  }

  /** Resolves once `cond()` is true; re-checked on acks, buffer drain and close. */
  until(cond) {
    if (cond()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!cond()) return false;
        this.waiters.delete(check);
        resolve();
        return true;
      };
      this.waiters.add(check);
    });
  }

  wake() {
    for (const check of [...this.waiters]) check();
  }

  handle(data) {
    if (typeof data === 'string') {
      let m;
      try {
        m = JSON.parse(data);
      } catch {
        return;
      }
      if (m && typeof m === 'object') this.onText(m);
      return;
    }
    if (data instanceof ArrayBuffer || ArrayBuffer.isView(data)) this.onChunk(data);
    // A Blob (binaryType not honoured) is read asynchronously; order within an image does not matter.
    else if (typeof Blob !== 'undefined' && data instanceof Blob) data.arrayBuffer().then((b) => this.onChunk(b));
  }

  onText(m) {
    switch (m.t) {
      case 'chat':
        if (typeof m.text === 'string') this.h.onChat?.({ from: m.from, sender: m.sender, role: m.role, text: m.text, at: m.at ?? Date.now() });
        break;
      case 'image_start': {
        if (!Number.isInteger(m.id) || !Number.isInteger(m.size) || m.size <= 0 || m.size > MAX_IMAGE_BYTES) return;
        const img = {
          id: m.id,
          from: m.from,
          sender: m.sender,
          file: String(m.file ?? 'image'),
          mime: String(m.mime ?? ''),
          size: m.size,
          chunks: chunkCount(m.size),
          received: 0,
          got: new Uint8Array(chunkCount(m.size)),
          data: new Uint8Array(m.size),
          done: false,
          aborted: null,
          sha256: null,
          blob: null,
        };
        this.incoming.set(m.id, img);
        this.h.onIncomingStart?.(img);
        break;
      }
      case 'image_ack': {
        const img = this.outgoing.get(m.id);
        if (!img || !Number.isInteger(m.received)) return;
        img.acked = Math.max(img.acked, Math.min(m.received, img.chunks));
        this.h.onOutgoingProgress?.(img);
        this.wake();
        break;
      }
      case 'image_abort': {
        const inc = this.incoming.get(m.id);
        if (inc && !inc.done) {
          this.incoming.delete(m.id);
          inc.aborted = m.reason ?? 'aborted';
          inc.data = null;
          this.h.onIncomingAbort?.(inc, inc.aborted);
          return;
        }
        const out = this.outgoing.get(m.id);
        if (out && !out.done && !out.failed) {
          out.failed = m.reason ?? 'aborted';
          this.wake();
        }
        break;
      }
      case 'error': {
        const out = m.id != null ? this.outgoing.get(m.id) : null;
        if (out && !out.done && !out.failed) {
          out.failed = m.code ?? 'error';
          this.wake();
        }
        this.h.onError?.({ code: m.code, message: m.message, id: m.id });
        break;
      }
      default:
        break; // unknown: ignored
    }
  }

  onChunk(buffer) {
    const c = decodeChunk(buffer);
    if (!c) return;
    const img = this.incoming.get(c.id);
    if (!img || img.done || c.index >= img.chunks || img.got[c.index]) return;
    const start = c.index * CHUNK_SIZE;
    const expected = Math.min(CHUNK_SIZE, img.size - start);
    if (c.payload.byteLength !== expected) return;
    img.data.set(c.payload, start);
    img.got[c.index] = 1;
    img.received += 1;
    if (img.received < img.chunks) {
      this.h.onIncomingProgress?.(img);
      return;
    }
    this.incoming.delete(c.id);
    this.finish(img);
  }

  async finish(img) {
    img.sha256 = await sha256Hex(img.data);
    img.blob = typeof Blob !== 'undefined' ? new Blob([img.data], { type: img.mime }) : null;
    img.data = null;
    img.got = null;
    img.done = true;
    this.h.onIncomingDone?.(img);
  }

  onClosed() {
    if (this.closed) return;
    this.closed = true;
    for (const img of this.incoming.values()) {
      img.aborted = 'closed';
      this.h.onIncomingAbort?.(img, 'closed');
    }
    this.incoming.clear();
    this.wake();
    this.h.onClose?.();
  }

  close() {
    this.onClosed();
    try {
      this.dc.close();
    } catch {
      /* already closed */
    }
  }
}
