// The consult API as the operator and summary pages use it (docs/API.md): JSON over HTTP with
// `Authorization: Bearer <operator key>`; errors are {"error":{"code","message"}}. Also the
// operator key's storage and a few formatting helpers shared by both pages.

import { getLang, setText, t } from './i18n.js';

const KEY_STORAGE = 'consult.operatorKey';

export function storedKey() {
  try {
    return localStorage.getItem(KEY_STORAGE) || null;
  } catch {
    return null;
  }
}

export function storeKey(key) {
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key);
    else localStorage.removeItem(KEY_STORAGE);
  } catch {
    /* storage blocked: the key lives for this page only */
  }
}

/**
 * The key from `#key=...` (the link the server prints), removed from the address bar so it
 * does not stay in history or get shared by mistake. Returns null without one.
 */
export function takeKeyFromHash(loc = location) {
  const hash = new URLSearchParams(loc.hash.replace(/^#/, ''));
  const key = hash.get('key');
  if (!key) return null;
  hash.delete('key');
  const rest = hash.toString();
  history.replaceState(null, '', `${loc.pathname}${loc.search}${rest ? '#' + rest : ''}`);
  return key.trim();
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code || `http_${status}`;
  }
}

/** Calls the API; resolves with the parsed JSON body (or null for an empty one). */
export async function api(key, path, { method = 'GET', body } = {}) {
  const headers = { Accept: 'application/json' };
  if (key) headers.Authorization = `Bearer ${key}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let res;
  try {
    res = await fetch(`/api/v1${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(0, 'network', err?.message ?? 'network error');
  }
  const text = await res.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!res.ok) throw new ApiError(res.status, data?.error?.code, data?.error?.message ?? text.slice(0, 200));
  return data;
}

function locale() {
  return getLang() === 'vi' ? 'vi-VN' : 'en-GB';
}

/** A date-time for people (local time zone), or '' for none. */
export function fmtTime(value) {
  if (!value) return '';
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) return String(value);
  return d.toLocaleString(locale(), { dateStyle: 'short', timeStyle: 'short' });
}

export function fmtDuration(seconds) {
  const s = Math.max(0, Math.round(Number(seconds) || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const r = s % 60;
  if (h) return t('dur.hm', { h, m: String(m).padStart(2, '0') });
  return m ? t('dur.ms', { m, s: String(r).padStart(2, '0') }) : t('dur.s', { s: r });
}

export function fmtPercent(share) {
  if (share == null || Number.isNaN(Number(share))) return '—';
  return `${(Number(share) * 100).toFixed(0)} %`;
}

function cell(tag, text) {
  const el = document.createElement(tag);
  el.textContent = text ?? '';
  return el;
}

/** A table element from header i18n keys and rows of cell texts. */
export function table(headKeys, rows) {
  const wrap = document.createElement('div');
  wrap.className = 'table-wrap';
  const tbl = document.createElement('table');
  tbl.className = 'data';
  const head = document.createElement('tr');
  for (const k of headKeys) {
    const th = document.createElement('th');
    setText(th, k);
    head.append(th);
  }
  const thead = document.createElement('thead');
  thead.append(head);
  const tbody = document.createElement('tbody');
  for (const r of rows) {
    const tr = document.createElement('tr');
    for (const c of r) tr.append(cell('td', c));
    tbody.append(tr);
  }
  tbl.append(thead, tbody);
  wrap.append(tbl);
  return wrap;
}

export function roleName(role) {
  return ['specialist', 'clinic', 'patient', 'observer'].includes(role) ? t(`role.${role}`) : role ?? '';
}

/** The audit trail as a table (or a "no events" line). */
export function auditTable(events) {
  if (!events?.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    setText(p, 'audit.none');
    return p;
  }
  const actionText = (a) => (['created', 'invited', 'joined', 'waiting', 'admitted', 'denied', 'muted', 'removed', 'left', 'ended'].includes(a) ? t(`audit.${a}`) : a);
  const rows = events.map((e) => [
    fmtTime(e.at),
    e.actor_role ? `${e.actor ?? ''} (${roleName(e.actor_role)})` : e.actor ?? '',
    actionText(e.action),
    e.subject ?? '',
    ['specialist', 'clinic', 'patient', 'observer'].includes(e.detail) ? roleName(e.detail) : e.detail ?? '',
  ]);
  return table(['audit.at', 'audit.actor', 'audit.action', 'audit.subject', 'audit.detail'], rows);
}
