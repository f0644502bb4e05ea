// Per-tile indicators of what the server adapts: the connection-quality bars, the label of the
// video layer received, and the overlay when that video is paused. Each also sets a data
// attribute on the tile (data-quality, data-layer, data-video-paused) for tests and styling.

import { setLabel, setText } from './i18n.js';

export const QUALITIES = ['good', 'fair', 'poor'];
export const LAYER_RIDS = ['q', 'h', 'f']; // lowest first, as in `video_layers`

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

/** state: {layer: rid|null, paused: null|'bandwidth'|'unavailable'}, or null (nothing known yet). */
export function renderLayer(tileEl, state) {
  const layer = typeof state?.layer === 'string' ? state.layer : null;
  const paused = typeof state?.paused === 'string' ? state.paused : null;
  tileEl.dataset.layer = layer ?? '';
  tileEl.dataset.videoPaused = paused ?? '';

  const label = tileEl.querySelector('.layer');
  if (label) {
    const known = !paused && LAYER_RIDS.includes(layer);
    label.hidden = !known;
    if (known) {
      label.dataset.level = layer;
      setText(label.querySelector('.layer-text'), `layer.${layer}`);
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
