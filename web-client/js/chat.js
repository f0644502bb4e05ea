// The chat panel: messages, and images with progress (sender and receivers), thumbnails that
// open full size, and a download link. The wire protocol is in consultchannel.js;
// chatlink.js connects the two. On phones the panel covers the call; on wide screens it sits at the side.

import { setText, t } from './i18n.js';
import { roleKey } from './ui.js';

const $ = (id) => document.getElementById(id);

function timeOf(at) {
  const d = new Date(typeof at === 'number' ? at : Date.now());
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

export class ChatPanel {
  /** @param {{onSendText: (text) => boolean, onSendImage: (file) => void, myId: () => string|null}} opts */
  constructor(opts) {
    this.opts = opts;
    this.panel = $('chat-panel');
    this.list = $('chat-list');
    this.input = $('chat-input');
    this.unread = 0;
    this.items = new Map(); // 'in:<id>' | 'out:<id>' -> li
    this.urls = [];
    $('btn-chat').addEventListener('click', () => this.toggle());
    $('btn-chat-close').addEventListener('click', () => this.toggle(false));
    $('chat-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const text = this.input.value.trim();
      if (!text) return;
      if (this.opts.onSendText(text)) {
        this.input.value = '';
        this.note(null);
      } else {
        this.note('chat.notReady');
      }
    });
    $('chat-image').addEventListener('change', (ev) => {
      const file = ev.target.files?.[0];
      ev.target.value = '';
      if (file) this.opts.onSendImage(file);
    });
  }

  /** What this user may send: chat (all but observers), images (specialist, clinic). */
  setAbilities({ canChat, canSendImages }) {
    $('chat-form').hidden = !canChat;
    $('chat-image-label').hidden = !canSendImages;
    if (!canChat) this.note('chat.observer');
  }

  get isOpen() {
    return !this.panel.hidden;
  }

  toggle(open = !this.isOpen) {
    this.panel.hidden = !open;
    $('btn-chat').setAttribute('aria-expanded', String(open));
    document.body.classList.toggle('chat-open', open);
    if (open) {
      this.unread = 0;
      this.renderUnread();
      this.list.lastElementChild?.scrollIntoView({ block: 'end' });
      if (!$('chat-form').hidden && matchMedia('(min-width: 601px)').matches) this.input.focus();
    }
  }

  /** A short note under the list (not ready, observer, errors), or null to hide it. */
  note(key, vars) {
    const el = $('chat-note');
    el.hidden = !key;
    if (key) setText(el, key, vars);
  }

  renderUnread() {
    const el = $('chat-unread');
    el.hidden = this.unread === 0;
    el.textContent = this.unread > 9 ? '9+' : String(this.unread);
  }

  append(li, { mine = false } = {}) {
    $('chat-empty').hidden = true;
    this.list.append(li);
    if (this.isOpen) li.scrollIntoView({ block: 'end' });
    else if (!mine) {
      this.unread += 1;
      this.renderUnread();
    }
  }

  meta(sender, role, at, mine) {
    const meta = document.createElement('div');
    meta.className = 'chat-meta';
    const who = document.createElement('strong');
    if (mine) setText(who, 'chat.you');
    else who.textContent = sender ?? '…';
    meta.append(who);
    if (role && !mine) {
      const r = document.createElement('span');
      setText(r, roleKey(role));
      meta.append(' · ', r);
    }
    const time = document.createElement('time');
    time.textContent = timeOf(at);
    meta.append(' ', time);
    return meta;
  }

  addChat({ from, sender, role, text, at }) {
    const mine = from != null && from === this.opts.myId();
    const li = document.createElement('li');
    li.className = `chat-msg${mine ? ' mine' : ''}`;
    const body = document.createElement('p');
    body.className = 'chat-text';
    body.textContent = text;
    li.append(this.meta(sender, role, at, mine), body);
    this.append(li, { mine });
  }

  imageItem(key, img, mine) {
    const li = document.createElement('li');
    li.className = `chat-msg chat-image-msg${mine ? ' mine' : ''}`;
    li.dataset.image = key;
    const fig = document.createElement('figure');
    fig.className = 'chat-figure';
    const status = document.createElement('p');
    status.className = 'chat-status';
    const bar = document.createElement('progress');
    bar.max = img.chunks;
    bar.value = 0;
    fig.append(status, bar);
    li.append(this.meta(img.sender, null, Date.now(), mine), fig);
    this.items.set(key, li);
    this.append(li, { mine });
    return li;
  }

  progress(key, img, done, textKey) {
    const li = this.items.get(key);
    if (!li) return;
    const bar = li.querySelector('progress');
    if (bar) bar.value = done;
    const pct = img.chunks ? Math.floor((100 * done) / img.chunks) : 100;
    setText(li.querySelector('.chat-status'), textKey, { file: img.file, pct });
  }

  /** Replaces the progress with a thumbnail that opens full size, and a download link. */
  showImage(key, img, blob) {
    const li = this.items.get(key);
    if (!li || !blob) return;
    const url = URL.createObjectURL(blob);
    this.urls.push(url);
    const fig = li.querySelector('figure');
    const open = document.createElement('a');
    open.href = url;
    open.target = '_blank';
    open.rel = 'noopener';
    open.className = 'chat-thumb';
    open.setAttribute('aria-label', t('image.open', { file: img.file }));
    open.title = img.file;
    const pic = document.createElement('img');
    pic.src = url;
    pic.alt = img.file;
    pic.loading = 'lazy';
    open.append(pic);
    const cap = document.createElement('figcaption');
    const name = document.createElement('span');
    name.className = 'chat-file';
    name.textContent = img.file;
    const dl = document.createElement('a');
    dl.href = url;
    dl.download = img.file;
    dl.className = 'chat-download';
    setText(dl, 'image.download');
    cap.append(name, dl);
    fig.replaceChildren(open, cap);
  }

  failed(key, img, textKey) {
    const li = this.items.get(key);
    if (!li) return;
    li.classList.add('failed');
    li.querySelector('progress')?.remove();
    const status = li.querySelector('.chat-status');
    if (status) setText(status, textKey, { file: img.file });
  }

  // Outgoing images (ours): id is our own id.
  outgoingStart(img) {
    this.imageItem(`out:${img.id}`, img, true);
    this.progress(`out:${img.id}`, img, 0, 'image.sending');
  }
  outgoingProgress(img) {
    this.progress(`out:${img.id}`, img, img.acked, 'image.sending');
  }
  outgoingDone(img) {
    this.showImage(`out:${img.id}`, img, img.blob);
  }
  outgoingFailed(img, code) {
    const key = { forbidden: 'image.forbidden', too_large: 'image.tooLarge', busy: 'image.busy' }[code] ?? 'image.failed';
    this.failed(`out:${img.id}`, img, key);
  }

  // Incoming images: id is the relay id.
  incomingStart(img) {
    this.imageItem(`in:${img.id}`, img, false);
    this.progress(`in:${img.id}`, img, 0, 'image.receiving');
  }
  incomingProgress(img) {
    this.progress(`in:${img.id}`, img, img.received, 'image.receiving');
  }
  incomingDone(img) {
    this.showImage(`in:${img.id}`, img, img.blob);
  }
  incomingAbort(img) {
    this.failed(`in:${img.id}`, img, 'image.aborted');
  }
}
