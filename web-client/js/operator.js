// The clinic operator's page: the API key (from `#key=` in the link the server prints, then
// remembered), creating a consult with its participants, the invite links (copy, share, join as
// the clinic), and the clinic's consults (status, end, audit trail, summary).

import { applyI18n, detectLang, getLang, setLang, setText, t } from './i18n.js';
import { ApiError, api, auditTable, fmtTime, roleName, storeKey, storedKey, takeKeyFromHash } from './api.js';

const $ = (id) => document.getElementById(id);

const state = {
  key: null,
  consults: [],
  lastInvites: null, // {consult, invites}
  openAudit: new Map(), // consult id -> events (shown)
};

// ---------- key ----------

function showKeyForm(errorKey) {
  $('key-card').hidden = false;
  $('create-card').hidden = true;
  $('invites-card').hidden = true;
  $('list-card').hidden = true;
  $('btn-forget').hidden = true;
  showError(errorKey);
  $('key-input').focus();
}

function showMain() {
  $('key-card').hidden = true;
  $('create-card').hidden = false;
  $('list-card').hidden = false;
  $('btn-forget').hidden = false;
}

function showError(key, vars) {
  const el = $('page-error');
  el.hidden = !key;
  if (key) setText(el, key, vars);
}

function apiErrorText(err) {
  return err instanceof ApiError ? `${err.message} (${err.code})` : String(err?.message ?? err);
}

/** Runs an API call; a refused key brings back the key form. */
async function call(path, opts) {
  try {
    return await api(state.key, path, opts);
  } catch (err) {
    if (err instanceof ApiError && err.status === 401) {
      storeKey(null);
      state.key = null;
      showKeyForm('op.keyBad');
    }
    throw err;
  }
}

async function useKey(key) {
  state.key = key;
  storeKey(key);
  showMain();
  showError(null);
  await refresh();
}

// ---------- create ----------

function addRow({ name = '', role = 'patient', lobby } = {}) {
  const row = $('row-template').content.firstElementChild.cloneNode(true);
  applyI18n(row);
  row.querySelector('[name=name]').value = name;
  const roleSel = row.querySelector('[name=role]');
  const lobbyBox = row.querySelector('[name=lobby]');
  roleSel.value = role;
  lobbyBox.checked = lobby ?? role === 'patient';
  // Patients wait in the lobby by default; the operator may change it per person.
  roleSel.addEventListener('change', () => {
    if (!lobbyBox.dataset.touched) lobbyBox.checked = roleSel.value === 'patient';
  });
  lobbyBox.addEventListener('change', () => (lobbyBox.dataset.touched = '1'));
  row.querySelector('.row-remove').addEventListener('click', () => {
    row.remove();
    renderRowButtons();
  });
  $('p-rows').append(row);
  renderRowButtons();
  return row;
}

function renderRowButtons() {
  const rows = $('p-rows').querySelectorAll('.prow');
  for (const r of rows) r.querySelector('.row-remove').disabled = rows.length <= 1;
}

function formProblem(title, participants) {
  if (!title) return 'op.needTitle';
  if (!participants.length) return 'op.needOne';
  if (participants.some((p) => !p.name)) return 'op.needNames';
  return null;
}

async function onCreate(ev) {
  ev.preventDefault();
  const title = $('c-title').value.trim();
  const rows = [...$('p-rows').querySelectorAll('.prow')];
  const participants = rows
    .map((r) => ({
      name: r.querySelector('[name=name]').value.trim(),
      role: r.querySelector('[name=role]').value,
      lobby: r.querySelector('[name=lobby]').checked,
    }))
    .filter((p, i, all) => p.name || all.length === 1);
  const problem = formProblem(title, participants);
  const err = $('create-error');
  err.hidden = !problem;
  if (problem) {
    setText(err, problem);
    return;
  }
  const body = { title, participants };
  const when = $('c-when').value;
  if (when) body.scheduled_at = new Date(when).toISOString();
  const hours = Number($('c-expires').value);
  if (Number.isInteger(hours) && hours >= 1 && hours <= 168) body.expires_in_hours = hours;
  const btn = $('btn-create');
  btn.disabled = true;
  setText(btn, 'op.creating');
  try {
    const res = await call('/consults', { method: 'POST', body });
    state.lastInvites = res;
    renderInvites();
    $('create-form').reset();
    $('p-rows').replaceChildren();
    addDefaultRows();
    await refresh();
    $('invites-card').scrollIntoView({ behavior: 'smooth', block: 'start' });
  } catch (e) {
    err.hidden = false;
    setText(err, 'op.error', { message: apiErrorText(e) });
  } finally {
    btn.disabled = false;
    setText(btn, 'op.create');
  }
}

