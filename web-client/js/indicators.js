// Per-tile indicators of what the server adapts: the connection-quality bars, the label of the
// video actually received (and the layer it is switching to), and the overlay when that video is
// paused. Each also sets data attributes on the tile (data-quality, data-layer,
// data-received-height, data-layer-switching, data-video-paused) for tests and styling.

import { setLabel, setText } from './i18n.js';

export const QUALITIES = ['good', 'fair', 'poor'];

/** quality: 'good' | 'fair' | 'poor', or anything else for unknown (bars hidden). */
export function renderQuality(tileEl, quality) {
  const q = QUALITIES.includes(quality) ? quality : null;
  tileEl.dataset.quality = q ?? '';
  const bars = tileEl.querySelector('.bars');
  if (!bars) return;
  bars.hidden = !q;
  if (!q) return;
  bars.dataset.level = q;
  setLabel(bars, `quality.${q}`);
}

/**
 * view: layerView() of received.js, or null (nothing known yet). The label names what is
 * decoded; data-layer stays the server's target (what `layer_changed` said).
 */
export function renderLayer(tileEl, view) {
  const paused = typeof view?.paused === 'string' ? view.paused : null;
  tileEl.dataset.layer = typeof view?.target === 'string' ? view.target : '';
  tileEl.dataset.videoPaused = paused ?? '';
  tileEl.dataset.receivedHeight = view?.height ? String(view.height) : '';
  tileEl.dataset.layerSwitching = view?.next ? 'true' : '';

  const label = tileEl.querySelector('.layer');
  if (label) {
    const text = paused ? null : view?.text ?? null;
    label.hidden = !text;
    if (text) {
      label.dataset.level = view.level ?? '';
      setText(label.querySelector('.layer-text'), text.key, text.vars);
      const next = label.querySelector('.layer-next');
      next.hidden = !view.next;
      if (view.next) setText(next.querySelector('.layer-next-text'), view.next);
    }
  }

  const overlay = tileEl.querySelector('.paused');
  if (overlay) {
    overlay.hidden = !paused;
    if (paused) {
      overlay.dataset.reason = paused === 'bandwidth' ? 'bandwidth' : 'unavailable';
      setText(overlay.querySelector('.paused-text'), `paused.${overlay.dataset.reason}`);
    }
  }
}
