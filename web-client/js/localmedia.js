// Our own camera and microphone: acquired once per join, the local tile and mute buttons, and
// mute state set by us or by the clinic operator. Apart because the join flow, the session and
// the test hooks all use it, and it only reads the session (to send `mute`).

import * as ui from './ui.js';
import { acquireLocalMedia, stopStream } from './media.js';
import { app, note } from './state.js';

export function localTrack(kind) {
  const s = app.local?.stream;
  return (kind === 'audio' ? s?.getAudioTracks() : s?.getVideoTracks())?.[0] ?? null;
}

export function renderLocal() {
  const { name, role } = app.params;
  ui.setLocal({ stream: app.local?.stream ?? null, name, role, audioMuted: app.muted.audio, videoMuted: app.muted.video });
  for (const kind of ['audio', 'video']) ui.setControl(kind, { muted: app.muted[kind], available: !!localTrack(kind) });
}

export function isObserver() {
  return app.params?.role === 'observer';
}

export function ensureMedia() {
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

export function releaseMedia() {
  stopStream(app.local?.stream);
  app.local = null;
  app.mediaPromise = null;
}

export function toggleMute(kind) {
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
export function mutedByServer({ kind, muted, by }) {
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
