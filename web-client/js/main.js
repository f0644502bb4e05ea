// Page wiring: join form or join-by-link, the connection lifecycle (join, wait, reconnect,
// leave), local media controls, and the test hooks on window.consult.

import { detectLang, getLang, hasKey, setLang } from './i18n.js';
import { Signaling, signalingUrl } from './signaling.js';
import { Call } from './call.js';
import { initialDataSaver, rememberDataSaver } from './datasaver.js';
import { acquireLocalMedia, stopStream } from './media.js';
import { Remotes } from './remotes.js';
import { paramsFromLink, showJoinForm, updateUrl } from './joinform.js';
import * as ui from './ui.js';

const WAIT_RETRY_MS = 3000; // patient waiting for the consult to be opened
const RECONNECT_DELAY_MS = 2000;
const MAX_RECONNECTS = 5;
// The weak-connection notice waits until the link has stayed poor this long: the server's
// bandwidth estimate starts low for a few seconds after joining, even on a good link.
const POOR_NOTICE_DELAY_MS = 10_000;

const app = {
  state: 'idle', // 'idle' | 'joining' | 'waiting' | 'connected' | 'left' | 'failed'
  params: null, // {room, name, role}
  participantId: null,
  session: null, // {sig: Signaling, call: Call|null, joined: boolean}
  remotes: new Remotes(),
  local: null, // {stream, notice, error}
  mediaPromise: null,
  muted: { audio: false, video: false },
  waiting: false,
  retries: 0,
  timer: null,
  pcState: 'new',
  dataSaver: false,
  qualityNoticeDismissed: false, // "Not now" on the weak-connection notice, until the next join
  poorSince: null, // performance.now() when your own quality became poor, else null
  poorTimer: null,
  log: [],
};

function note(text) {
  app.log.push(`${(performance.now() / 1000).toFixed(2)} ${text}`);
  if (app.log.length > 300) app.log.shift();
}

function setState(state) {
  app.state = state;
  document.body.dataset.state = state;
  renderStatus();
}

function renderStatus() {
  const s = app.state;
  if (s === 'idle') ui.setStatus('status.idle', 'idle');
  else if (s === 'waiting') ui.setStatus('status.waiting', 'warn');
  else if (s === 'left') ui.setStatus('status.left', 'idle');
  else if (s === 'failed') ui.setStatus('status.failed', 'bad');
  else if (s === 'connected') ui.setStatus(app.pcState === 'connected' ? 'status.connected' : 'status.reconnecting', app.pcState === 'connected' ? 'ok' : 'warn');
  else if (app.retries > 0) ui.setStatus('status.reconnecting', 'warn');
  else ui.setStatus(app.session?.joined ? 'status.media' : 'status.connecting', 'busy');
}

// ---------- local media ----------

function localTrack(kind) {
  const s = app.local?.stream;
  return (kind === 'audio' ? s?.getAudioTracks() : s?.getVideoTracks())?.[0] ?? null;
}

function renderLocal() {
  const { name, role } = app.params;
  ui.setLocal({ stream: app.local?.stream ?? null, name, role, audioMuted: app.muted.audio, videoMuted: app.muted.video });
  for (const kind of ['audio', 'video']) ui.setControl(kind, { muted: app.muted[kind], available: !!localTrack(kind) });
}

function ensureMedia() {
  if (!app.mediaPromise) {
    app.mediaPromise = acquireLocalMedia().then((local) => {
      app.local = local;
      note(`media: audio=${!!local.stream.getAudioTracks().length} video=${!!local.stream.getVideoTracks().length} error=${local.error}`);
      ui.setNotice('media', local.notice);
      if (app.params) renderLocal();
      return local;
    });
  }
  return app.mediaPromise;
}

function releaseMedia() {
  stopStream(app.local?.stream);
  app.local = null;
  app.mediaPromise = null;
}

