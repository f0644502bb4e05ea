// Moderation sent by a clinic or specialist: admit / deny from the waiting list, mute or remove
// a participant, end the consult. Apart because it is outgoing messages and confirmations only,
// shared by the buttons, the tiles, the waiting list and the test hooks.

import * as ui from './ui.js';
import { app, note } from './state.js';

export function sendModeration(type, fields = {}) {
  const session = app.session;
  if (!session?.joined) return false;
  session.sig.send(type, fields);
  note(`-> ${type} ${fields.participant_id ?? ''}`);
  return true;
}

export async function decideWaiting(id, decision, info) {
  if (decision === 'deny' && !(await ui.confirmAction('confirm.deny', { name: info?.name ?? '' }, 'confirm.denyYes'))) return;
  sendModeration(decision === 'admit' ? 'admit' : 'deny', { participant_id: id });
}

export async function onTileModeration(id, action, info) {
  if (action === 'mute') {
    sendModeration('mute_participant', { participant_id: id });
  } else if (action === 'remove') {
    if (await ui.confirmAction('confirm.remove', { name: info?.name ?? '' }, 'confirm.removeYes')) {
      sendModeration('remove', { participant_id: id });
    }
  }
}

export async function endConsultAsked() {
  if (await ui.confirmAction('confirm.end', {}, 'confirm.endYes')) sendModeration('end_consult');
}
