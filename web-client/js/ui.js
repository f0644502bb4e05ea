// DOM: screens, status line, notices, control buttons and participant tiles.
// Every translatable text is set through data-i18n so a language switch re-renders it.

import { applyI18n, setText, t } from './i18n.js';
import { renderLayer, renderQuality } from './indicators.js';

export { setText };

const $ = (id) => document.getElementById(id);

export function showScreen(name) {
  for (const s of ['join', 'lobby', 'call', 'end']) $(`${s}-screen`).hidden = s !== name;
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

/** The end screen; `rejoin: false` hides "Rejoin" (denied, removed, ended, bad invite). */
/** The i18n key a notice shows now, or null. */
export function noticeCode(which) {
  const el = $(`${which}-notice`);
  return el.hidden ? null : el.dataset.code ?? null;
}

export function showEndScreen(headingKey, bodyKey, vars, { rejoin = true } = {}) {
  setText($('end-heading'), headingKey);
  setText($('end-body'), bodyKey, vars);
  $('btn-rejoin').hidden = !rejoin;
  showScreen('end');
}

export function setRoomLabel(room) {
  setText($('room-label'), 'call.room', { room });
}

/** The consult's title (invite joins) in place of the room name. */
export function setTitleLabel(title) {
  setText($('room-label'), 'call.title', { title });
}

// ---- lobby (waiting to be admitted) ----

/** The patient's waiting screen: greeting, consult title, optional camera preview. */
export function showLobby({ name, title, stream }) {
  if (name) setText($('lobby-hello'), 'lobby.hello', { name });
  else setText($('lobby-hello'), 'lobby.helloAnon');
  const titleEl = $('lobby-title');
  titleEl.hidden = !title;
  if (title) setText(titleEl, 'lobby.consult', { title });
  setLobbyPreview(stream);
  showScreen('lobby');
}

export function setLobbyPreview(stream) {
  const video = $('lobby-preview');
  const hasVideo = !!stream?.getVideoTracks().length;
  const src = hasVideo ? stream : null;
  if (video.srcObject !== src) video.srcObject = src;
  video.hidden = !hasVideo;
  setText($('lobby-hint'), hasVideo ? 'lobby.keepOpen' : 'lobby.keepOpenNoCam');
}

// ---- waiting list for the clinic and the specialist ----

/**
 * waiting: [{participant_id, name, role}]; onDecision(id, 'admit' | 'deny').
 * Returns true when someone new appeared (for the sound cue).
 */
let waitingShown = new Set();
export function renderWaiting(waiting, onDecision) {
  const panel = $('waiting-panel');
  const list = $('waiting-list');
  const ids = new Set(waiting.map((w) => w.participant_id));
  const fresh = waiting.some((w) => !waitingShown.has(w.participant_id));
  waitingShown = ids;
  list.replaceChildren(
    ...waiting.map((w) => {
      const li = document.createElement('li');
      li.dataset.waitingId = w.participant_id;
      const who = document.createElement('span');
      who.className = 'waiting-who';
      const name = document.createElement('strong');
      name.textContent = w.name ?? '…';
      const role = document.createElement('span');
      setText(role, roleKey(w.role));
      who.append(name, ' · ', role);
      const admit = document.createElement('button');
      admit.type = 'button';
      admit.className = 'btn btn-ok waiting-admit';
      setText(admit, 'waiting.admit');
      admit.addEventListener('click', () => onDecision(w.participant_id, 'admit', w));
      const deny = document.createElement('button');
      deny.type = 'button';
      deny.className = 'btn btn-quiet waiting-deny';
      setText(deny, 'waiting.deny');
      deny.addEventListener('click', () => onDecision(w.participant_id, 'deny', w));
      li.append(who, admit, deny);
      return li;
    }),
  );
  panel.hidden = waiting.length === 0;
  if (waiting.length) setText($('waiting-heading'), 'waiting.one', { count: waiting.length });
  panel.classList.toggle('fresh', fresh && waiting.length > 0);
  if (fresh) setTimeout(() => panel.classList.remove('fresh'), 4000);
  return fresh && waiting.length > 0;
}

/** A short two-tone chime (someone is waiting). Silently does nothing if audio is blocked. */
let audioCtx = null;
export function chime() {
  try {
    audioCtx ??= new AudioContext();
    const now = audioCtx.currentTime;
    for (const [i, f] of [[0, 880], [1, 1175]]) {
      const o = audioCtx.createOscillator();
      const g = audioCtx.createGain();
      o.frequency.value = f;
      g.gain.setValueAtTime(0.0001, now + i * 0.18);
      g.gain.exponentialRampToValueAtTime(0.2, now + i * 0.18 + 0.02);
      g.gain.exponentialRampToValueAtTime(0.0001, now + i * 0.18 + 0.16);
      o.connect(g).connect(audioCtx.destination);
      o.start(now + i * 0.18);
      o.stop(now + i * 0.18 + 0.18);
    }
  } catch {
    /* no sound */
  }
}

// ---- confirm dialog ----

/** Asks before a consequential action; resolves true on the confirming button. */
export function confirmAction(textKey, vars, okKey) {
  const dlg = $('confirm-dialog');
  setText($('confirm-text'), textKey, vars);
  setText($('confirm-ok'), okKey);
  applyI18n(dlg);
  return new Promise((resolve) => {
    dlg.addEventListener('close', () => resolve(dlg.returnValue === 'ok'), { once: true });
    dlg.returnValue = '';
    if (typeof dlg.showModal === 'function') dlg.showModal();
    else resolve(window.confirm($('confirm-text').textContent));
  });
}

// ---- role-dependent controls ----

/** Shows the controls a role has: share (specialist, clinic), end (clinic); observers have no mic/camera. */
export function setRoleControls({ role, canShare }) {
  const observer = role === 'observer';
  $('btn-mic').hidden = observer;
  $('btn-cam').hidden = observer;
  $('btn-share').hidden = !canShare;
  $('btn-end').hidden = role !== 'clinic';
  $('local-tile').hidden = observer;
  moderator = role === 'clinic';
  for (const tile of tiles.values()) renderTileActions(tile);
}

export function setShareControl(active) {
  const btn = $('btn-share');
  btn.setAttribute('aria-pressed', String(active));
  btn.classList.toggle('on', active);
  setText(btn.querySelector('.label'), active ? 'btn.shareStop' : 'btn.share');
  $('share-bar').hidden = !active;
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
  tile.querySelector('.name').textContent = name ? `${name} (${t('call.you')})` : t('call.you');
  tile.querySelector('.name').dataset.youName = name ?? '';
  if (role) setText(tile.querySelector('.role'), roleKey(role));
  else tile.querySelector('.role').textContent = '';
  tile.dataset.role = role ?? '';
  setBadges(tile, { audioMuted: audioMuted || !stream?.getAudioTracks().length, videoMuted: videoMuted || !hasVideo });
  setInitials(tile, name ?? '');
}

/** Re-renders everything after a language switch. */
export function rerender() {
  applyI18n(document);
  const you = document.querySelector('#local-tile .name');
  if (you.dataset.youName) you.textContent = `${you.dataset.youName} (${t('call.you')})`;
}

export function roleKey(role) {
  return ['specialist', 'clinic', 'patient', 'observer'].includes(role) ? `role.${role}` : 'role.unknown';
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
let moderator = false; // this user is the clinic operator: tiles get mute/remove buttons
let onTileAction = () => {};

/** fn(participantId, 'mute' | 'remove', info) from a tile's moderation buttons. */
export function onModeration(fn) {
  onTileAction = fn;
}

function renderTileActions(tile) {
  const box = tile.el.querySelector('.tile-actions');
  box.hidden = !moderator;
  const mute = box.querySelector('.tile-mute');
  mute.disabled = !!tile.info.audio_muted || !tile.audioTrack;
}

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
    const self = tile;
    el.querySelector('.tile-mute').addEventListener('click', () => onTileAction(id, 'mute', self.info));
    el.querySelector('.tile-remove').addEventListener('click', () => onTileAction(id, 'remove', self.info));
    $('grid').append(el);
    updateAlone();
  }
  tile.info = { ...tile.info, ...info };
  const { name, role } = tile.info;
  tile.el.dataset.role = role ?? 'unknown';
  tile.el.querySelector('.name').textContent = name ?? '…';
  setText(tile.el.querySelector('.role'), roleKey(role));
  setInitials(tile.el, name ?? '?');
  renderRemoteBadges(tile);
}

