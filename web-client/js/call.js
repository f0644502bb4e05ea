// The one RTCPeerConnection of a participant (PROTOCOL.md "Negotiation: glare-free by
// construction"): the client offers exactly once (its own audio + video, sendonly); after that
// only the server offers and the client answers. All SDP work runs through one queue, so a
// server offer that arrives while another is being handled waits its turn.

import {
  DEFAULT_VIDEO_ENCODINGS,
  activeRidsOf,
  applyActiveRids,
  encodingsFromLayers,
  withoutScalabilityMode,
} from './simulcast.js';

export { DEFAULT_VIDEO_ENCODINGS };

export const DATA_CHANNEL_LABEL = 'consult';

/** Screen share: one layer, few frames, sharp text (PROTOCOL.md `share`). */
export const SCREEN_ENCODING = { maxFramerate: 5, maxBitrate: 1_500_000 };

export class Call {
  /**
   * @param {{
   *   send: (type: string, fields: object) => void,
   *   iceServers?: RTCIceServer[],
   *   onTrack?: (t: {track: MediaStreamTrack, mid: string|null, streamId: string|null}) => void,
   *   onTrackGone?: (t: {track: MediaStreamTrack, mid: string|null}) => void,
   *   onConnectionState?: (state: RTCPeerConnectionState) => void,
   *   onError?: (err: Error) => void,
   * }} opts
   */
  constructor(opts) {
    this.opts = opts;
    this.closed = false;
    this.offerSent = false;
    this.pendingCandidates = [];
    this.queue = Promise.resolve();
    this.transceivers = { audio: null, video: null, screen: null };
    this.activeRids = null; // rids of the simulcast encodings now sending (null: no simulcast)
    this.screenTrack = null; // the screen-capture track on the screen transceiver, while sharing

    const pc = new RTCPeerConnection({ iceServers: opts.iceServers ?? [], bundlePolicy: 'max-bundle' });
    this.pc = pc;
    // Chat and images (consultchannel.js); in the first offer, so it needs no renegotiation.
    this.dc = pc.createDataChannel(DATA_CHANNEL_LABEL, { ordered: true });
    pc.onicecandidate = (ev) => this.onLocalCandidate(ev.candidate);
    pc.onconnectionstatechange = () => {
      if (!this.closed) opts.onConnectionState?.(pc.connectionState);
    };
    pc.ontrack = (ev) => this.onRemoteTrack(ev);
  }

  /** Runs `fn` after every earlier SDP step; errors go to onError and do not block the queue. */
  enqueue(fn) {
    const run = this.queue.then(() => (this.closed ? undefined : fn()));
    this.queue = run.catch((err) => {
      if (!this.closed) this.opts.onError?.(err);
    });
    return this.queue;
  }

  /**
   * Adds the one audio and one video sendonly transceiver (with the local track when there is one,
   * else by kind: receive-only users still follow the protocol) and sends the client's only offer.
   * `streamOrPromise` may be a promise (media still being acquired); server offers queue behind it.
   * Camera video is simulcast with `videoLayers` (the `video_layers` of `joined`) when given.
   */
  publish(streamOrPromise, { videoLayers = null, videoCodec = null, receiveOnly = false, screen = false } = {}) {
    return this.enqueue(async () => {
      const stream = await streamOrPromise;
      if (this.closed) return;
      const pc = this.pc;
      // An observer publishes nothing: its offer carries only the data channel.
      if (!receiveOnly) {
        const audio = stream?.getAudioTracks()[0] ?? null;
        const video = stream?.getVideoTracks()[0] ?? null;
        const streams = stream && (audio || video) ? [stream] : [];
        this.transceivers.audio = pc.addTransceiver(audio ?? 'audio', { direction: 'sendonly', streams });
        this.transceivers.video = this.addVideo(video, streams, video ? encodingsFromLayers(videoLayers) : null);
        if (videoCodec) preferCodec(this.transceivers.video, videoCodec);
        this.activeRids = activeRidsOf(this.transceivers.video.sender);
        // Pre-allocated for screen sharing (specialist, clinic): later replaceTrack, no renegotiation.
        if (screen) {
          this.transceivers.screen = pc.addTransceiver('video', { direction: 'sendonly', sendEncodings: [{ ...SCREEN_ENCODING }] });
          if (videoCodec) preferCodec(this.transceivers.screen, videoCodec);
        }
      }
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
      const fields = { sdp: pc.localDescription.sdp };
      if (this.transceivers.screen?.mid != null) fields.screen_mid = this.transceivers.screen.mid;
      this.opts.send('offer', fields);
      this.offerSent = true;
      for (const c of this.pendingCandidates.splice(0)) this.sendCandidate(c);
    });
  }

