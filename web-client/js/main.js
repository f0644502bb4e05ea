// Page wiring: join by invite link (`?invite=`), by open-join link (`?room=&name=&role=`) or
// form; the connection lifecycle (join, lobby, wait, reconnect, leave, closed), local media
// controls, moderation (admit/deny, mute, remove, end), screen share, chat and images, and the
// test hooks on window.consult and window.__consult.

import { detectLang, getLang, hasKey, setLang } from './i18n.js';
import { Signaling, signalingUrl } from './signaling.js';
import { Call } from './call.js';
import { initialDataSaver, rememberDataSaver } from './datasaver.js';
import { acquireLocalMedia, stopStream } from './media.js';
import { Remotes } from './remotes.js';
import { inviteFromLink, paramsFromLink, showJoinForm, updateUrl } from './joinform.js';
import { ConsultChannel, imageProblem, sha256Hex } from './consultchannel.js';
import { ChatPanel } from './chat.js';
import * as ui from './ui.js';
import {
  DEAD_NODE_RETRY_MS, ICE_RESTART_RETRY_MS, ICE_STALL_MS, InboundStall, MAX_DEAD_NODE_RETRIES, MAX_REDIRECTS,
  RECONNECT_GIVE_UP_MS, RESUME_WINDOW_MS, RX_POLL_MS, isNodeUrl, jittered, reconnectDelay,
} from './reconnect.js';

const SHARE_ROLES = ['specialist', 'clinic'];
const MODERATOR_ROLES = ['specialist', 'clinic']; // admit / deny
const CLOSED_REASONS = ['denied', 'removed', 'consult_ended'];

const WAIT_RETRY_MS = 3000; // patient waiting for the consult to be opened
// The weak-connection notice waits until the link has stayed poor this long: the server's
// bandwidth estimate starts low for a few seconds after joining, even on a good link.
const POOR_NOTICE_DELAY_MS = 10_000;

