// What the server says on the signaling socket: each message type (lobby, joined, participants,
// tracks, layers, quality, redirect), server errors (wait for the room, busy, fatal) and
// `closed`. Apart from session.js, which owns the socket: this module calls into it, and main.js
// hands onMessage to it (handleMessagesWith) so the two do not import each other.

import * as ui from './ui.js';
import { hasKey } from './i18n.js';
import { app, note, renderStatus, setState } from './state.js';
import { ensureMedia, mutedByServer, releaseMedia } from './localmedia.js';
import { MODERATOR_ROLES, SHARE_ROLES, learnIdentity } from './role.js';
import { onQuality, renderQualityNotice, sendPreference } from './quality.js';
import { decideWaiting } from './moderation.js';
import { connect, connectionLost, endSession, fail, redirected, resumed, startCall } from './session.js';

const CLOSED_REASONS = ['denied', 'removed', 'consult_ended'];

const WAIT_RETRY_MS = 3000; // patient waiting for the consult to be opened

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

export function onMessage(session, msg) {
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