  /** The video transceiver: simulcast with L1T3, else without the scalability mode, else one layer. */
  addVideo(track, streams, simulcast) {
    const attempts = simulcast ? [simulcast, withoutScalabilityMode(simulcast)] : [];
    for (const encodings of attempts) {
      try {
        return this.pc.addTransceiver(track, { direction: 'sendonly', streams, sendEncodings: encodings.map((e) => ({ ...e })) });
      } catch (err) {
        console.warn('simulcast encodings refused:', err?.name, err?.message);
      }
    }
    return this.pc.addTransceiver(track ?? 'video', {
      direction: 'sendonly',
      streams,
      sendEncodings: DEFAULT_VIDEO_ENCODINGS.map((e) => ({ ...e })),
    });
  }

  /**
   * Dynacast (`publish_layers`): keep sending only the encodings whose rid is in `active`.
   * Runs on the same queue as SDP work, so parameter changes never interleave with each other
   * or with a negotiation. Ignored unless `mid` is our own video transceiver.
   */
  setPublishLayers(mid, active) {
    return this.enqueue(async () => {
      const t = this.transceivers.video;
      if (!t || t.mid == null || t.mid !== mid || !Array.isArray(active)) return;
      try {
        const rids = await applyActiveRids(t.sender, active.filter((r) => typeof r === 'string'));
        if (rids) this.activeRids = rids;
      } catch (err) {
        // Not a negotiation failure: the encoder just keeps its layers; the next change retries.
        console.warn('publish_layers: setParameters failed:', err?.name, err?.message);
      }
    });
  }

  /** Whether a screen share can start (the transceiver was pre-allocated and negotiated). */
  get canShareScreen() {
    return !!this.transceivers.screen && !this.closed;
  }

  /**
   * Puts a screen-capture track on the pre-allocated transceiver: one layer at most 5 fps and
   * ~1.5 Mbps, keeping resolution (text stays sharp) rather than frame rate.
   */
  async startScreen(track) {
    const t = this.transceivers.screen;
    if (!t || this.closed) throw new Error('screen sharing is not available');
    if ('contentHint' in track) track.contentHint = 'detail';
    await t.sender.replaceTrack(track);
    this.screenTrack = track;
    await this.enqueue(async () => {
      const params = t.sender.getParameters();
      params.degradationPreference = 'maintain-resolution';
      if (params.encodings?.length) Object.assign(params.encodings[0], SCREEN_ENCODING, { active: true });
      try {
        await t.sender.setParameters(params);
      } catch (err) {
        // Older browsers refuse degradationPreference: keep the encoding limits at least.
        delete params.degradationPreference;
        await t.sender.setParameters(params).catch((e) => console.warn('screen setParameters:', e?.message ?? err?.message));
      }
    });
  }

  /** Takes the screen track off the transceiver (nothing is sent until the next share). */
  async stopScreen() {
    const t = this.transceivers.screen;
    this.screenTrack = null;
    if (t && !this.closed) await t.sender.replaceTrack(null).catch(() => {});
  }