function toggleMute(kind) {
  const track = localTrack(kind);
  if (!track) return;
  app.muted[kind] = !app.muted[kind];
  track.enabled = !app.muted[kind];
  if (app.session?.joined) app.session.sig.send('mute', { kind, muted: app.muted[kind] });
  renderLocal();
}

// ---------- data saver and connection quality ----------

/** Turns data saver on or off: tells the server (if joined) and remembers it when `remember`. */
function setDataSaver(on, { remember = true } = {}) {
  app.dataSaver = !!on;
  if (remember) {
    rememberDataSaver(app.dataSaver);
    // A link that set it (`?datasaver=1`) follows the user's choice, so a reload keeps it.
    if (new URLSearchParams(location.search).has('datasaver')) updateUrl({ datasaver: app.dataSaver ? '1' : '0' });
  }
  ui.setDataSaverControl(app.dataSaver);
  sendPreference(app.session);
  renderQualityNotice();
}

function sendPreference(session) {
  if (!session?.joined) return;
  session.sig.send('set_preference', { data_saver: app.dataSaver });
  note(`-> set_preference data_saver=${app.dataSaver}`);
}

function onQuality(msg) {
  if (typeof msg.participant_id !== 'string') return;
  if (msg.participant_id !== app.participantId) {
    app.remotes.qualityChanged(msg);
    return;
  }
  app.remotes.quality.set(msg.participant_id, msg.quality);
  ui.setLocalQuality(msg.quality);
  const poor = msg.quality === 'poor';
  if (poor && app.poorSince == null) {
    app.poorSince = performance.now();
    clearTimeout(app.poorTimer);
    app.poorTimer = setTimeout(renderQualityNotice, POOR_NOTICE_DELAY_MS + 50);
  } else if (!poor) {
    resetPoor();
  }
  renderQualityNotice();
}

function resetPoor() {
  app.poorSince = null;
  clearTimeout(app.poorTimer);
}

/**
 * Suggests data saver once your own connection has stayed poor, unless it is on, was dismissed,
 * or would change nothing (no remote video is being sent to you, e.g. everyone's camera is off).
 */
function renderQualityNotice() {
  const poorLong = app.poorSince != null && performance.now() - app.poorSince >= POOR_NOTICE_DELAY_MS;
  const receivesVideo = [...app.remotes.layers.values()].some((l) => l.paused !== 'unavailable');
  ui.showQualityNotice(poorLong && receivesVideo && !app.dataSaver && !app.qualityNoticeDismissed && !!app.session?.joined);
}

// ---------- connection lifecycle ----------

function startJoin(params) {
  app.params = params;
  app.retries = 0;
  app.waiting = false;
  app.muted = { audio: false, video: false };
  app.qualityNoticeDismissed = false;
  ui.setRoomLabel(params.room);
  ui.setNotice('error', null);
  ui.showScreen('call');
  renderLocal();
  ensureMedia();
  connect();
}

function connect() {
  clearTimeout(app.timer);
  endSession();
  const session = { sig: null, call: null, joined: false };
  app.session = session;
  setState(app.waiting ? 'waiting' : 'joining');
  const mine = (fn) => (...args) => {
    if (app.session === session) fn(session, ...args);
  };
  session.sig = new Signaling(signalingUrl(), {
    onOpen: mine(() => {
      const { room, name, role } = app.params;
      session.sig.send('join', { room, name, role });
      note('-> join');
    }),
    onMessage: mine(onMessage),
    onClose: mine(onSignalingClosed),
  });
  session.sig.connect();
}

/** Drops the current socket and peer connection (closing the socket is a `leave`). */
function endSession() {
  const s = app.session;
  app.session = null;
  app.pcState = 'new';
  s?.call?.close();
  s?.sig?.close();
  app.remotes.clear();
  ui.setLocalQuality(null);
  resetPoor();
  ui.showQualityNotice(false);
}

