// One session (app.session: its socket and peer connection) from connect to teardown, and what
// keeps it alive: ICE restarts while media stalls, resume on a new socket as the same
// participant, redirects to the consult's node, a fresh join once our place is gone; and how it
// ends (fail, leave). The restart handling stays with the session because each calls the other
// (a lost connection connects again; a new peer connection starts the stall watch).

import * as ui from './ui.js';
import { Signaling, signalingUrl } from './signaling.js';
import { Call } from './call.js';
import {
  DEAD_NODE_RETRY_MS, ICE_RESTART_RETRY_MS, ICE_STALL_MS, InboundStall, MAX_DEAD_NODE_RETRIES, MAX_REDIRECTS,
  RECONNECT_GIVE_UP_MS, RESUME_WINDOW_MS, RX_POLL_MS, isNodeUrl, jittered, reconnectDelay,
} from './reconnect.js';
import { app, note, renderStatus, setState } from './state.js';
import { ensureMedia, isObserver, localTrack, mutedByServer, releaseMedia } from './localmedia.js';
import { applyRole } from './role.js';
import { attachChannel } from './chatlink.js';
import { resetPoor, sendPreference } from './quality.js';
import { decideWaiting } from './moderation.js';
import { stopShare } from './share.js';
import { inboundVideoByMid } from './received.js';

// The server's messages are handled in messages.js, which calls into this module (connect,
// startCall, the teardown): main.js hands its handler in so the two do not import each other.
let onMessage = null;

export function handleMessagesWith(fn) {
  onMessage = fn;
}

export function connect() {
  clearTimeout(app.timer);
  endSession();
  app.resumeToken = null;
  const session = { sig: null, call: null, joined: false };
  app.session = session;
  setState(app.waiting ? 'waiting' : 'joining');
  openSignaling(session, null);
}

/** A new socket for `session`: a fresh join, or (with `resume`) back as the same participant. */
function openSignaling(session, resume) {
  const mine = (fn) => (...args) => {
    if (app.session === session) fn(session, ...args);
  };
  const url = app.nodeUrl ?? signalingUrl();
  // Hops are counted from the address we came in by.
  if (!app.nodeUrl) app.redirects = 0;
  session.resuming = resume;
  const sig = new Signaling(url, {
    onOpen: mine(() => {
      const { invite, room, name, role } = app.params;
      const creds = invite ? { invite } : { room, name, role };
      sig.send('join', resume ? { ...creds, resume } : creds);
      note(`-> join${invite ? ' (invite)' : ''}${resume ? ' (resume)' : ''}`);
    }),
    onMessage: (msg) => {
      if (app.session === session && session.sig === sig) onMessage(session, msg);
    },
    onClose: (info) => {
      if (app.session === session && session.sig === sig) onSignalingClosed(session, info);
    },
  });
  session.sig = sig;
  sig.connect();
}

/** Drops the current socket and peer connection (closing the socket is a `leave`). */
export function endSession() {
  const s = app.session;
  app.session = null;
  app.pcState = 'new';
  clearTimeout(app.iceTimer);
  app.iceTimer = null;
  clearTimeout(s?.inboundTimer);
  // A socket closed without `leave` keeps our place on the server (a lost connection); we are
  // giving this participant up, so say so and nobody sees it reconnecting.
  if (s?.joined) s.sig?.send('leave');
  stopShare({ notify: false });
  s?.channel?.close();
  s?.call?.close();
  s?.sig?.close();
  app.remotes.clear();
  app.waitingList = [];
  ui.renderWaiting([], decideWaiting);
  ui.setLocalQuality(null);
  resetPoor();
  ui.showQualityNotice(false);
}

export function startCall(session, videoLayers, { screen = false, iceServers = [] } = {}) {
  const call = new Call({
    iceServers,
    send: (type, fields) => {
      session.sig.send(type, fields);
      if (type !== 'candidate') note(`-> ${type}`);
    },
    onTrack: (t) => app.session === session && app.remotes.trackArrived(t),
    onTrackGone: (t) => app.session === session && app.remotes.trackGone(t),
    onConnectionState: (state) => app.session === session && onPcState(state),
    onError: (err) => {
      console.error('negotiation failed', err);
      note(`negotiation error: ${err?.message}`);
      if (app.session === session) ui.setNotice('error', 'error.bad_sdp');
    },
  });
  session.call = call;
  attachChannel(session, call);
  watchInbound(session);
  if (isObserver()) {
    call.publish(null, { receiveOnly: true });
    return;
  }
  const stream = ensureMedia().then((local) => {
    // Tell the others about what we do not send (muted, or no such device).
    for (const kind of ['audio', 'video']) {
      const track = kind === 'audio' ? local.stream.getAudioTracks()[0] : local.stream.getVideoTracks()[0];
      if (track) track.enabled = !app.muted[kind];
      if (app.session === session && (app.muted[kind] || !track)) session.sig.send('mute', { kind, muted: true });
    }
    return local.stream;
  });
  const videoCodec = new URLSearchParams(location.search).get('codec');
  call.publish(stream, { videoLayers, videoCodec, screen }).then(() => {
    if (app.session === session) applyRole(); // the share button needs the screen transceiver
  });
}

