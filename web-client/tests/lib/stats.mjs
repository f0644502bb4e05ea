// In-page readers of WebRTC stats and of the client's adaptation hooks (window.consult), for the
// simulcast and data-saver tests.

/**
 * The page's outbound camera encodings: [{rid, bytesSent, frameWidth, frameHeight, active}], by
 * rid. The screen-share transceiver (`window.consult.screenMid`) is left out.
 */
export function outboundVideo(page) {
  return page.evaluate(async () => {
    const pc = window.consult?.pc;
    if (!pc) return [];
    const screenMid = window.consult.screenMid ?? null;
    const out = [];
    (await pc.getStats()).forEach((r) => {
      if (r.type !== 'outbound-rtp' || r.kind !== 'video') return;
      if (screenMid != null && r.mid === screenMid) return;
      out.push({
        rid: r.rid ?? null,
        bytesSent: r.bytesSent ?? 0,
        frameWidth: r.frameWidth ?? 0,
        frameHeight: r.frameHeight ?? 0,
        active: r.active ?? null,
        scalabilityMode: r.scalabilityMode ?? null,
      });
    });
    return out.sort((a, b) => String(a.rid).localeCompare(String(b.rid)));
  });
}

/** The page's inbound video streams: [{mid, from, framesDecoded, frameWidth, frameHeight}]. */
export function inboundVideo(page) {
  return page.evaluate(async () => {
    const c = window.consult;
    const pc = c?.pc;
    if (!pc) return [];
    const trackMid = new Map(pc.getTransceivers().map((t) => [t.receiver.track?.id, t.mid]));
    const out = [];
    (await pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp' || r.kind !== 'video') return;
      const mid = r.mid ?? trackMid.get(r.trackIdentifier) ?? null;
      out.push({
        mid,
        from: (mid != null && c.tracks.get(mid)?.participantId) || null,
        framesDecoded: r.framesDecoded ?? 0,
        frameWidth: r.frameWidth ?? 0,
        frameHeight: r.frameHeight ?? 0,
      });
    });
    return out;
  });
}

/** What the page was told it receives: [{mid, participantId, layer, temporal, paused, kind}]. */
export function layersOf(page) {
  return page.evaluate(() =>
    [...(window.consult?.layers ?? new Map())].map(([mid, l]) => ({
      mid,
      participantId: l.participantId,
      layer: l.layer,
      temporal: l.temporal,
      paused: l.paused,
      kind: window.consult.tracks.get(mid)?.kind ?? null,
    })),
  );
}

/**
 * A remote tile's video label beside what getStats says is decoded on its mid: {height
 * (frameHeight), text (the label, '' when hidden), shown (data-received-height), switching
 * (data-layer-switching), lowWord (the page's own word for the lowest layer)}.
 */
export function tileLabel(page, participantId, mid) {
  return page.evaluate(
    async ({ id, mid }) => {
      const { t } = await import('/js/i18n.js'); // the page's instance: its language
      let height = 0;
      let at = -1;
      (await window.consult.pc.getStats()).forEach((r) => {
        if (r.type !== 'inbound-rtp' || r.kind !== 'video' || r.mid !== mid) return;
        if ((r.lastPacketReceivedTimestamp ?? 0) < at) return;
        at = r.lastPacketReceivedTimestamp ?? 0;
        height = r.frameHeight ?? 0;
      });
      const tile = document.querySelector(`[data-participant-id="${id}"]`);
      const label = tile?.querySelector('.layer');
      return {
        height,
        text: label && !label.hidden ? label.querySelector('.layer-text').textContent : '',
        shown: tile?.dataset.receivedHeight ?? '',
        switching: tile?.dataset.layerSwitching ?? '',
        lowWord: t('layer.q'),
      };
    },
    { id: participantId, mid },
  );
}

/** Mids of the remote video tracks the page was told about (track_published), by publisher id. */
export function remoteVideoMids(page) {
  return page.evaluate(() =>
    Object.fromEntries([...window.consult.tracks].filter(([, t]) => t.kind === 'video').map(([mid, t]) => [t.participantId, mid])),
  );
}

export function bytesByRid(outbound) {
  return Object.fromEntries(outbound.map((e) => [e.rid, e.bytesSent]));
}

export function describeOutbound(outbound) {
  return outbound.map((e) => `${e.rid}: ${e.bytesSent} B ${e.frameWidth}x${e.frameHeight} active=${e.active} ${e.scalabilityMode ?? ''}`).join('; ');
}

/**
 * The page's inbound RTP by mid: {mid: {kind, from, packets, framesDecoded, samples}}. `from` is
 * the publisher as the page knows it now (null once the track was unpublished).
 */
export function inboundByMid(page) {
  return page.evaluate(async () => {
    const c = window.consult;
    const pc = c?.pc;
    if (!pc) return {};
    const trackMid = new Map(pc.getTransceivers().map((t) => [t.receiver.track?.id, t.mid]));
    const out = {};
    (await pc.getStats()).forEach((r) => {
      if (r.type !== 'inbound-rtp') return;
      const mid = r.mid ?? trackMid.get(r.trackIdentifier) ?? null;
      if (mid == null) return;
      out[mid] = {
        kind: r.kind,
        from: c.tracks.get(mid)?.participantId ?? null,
        packets: r.packetsReceived ?? 0,
        framesDecoded: r.framesDecoded ?? 0,
        samples: r.totalSamplesReceived ?? 0,
      };
    });
    return out;
  });
}
