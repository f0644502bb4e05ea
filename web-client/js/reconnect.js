// Reconnect and resume policy, pure: backoff with jitter, which redirect targets are nodes,
// and when inbound media has stalled. The lifecycle that uses it is in session.js.

// Reconnects back off 0.5, 1, 2, then every 3 s (each +-30 % so a restarted server is not hit
// by every client at once), for up to two minutes: long enough for a server upgrade.
export const RECONNECT_BASE_MS = 500;
export const RECONNECT_CAP_MS = 3000;
export const RECONNECT_GIVE_UP_MS = 120_000;
// Cluster redirects in a row before giving up (one is normal: the consult's node).
export const MAX_REDIRECTS = 5;
// The node we were redirected to is dead, the one we came in by is alive: ask it again soon
// (it places the consult elsewhere once the dead node leaves the directory, within 2 s), without
// the growing backoff meant for a server that is down or overloaded.
export const DEAD_NODE_RETRY_MS = 700;
export const MAX_DEAD_NODE_RETRIES = 20;
// The server keeps our place this long (reconnect_grace, 30 s by default); after that a resume
// cannot work and we join afresh.
export const RESUME_WINDOW_MS = 35_000;
// ICE `disconnected` this long means media stalled: ask for an ICE restart (and again after
// ICE_RESTART_RETRY_MS while it stays down).
export const ICE_STALL_MS = 2000;
export const ICE_RESTART_RETRY_MS = 5000;
// Media that stops arriving while ICE still says `connected` (our address changed, a NAT
// rebound): Chromium notices only after 5-7 s. Inbound RTP that stopped growing this long,
// after it flowed, is the earlier sign.
export const RX_STALL_MS = 1000;
export const RX_POLL_MS = 300;

/** Delay before reconnect attempt `n` (1-based): exponential, capped, with jitter. */
export function reconnectDelay(n, random = Math.random) {
  const base = Math.min(RECONNECT_CAP_MS, RECONNECT_BASE_MS * 2 ** Math.max(0, n - 1));
  return jittered(base, random);
}

/** `ms` +-30 %: clients that lost the same server do not all come back at the same moment. */
export function jittered(ms, random = Math.random) {
  return Math.round(ms * (0.7 + 0.6 * random()));
}

/** A node's signaling socket: ws(s)://host[:port]/ws and nothing else; wss from an https page. */
export function isNodeUrl(url, pageProtocol) {
  if (typeof url !== 'string') return false;
  let u;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  const scheme = pageProtocol === 'https:' ? ['wss:'] : ['ws:', 'wss:'];
  return scheme.includes(u.protocol) && u.pathname === '/ws' && !u.search && !u.hash && !u.username && !u.password && !!u.hostname;
}

/**
 * Inbound RTP that stopped growing for RX_STALL_MS after it had flowed, while something is
 * expected (someone publishes): media stalled although ICE may still say connected.
 */
export class InboundStall {
  constructor(now) {
    this.packets = 0;
    this.changedAt = now;
    this.flowed = false;
    this.stalled = false;
    this.silentFor = 0;
  }

  /**
   * `packets`: inbound RTP packets received so far; `expecting`: someone publishes to us.
   * Returns 'stalled' when a stall begins, 'recovered' when it ends, else null.
   */
  update(packets, expecting, now) {
    if (packets !== this.packets || !expecting) {
      const was = this.stalled;
      this.flowed ||= this.packets > 0 && packets !== this.packets;
      this.packets = packets;
      this.changedAt = now;
      this.stalled = false;
      this.silentFor = 0;
      return was ? 'recovered' : null;
    }
    this.silentFor = now - this.changedAt;
    if (this.flowed && !this.stalled && this.silentFor >= RX_STALL_MS) {
      this.stalled = true;
      return 'stalled';
    }
    return null;
  }
}