const app = {
  // 'idle' | 'joining' | 'waiting' (room not open) | 'lobby' (waiting to be admitted) |
  // 'connected' | 'left' | 'failed' | 'closed' (denied, removed, consult ended)
  state: 'idle',
  params: null, // {room, name, role} or {invite, room, name, role} (filled in from the server)
  participantId: null,
  title: null, // the consult's title (invite joins)
  closedReason: null,
  errorCode: null, // the last error code that ended the join (unauthorized, consult_ended, ...)
  waitingList: [], // lobby_changed: [{participant_id, name, role}]
  sharing: null, // {track, call} while our screen is shared
  chatLog: [], // chat messages received (our own come back as echoes)
  receivedImages: [], // [{id, from, sender, file, mime, size, sha256}]
  sentImages: [], // [{id, file, size, chunks, acked, done, failed, sha256}]
  session: null, // {sig: Signaling, call: Call|null, joined: boolean}
  remotes: new Remotes(),
  local: null, // {stream, notice, error}
  mediaPromise: null,
  muted: { audio: false, video: false },
  // Our own mute toggles the server has not echoed yet (kind -> muted): a socket can die
  // silently with one in it, so they are sent again after a resume.
  muteUnconfirmed: { audio: null, video: null },
  waiting: false,
  retries: 0,
  timer: null,
  pcState: 'new',
  dataSaver: false,
  qualityNoticeDismissed: false, // "Not now" on the weak-connection notice, until the next join
  poorSince: null, // performance.now() when your own quality became poor, else null
  poorTimer: null,
  resumeToken: null, // from joined / resume_token: come back as the same participant
  resumes: 0, // successful resumes (test hook)
  iceTimer: null,
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
  else if (s === 'lobby') ui.setStatus('status.lobby', 'warn');
  else if (s === 'closed') ui.setStatus('status.closed', 'idle');
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

function isObserver() {
  return app.params?.role === 'observer';
}

function ensureMedia() {
  if (isObserver()) return Promise.resolve({ stream: new MediaStream(), notice: null, error: null });
  if (!app.mediaPromise) {
    app.mediaPromise = acquireLocalMedia().then((local) => {
      app.local = local;
      note(`media: audio=${!!local.stream.getAudioTracks().length} video=${!!local.stream.getVideoTracks().length} error=${local.error}`);
      ui.setNotice('media', local.notice);
      if (app.params) renderLocal();
      if (app.state === 'lobby') ui.setLobbyPreview(local.stream);
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
  if (app.session?.joined) {
    app.session.sig.send('mute', { kind, muted: app.muted[kind] });
    app.muteUnconfirmed[kind] = app.muted[kind];
  }
  if (kind === 'audio' && !app.muted.audio && ui.noticeCode('info') === 'mute.byOperator') ui.setNotice('info', null);
  renderLocal();
}

/** `mute_changed` about ourselves: the clinic operator muted us (`by`); we may unmute. */
function mutedByServer({ kind, muted, by }) {
  if (kind !== 'audio' && kind !== 'video') return;
  // Our toggle's echo confirms it; the operator's mute overrides it.
  if (by || app.muteUnconfirmed[kind] === !!muted) app.muteUnconfirmed[kind] = null;
  app.muted[kind] = !!muted;
  const track = localTrack(kind);
  if (track) track.enabled = !muted;
  if (muted && by && kind === 'audio') ui.setNotice('info', 'mute.byOperator');
  note(`muted ${kind}=${muted} by=${by ?? ''}`);
  renderLocal();
}

// ---------- role: what this user may do ----------

function applyRole() {
  const role = app.params?.role ?? null;
  const call = app.session?.call;
  const canShare = SHARE_ROLES.includes(role) && !!navigator.mediaDevices?.getDisplayMedia && !!call?.canShareScreen;
  ui.setRoleControls({ role, canShare });
  chat.setAbilities({ canChat: !!role && role !== 'observer', canSendImages: SHARE_ROLES.includes(role) });
  if (role === 'observer') ui.setNotice('info', 'observer.notice');
}

/** Takes name, role and title from the server (`lobby`, `joined.you`): the invite decides them. */
function learnIdentity({ name, role, title, room }) {
  const p = app.params;
  if (typeof name === 'string' && name) p.name = name;
  if (typeof role === 'string' && role) p.role = role;
  if (typeof room === 'string' && room) p.room = room;
  if (typeof title === 'string' && title) app.title = title;
  if (app.title) ui.setTitleLabel(app.title);
  else if (p.room) ui.setRoomLabel(p.room);
  applyRole();
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
  app.params = { ...params };
  app.retries = 0;
  app.waiting = false;
  app.closedReason = null;
  app.errorCode = null;
  app.muted = { audio: false, video: false };
  app.muteUnconfirmed = { audio: null, video: null };
  app.qualityNoticeDismissed = false;
  ui.setNotice('error', null);
  ui.setNotice('info', null);
  if (params.invite) {
    // Who we are comes from the server (lobby or joined); no camera prompt before that.
    ui.showScreen('none');
  } else {
    ui.setRoomLabel(params.room);
    ui.showScreen('call');
    ensureMedia();
  }
  applyRole();
  renderLocal();
  connect();
}

function connect() {
  clearTimeout(app.timer);
  endSession();
  app.resumeToken = null;
  const session = { sig: null, call: null, joined: false };
  app.session = session;
  setState(app.waiting ? 'waiting' : 'joining');
  openSignaling(session, null);
}

/** A new socket for `session`: a fresh join, or (with `resume`) back as the same participant. */
function openSignaling(session, resume) {
  const mine = (fn) => (...args) => {
    if (app.session === session) fn(session, ...args);
  };
  const url = app.nodeUrl ?? signalingUrl();
  // Hops are counted from the address we came in by.
  if (!app.nodeUrl) app.redirects = 0;
  session.resuming = resume;
  const sig = new Signaling(url, {
    onOpen: mine(() => {
      const { invite, room, name, role } = app.params;
      const creds = invite ? { invite } : { room, name, role };
      sig.send('join', resume ? { ...creds, resume } : creds);
      note(`-> join${invite ? ' (invite)' : ''}${resume ? ' (resume)' : ''}`);
    }),
    onMessage: (msg) => {
      if (app.session === session && session.sig === sig) onMessage(session, msg);
    },
    onClose: (info) => {
      if (app.session === session && session.sig === sig) onSignalingClosed(session, info);
    },
  });
  session.sig = sig;
  sig.connect();
}

/** Drops the current socket and peer connection (closing the socket is a `leave`). */
function endSession() {
  const s = app.session;
  app.session = null;
  app.pcState = 'new';
  clearTimeout(app.iceTimer);
  app.iceTimer = null;
  clearTimeout(s?.inboundTimer);
  // A socket closed without `leave` keeps our place on the server (a lost connection); we are
  // giving this participant up, so say so and nobody sees it reconnecting.
  if (s?.joined) s.sig?.send('leave');
  stopShare({ notify: false });
  s?.channel?.close();
  s?.call?.close();
  s?.sig?.close();
  app.remotes.clear();
  app.waitingList = [];
  ui.renderWaiting([], decideWaiting);
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
    case 'lobby':
      app.participantId = msg.participant_id ?? null;
      learnIdentity(msg);
      app.waiting = false;
      setState('lobby');
      ui.setNotice('error', null);
      ui.showLobby({ name: app.params.name, title: app.title, stream: app.local?.stream ?? null });
      ensureMedia(); // the camera preview while waiting; ready when admitted
      break;
    case 'joined':
      app.redirects = 0;
      app.deadNodeRetries = 0;
      if (msg.resume_token) app.resumeToken = msg.resume_token;
      if (msg.resumed && session.call) {
        resumed(session, msg);
        break;
      }
      session.joined = true;
      app.waiting = false;
      if (ui.noticeCode('info') === 'notice.server_busy') ui.setNotice('info', null);
      app.participantId = msg.participant_id;
      if (msg.you) learnIdentity({ ...msg.you, title: msg.title, room: msg.room });
      else if (msg.title) learnIdentity({ title: msg.title });
      ui.setNotice('error', null);
      ui.showScreen('call');
      for (const p of msg.participants ?? []) remotes.upsert(p);
      // Only a server that knows invites (joined.you) knows `screen_mid` too.
      startCall(session, msg.video_layers, {
        screen: !!msg.you && SHARE_ROLES.includes(app.params.role),
        // TURN (credentials made for this participant) and STUN servers, when configured.
        iceServers: msg.ice_servers,
      });
      sendPreference(session);
      setState(app.state === 'lobby' ? 'joining' : app.state);
      renderStatus();
      break;
    case 'lobby_changed':
      app.waitingList = Array.isArray(msg.waiting) ? msg.waiting.filter((w) => typeof w?.participant_id === 'string') : [];
      if (ui.renderWaiting(MODERATOR_ROLES.includes(app.params.role) ? app.waitingList : [], decideWaiting)) ui.chime();
      break;
    case 'closed':
      closed(msg.reason);
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
    case 'participant_reconnecting':
      remotes.reconnectingChanged(msg);
      break;
    case 'resume_token':
      if (typeof msg.resume_token === 'string') app.resumeToken = msg.resume_token;
      break;
    case 'track_published':
      remotes.published(msg);
      break;
    case 'track_unpublished':
      remotes.unpublished(msg);
      break;
    case 'mute_changed':
      if (msg.participant_id === app.participantId) mutedByServer(msg);
      else remotes.muteChanged(msg);
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
    case 'redirect':
      redirected(session, msg);
      break;
    case 'error':
      onServerError(session, msg);
      break;
    default:
      break; // unknown types are ignored (additions within v1)
  }
}

function onServerError(session, { code, message, retry_after_ms: retryAfter }) {
  console.warn('server error', code, message);
  if (code === 'resume_failed') {
    // Our place is gone (the grace period passed): join afresh, with a new peer connection.
    note('resume failed: joining afresh');
    app.resumeToken = null;
    connect();
    return;
  }
  const key = hasKey(`error.${code}`) ? `error.${code}` : 'error.generic';
  if (code === 'consult_ended') {
    closed('consult_ended');
    return;
  }
  if (code === 'server_busy' && !session.joined) {
    // Admission control: the node is full or saturated. Come back when it says, with jitter so
    // everyone refused together does not return together.
    const wait = Math.min(60_000, Math.max(1000, Number(retryAfter) || 5000)) * (0.8 + 0.4 * Math.random());
    note(`server busy: retrying in ${Math.round(wait)} ms`);
    endSession();
    setState(app.waiting ? 'waiting' : 'joining');
    ui.showScreen('call'); // where the notice is; a first-time patient must see why they wait
    ui.setNotice('info', 'notice.server_busy', { seconds: Math.ceil(wait / 1000) });
    app.timer = setTimeout(connect, wait);
    return;
  }
  if (code === 'server_restarting') {
    ui.setNotice('info', 'notice.server_restart');
    connectionLost(false);
    return;
  }
  if (code === 'unauthorized') {
    app.errorCode = code;
    fail(key, { code }, { rejoin: false });
    return;
  }
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
  app.errorCode = code;
  fail(key, { code });
}

/** The server ends our participation (`closed`): no reconnect, a clear message. */
function closed(reason) {
  if (reason === 'server_restart') {
    // An upgrade: the invite stays valid, so come back by ourselves.
    note('closed server_restart: rejoining');
    ui.setNotice('info', 'notice.server_restart');
    app.restarting = true;
    connectionLost(true);
    return;
  }
  const r = CLOSED_REASONS.includes(reason) ? reason : 'consult_ended';
  app.closedReason = r;
  note(`closed ${reason}`);
  clearTimeout(app.timer);
  endSession();
  releaseMedia();
  setState('closed');
  ui.showEndScreen(`closed.${r}.heading`, `closed.${r}.body`, null, { rejoin: false });
}

function startCall(session, videoLayers, { screen = false, iceServers = [] } = {}) {
  const call = new Call({
    iceServers,
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
  attachChannel(session, call);
  watchInbound(session);
  if (isObserver()) {
    call.publish(null, { receiveOnly: true });
    return;
  }
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
  call.publish(stream, { videoLayers, videoCodec, screen }).then(() => {
    if (app.session === session) applyRole(); // the share button needs the screen transceiver
  });
}

// ---------- chat and images (data channel) ----------

const chat = new ChatPanel({
  onSendText: (text) => app.session?.channel?.sendChat(text) ?? false,
  onSendImage: (file) => {
    sendImage(file).catch(() => {});
  },
  myId: () => app.participantId,
});

function attachChannel(session, call) {
  const mine = (fn) => (...args) => {
    if (app.session === session) fn(...args);
  };
  session.channel = new ConsultChannel(call.dc, {
    onOpen: mine(() => note('data channel open')),
    onClose: mine(() => note('data channel closed')),
    onChat: mine((m) => {
      app.chatLog.push(m);
      chat.addChat(m);
    }),
    onIncomingStart: mine((img) => chat.incomingStart(img)),
    onIncomingProgress: mine((img) => chat.incomingProgress(img)),
    onIncomingDone: mine((img) => {
      const { id, from, sender, file, mime, size, sha256 } = img;
      app.receivedImages.push({ id, from, sender, file, mime, size, sha256 });
      note(`image received ${file} ${size} B`);
      chat.incomingDone(img);
    }),
    onIncomingAbort: mine((img) => chat.incomingAbort(img)),
    onOutgoingProgress: (img) => chat.outgoingProgress(img),
    onOutgoingDone: (img) => chat.outgoingDone(img),
    onOutgoingFailed: (img, code) => chat.outgoingFailed(img, code),
    onError: mine((m) => {
      note(`data channel error ${m.code}`);
      if (m.id == null) chat.note(m.code === 'forbidden' ? 'error.forbidden' : 'error.generic', { code: m.code });
    }),
  });
}

/** Sends an image to everyone; resolves with {id, sha256, size} once all chunks were relayed. */
async function sendImage(file) {
  const problem = imageProblem(file);
  if (problem) {
    chat.note(problem);
    throw new Error(problem);
  }
  const ch = app.session?.channel;
  if (!ch?.open) {
    chat.note('chat.notReady');
    throw new Error('data channel not open');
  }
  chat.note(null);
  let record;
  const img = await ch.sendImage(file, (i) => {
    record = { id: i.id, file: i.file, size: i.size, chunks: i.chunks, get acked() { return i.acked; }, get done() { return i.done; }, get failed() { return i.failed; }, get sha256() { return i.sha256; } };
    app.sentImages.push(record);
    chat.outgoingStart(i);
  });
  note(`image sent ${img.file} ${img.size} B`);
  return { id: img.id, sha256: img.sha256, size: img.size };
}

// ---------- moderation ----------

function sendModeration(type, fields = {}) {
  const session = app.session;
  if (!session?.joined) return false;
  session.sig.send(type, fields);
  note(`-> ${type} ${fields.participant_id ?? ''}`);
  return true;
}

async function decideWaiting(id, decision, info) {
  if (decision === 'deny' && !(await ui.confirmAction('confirm.deny', { name: info?.name ?? '' }, 'confirm.denyYes'))) return;
  sendModeration(decision === 'admit' ? 'admit' : 'deny', { participant_id: id });
}

async function onTileModeration(id, action, info) {
  if (action === 'mute') {
    sendModeration('mute_participant', { participant_id: id });
  } else if (action === 'remove') {
    if (await ui.confirmAction('confirm.remove', { name: info?.name ?? '' }, 'confirm.removeYes')) {
      sendModeration('remove', { participant_id: id });
    }
  }
}

async function endConsultAsked() {
  if (await ui.confirmAction('confirm.end', {}, 'confirm.endYes')) sendModeration('end_consult');
}

// ---------- screen share ----------

async function startShare() {
  const call = app.session?.call;
  if (app.sharing || !call?.canShareScreen) return false;
  let stream;
  try {
    stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 5, max: 15 } }, audio: false });
  } catch (err) {
    note(`getDisplayMedia failed: ${err?.name}`);
    if (err?.name !== 'NotAllowedError' && err?.name !== 'AbortError') ui.setNotice('error', 'share.failed');
    return false;
  }
  const track = stream.getVideoTracks()[0];
  if (!track || app.session?.call !== call) {
    for (const t of stream.getTracks()) t.stop();
    return false;
  }
  try {
    await call.startScreen(track);
  } catch (err) {
    console.warn('screen share failed', err);
    track.stop();
    ui.setNotice('error', 'share.failed');
    return false;
  }
  // The browser's own "Stop sharing" ends the track.
  track.addEventListener('ended', () => stopShare(), { once: true });
  app.sharing = { track, call };
  app.session.sig.send('share', { active: true });
  note('-> share active');
  ui.setShareControl(true);
  return true;
}

function stopShare({ notify = true } = {}) {
  const s = app.sharing;
  if (!s) return;
  app.sharing = null;
  s.track.stop();
  s.call.stopScreen();
  if (notify && app.session?.call === s.call) {
    app.session.sig.send('share', { active: false });
    note('-> share inactive');
  }
  ui.setShareControl(false);
}

function onPcState(state) {
  note(`pc ${state}`);
  app.pcState = state;
  if (state === 'connected') {
    app.retries = 0;
    if (app.restarting) {
      app.restarting = false;
      ui.setNotice('info', null);
    }
    setState('connected');
    clearTimeout(app.iceTimer);
    app.iceTimer = null;
    if (app.session) app.session.iceLostAt = null;
  } else if (state === 'failed') {
    askIceRestart(app.session);
    renderStatus();
  } else {
    if (state === 'disconnected' && !app.iceTimer) {
      app.iceTimer = setTimeout(() => askIceRestart(app.session), ICE_STALL_MS);
    }
    renderStatus();
  }
}

/**
 * Media stalled (a network change, an outage): ask the server for an ICE restart, and again
 * while it stays down. A restart that cannot help within the grace period ends in a fresh join.
 */
function askIceRestart(session, { evenIfConnected = false } = {}) {
  clearTimeout(app.iceTimer);
  app.iceTimer = null;
  if (!session || app.session !== session) return;
  const stalled = session.inbound?.stalled;
  if (app.pcState === 'connected' && !evenIfConnected && !stalled) return;
  if (session.iceLostAt == null) session.iceLostAt = performance.now();
  // ICE itself down past the server's grace period: our place is gone, join afresh.
  if (app.pcState !== 'connected' && performance.now() - session.iceLostAt > RESUME_WINDOW_MS) {
    connectionLost(true);
    return;
  }
  if (session.sig?.isOpen && session.joined) {
    session.sig.send('ice_restart');
    note('-> ice_restart');
  }
  app.iceTimer = setTimeout(() => askIceRestart(session), ICE_RESTART_RETRY_MS);
}

/**
 * Polls inbound RTP while the call lasts; asks for an ICE restart when it stopped growing for
 * RX_STALL_MS after it had flowed (and media is not simply absent: nobody publishing).
 */
function watchInbound(session) {
  const watch = new InboundStall(performance.now());
  session.inbound = watch;
  const tick = async () => {
    if (app.session !== session || !session.call) return;
    let packets = 0;
    try {
      const stats = await session.call.pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp') packets += s.packetsReceived ?? 0;
      });
    } catch {
      return; // closed
    }
    // Nothing to receive (alone, or the others publish nothing) is not a stall.
    const change = watch.update(packets, app.remotes.tracks.size > 0, performance.now());
    if (change === 'recovered' && app.pcState === 'connected') session.iceLostAt = null;
    if (change === 'stalled') {
      note(`no media for ${Math.round(watch.silentFor)} ms`);
      askIceRestart(session, { evenIfConnected: true });
    }
    session.inboundTimer = setTimeout(tick, RX_POLL_MS);
  };
  session.inboundTimer = setTimeout(tick, RX_POLL_MS);
}

