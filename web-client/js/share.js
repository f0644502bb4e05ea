// Our screen share: getDisplayMedia onto the call's screen transceiver, and stopping it (by us,
// by the browser's "Stop sharing", or when the session ends). Apart because it owns
// app.sharing and nothing else.

import * as ui from './ui.js';
import { app, note } from './state.js';

export async function startShare() {
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

export function stopShare({ notify = true } = {}) {
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