function describe(msg) {
  switch (msg.type) {
    case 'layer_changed':
      return ` ${msg.participant_id} layer=${msg.layer} t=${msg.temporal} paused=${msg.paused}`;
    case 'publish_layers':
      return ` active=${(msg.active ?? []).join(',')}`;
    case 'connection_quality':
      return ` ${msg.participant_id} ${msg.quality}${msg.estimate_bps != null ? ' ' + msg.estimate_bps : ''}`;
    default:
      return msg.code ? ' ' + msg.code : '';
  }
}

function onMessage(session, msg) {
  note(`<- ${msg.type}${msg.mid ? ' mid=' + msg.mid : ''}${describe(msg)}`);
  const remotes = app.remotes;
  switch (msg.type) {
    case 'joined':
      session.joined = true;
      app.waiting = false;
      app.participantId = msg.participant_id;
      ui.setNotice('error', null);
      for (const p of msg.participants ?? []) remotes.upsert(p);
      startCall(session, msg.video_layers);
      sendPreference(session);
      renderStatus();
      break;
    case 'answer':
      session.call?.handleAnswer(msg.sdp);
      break;
    case 'offer':
      session.call?.handleOffer(msg.sdp);
      break;
    case 'participant_joined':
      if (msg.participant) remotes.upsert(msg.participant);
      break;
    case 'participant_left':
      remotes.left(msg.participant_id);
      break;
    case 'track_published':
      remotes.published(msg);
      break;
    case 'track_unpublished':
      remotes.unpublished(msg);
      break;
    case 'mute_changed':
      remotes.muteChanged(msg);
      break;
    case 'layer_changed':
      remotes.layerChanged(msg);
      renderQualityNotice();
      break;
    case 'publish_layers':
      session.call?.setPublishLayers(msg.mid, msg.active);
      break;
    case 'connection_quality':
      onQuality(msg);
      break;
    case 'error':
      onServerError(session, msg);
      break;
    default:
      break; // unknown types are ignored (additions within v1)
  }
}

function onServerError(session, { code, message }) {
  console.warn('server error', code, message);
  const key = hasKey(`error.${code}`) ? `error.${code}` : 'error.generic';
  if (session.joined) {
    // The session goes on (PROTOCOL.md: a bad message changes nothing); just tell the user.
    if (code !== 'wrong_state') ui.setNotice('error', key, { code });
    return;
  }
  // Only a clinic or specialist opens a consult; anyone else (normally the patient) waits and
  // retries on a fresh socket every 3 s.
  if (code === 'unknown_room') {
    app.waiting = true;
    endSession();
    setState('waiting');
    ui.setNotice('error', 'error.unknown_room');
    app.timer = setTimeout(connect, WAIT_RETRY_MS);
    return;
  }
  fail(key, { code });
}

function startCall(session, videoLayers) {
  const call = new Call({
    send: (type, fields) => {
      session.sig.send(type, fields);
      if (type !== 'candidate') note(`-> ${type}`);
    },
    onTrack: (t) => app.session === session && app.remotes.trackArrived(t),
    onTrackGone: (t) => app.session === session && app.remotes.trackGone(t),
    onConnectionState: (state) => app.session === session && onPcState(state),
    onError: (err) => {
      console.error('negotiation failed', err);
      note(`negotiation error: ${err?.message}`);
      if (app.session === session) ui.setNotice('error', 'error.bad_sdp');
    },
  });
  session.call = call;
  const stream = ensureMedia().then((local) => {
    // Tell the others about what we do not send (muted, or no such device).
    for (const kind of ['audio', 'video']) {
      const track = kind === 'audio' ? local.stream.getAudioTracks()[0] : local.stream.getVideoTracks()[0];
      if (track) track.enabled = !app.muted[kind];
      if (app.session === session && (app.muted[kind] || !track)) session.sig.send('mute', { kind, muted: true });
    }
    return local.stream;
  });
  const videoCodec = new URLSearchParams(location.search).get('codec');
  call.publish(stream, { videoLayers, videoCodec });
}

