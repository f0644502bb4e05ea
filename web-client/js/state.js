// The page's one mutable state (`app`) and the status line that shows it. Every module reads and
// writes this same object, so it is created here and nowhere else; `note` (the debug log behind
// window.consult.log) sits with it because every module writes to it too.

import * as ui from './ui.js';
import { Remotes } from './remotes.js';

export const app = {
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

export function note(text) {
  app.log.push(`${(performance.now() / 1000).toFixed(2)} ${text}`);
  if (app.log.length > 300) app.log.shift();
}

export function setState(state) {
  app.state = state;
  document.body.dataset.state = state;
  renderStatus();
}

export function renderStatus() {
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
