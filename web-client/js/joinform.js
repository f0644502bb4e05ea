// Join-by-link parameters and the join form shown when the link does not carry them all.

import * as ui from './ui.js';

export const ROLES = ['specialist', 'clinic', 'patient', 'observer'];
const INVITE_RE = /^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$/; // a compact JWT
const ROOM_RE = /^[a-z0-9-]{1,64}$/; // PROTOCOL.md "Names"

export function validRoom(room) {
  return ROOM_RE.test(room ?? '');
}

export function validName(name) {
  const n = (name ?? '').trim();
  return n.length > 0 && [...n].length <= 64;
}

/**
 * The invite token of an invite link (`/?invite=<jwt>`), or null. A damaged token is still
 * returned (non-empty): the server says `unauthorized` and the page explains.
 */
export function inviteFromLink(params) {
  const invite = (params.get('invite') ?? '').trim();
  return invite ? invite : null;
}

export function looksLikeJwt(token) {
  return INVITE_RE.test(token ?? '');
}

/** {room, name, role} when the link carries all three and they are valid, else null. */
export function paramsFromLink(params) {
  const room = params.get('room');
  const name = params.get('name');
  const role = params.get('role');
  return validRoom(room) && validName(name) && ROLES.includes(role) ? { room, name: name.trim(), role } : null;
}

/** Sets link parameters without reloading (so a reload or a shared link joins the same way). */
export function updateUrl(changes) {
  const url = new URL(location.href);
  for (const [k, v] of Object.entries(changes)) url.searchParams.set(k, v);
  history.replaceState(null, '', url);
}

/** Shows the form, prefilled from the link; calls onJoin({room, name, role}) once valid. */
export function showJoinForm(params, onJoin) {
  const form = document.getElementById('join-form');
  const err = document.getElementById('join-error');
  form.room.value = params.get('room') ?? '';
  form.name.value = params.get('name') ?? '';
  if (ROLES.includes(params.get('role'))) form.role.value = params.get('role');
  ui.showScreen('join');
  form.onsubmit = (ev) => {
    ev.preventDefault();
    const room = form.room.value.trim().toLowerCase();
    const name = form.name.value.trim();
    const role = form.role.value;
    const problem = !validRoom(room) ? 'join.invalidRoom' : !validName(name) ? 'join.invalidName' : null;
    err.hidden = !problem;
    if (problem) {
      ui.setText(err, problem);
      (problem === 'join.invalidRoom' ? form.room : form.name).focus();
      return;
    }
    updateUrl({ room, name, role });
    onJoin({ room, name, role });
  };
}
