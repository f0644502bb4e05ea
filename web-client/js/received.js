// What a tile's video label shows, pure: the resolution actually decoded (getStats) rather than the
// layer the server targets (`layer_changed`). The forwarder switches only on a keyframe of the
// target, so for 0.3-10 s after a change the target is not what arrives; meanwhile the label says
// it is switching. No DOM here, so node can test it (tests/received.test.mjs).

export const LAYER_RIDS = ['q', 'h', 'f']; // lowest first, as in `video_layers`

// A switch that never shows as a new frame height (the encoder scaled a layer down to the size
// of the old one, or the publisher stopped that layer) is taken as done after this long, so the
// arrow does not stay for good. Longer than the slowest switch the forwarder makes (10 s).
export const SWITCH_GIVE_UP_MS = 12_000;

/**
 * Per mid: `target`/`paused` from `layer_changed`; `height`/`frames` from the last stats sample;
 * `rid` the layer taken to arrive (the last target whose switch showed); `switchFrom`/`switchSince`
 * the height and time when a different target was set (null: no switch pending); `waitFrames`
 * the decoded-frame count when video (re)started, null once a frame was decoded after that:
 * what was decoded before (another publisher, before a pause) is not labelled.
 */
export const NOTHING_RECEIVED = Object.freeze({
  target: null, paused: null, height: null, frames: 0, rid: null, switchFrom: null, switchSince: null, waitFrames: 0,
});

const flowing = (layer, paused) => typeof layer === 'string' && !paused;

/** `layer_changed` for this mid: {layer, paused}. */
export function onTarget(prev = NOTHING_RECEIVED, { layer = null, paused = null } = {}, now = 0) {
  const s = { ...prev, target: layer ?? null, paused: paused ?? null };
  if (!flowing(s.target, s.paused)) return { ...s, rid: null, switchFrom: null, switchSince: null };
  // Video (re)starts: the last decoded frame (before a pause) says nothing about what comes now.
  if (!flowing(prev.target, prev.paused)) return { ...s, rid: s.target, switchFrom: null, switchSince: null, waitFrames: prev.frames };
  if (s.target === prev.target) return s;
  // Back to the layer still arriving: the switch that was pending is off.
  if (s.target === prev.rid) return { ...s, switchFrom: null, switchSince: null };
  return { ...s, switchFrom: prev.height, switchSince: now };
}

/** A stats sample for this mid: {height: frameHeight, frames: framesDecoded}. */
export function onSample(prev = NOTHING_RECEIVED, { height = 0, frames = 0 } = {}, now = 0) {
  const waitFrames = prev.waitFrames != null && frames !== prev.waitFrames ? null : prev.waitFrames;
  const s = { ...prev, frames, waitFrames, height: height > 0 ? height : prev.height };
  // A new size is the keyframe of the target arriving; nothing else switches layers this fast.
  if (s.switchFrom != null && (s.height !== s.switchFrom || now - s.switchSince >= SWITCH_GIVE_UP_MS)) {
    return { ...s, rid: s.target, switchFrom: null, switchSince: null };
  }
  return s;
}

/** The mid now carries another publisher's track (or none): keep only the decoded-frame count. */
export function forget(prev = NOTHING_RECEIVED) {
  return { ...NOTHING_RECEIVED, frames: prev.frames, waitFrames: prev.frames };
}

/**
 * What to show: `text` ({key, vars}) the received video, null to hide the label (nothing decoded
 * since video started, or paused: the overlay says so); `next` the i18n key of the layer it is
 * switching to, else null; `level` the layer taken to arrive (styling); `height` as shown.
 * The lowest layer keeps its word ("Low"): "180p" tells a patient less than that.
 */
export function layerView(s = NOTHING_RECEIVED) {
  const shown = !s.paused && s.height > 0 && s.waitFrames == null;
  const switching = shown && s.switchFrom != null && LAYER_RIDS.includes(s.target);
  const lowest = s.rid === LAYER_RIDS[0];
  return {
    target: s.target,
    paused: s.paused,
    height: shown ? s.height : null,
    level: shown ? s.rid : null,
    text: !shown ? null : lowest ? { key: `layer.${s.rid}` } : { key: 'layer.height', vars: { height: s.height } },
    next: switching ? `layer.${s.target}` : null,
  };
}

/**
 * Inbound video per mid from a getStats() report: Map mid -> {height, frames}. `midOfTrack`
 * maps a trackIdentifier for browsers whose inbound-rtp has no `mid`. Of two streams on one mid
 * (the sender's SSRC changed) the one that received last counts.
 */
export function inboundVideoByMid(report, midOfTrack = () => null) {
  const out = new Map();
  const latest = new Map();
  report.forEach((r) => {
    if (r.type !== 'inbound-rtp' || r.kind !== 'video') return;
    const mid = r.mid ?? midOfTrack(r.trackIdentifier) ?? null;
    if (mid == null) return;
    const at = r.lastPacketReceivedTimestamp ?? 0;
    if (out.has(mid) && at < latest.get(mid)) return;
    latest.set(mid, at);
    out.set(mid, { height: r.frameHeight ?? 0, frames: r.framesDecoded ?? 0 });
  });
  return out;
}
