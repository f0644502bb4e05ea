// What this user may do (share, send images, chat, admit) given their role, and who we are as
// the server says (an invite join learns name, role and title from `lobby` / `joined`). Apart so
// the join flow, the message handling and the session read the same role rules.

import * as ui from './ui.js';
import { app } from './state.js';
import { chat } from './chatlink.js';
import { renderLocal } from './localmedia.js';

export const SHARE_ROLES = ['specialist', 'clinic'];
export const MODERATOR_ROLES = ['specialist', 'clinic']; // admit / deny

export function applyRole() {
  const role = app.params?.role ?? null;
  const call = app.session?.call;
  const canShare = SHARE_ROLES.includes(role) && !!navigator.mediaDevices?.getDisplayMedia && !!call?.canShareScreen;
  ui.setRoleControls({ role, canShare });
  chat.setAbilities({ canChat: !!role && role !== 'observer', canSendImages: SHARE_ROLES.includes(role) });
  if (role === 'observer') ui.setNotice('info', 'observer.notice');
}

/** Takes name, role and title from the server (`lobby`, `joined.you`): the invite decides them. */
export function learnIdentity({ name, role, title, room }) {
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