/** Back on a new socket as the same participant: the peer connection and media went on. */
function resumed(session, msg) {
  app.resumes += 1;
  app.retries = 0;
  const remotes = app.remotes;
  const present = new Set((msg.participants ?? []).map((p) => p.participant_id));
  for (const id of [...remotes.participants.keys()]) if (!present.has(id)) remotes.left(id);
  for (const p of msg.participants ?? []) {
    remotes.upsert(p);
    remotes.reconnectingChanged({ participant_id: p.participant_id, reconnecting: false });
  }
  ui.setNotice('error', null);
  sendPreference(session);
  // A mute toggled while the old socket was silently dead never reached the server: send it
  // again. Without one pending, the server's state is the newer (the operator may have muted
  // us meanwhile).
  for (const kind of ['audio', 'video']) {
    const pending = app.muteUnconfirmed[kind];
    const known = msg.you?.[`${kind}_muted`];
    if (pending != null) {
      session.sig.send('mute', { kind, muted: pending });
      note(`-> mute ${kind}=${pending} (again after the resume)`);
    } else if (typeof known === 'boolean' && known !== app.muted[kind] && localTrack(kind)) {
      mutedByServer({ kind, muted: known });
    }
  }
  // Media may have died with the socket (an address change) while ICE still says connected,
  // and Chromium takes 5-7 s to notice: after a socket that broke (1006) restart ICE at once.
  // A restart costs no media when the old path still works (the old pair carries it until the
  // new one is up).
  const broken = session.lostCode === 1006;
  if (app.pcState !== 'connected' || session.inbound?.stalled || broken) askIceRestart(session, { evenIfConnected: true });
  setState('connected');
}

