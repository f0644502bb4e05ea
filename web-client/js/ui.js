// DOM: screens, status line, notices, control buttons and participant tiles.
// Every translatable text is set through data-i18n so a language switch re-renders it.

import { applyI18n, setText, t } from './i18n.js';
import { renderLayer, renderQuality } from './indicators.js';

export { setText };

const $ = (id) => document.getElementById(id);

export function showScreen(name) {
  for (const s of ['join', 'call', 'end']) $(`${s}-screen`).hidden = s !== name;
  document.body.dataset.screen = name;
}

/** kind: 'ok' | 'busy' | 'warn' | 'bad' | 'idle' (the dot's colour). */
export function setStatus(key, kind) {
  setText($('status-text'), key);
  $('status').dataset.kind = kind;
}

/** Shows (or with key null hides) a notice: 'error' or 'media'. */
export function setNotice(which, key, vars) {
  const el = $(`${which}-notice`);
  if (!key) {
    el.hidden = true;
    delete el.dataset.code;
    return;
  }
  setText(el, key, vars);
  el.dataset.code = key;
  el.hidden = false;
}

export function showEndScreen(headingKey, bodyKey, vars) {
  setText($('end-heading'), headingKey);
  setText($('end-body'), bodyKey, vars);
  showScreen('end');
}

export function setRoomLabel(room) {
  setText($('room-label'), 'call.room', { room });
}

/** Mic / camera buttons: pressed = muted; disabled when there is no such device. */
export function setControl(kind, { muted, available }) {
  const btn = $(kind === 'audio' ? 'btn-mic' : 'btn-cam');
  btn.disabled = !available;
  btn.setAttribute('aria-pressed', String(muted || !available));
  btn.classList.toggle('off', muted || !available);
  const keys = kind === 'audio' ? ['btn.noMic', 'btn.micOn', 'btn.micOff'] : ['btn.noCam', 'btn.camOn', 'btn.camOff'];
  const key = !available ? keys[0] : muted ? keys[1] : keys[2];
  setText(btn.querySelector('.label'), key);
}

/** The data-saver switch in the controls bar. */
export function setDataSaverControl(on) {
  const btn = $('btn-saver');
  btn.setAttribute('aria-checked', String(on));
  btn.classList.toggle('on', on);
  setText(btn.querySelector('.state'), on ? 'btn.dataSaverOn' : 'btn.dataSaverOff');
}

/** Your own connection quality, on the local tile. */
export function setLocalQuality(quality) {
  renderQuality($('local-tile'), quality);
}

/** The gentle "your link is weak, try data saver" notice. */
export function showQualityNotice(show) {
  $('quality-notice').hidden = !show;
}

export function setLocal({ stream, name, role, audioMuted, videoMuted }) {
  const tile = $('local-tile');
  const video = tile.querySelector('video');
  const hasVideo = !!stream?.getVideoTracks().length;
  // A media element holding a stream without video never loads, and that delays the page's load event.
  const src = hasVideo ? stream : null;
  if (video.srcObject !== src) video.srcObject = src;
  tile.querySelector('.name').textContent = `${name} (${t('call.you')})`;
  tile.querySelector('.name').dataset.youName = name;
  setText(tile.querySelector('.role'), `role.${role}`);
  tile.dataset.role = role;
  setBadges(tile, { audioMuted: audioMuted || !stream?.getAudioTracks().length, videoMuted: videoMuted || !hasVideo });
  setInitials(tile, name);
}

/** Re-renders everything after a language switch. */
export function rerender() {
  applyI18n(document);
  const you = document.querySelector('#local-tile .name');
  if (you.dataset.youName) you.textContent = `${you.dataset.youName} (${t('call.you')})`;
}

function setInitials(tile, name) {
  const words = String(name).trim().split(/\s+/).filter(Boolean);
  const initials = words.length > 1 ? words[0][0] + words[words.length - 1][0] : (words[0] ?? '?').slice(0, 2);
  tile.querySelector('.initials').textContent = initials.toUpperCase();
}

function setBadges(tile, { audioMuted, videoMuted }) {
  tile.querySelector('.badge-mic').hidden = !audioMuted;
  tile.querySelector('.badge-cam').hidden = !videoMuted;
  tile.dataset.audioMuted = String(!!audioMuted);
  tile.dataset.videoMuted = String(!!videoMuted);
  tile.classList.toggle('no-video', !!videoMuted);
}

