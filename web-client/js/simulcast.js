// Simulcast publishing (PROTOCOL.md "Negotiation", point 5): the send encodings built from the
// server's `video_layers`, and dynacast (`publish_layers`) applied to the video sender.

/** One layer, no rid: used when the server gives no layers, or when there is no camera. */
export const DEFAULT_VIDEO_ENCODINGS = [{ maxBitrate: 1_200_000 }];

/** L1T3: three temporal layers in each encoding, which the server uses as frame-rate steps. */
export const SCALABILITY_MODE = 'L1T3';

/**
 * `sendEncodings` from the `video_layers` of `joined`, in the server's order (lowest first).
 * Returns null when the list is missing, empty or unusable (then publish a single encoding).
 */
export function encodingsFromLayers(layers, { scalabilityMode = SCALABILITY_MODE } = {}) {
  if (!Array.isArray(layers) || layers.length === 0) return null;
  const out = [];
  for (const l of layers) {
    if (!l || typeof l.rid !== 'string' || !l.rid) return null;
    const e = { rid: l.rid };
    if (Number.isFinite(l.scale_resolution_down_by)) e.scaleResolutionDownBy = Math.max(1, l.scale_resolution_down_by);
    if (Number.isFinite(l.max_bitrate)) e.maxBitrate = l.max_bitrate;
    if (Number.isFinite(l.max_framerate)) e.maxFramerate = l.max_framerate;
    if (scalabilityMode) e.scalabilityMode = scalabilityMode;
    out.push(e);
  }
  return out;
}

/** The same encodings without `scalabilityMode` (for browsers that refuse it). */
export function withoutScalabilityMode(encodings) {
  return encodings.map(({ scalabilityMode, ...e }) => e);
}

/** Rids of the sender's encodings that are active, or null when it does not send simulcast. */
export function activeRidsOf(sender) {
  const encodings = sender?.getParameters().encodings ?? [];
  if (!encodings.length || encodings.some((e) => !e.rid)) return null;
  return encodings.filter((e) => e.active !== false).map((e) => e.rid);
}

/**
 * Dynacast: keeps only the encodings whose rid is in `active` sending. Resolves to the active
 * rids afterwards, or null when the sender has no simulcast encodings (nothing to do).
 * Callers serialize calls (getParameters/setParameters pairs must not interleave).
 */
export async function applyActiveRids(sender, active) {
  const params = sender.getParameters();
  const encodings = params.encodings ?? [];
  if (!encodings.length || encodings.some((e) => !e.rid)) return null;
  let changed = false;
  for (const e of encodings) {
    const want = active.includes(e.rid);
    if (e.active !== want) {
      e.active = want;
      changed = true;
    }
  }
  if (changed) await sender.setParameters(params);
  return encodings.filter((e) => e.active).map((e) => e.rid);
}