/**
 * In a cluster the consult runs on another node: join there, the same way (fresh or resume).
 * The server closes this socket next; a few hops at most, or something is wrong.
 */
function redirected(session, { url }) {
  const valid = isNodeUrl(url, location.protocol);
  app.redirects = (app.redirects ?? 0) + 1;
  if (!valid || app.redirects > MAX_REDIRECTS) {
    note(`redirect refused: ${url}`);
    app.nodeUrl = null;
    fail('error.generic', { code: 'redirect' });
    return;
  }
  note(`redirect -> ${url}`);
  app.nodeUrl = url;
  const old = session.sig;
  session.sig = null;
  old?.close();
  openSignaling(session, session.resuming);
}

function onSignalingClosed(session, { wasOpen, code }) {
  note(`ws closed code=${code} open=${wasOpen}`);
  // A node we were sent to that cannot be reached (it died): back to the address we came in
  // by, which knows where the consult runs now.
  // Bounded: a node the directory keeps naming but we cannot reach (a partition) gets the normal
  // backoff after a while.
  if (!wasOpen && app.nodeUrl) {
    app.nodeUrl = null;
    app.deadNodeRetries = (app.deadNodeRetries ?? 0) + 1;
    session.deadNode = app.deadNodeRetries <= MAX_DEAD_NODE_RETRIES;
  }
  session.lostCode = code;
  if (app.closedReason) return;
  if (session.joined && session.call && app.resumeToken) {
    resumeLater(session);
    return;
  }
  connectionLost(wasOpen);
}