function onPcState(state) {
  note(`pc ${state}`);
  app.pcState = state;
  if (state === 'connected') {
    app.retries = 0;
    if (app.restarting) {
      app.restarting = false;
      ui.setNotice('info', null);
    }
    setState('connected');
    clearTimeout(app.iceTimer);
    app.iceTimer = null;
    if (app.session) app.session.iceLostAt = null;
  } else if (state === 'failed') {
    askIceRestart(app.session);
    renderStatus();
  } else {
    if (state === 'disconnected' && !app.iceTimer) {
      app.iceTimer = setTimeout(() => askIceRestart(app.session), ICE_STALL_MS);
    }
    renderStatus();
  }
}

/**
 * Media stalled (a network change, an outage): ask the server for an ICE restart, and again
 * while it stays down. A restart that cannot help within the grace period ends in a fresh join.
 */
function askIceRestart(session, { evenIfConnected = false } = {}) {
  clearTimeout(app.iceTimer);
  app.iceTimer = null;
  if (!session || app.session !== session) return;
  const stalled = session.inbound?.stalled;
  if (app.pcState === 'connected' && !evenIfConnected && !stalled) return;
  if (session.iceLostAt == null) session.iceLostAt = performance.now();
  // ICE itself down past the server's grace period: our place is gone, join afresh.
  if (app.pcState !== 'connected' && performance.now() - session.iceLostAt > RESUME_WINDOW_MS) {
    connectionLost(true);
    return;
  }
  if (session.sig?.isOpen && session.joined) {
    session.sig.send('ice_restart');
    note('-> ice_restart');
  }
  app.iceTimer = setTimeout(() => askIceRestart(session), ICE_RESTART_RETRY_MS);
}

/**
 * Polls inbound RTP while the call lasts; asks for an ICE restart when it stopped growing for
 * RX_STALL_MS after it had flowed (and media is not simply absent: nobody publishing). The same
 * sample tells each tile which video it really decodes (one getStats poll, not two).
 */
function watchInbound(session) {
  const watch = new InboundStall(performance.now());
  session.inbound = watch;
  const tick = async () => {
    if (app.session !== session || !session.call) return;
    let packets = 0;
    let video;
    try {
      const pc = session.call.pc;
      const stats = await pc.getStats();
      stats.forEach((s) => {
        if (s.type === 'inbound-rtp') packets += s.packetsReceived ?? 0;
      });
      video = inboundVideoByMid(stats, (trackId) => midOfTrack(pc, trackId));
    } catch {
      return; // closed
    }
    if (app.session !== session) return;
    // A label that fails to render must not stop the stall watch below.
    try {
      app.remotes.videoReceived(video, performance.now());
    } catch (err) {
      note(`video label: ${err?.message}`);
    }
    // Nothing to receive (alone, or the others publish nothing) is not a stall.
    const change = watch.update(packets, app.remotes.tracks.size > 0, performance.now());
    if (change === 'recovered' && app.pcState === 'connected') session.iceLostAt = null;
    if (change === 'stalled') {
      note(`no media for ${Math.round(watch.silentFor)} ms`);
      askIceRestart(session, { evenIfConnected: true });
    }
    session.inboundTimer = setTimeout(tick, RX_POLL_MS);
  };
  session.inboundTimer = setTimeout(tick, RX_POLL_MS);
}

/** For browsers whose inbound-rtp stats carry no mid (only the track's id). */
function midOfTrack(pc, trackId) {
  return pc.getTransceivers().find((t) => t.receiver.track?.id === trackId)?.mid ?? null;
}

/** Back on a new socket as the same participant: the peer connection and media went on. */
export function resumed(session, msg) {
  app.resumes += 1;
  app.retries = 0;
  const remotes = app.remotes;
  const present = new Set((msg.participants ?? []).map((p) => p.participant_id));
  for (const id of [...remotes.participants.keys()]) if (!present.has(id)) remotes.left(id);
  for (const p of msg.participants ?? []) {
    remotes.upsert(p);
    remotes.reconnectingChanged({ participant_id: p.participant_id, reconnecting: false });
  }
  ui.setNotice('error', null);
  sendPreference(session);
  // A mute toggled while the old socket was silently dead never reached the server: send it
  // again. Without one pending, the server's state is the newer (the operator may have muted
  // us meanwhile).
  for (const kind of ['audio', 'video']) {
    const pending = app.muteUnconfirmed[kind];
    const known = msg.you?.[`${kind}_muted`];
    if (pending != null) {
      session.sig.send('mute', { kind, muted: pending });
      note(`-> mute ${kind}=${pending} (again after the resume)`);
    } else if (typeof known === 'boolean' && known !== app.muted[kind] && localTrack(kind)) {
      mutedByServer({ kind, muted: known });
    }
  }
  // Media may have died with the socket (an address change) while ICE still says connected,
  // and Chromium takes 5-7 s to notice: after a socket that broke (1006) restart ICE at once.
  // A restart costs no media when the old path still works (the old pair carries it until the
  // new one is up).
  const broken = session.lostCode === 1006;
  if (app.pcState !== 'connected' || session.inbound?.stalled || broken) askIceRestart(session, { evenIfConnected: true });
  setState('connected');
}