function onPcState(state) {
  note(`pc ${state}`);
  app.pcState = state;
  if (state === 'connected') {
    app.retries = 0;
    setState('connected');
  } else if (state === 'failed') {
    connectionLost(true);
  } else {
    renderStatus();
  }
}

function onSignalingClosed(session, { wasOpen, code }) {
  note(`ws closed code=${code} open=${wasOpen}`);
  connectionLost(wasOpen);
}

function connectionLost(wasOpen) {
  endSession();
  app.retries += 1;
  if (app.retries > MAX_RECONNECTS) {
    fail(wasOpen ? 'error.connection_lost' : 'error.server_unreachable');
    return;
  }
  setState(app.waiting ? 'waiting' : 'joining');
  ui.setStatus('status.reconnecting', 'warn');
  app.timer = setTimeout(connect, RECONNECT_DELAY_MS);
}

function fail(key, vars) {
  clearTimeout(app.timer);
  endSession();
  releaseMedia();
  setState('failed');
  ui.showEndScreen('failed.heading', key, vars);
}

function leave() {
  if (app.state === 'left' || app.state === 'idle') return;
  clearTimeout(app.timer);
  app.session?.sig.send('leave');
  note('-> leave');
  endSession();
  releaseMedia();
  app.waiting = false;
  setState('left');
  ui.showEndScreen('left.heading', 'left.body');
}

// ---------- page ----------

function init() {
  const params = new URLSearchParams(location.search);
  setLang(detectLang(params));
  ui.rerender();
  document.getElementById('lang-switch').addEventListener('click', () => {
    setLang(getLang() === 'vi' ? 'en' : 'vi');
    updateUrl({ lang: getLang() });
    ui.rerender();
  });
  document.getElementById('btn-mic').addEventListener('click', () => toggleMute('audio'));
  document.getElementById('btn-cam').addEventListener('click', () => toggleMute('video'));
  document.getElementById('btn-leave').addEventListener('click', leave);
  document.getElementById('btn-saver').addEventListener('click', () => setDataSaver(!app.dataSaver));
  document.getElementById('btn-saver-suggest').addEventListener('click', () => setDataSaver(true));
  document.getElementById('btn-saver-dismiss').addEventListener('click', () => {
    app.qualityNoticeDismissed = true;
    renderQualityNotice();
  });
  setDataSaver(initialDataSaver(params), { remember: false });
  document.getElementById('btn-rejoin').addEventListener('click', () => startJoin(app.params));
  const unlock = document.getElementById('sound-unlock');
  ui.onRemoteAudioBlocked(() => (unlock.hidden = false));
  unlock.addEventListener('click', () => ui.playAllAudio().then(() => (unlock.hidden = true)));
  window.addEventListener('pagehide', () => app.session?.sig.send('leave'));

  const fromLink = paramsFromLink(params);
  if (fromLink) {
    startJoin(fromLink);
  } else {
    setState('idle');
    showJoinForm(params, startJoin);
  }
}

/** Test and debugging hooks (read-only views of the app state). */
window.consult = {
  get state() { return app.state; },
  get participantId() { return app.participantId; },
  get pc() { return app.session?.call?.pc ?? null; },
  get participants() { return app.remotes.participants; }, // Map id -> {name, role, audio_muted, video_muted}
  get tracks() { return app.remotes.tracks; }, // Map mid -> {participantId, kind, trackId}
  get pcState() { return app.pcState; },
  get mediaError() { return app.local?.error ?? null; },
  get lang() { return getLang(); },
  get log() { return app.log; },
  get layers() { return app.remotes.layers; }, // Map mid -> {participantId, trackId, layer, temporal, paused}
  get quality() { return app.remotes.quality; }, // Map participant_id -> 'good' | 'fair' | 'poor' (yourself too)
  get activeRids() { return app.session?.call?.activeRids ?? null; }, // rids our camera sends now, or null
  get dataSaver() { return app.dataSaver; },
  setDataSaver: (on) => setDataSaver(on),
  leave,
  toggleMute,
};

init();