/**
 * The socket dropped while in the consult: keep the peer connection (media may still flow) and
 * come back on a new socket as the same participant, with backoff and jitter. Past the
 * server's grace period a resume cannot work: join afresh.
 */
function resumeLater(session) {
  if (session.deadNode) {
    retrySoon(() => {
      if (app.session === session) openSignaling(session, app.resumeToken);
    });
    return;
  }
  app.retries += 1;
  if (app.retries === 1) app.lostAt = performance.now();
  if (performance.now() - app.lostAt > RESUME_WINDOW_MS) {
    connectionLost(true);
    return;
  }
  ui.setStatus('status.reconnecting', 'warn');
  clearTimeout(app.timer);
  // The first try at once (jittered): a phone that changed networks is usually reachable again.
  const delay = app.retries === 1 ? 100 + 200 * Math.random() : reconnectDelay(app.retries - 1);
  app.timer = setTimeout(() => {
    if (app.session === session) openSignaling(session, app.resumeToken);
  }, delay);
}

/** Again at the address we came in by, after a dead node: soon, jittered, no backoff. */
function retrySoon(fn) {
  ui.setStatus('status.reconnecting', 'warn');
  clearTimeout(app.timer);
  app.timer = setTimeout(fn, jittered(DEAD_NODE_RETRY_MS));
}