function addDefaultRows() {
  addRow({ role: 'specialist', lobby: false });
  addRow({ role: 'patient', lobby: true });
}

// ---------- invites ----------

function absoluteLink(link) {
  try {
    return new URL(link, location.origin).href;
  } catch {
    return link;
  }
}

async function copyText(text, btn) {
  try {
    await navigator.clipboard.writeText(text);
  } catch {
    // Older browsers, or no permission: select-and-copy from a temporary field.
    const ta = document.createElement('textarea');
    ta.value = text;
    ta.setAttribute('readonly', '');
    ta.style.position = 'fixed';
    ta.style.opacity = '0';
    document.body.append(ta);
    ta.select();
    try {
      document.execCommand('copy');
    } catch {
      /* the link stays visible to copy by hand */
    }
    ta.remove();
  }
  setText(btn, 'op.copied');
  setTimeout(() => setText(btn, 'op.copy'), 2000);
}

function button(key, cls, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.className = `btn btn-small ${cls}`;
  setText(b, key);
  b.addEventListener('click', onClick);
  return b;
}

function renderInvites() {
  const data = state.lastInvites;
  const card = $('invites-card');
  if (!data) {
    card.hidden = true;
    return;
  }
  card.hidden = false;
  setText($('invites-heading'), 'op.invitesHeading', { title: data.consult?.title ?? '' });
  const list = $('invite-list');
  list.replaceChildren(
    ...(data.invites ?? []).map((inv) => {
      const li = document.createElement('li');
      li.dataset.role = inv.role;
      li.dataset.tokenId = inv.token_id ?? '';
      const link = absoluteLink(inv.link);
      const head = document.createElement('div');
      head.className = 'invite-head';
      const name = document.createElement('strong');
      name.textContent = inv.name;
      const role = document.createElement('span');
      role.textContent = roleName(inv.role);
      head.append(name, role);
      if (inv.lobby) {
        const pill = document.createElement('span');
        pill.className = 'pill';
        setText(pill, 'op.lobbyYes');
        head.append(pill);
      }
      if (inv.revoked) {
        const pill = document.createElement('span');
        pill.className = 'pill';
        pill.dataset.status = 'ended';
        setText(pill, 'op.revoked');
        head.append(pill);
        li.dataset.revoked = 'true';
      }
      if (inv.expires_at) {
        const exp = document.createElement('span');
        exp.className = 'muted';
        setText(exp, 'op.expiresAt', { at: fmtTime(inv.expires_at) });
        head.append(exp);
      }
      const code = document.createElement('div');
      code.className = 'invite-link';
      code.textContent = link;
      const actions = document.createElement('div');
      actions.className = 'actions';
      const copy = button('op.copy', 'btn-primary invite-copy', () => copyText(link, copy));
      actions.append(copy);
      if (typeof navigator.share === 'function') {
        actions.append(
          button('op.share', 'btn-line invite-share', () =>
            navigator.share({ title: data.consult?.title ?? '', text: `${data.consult?.title ?? ''} — ${inv.name}`, url: link }).catch(() => {}),
          ),
        );
      }
      if (inv.role === 'clinic') {
        actions.append(button('op.joinAsOperator', 'btn-ok invite-join', () => window.open(link, '_blank', 'noopener')));
      }
      li.append(head, code, actions);
      return li;
    }),
  );
}

// ---------- consults ----------

async function refresh() {
  try {
    const res = await call('/consults');
    state.consults = Array.isArray(res?.consults) ? res.consults : [];
    renderList();
  } catch (e) {
    if (state.key) showError('op.error', { message: apiErrorText(e) });
  }
}