/**
 * In a cluster the consult runs on another node: join there, the same way (fresh or resume).
 * The server closes this socket next; a few hops at most, or something is wrong.
 */
export function redirected(session, { url }) {
  const valid = isNodeUrl(url, location.protocol);
  app.redirects = (app.redirects ?? 0) + 1;
  if (!valid || app.redirects > MAX_REDIRECTS) {
    note(`redirect refused: ${url}`);
    app.nodeUrl = null;
    fail('error.generic', { code: 'redirect' });
    return;
  }
  note(`redirect -> ${url}`);
  app.nodeUrl = url;
  const old = session.sig;
  session.sig = null;
  old?.close();
  openSignaling(session, session.resuming);
}

function onSignalingClosed(session, { wasOpen, code }) {
  note(`ws closed code=${code} open=${wasOpen}`);
  // A node we were sent to that cannot be reached (it died): back to the address we came in
  // by, which knows where the consult runs now.
  // Bounded: a node the directory keeps naming but we cannot reach (a partition) gets the normal
  // backoff after a while.
  if (!wasOpen && app.nodeUrl) {
    app.nodeUrl = null;
    app.deadNodeRetries = (app.deadNodeRetries ?? 0) + 1;
    session.deadNode = app.deadNodeRetries <= MAX_DEAD_NODE_RETRIES;
  }
  session.lostCode = code;
  if (app.closedReason) return;
  if (session.joined && session.call && app.resumeToken) {
    resumeLater(session);
    return;
  }
  connectionLost(wasOpen);
}

/**
 * The socket dropped while in the consult: keep the peer connection (media may still flow) and
 * come back on a new socket as the same participant, with backoff and jitter. Past the
 * server's grace period a resume cannot work: join afresh.
 */
function resumeLater(session) {
  if (session.deadNode) {
    retrySoon(() => {
      if (app.session === session) openSignaling(session, app.resumeToken);
    });
    return;
  }
  app.retries += 1;
  if (app.retries === 1) app.lostAt = performance.now();
  if (performance.now() - app.lostAt > RESUME_WINDOW_MS) {
    connectionLost(true);
    return;
  }
  ui.setStatus('status.reconnecting', 'warn');
  clearTimeout(app.timer);
  // The first try at once (jittered): a phone that changed networks is usually reachable again.
  const delay = app.retries === 1 ? 100 + 200 * Math.random() : reconnectDelay(app.retries - 1);
  app.timer = setTimeout(() => {
    if (app.session === session) openSignaling(session, app.resumeToken);
  }, delay);
}

/** Again at the address we came in by, after a dead node: soon, jittered, no backoff. */
function retrySoon(fn) {
  ui.setStatus('status.reconnecting', 'warn');
  clearTimeout(app.timer);
  app.timer = setTimeout(fn, jittered(DEAD_NODE_RETRY_MS));
}

export function connectionLost(wasOpen) {
  if (app.session?.deadNode && !wasOpen) {
    endSession();
    setState(app.waiting ? 'waiting' : 'joining');
    retrySoon(connect);
    return;
  }
  endSession();
  app.retries += 1;
  if (app.retries === 1) app.lostAt = performance.now();
  if (performance.now() - app.lostAt > RECONNECT_GIVE_UP_MS) {
    fail(wasOpen ? 'error.connection_lost' : 'error.server_unreachable');
    return;
  }
  setState(app.waiting ? 'waiting' : 'joining');
  ui.setStatus('status.reconnecting', 'warn');
  app.timer = setTimeout(connect, reconnectDelay(app.retries));
}

export function fail(key, vars, { rejoin = true } = {}) {
  clearTimeout(app.timer);
  endSession();
  releaseMedia();
  setState('failed');
  ui.showEndScreen('failed.heading', key, vars, { rejoin });
}

export function leave() {
  if (['left', 'idle', 'closed', 'failed'].includes(app.state)) return;
  clearTimeout(app.timer);
  app.session?.sig.send('leave');
  note('-> leave');
  endSession();
  releaseMedia();
  app.waiting = false;
  setState('left');
  ui.showEndScreen('left.heading', 'left.body');
}