function connectionLost(wasOpen) {
  if (app.session?.deadNode && !wasOpen) {
    endSession();
    setState(app.waiting ? 'waiting' : 'joining');
    retrySoon(connect);
    return;
  }
  endSession();
  app.retries += 1;
  if (app.retries === 1) app.lostAt = performance.now();
  if (performance.now() - app.lostAt > RECONNECT_GIVE_UP_MS) {
    fail(wasOpen ? 'error.connection_lost' : 'error.server_unreachable');
    return;
  }
  setState(app.waiting ? 'waiting' : 'joining');
  ui.setStatus('status.reconnecting', 'warn');
  app.timer = setTimeout(connect, reconnectDelay(app.retries));
}

function fail(key, vars, { rejoin = true } = {}) {
  clearTimeout(app.timer);
  endSession();
  releaseMedia();
  setState('failed');
  ui.showEndScreen('failed.heading', key, vars, { rejoin });
}

function leave() {
  if (['left', 'idle', 'closed', 'failed'].includes(app.state)) return;
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
  document.getElementById('btn-lobby-leave').addEventListener('click', leave);
  document.getElementById('btn-share').addEventListener('click', () => (app.sharing ? stopShare() : startShare()));
  document.getElementById('btn-end').addEventListener('click', endConsultAsked);
  ui.onModeration(onTileModeration);
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

  const invite = inviteFromLink(params);
  const fromLink = invite ? { invite, room: null, name: null, role: null } : paramsFromLink(params);
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
  get reconnecting() { return app.remotes.reconnecting; }, // Set of participant ids shown as reconnecting
  get resumes() { return app.resumes; }, // successful resumes on a new socket
  get muted() { return { ...app.muted }; }, // our own {audio, video} mute state
  /** Drops the WebSocket as a lost connection would (no `leave`): the client resumes. */
  dropSignaling() { app.session?.sig?.ws?.close(4000, 'test: connection dropped'); },
  get activeRids() { return app.session?.call?.activeRids ?? null; }, // rids our camera sends now, or null
  get dataSaver() { return app.dataSaver; },
  get role() { return app.params?.role ?? null; },
  get screenMid() { return app.session?.call?.transceivers.screen?.mid ?? null; }, // our screen-share transceiver
  setDataSaver: (on) => setDataSaver(on),
  leave,
  toggleMute,
};