/** What this client receives of a participant's video: a layerView() of received.js, or null (nothing known). */
export function setTileLayer(id, state) {
  const tile = tiles.get(id);
  if (tile) renderLayer(tile.el, state);
}

/** The participant's connection dropped and it may come back (`participant_reconnecting`). */
export function setTileReconnecting(id, on) {
  const tile = tiles.get(id);
  if (!tile) return;
  tile.el.querySelector('.reconnecting').hidden = !on;
  tile.el.dataset.reconnecting = on ? 'true' : '';
}

export function setTileQuality(id, quality) {
  const tile = tiles.get(id);
  if (tile) renderQuality(tile.el, quality);
}

function renderRemoteBadges(tile) {
  const { audio_muted: a, video_muted: v } = tile.info;
  setBadges(tile.el, { audioMuted: !!a, videoMuted: !!v || !tile.videoTrack });
  renderTileActions(tile);
}

/** Whether a participant's tile already shows a video track. */
export function tileHasVideo(id) {
  return !!tiles.get(id)?.videoTrack;
}

// ---- remote screen share, shown large ----

const screens = new Map(); // participant_id -> track (the latest one is shown)

function renderScreen() {
  const view = $('screen-view');
  const entries = [...screens];
  const [id, track] = entries[entries.length - 1] ?? [];
  const video = view.querySelector('video');
  if (!track) {
    video.srcObject = null;
    view.hidden = true;
    delete view.dataset.sharer;
    $('stage').dataset.screen = '';
    return;
  }
  if (video.srcObject?.getVideoTracks()[0] !== track) {
    video.srcObject = new MediaStream([track]);
    video.play().catch(() => {});
  }
  view.dataset.sharer = id;
  view.hidden = false;
  $('stage').dataset.screen = '1';
  const name = tiles.get(id)?.info.name ?? '…';
  setText(view.querySelector('.screen-caption'), 'share.from', { name });
}

/** Shows a remote screen-share track large (moving it out of a tile if it was placed there). */
export function setScreenTrack(id, track) {
  removeTileTrack(track);
  screens.delete(id);
  screens.set(id, track);
  renderScreen();
}

export function removeTile(id) {
  if (screens.delete(id)) renderScreen();
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
  screens.clear();
  renderScreen();
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

/** Removes a track from whichever tile (or the screen view) shows it. */
export function removeTileTrack(track) {
  for (const [id, tr] of screens) {
    if (tr !== track) continue;
    screens.delete(id);
    renderScreen();
  }
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