  /** The server's answer to our only offer. */
  handleAnswer(sdp) {
    return this.enqueue(async () => {
      await this.pc.setRemoteDescription({ type: 'answer', sdp: withOpusDtx(sdp) });
      // An answer that declines simulcast leaves one encoding.
      this.activeRids = activeRidsOf(this.transceivers.video?.sender);
    });
  }

  /** A server offer (remote tracks added or removed): answer it. */
  handleOffer(sdp) {
    return this.enqueue(async () => {
      const pc = this.pc;
      await pc.setRemoteDescription({ type: 'offer', sdp: withOpusDtx(sdp) });
      const answer = await pc.createAnswer();
      await pc.setLocalDescription(answer);
      this.opts.send('answer', { sdp: pc.localDescription.sdp });
    });
  }

  onLocalCandidate(candidate) {
    if (this.closed) return;
    // A null candidate ends gathering; an empty-string one (per-generation end) is skipped so
    // the server gets exactly one end-of-candidates.
    if (candidate && !candidate.candidate) return;
    const c = candidate
      ? { candidate: candidate.candidate, sdp_mid: candidate.sdpMid, sdp_m_line_index: candidate.sdpMLineIndex }
      : { candidate: '' };
    if (this.offerSent) this.sendCandidate(c);
    else this.pendingCandidates.push(c);
  }

  sendCandidate(c) {
    const fields = { candidate: c.candidate };
    if (c.sdp_mid != null) fields.sdp_mid = c.sdp_mid;
    if (c.sdp_m_line_index != null) fields.sdp_m_line_index = c.sdp_m_line_index;
    this.opts.send('candidate', fields);
  }

  onRemoteTrack(ev) {
    if (this.closed) return;
    const track = ev.track;
    const mid = ev.transceiver?.mid ?? null;
    const stream = ev.streams?.[0] ?? null;
    const gone = () => {
      if (!this.closed) this.opts.onTrackGone?.({ track, mid });
    };
    track.addEventListener('ended', gone, { once: true });
    stream?.addEventListener('removetrack', (e) => {
      if (e.track === track) gone();
    });
    this.opts.onTrack?.({ track, mid, streamId: stream?.id ?? null });
  }

  /** The current mid of a receiving transceiver whose track is `track`, if any. */
  midOf(track) {
    return this.pc.getTransceivers().find((t) => t.receiver.track === track)?.mid ?? null;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
  }
}

/**
 * Asks our Opus encoder for DTX (PROTOCOL.md: Opus with in-band FEC and DTX). Chromium sends
 * DTX only when the remote description's Opus fmtp says `usedtx=1`; the server's answer and
 * offers carry FEC but not DTX, so it is added to each (the latest one counts). Saves most of the audio bitrate while the person is
 * silent, which matters on a 300 kbit/s link.
 */
export function withOpusDtx(sdp) {
  const pts = [...sdp.matchAll(/^a=rtpmap:(\d+) opus\/48000/gim)].map((m) => m[1]);
  let out = sdp;
  for (const pt of pts) {
    out = out.replace(new RegExp(`^(a=fmtp:${pt} )(.*)$`, 'gm'), (line, head, params) =>
      /(^|;)\s*usedtx=/.test(params) ? line : `${head}${params};usedtx=1`);
  }
  return out;
}

/**
 * Puts `name` (e.g. 'h264', 'vp8') first in the video transceiver's codec list, for clinics
 * whose hardware encodes only H264 and for tests (`?codec=h264` in the link). Unknown names
 * change nothing.
 */
function preferCodec(transceiver, name) {
  const caps = globalThis.RTCRtpSender?.getCapabilities?.('video');
  if (!caps || typeof transceiver.setCodecPreferences !== 'function') return;
  const wanted = `video/${name}`.toLowerCase();
  const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === wanted);
  if (!first.length) return;
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== wanted);
  try {
    transceiver.setCodecPreferences([...first, ...rest]);
  } catch (err) {
    console.warn('codec preference refused:', err?.message);
  }
}