// ---- remote tiles ----

const tiles = new Map(); // participant_id -> {el, video, audio, videoTrack, audioTrack, info}
let onAudioBlocked = () => {};

export function onRemoteAudioBlocked(fn) {
  onAudioBlocked = fn;
}

function updateAlone() {
  $('alone').hidden = tiles.size > 0;
  $('grid').dataset.count = String(tiles.size);
  $('stage').dataset.remotes = String(tiles.size);
}

export function hasTile(id) {
  return tiles.has(id);
}

/** Creates or updates the tile of a remote participant. info: {name, role, audio_muted, video_muted} */
export function upsertTile(id, info) {
  let tile = tiles.get(id);
  if (!tile) {
    const el = $('tile-template').content.firstElementChild.cloneNode(true);
    el.dataset.participantId = id;
    applyI18n(el);
    tile = { el, video: el.querySelector('video'), audio: el.querySelector('audio'), videoTrack: null, audioTrack: null, info: {} };
    tiles.set(id, tile);
    $('grid').append(el);
    updateAlone();
  }
  tile.info = { ...tile.info, ...info };
  const { name, role } = tile.info;
  tile.el.dataset.role = role ?? 'unknown';
  tile.el.querySelector('.name').textContent = name ?? '…';
  setText(tile.el.querySelector('.role'), ['specialist', 'clinic', 'patient'].includes(role) ? `role.${role}` : 'role.unknown');
  setInitials(tile.el, name ?? '?');
  renderRemoteBadges(tile);
}

/** What this client receives of a participant's video: {layer, paused}, or null (nothing known). */
export function setTileLayer(id, state) {
  const tile = tiles.get(id);
  if (tile) renderLayer(tile.el, state);
}

export function setTileQuality(id, quality) {
  const tile = tiles.get(id);
  if (tile) renderQuality(tile.el, quality);
}

function renderRemoteBadges(tile) {
  const { audio_muted: a, video_muted: v } = tile.info;
  setBadges(tile.el, { audioMuted: !!a, videoMuted: !!v || !tile.videoTrack });
}

export function removeTile(id) {
  const tile = tiles.get(id);
  if (!tile) return;
  tile.video.srcObject = null;
  tile.audio.srcObject = null;
  tile.el.remove();
  tiles.delete(id);
  updateAlone();
}

export function clearTiles() {
  for (const id of [...tiles.keys()]) removeTile(id);
}

/** Shows a remote track in its participant's tile (creating the tile if needed). */
export function setTileTrack(id, track) {
  const current = tiles.get(id);
  if (current && (current.videoTrack === track || current.audioTrack === track)) return;
  removeTileTrack(track);
  if (!tiles.has(id)) upsertTile(id, {});
  const tile = tiles.get(id);
  if (track.kind === 'video') {
    tile.videoTrack = track;
    tile.video.srcObject = new MediaStream([track]);
    tile.video.play().catch(() => {});
  } else {
    tile.audioTrack = track;
    tile.audio.srcObject = new MediaStream([track]);
    tile.audio.play().catch((err) => {
      if (err?.name === 'NotAllowedError') onAudioBlocked();
    });
  }
  renderRemoteBadges(tile);
}

/** Removes a track from whichever tile shows it. */
export function removeTileTrack(track) {
  for (const tile of tiles.values()) {
    if (tile.videoTrack === track) {
      tile.videoTrack = null;
      tile.video.srcObject = null;
    } else if (tile.audioTrack === track) {
      tile.audioTrack = null;
      tile.audio.srcObject = null;
    } else continue;
    renderRemoteBadges(tile);
  }
}

export function setRemoteMuted(id, kind, muted) {
  const tile = tiles.get(id);
  if (!tile) return;
  tile.info[kind === 'audio' ? 'audio_muted' : 'video_muted'] = muted;
  renderRemoteBadges(tile);
}

/** Retries playing every remote audio element (after a user gesture). */
export function playAllAudio() {
  return Promise.all([...tiles.values()].map((tl) => (tl.audio.srcObject ? tl.audio.play().catch(() => {}) : null)));
}