function renderList() {
  const list = $('consult-list');
  const consults = [...state.consults].sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
  $('list-empty').hidden = consults.length > 0;
  list.replaceChildren(
    ...consults.map((c) => {
      const li = document.createElement('li');
      li.dataset.consultId = c.id;
      const head = document.createElement('div');
      head.className = 'consult-head';
      const title = document.createElement('strong');
      title.textContent = c.title;
      const pill = document.createElement('span');
      pill.className = 'pill';
      pill.dataset.status = c.status;
      setText(pill, c.status === 'ended' ? 'op.status.ended' : 'op.status.open');
      head.append(title, pill);
      const when = document.createElement('span');
      when.className = 'muted';
      if (c.scheduled_at) setText(when, 'op.scheduled', { at: fmtTime(c.scheduled_at) });
      else setText(when, 'op.created', { at: fmtTime(c.created_at) });
      head.append(when);
      const actions = document.createElement('div');
      actions.className = 'actions';
      actions.append(
        button('op.invites', 'btn-line consult-invites', async () => {
          try {
            state.lastInvites = await call(`/consults/${encodeURIComponent(c.id)}`);
            renderInvites();
            $('invites-card').scrollIntoView({ behavior: 'smooth', block: 'start' });
          } catch (e) {
            showError('op.error', { message: apiErrorText(e) });
          }
        }),
        button('op.audit', 'btn-line consult-audit', () => toggleAudit(c.id)),
      );
      const summary = document.createElement('a');
      summary.className = 'btn btn-small btn-line consult-summary';
      summary.href = `summary.html?id=${encodeURIComponent(c.id)}&lang=${getLang()}`;
      setText(summary, 'op.summary');
      actions.append(summary);
      if (c.status !== 'ended') {
        actions.append(
          button('op.end', 'btn-danger consult-end', async () => {
            if (!window.confirm(t('op.confirmEnd', { title: c.title }))) return;
            try {
              await call(`/consults/${encodeURIComponent(c.id)}/end`, { method: 'POST' });
            } catch (e) {
              showError('op.error', { message: apiErrorText(e) });
            }
            await refresh();
          }),
        );
      }
      li.append(head, actions);
      if (state.openAudit.has(c.id)) li.append(auditTable(state.openAudit.get(c.id)));
      return li;
    }),
  );
}

async function toggleAudit(id) {
  if (state.openAudit.has(id)) {
    state.openAudit.delete(id);
    renderList();
    return;
  }
  try {
    const res = await call(`/consults/${encodeURIComponent(id)}/audit`);
    state.openAudit.set(id, res?.events ?? []);
    renderList();
  } catch (e) {
    showError('op.error', { message: apiErrorText(e) });
  }
}

// ---------- page ----------

function init() {
  const params = new URLSearchParams(location.search);
  setLang(detectLang(params));
  applyI18n(document);
  document.title = t('op.title');
  $('lang-switch').addEventListener('click', () => {
    setLang(getLang() === 'vi' ? 'en' : 'vi');
    const url = new URL(location.href);
    url.searchParams.set('lang', getLang());
    history.replaceState(null, '', url);
    applyI18n(document);
    document.title = t('op.title');
    renderInvites();
    renderList();
  });
  $('key-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const key = $('key-input').value.trim();
    if (key) useKey(key);
  });
  $('btn-forget').addEventListener('click', () => {
    storeKey(null);
    state.key = null;
    state.consults = [];
    state.lastInvites = null;
    showKeyForm(null);
  });
  $('btn-add-row').addEventListener('click', () => addRow().querySelector('[name=name]').focus());
  $('btn-refresh').addEventListener('click', refresh);
  $('create-form').addEventListener('submit', onCreate);
  addDefaultRows();

  const key = takeKeyFromHash() ?? storedKey();
  if (key) useKey(key);
  else showKeyForm(null);
}

/** Test hooks. */
window.__operator = {
  get key() { return state.key; },
  get consults() { return state.consults; },
  get lastInvites() { return state.lastInvites; },
  refresh,
};

init();
