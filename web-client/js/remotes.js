// Who else is in the consult and which remote track belongs to whom.
// A remote track is matched to its publisher by its transceiver mid (from `track_published`) or,
// failing that, by its msid stream id (the publisher's participant_id, trusted once that
// participant is known). Either may come first; a track that cannot be placed yet waits.
// Also what the server says it adapts: the video layer it targets per mid (`layer_changed`) and each
// participant's connection quality (`connection_quality`, yourself included); and, from the stats
// poll (session.js), the video actually decoded per mid, which the tile's label shows.

import * as ui from './ui.js';
import { forget, layerView, onSample, onTarget } from './received.js';

export class Remotes {
  constructor() {
    this.participants = new Map(); // participant_id -> {name, role, audio_muted, video_muted}
    this.tracks = new Map(); // mid -> {participantId, kind, trackId, source}   (from track_published)
    this.received = new Map(); // mid -> MediaStreamTrack                 (from ontrack)
    this.pending = new Map(); // mid -> {track, streamId} not yet placed
    this.gone = new Set(); // participant ids that have left (late tracks are ignored)
    this.layers = new Map(); // mid -> {participantId, layer, temporal, paused}   (from layer_changed)
    this.decoded = new Map(); // mid -> received.js state: target and what getStats says is decoded
    this.shown = new Map(); // mid -> the layerView last rendered (JSON), to touch the DOM only on change
    this.quality = new Map(); // participant_id -> 'good' | 'fair' | 'poor'     (yourself too)
    this.reconnecting = new Set(); // participant ids whose connection dropped (place kept)
  }

  clear() {
    this.participants.clear();
    this.tracks.clear();
    this.received.clear();
    this.pending.clear();
    this.gone.clear();
    this.layers.clear();
    this.decoded.clear();
    this.shown.clear();
    this.quality.clear();
    this.reconnecting.clear();
    ui.clearTiles();
  }

  upsert(info) {
    const id = info.participant_id;
    if (typeof id !== 'string') return;
    const entry = {
      name: info.name,
      role: info.role,
      audio_muted: !!info.audio_muted,
      video_muted: !!info.video_muted,
    };
    this.participants.set(id, entry);
    this.gone.delete(id);
    const isNew = !ui.hasTile(id);
    ui.upsertTile(id, entry);
    if (isNew) this.renderAdaptation(id);
    for (const [mid, p] of this.pending) {
      if (p.streamId !== id || (p.track.kind === 'video' && ui.tileHasVideo(id))) continue;
      this.pending.delete(mid);
      this.place(id, p.track, mid);
    }
  }

  left(id) {
    this.participants.delete(id);
    this.gone.add(id);
    for (const [mid, t] of this.tracks) if (t.participantId === id) this.forgetMid(mid);
    for (const [mid, l] of this.layers) if (l.participantId === id) this.layers.delete(mid);
    this.quality.delete(id);
    this.reconnecting.delete(id);
    ui.removeTile(id);
  }

  published({ participant_id: participantId, track_id: trackId, kind, mid, source }) {
    if (typeof mid !== 'string') return;
    this.tracks.set(mid, { participantId, kind, trackId, source: source ?? null });
    // Place (or, if it was placed by a stream id that disagrees, move) the track of this mid.
    const track = this.pending.get(mid)?.track ?? this.received.get(mid);
    this.pending.delete(mid);
    if (track) this.place(participantId, track, mid);
  }

  /** The mid of a remote screen share being shown, by publisher (for tests), else null. */
  screenMid(participantId) {
    for (const [mid, t] of this.tracks) if (t.source === 'screen' && t.participantId === participantId) return mid;
    return null;
  }

  unpublished({ mid }) {
    const track = this.received.get(mid) ?? this.pending.get(mid)?.track;
    const layer = this.layers.get(mid);
    this.layers.delete(mid);
    if (layer) ui.setTileLayer(layer.participantId, null);
    this.forgetMid(mid);
    this.received.delete(mid);
    this.pending.delete(mid);
    if (track) ui.removeTileTrack(track);
  }