/** Consult-workflow test hooks: state, lobby, moderation, chat and images (by hash). */
window.__consult = {
  get state() { return app.state; },
  get participantId() { return app.participantId; },
  get you() { return app.params ? { participant_id: app.participantId, name: app.params.name, role: app.params.role } : null; },
  get role() { return app.params?.role ?? null; },
  get title() { return app.title; },
  get closedReason() { return app.closedReason; },
  get errorCode() { return app.errorCode; },
  get waiting() { return app.waitingList.map((w) => ({ ...w })); },
  get participants() { return [...app.remotes.participants].map(([id, p]) => ({ participant_id: id, ...p })); },
  get channelState() { return app.session?.call?.dc?.readyState ?? null; },
  get chat() { return app.chatLog.slice(); },
  get receivedImages() { return app.receivedImages.slice(); },
  get sentImages() { return app.sentImages.map((r) => ({ id: r.id, file: r.file, size: r.size, chunks: r.chunks, acked: r.acked, done: r.done, failed: r.failed, sha256: r.sha256 })); },
  get sharing() { return !!app.sharing; },
  get screenMids() { return Object.fromEntries([...app.remotes.tracks].filter(([, t]) => t.source === 'screen').map(([mid, t]) => [t.participantId, mid])); },
  get mutedByOperator() { return ui.noticeCode('info') === 'mute.byOperator'; },
  admit: (id) => sendModeration('admit', { participant_id: id }),
  deny: (id) => sendModeration('deny', { participant_id: id }),
  remove: (id) => sendModeration('remove', { participant_id: id }),
  muteParticipant: (id) => sendModeration('mute_participant', { participant_id: id }),
  endConsult: () => sendModeration('end_consult'),
  sendChat: (text) => app.session?.channel?.sendChat(text) ?? false,
  sendImage,
  startShare,
  stopShare: () => stopShare(),
  sha256: (bytes) => sha256Hex(bytes),
};

init();
