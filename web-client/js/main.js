// Page wiring: join by invite link (`?invite=`), by open-join link (`?room=&name=&role=`) or
// form; the page's buttons; and the test hooks on window.consult and window.__consult. The
// connection lifecycle (join, lobby, wait, reconnect, leave, closed) is in session.js and
// messages.js; local media, role, data saver, chat and images, moderation and screen share
// each have their own module, all sharing the one state object of state.js.

import { detectLang, getLang, setLang } from './i18n.js';
import { initialDataSaver } from './datasaver.js';
import { inviteFromLink, paramsFromLink, showJoinForm, updateUrl } from './joinform.js';
import { sha256Hex } from './consultchannel.js';
import * as ui from './ui.js';
import { app, setState } from './state.js';
import { ensureMedia, renderLocal, toggleMute } from './localmedia.js';
import { applyRole } from './role.js';
import { renderQualityNotice, setDataSaver } from './quality.js';
import { sendImage } from './chatlink.js';
import { endConsultAsked, onTileModeration, sendModeration } from './moderation.js';
import { startShare, stopShare } from './share.js';
import { connect, handleMessagesWith, leave } from './session.js';
import { onMessage } from './messages.js';

handleMessagesWith(onMessage);

// Stays with the page: the link, the join form and the rejoin button all start a join here.
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
