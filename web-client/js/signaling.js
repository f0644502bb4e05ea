// One WebSocket to the server, speaking protocol v1 (see signaling/PROTOCOL.md).
// Every frame sent carries "v": 1; frames from the server without "v": 1 are ignored.

export const PROTOCOL_VERSION = 1;

/** ws(s)://<same host>/ws */
export function signalingUrl(loc = location) {
  return `${loc.protocol === 'https:' ? 'wss' : 'ws'}://${loc.host}/ws`;
}

export class Signaling {
  /**
   * @param {string} url
   * @param {{onOpen?: () => void, onMessage?: (msg: object) => void,
   *          onClose?: (info: {wasOpen: boolean, code: number, byClient: boolean}) => void}} handlers
   */
  constructor(url, handlers = {}) {
    this.url = url;
    this.handlers = handlers;
    this.ws = null;
    this.wasOpen = false;
    this.closedByClient = false;
  }

  connect() {
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => {
      this.wasOpen = true;
      this.handlers.onOpen?.();
    };
    ws.onmessage = (ev) => {
      if (typeof ev.data !== 'string') return;
      let msg;
      try {
        msg = JSON.parse(ev.data);
      } catch {
        console.warn('signaling: not JSON', ev.data);
        return;
      }
      if (!msg || typeof msg !== 'object' || msg.v !== PROTOCOL_VERSION || typeof msg.type !== 'string') {
        console.warn('signaling: ignoring frame', msg);
        return;
      }
      this.handlers.onMessage?.(msg);
    };
    // onerror is always followed by onclose; handle everything there.
    ws.onclose = (ev) => {
      this.handlers.onClose?.({ wasOpen: this.wasOpen, code: ev.code, byClient: this.closedByClient });
    };
  }

  get isOpen() {
    return this.ws?.readyState === WebSocket.OPEN;
  }

  /** Sends {"v":1,"type":type,...fields}. Returns false if the socket is not open. */
  send(type, fields = {}) {
    if (!this.isOpen) return false;
    this.ws.send(JSON.stringify({ v: PROTOCOL_VERSION, type, ...fields }));
    return true;
  }

  /** Closes without reporting it as a connection loss. */
  close() {
    this.closedByClient = true;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) this.ws.close(1000);
  }
}
