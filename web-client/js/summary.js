// A consult's summary for the operator: duration, each participant's time and the media
// quality they received, and the audit trail. `summary.html?id=<consult id>`; the operator key
// comes from localStorage (set by operator.html).

import { applyI18n, detectLang, getLang, setLang, setText, t } from './i18n.js';
import { ApiError, api, auditTable, fmtDuration, fmtPercent, fmtTime, roleName, storedKey, table } from './api.js';

const $ = (id) => document.getElementById(id);
let data = null; // {summary, audit}

function showError(key, vars) {
  $('loading').hidden = true;
  const el = $('page-error');
  el.hidden = !key;
  if (key) setText(el, key, vars);
}

function stat(labelKey, value) {
  const div = document.createElement('div');
  const dt = document.createElement('dt');
  setText(dt, labelKey);
  const dd = document.createElement('dd');
  dd.textContent = value;
  div.append(dt, dd);
  return div;
}

function render() {
  if (!data) return;
  const { summary, audit } = data;
  const c = summary.consult ?? {};
  $('loading').hidden = true;
  $('overview').hidden = false;
  $('participants').hidden = false;
  $('audit').hidden = false;
  $('s-title').textContent = c.title ?? c.id ?? '';
  document.title = `${t('sum.title')}: ${c.title ?? ''}`;
  const stats = [
    stat('sum.duration', summary.duration_s == null ? '—' : fmtDuration(summary.duration_s)),
    stat('sum.status', t(c.status === 'ended' ? 'op.status.ended' : 'op.status.open')),
    stat('sum.created', fmtTime(c.created_at)),
  ];
  if (c.ended_at) stats.push(stat('sum.ended', fmtTime(c.ended_at)));
  $('s-stats').replaceChildren(...stats);
  const ps = summary.participants ?? [];
  if (!ps.length) {
    const p = document.createElement('p');
    p.className = 'muted';
    setText(p, 'sum.noParticipants');
    $('s-participants').replaceChildren(p);
  } else {
    const rows = ps.map((p) => [
      p.name,
      roleName(p.role),
      fmtDuration(p.seconds),
      p.median_receive_kbps == null ? '—' : String(Math.round(p.median_receive_kbps)),
      fmtPercent(p.low_layer_share),
      fmtPercent(p.paused_share),
      p.loss_percent == null ? '—' : `${Number(p.loss_percent).toFixed(1)} %`,
    ]);
    $('s-participants').replaceChildren(table(['sum.name', 'sum.role', 'sum.time', 'sum.kbps', 'sum.low', 'sum.paused', 'sum.loss'], rows));
  }
  $('s-audit').replaceChildren(auditTable(audit?.events ?? []));
}

async function init() {
  const params = new URLSearchParams(location.search);
  setLang(detectLang(params));
  applyI18n(document);
  document.title = t('sum.title');
  $('back').href = `operator.html?lang=${getLang()}`;
  $('lang-switch').addEventListener('click', () => {
    setLang(getLang() === 'vi' ? 'en' : 'vi');
    const url = new URL(location.href);
    url.searchParams.set('lang', getLang());
    history.replaceState(null, '', url);
    $('back').href = `operator.html?lang=${getLang()}`;
    applyI18n(document);
    document.title = t('sum.title');
    render();
  });
  const id = params.get('id');
  const key = storedKey();
  if (!id) return showError('sum.noId');
  if (!key) return showError('sum.noKey');
  try {
    const path = `/consults/${encodeURIComponent(id)}`;
    const [summary, audit] = await Promise.all([api(key, `${path}/summary`), api(key, `${path}/audit`)]);
    data = { summary, audit };
    render();
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) showError('op.keyBad');
    else showError('op.error', { message: err instanceof ApiError ? `${err.message} (${err.code})` : String(err) });
  }
}

window.__summary = { get data() { return data; } };

init();
