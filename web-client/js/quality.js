// Data saver and connection quality: the user's data-saver choice (remembered, sent to the
// server) and the weak-connection notice that suggests it. Apart because it is one feature with
// its own timer; the session only resets it and hands it `connection_quality`.

import * as ui from './ui.js';
import { rememberDataSaver } from './datasaver.js';
import { updateUrl } from './joinform.js';
import { app, note } from './state.js';

// The weak-connection notice waits until the link has stayed poor this long: the server's
// bandwidth estimate starts low for a few seconds after joining, even on a good link.
const POOR_NOTICE_DELAY_MS = 10_000;

/** Turns data saver on or off: tells the server (if joined) and remembers it when `remember`. */
export function setDataSaver(on, { remember = true } = {}) {
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

export function sendPreference(session) {
  if (!session?.joined) return;
  session.sig.send('set_preference', { data_saver: app.dataSaver });
  note(`-> set_preference data_saver=${app.dataSaver}`);
}

export function onQuality(msg) {
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

export function resetPoor() {
  app.poorSince = null;
  clearTimeout(app.poorTimer);
}

/**
 * Suggests data saver once your own connection has stayed poor, unless it is on, was dismissed,
 * or would change nothing (no remote video is being sent to you, e.g. everyone's camera is off).
 */
export function renderQualityNotice() {
  const poorLong = app.poorSince != null && performance.now() - app.poorSince >= POOR_NOTICE_DELAY_MS;
  const receivesVideo = [...app.remotes.layers.values()].some((l) => l.paused !== 'unavailable');
  ui.showQualityNotice(poorLong && receivesVideo && !app.dataSaver && !app.qualityNoticeDismissed && !!app.session?.joined);
}