  muteChanged({ participant_id: id, kind, muted }) {
    const p = this.participants.get(id);
    if (p) p[kind === 'audio' ? 'audio_muted' : 'video_muted'] = !!muted;
    ui.setRemoteMuted(id, kind, !!muted);
  }

  /** `layer_changed`: which layer of a remote video this client now receives, or why none. */
  layerChanged({ participant_id: id, track_id: trackId, mid, layer, temporal, paused }) {
    if (typeof mid !== 'string' || typeof id !== 'string' || this.gone.has(id)) return;
    const state = { participantId: id, trackId, layer: layer ?? null, temporal: temporal ?? null, paused: paused ?? null };
    this.layers.set(mid, state);
    this.decoded.set(mid, onTarget(this.decoded.get(mid), state, performance.now()));
    this.renderDecoded(mid, id);
  }

  /** The stats poll's inbound video: Map mid -> {height, frames} (received.js inboundVideoByMid). */
  videoReceived(samples, now) {
    for (const [mid, sample] of samples) {
      const t = this.tracks.get(mid);
      if (t?.kind !== 'video' || t.source === 'screen') continue;
      this.decoded.set(mid, onSample(this.decoded.get(mid), sample, now));
      this.renderDecoded(mid, t.participantId);
    }
  }

  /** The mid no longer carries this track: its decoded frames so far are someone else's. */
  forgetMid(mid) {
    this.tracks.delete(mid);
    if (this.decoded.has(mid)) this.decoded.set(mid, forget(this.decoded.get(mid)));
    this.shown.delete(mid);
  }

  renderDecoded(mid, id) {
    if (this.tracks.get(mid)?.source === 'screen') return;
    const view = layerView(this.decoded.get(mid));
    const key = JSON.stringify(view);
    if (this.shown.get(mid) === key) return;
    this.shown.set(mid, key);
    ui.setTileLayer(id, view);
  }

  /** `connection_quality` about a remote participant (yourself: see quality.js). */
  reconnectingChanged({ participant_id: id, reconnecting }) {
    if (!this.participants.has(id)) return;
    if (reconnecting) this.reconnecting.add(id);
    else this.reconnecting.delete(id);
    ui.setTileReconnecting(id, !!reconnecting);
  }

  qualityChanged({ participant_id: id, quality }) {
    if (typeof id !== 'string') return;
    this.quality.set(id, quality);
    ui.setTileQuality(id, quality);
  }

  /** Re-applies the known layer and quality to a participant's (new) tile. */
  renderAdaptation(id) {
    const mid = [...this.layers].find(([m, l]) => l.participantId === id && this.tracks.get(m)?.source !== 'screen')?.[0];
    if (mid != null) ui.setTileLayer(id, layerView(this.decoded.get(mid)));
    if (this.quality.has(id)) ui.setTileQuality(id, this.quality.get(id));
  }

  /** From RTCPeerConnection ontrack. */
  trackArrived({ track, mid, streamId }) {
    if (mid != null) this.received.set(mid, track);
    const pub = mid != null ? this.tracks.get(mid) : undefined;
    // The msid stream id names the publisher; trust it only for a participant we know of.
    let id = pub?.participantId ?? (this.participants.has(streamId) ? streamId : null);
    // A second video of someone whose camera is already shown is probably their screen share:
    // wait for its track_published (which says the source) instead of replacing the camera.
    if (!pub && id && track.kind === 'video' && ui.tileHasVideo(id)) id = null;
    if (!id) {
      if (mid != null) this.pending.set(mid, { track, streamId });
      return;
    }
    this.place(id, track, mid);
  }

  trackGone({ track, mid }) {
    if (mid != null && this.received.get(mid) === track) this.received.delete(mid);
    if (mid != null && this.pending.get(mid)?.track === track) this.pending.delete(mid);
    ui.removeTileTrack(track);
  }

  place(id, track, mid) {
    if (this.gone.has(id) || track.readyState === 'ended') return;
    if (mid != null && this.tracks.get(mid)?.source === 'screen') ui.setScreenTrack(id, track);
    else ui.setTileTrack(id, track);
  }
}
