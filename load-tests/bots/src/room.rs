//! One tokio task per room drives all of that room's bots: their signaling WebSockets, their
//! UDP sockets (one per peer connection, on 127.0.0.1) and their str0m `Rtc`s. The signaling
//! dialects live in [`crate::ours`] and [`crate::janus`], the media in [`crate::media`].

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, SelectAll};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::SdpPendingOffer;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::cluster::InviteRoom;
use crate::hist::Histogram;
use crate::janus::{self, JanusBot};
use crate::media::{Pc, PcEvent, Publisher, Rx};
use crate::ours;
use crate::rejoin::Recovery;
use crate::stamp::STREAMS;

pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsSink = futures_util::stream::SplitSink<Ws, Message>;
/// (bot, its join generation, message or end of stream): after a rejoin the old socket's
/// last items are told apart from the new one's by the generation.
type WsItem = (
    usize,
    u32,
    Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
);
pub(crate) type WsStream = Pin<Box<dyn futures_util::Stream<Item = WsItem> + Send>>;
type JoinFuture = Pin<Box<dyn Future<Output = (usize, Result<Box<Joined>, String>)> + Send>>;

pub use crate::media::{
    AUDIO_BYTES, AUDIO_INTERVAL, KEYFRAME_FACTOR, KEYFRAME_INTERVAL, LAYERS, LAYER_DIMS,
};
/// What every room task needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// Whose signaling the bots speak.
    pub target: Target,
    /// Every node's `ws://host:port/ws` (ours; bots spread their first connections over
    /// them), or Janus's WebSocket transport `ws://host:port` (only the first is used).
    pub ws_urls: Arc<[String]>,
    pub rooms: usize,
    pub per_room: usize,
    pub simulcast: bool,
    /// Honor `publish_layers` (dynacast) like the web client does.
    pub dynacast: bool,
    /// Joins per second over all rooms; 0: all at once.
    pub ramp_per_sec: f64,
    pub start: Instant,
    /// When every bot leaves.
    pub end: Instant,
    /// Room names are `{room_prefix}{index}`.
    pub room_prefix: String,
    /// Janus room ids are `janus_room_base + index` (numeric ids).
    pub janus_room_base: u64,
    /// The bots' UDP sockets bind here (Janus cannot gather candidates on loopback, so its
    /// benchmark runs in a network namespace on a documentation address).
    pub bind_ip: std::net::IpAddr,
    /// `--rejoin` (ours only): a bot whose signaling socket closes joins again afresh.
    pub rejoin: bool,
    /// `--join-together`: every participant of a room starts joining at the room's slot
    /// instead of each after the previous one's `joined` (racing joins on different nodes).
    pub join_together: bool,
    /// `--invites` (ours only): room `i` is `invites[i]`, participant `k` joins with its
    /// `k`-th token instead of by room name.
    pub invites: Option<Arc<[InviteRoom]>>,
}

/// The server the bots talk to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// consult-sfu (or rawloop): `signaling/PROTOCOL.md`, one peer connection per bot.
    Ours,
    /// Janus VideoRoom through the Janus API: a publisher and a subscriber peer connection.
    Janus,
}

impl Config {
    /// When participant `global` (room-major order) may start joining.
    pub fn join_slot(&self, global: usize) -> Instant {
        if self.ramp_per_sec > 0.0 {
            self.start + Duration::from_secs_f64(global as f64 / self.ramp_per_sec)
        } else {
            self.start
        }
    }
}

/// Counters shared by all room tasks (relaxed atomics; read by the progress printer).
#[derive(Default)]
pub struct Shared {
    pub joined: AtomicU64,
    pub connected: AtomicU64,
    pub failed: AtomicU64,
    pub left_early: AtomicU64,
    pub sent_packets: AtomicU64,
    pub sent_bytes: AtomicU64,
    pub sent_audio: AtomicU64,
    pub sent_video: AtomicU64,
    pub received_packets: AtomicU64,
    pub received_bytes: AtomicU64,
    pub received_audio: AtomicU64,
    pub received_video: AtomicU64,
    /// Packets received without a readable stamp.
    pub received_unstamped: AtomicU64,
    /// Expected minus received, from RTP sequence numbers per received SSRC (RFC 3550).
    pub rtp_expected: AtomicU64,
    pub rtp_received: AtomicU64,
    /// Audio end to end, from the senders' counters (the SFU forwards every audio packet).
    pub audio_expected: AtomicU64,
    pub audio_received: AtomicU64,
    pub keyframes_sent: AtomicU64,
    pub keyframe_requests: AtomicU64,
    pub udp_send_errors: AtomicU64,
    pub signaling_errors: AtomicU64,
    pub server_offers: AtomicU64,
    pub layer_changes: AtomicU64,
    /// Received packets per stamped stream (audio, q, h, f): which layers the SFU forwarded.
    pub received_by_stream: [AtomicU64; STREAMS],
    pub publish_layers: AtomicU64,
    /// `redirect`s followed, node connections that failed, rejoins started (`--rejoin`).
    pub redirects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub rejoins: AtomicU64,
    /// One-way latency of every stamped packet, and split by kind.
    pub hist: Mutex<Histogram>,
    pub hist_audio: Mutex<Histogram>,
    pub hist_video: Mutex<Histogram>,
    pub hist_interval: Mutex<Histogram>,
    /// Latency in the steady state only (set by the driver once every bot is connected and
    /// layers settled): start-up (DTLS, first keyframes, layer ramp) does not count.
    pub hist_steady: Mutex<Histogram>,
    pub steady: AtomicBool,
    pub join_ms: Mutex<Vec<f64>>,
    pub connect_ms: Mutex<Vec<f64>>,
    pub first_media_ms: Mutex<Vec<f64>>,
    pub errors: Mutex<Vec<String>>,
    /// Packets slower than [`SLOW_US`]: (latency us, receive time since the epoch in s, stream),
    /// the first 50, to tell start-up stalls from steady-state ones.
    pub slow: Mutex<Vec<(u64, f64, u8)>>,
    pub slow_count: AtomicU64,
}

/// A packet this late (100 ms) is listed in [`Shared::slow`].
pub const SLOW_US: u64 = 100_000;

impl Shared {
    pub fn error(&self, e: String) {
        let mut errors = self.errors.lock().unwrap();
        if errors.len() < 20 {
            errors.push(e);
        }
    }
}
/// What one bot received, for `--expect-media`.
#[derive(Debug, Clone)]
pub struct BotSummary {
    pub sender: u32,
    pub room: usize,
    pub role: &'static str,
    pub joined: bool,
    pub connected: bool,
    /// The room's other bots.
    pub peers: Vec<u32>,
    /// sender -> (audio packets, video packets)
    pub from: HashMap<u32, (u64, u64)>,
    /// The room's name (open join) or label (invites).
    pub room_name: String,
    /// The signaling URL of the node it was last joined on (after redirects).
    pub node: Option<String>,
    /// Its outages with `--rejoin`.
    pub recovery: Recovery,
}

/// A bot whose join completed: its signaling socket, the node it ended on, and for Janus the
/// session it set up.
pub(crate) struct Joined {
    pub ws: Ws,
    pub at: Instant,
    pub janus: Option<JanusBot>,
    pub node: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Waiting,
    Joining,
    Active,
    Gone,
}

/// Index of the peer connection that publishes (ours: the only one, which also receives).
pub(crate) const PUB: usize = 0;
/// Index of Janus's subscriber peer connection.
pub(crate) const SUB: usize = 1;

pub(crate) struct Bot {
    pub sender: u32,
    pub role: &'static str,
    pub name: String,
    pub state: State,
    pub started_at: Option<Instant>,
    pub joined_at: Option<Instant>,
    pub sink: Option<WsSink>,
    pub pcs: [Option<Pc>; 2],
    /// Our signaling: the offer waiting for its answer.
    pub pending: Option<SdpPendingOffer>,
    /// Janus: session, handles, feeds.
    pub janus: Option<JanusBot>,
    /// The publishing peer connection is up (media flows).
    pub connected: bool,
    /// It was up at least once (the participant counts as connected in the report).
    pub ever_connected: bool,
    pub publisher: Publisher,
    pub rx: Rx,
    /// Joins so far: tags the signaling stream of each (see [`WsItem`]).
    pub generation: u32,
    /// The node of the latest join.
    pub node: Option<String>,
    pub recovery: Recovery,
}

impl Bot {
    fn new(sender: u32, k: usize, per_room: usize, simulcast: bool, now: Instant) -> Self {
        let role = match k {
            0 => "clinic",
            1 => "specialist",
            _ => "patient",
        };
        Bot {
            sender,
            role,
            name: format!("synth {role} {sender}"),
            state: State::Waiting,
            started_at: None,
            joined_at: None,
            sink: None,
            pcs: [None, None],
            pending: None,
            janus: None,
            connected: false,
            ever_connected: false,
            publisher: Publisher::new(sender, simulcast, now),
            rx: Rx::default(),
            generation: 0,
            node: None,
            recovery: Recovery::new(per_room - 1),
        }
    }

    pub(crate) async fn send_json(&mut self, v: Value) -> bool {
        let Some(sink) = self.sink.as_mut() else {
            return false;
        };
        sink.send(Message::Text(v.to_string().into())).await.is_ok()
    }
}

pub(crate) struct RoomRun {
    pub room: usize,
    pub name: String,
    pub cfg: Arc<Config>,
    pub shared: Arc<Shared>,
    pub bots: Vec<Bot>,
    hist: [Histogram; 2],
}

/// Runs one room's bots until `cfg.end`, then leaves. Returns what each bot received.
pub async fn run_room(room: usize, cfg: Arc<Config>, shared: Arc<Shared>) -> Vec<BotSummary> {
    let now = Instant::now();
    let bots = (0..cfg.per_room)
        .map(|k| {
            let sender = (room * cfg.per_room + k) as u32;
            Bot::new(sender, k, cfg.per_room, cfg.simulcast, now)
        })
        .collect();
    let name = match &cfg.invites {
        Some(inv) => inv[room].label.clone(),
        None => format!("{}{room}", cfg.room_prefix),
    };
    let mut r = RoomRun {
        room,
        name,
        cfg,
        shared,
        bots,
        hist: [Histogram::new(), Histogram::new()],
    };
    r.run().await;
    r.summaries()
}

enum Wake {
    Joined(usize, Result<Box<Joined>, String>),
    Ws(WsItem),
    /// (bot, peer connection, length, source, kernel receive time)
    Udp(usize, usize, usize, SocketAddr, Instant),
    Timer,
}

impl RoomRun {
    /// Starts bot `k`'s join (connect, join, wait for the server's confirmation).
    fn start_join(&mut self, k: usize, now: Instant) -> JoinFuture {
        let deadline = now + Duration::from_secs(20);
        let b = &mut self.bots[k];
        b.state = State::Joining;
        // A rejoin keeps the first join's start: join-to-first-media is about the first join.
        if b.started_at.is_none() {
            b.started_at = Some(now);
        }
        let url = self.cfg.ws_urls[0].clone();
        match self.cfg.target {
            Target::Ours => {
                let msg = match &self.cfg.invites {
                    Some(inv) => json!({"v":1,"type":"join","invite":inv[self.room].tokens[k]}),
                    None => {
                        json!({"v":1,"type":"join","room":self.name,"name":b.name,"role":b.role})
                    }
                };
                let spec = ours::JoinSpec {
                    nodes: self.cfg.ws_urls.clone(),
                    first: b.sender as usize,
                    msg: msg.to_string(),
                    retry: self.cfg.rejoin,
                };
                let fut = ours::join(spec, self.shared.clone(), deadline);
                Box::pin(async move { (k, fut.await) })
            }
            Target::Janus => {
                let room_id = self.cfg.janus_room_base + self.room as u64;
                // The first bot of a room creates it (the clinic opens the consult).
                let create = (k == 0).then_some(self.cfg.per_room);
                let fut = janus::join(url, room_id, create, b.name.clone(), deadline);
                Box::pin(async move { (k, fut.await) })
            }
        }
    }

    async fn run(&mut self) {
        let mut joins: FuturesUnordered<JoinFuture> = FuturesUnordered::new();
        let mut ws_streams: SelectAll<WsStream> = SelectAll::new();
        let mut buf = vec![0u8; 2048];
        let mut rr = 0usize;
        let mut next_flush = Instant::now() + Duration::from_secs(1);
        loop {
            let now = Instant::now();
            if now >= self.cfg.end {
                break;
            }
            // Start the next join: in order, each after the previous one joined (the clinic
            // opens the room), and not before its ramp slot.
            let mut next_join: Option<Instant> = None;
            for k in self.joins_due() {
                let slot = if self.cfg.join_together {
                    self.cfg.join_slot(self.room * self.cfg.per_room)
                } else {
                    self.cfg.join_slot(self.room * self.cfg.per_room + k)
                };
                // A rejoin goes at once: the ramp was for the first joins.
                if slot <= now || self.bots[k].joined_at.is_some() {
                    let fut = self.start_join(k, now);
                    joins.push(fut);
                } else {
                    next_join = Some(next_join.map_or(slot, |n| n.min(slot)));
                }
            }
            if now >= next_flush {
                self.flush();
                next_flush = now + Duration::from_secs(1);
            }
            let next_keepalive = self.janus_keepalives(now).await;

            let deadline = self
                .bots
                .iter()
                .flat_map(|b| {
                    let media = b.connected.then(|| b.publisher.next_due());
                    b.pcs.iter().flatten().map(|p| p.next_timeout).chain(media)
                })
                .chain(next_join)
                .chain(next_keepalive)
                .chain([next_flush, self.cfg.end])
                .min()
                .unwrap_or(self.cfg.end);

            let bots = &self.bots;
            let start = rr;
            let wake = tokio::select! {
                Some((k, res)) = joins.next(), if !joins.is_empty() => Wake::Joined(k, res),
                Some(item) = ws_streams.next(), if !ws_streams.is_empty() => Wake::Ws(item),
                (i, p, n, src, at) = poll_fn(|cx| poll_recv_any(cx, bots, &mut buf, start)) => Wake::Udp(i, p, n, src, at),
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
            };
            match wake {
                Wake::Joined(k, Ok(j)) => {
                    if let Err(e) = self.on_joined(k, j, &mut ws_streams).await {
                        self.fail(k, format!("after join: {e}"));
                    }
                }
                Wake::Joined(k, Err(e)) => self.fail(k, e),
                Wake::Ws((k, generation, _)) if generation != self.bots[k].generation => {
                    // The socket of an earlier join, closing after the bot rejoined.
                }
                Wake::Ws((k, _, Some(Ok(m)))) => {
                    if let Message::Text(t) = m {
                        if let Ok(v) = serde_json::from_str::<Value>(&t) {
                            match self.cfg.target {
                                Target::Ours => self.on_signal(k, v).await,
                                Target::Janus => self.on_janus(k, v).await,
                            }
                        }
                    }
                }
                Wake::Ws((k, _, Some(Err(e)))) => {
                    self.lost(k, format!("ws error: {e}"));
                }
                Wake::Ws((k, _, None)) => {
                    let rejoining = self.cfg.rejoin && self.bots[k].state != State::Active;
                    if Instant::now() < self.cfg.end && !rejoining {
                        self.shared.left_early.fetch_add(1, Relaxed);
                        self.lost(k, "server closed the signaling socket".into());
                    }
                }
                Wake::Udp(i, p, n, src, at) => {
                    rr = i + 1;
                    self.on_datagram(i, p, &buf[..n], src, at);
                    // Drain what else is queued on every socket before selecting again.
                    for _ in 0..64 {
                        let mut any = false;
                        for j in 0..self.bots.len() {
                            for q in [PUB, SUB] {
                                let Some(pc) = self.bots[j].pcs[q].as_ref() else {
                                    continue;
                                };
                                if let Ok((n, src, at)) =
                                    crate::rxtime::try_recv(&pc.socket, &mut buf)
                                {
                                    any = true;
                                    self.on_datagram(j, q, &buf[..n], src, at);
                                }
                            }
                        }
                        if !any {
                            break;
                        }
                    }
                }
                Wake::Timer => {}
            }
            // Timers and media of every bot that is due.
            let now = Instant::now();
            for i in 0..self.bots.len() {
                for q in [PUB, SUB] {
                    let Some(pc) = self.bots[i].pcs[q].as_mut() else {
                        continue;
                    };
                    if pc.next_timeout <= now {
                        pc.timeout(now);
                        self.drive(i, q);
                    }
                }
                self.send_media(i, now);
            }
        }
        self.leave_all().await;
        self.flush();
    }

    /// Which bots may start joining now: with `--join-together` every waiting one, otherwise
    /// the first not yet in, once it is waiting (each after the previous one's `joined`: the
    /// clinic opens the room). A rejoining bot goes at once either way.
    fn joins_due(&self) -> Vec<usize> {
        let waiting = |b: &Bot| b.state == State::Waiting;
        if self.cfg.join_together {
            return (0..self.bots.len())
                .filter(|&k| waiting(&self.bots[k]))
                .collect();
        }
        let mut due: Vec<usize> = (0..self.bots.len())
            .filter(|&k| waiting(&self.bots[k]) && self.bots[k].joined_at.is_some())
            .collect();
        if let Some(k) = self
            .bots
            .iter()
            .position(|b| b.state != State::Active && b.state != State::Gone)
        {
            if waiting(&self.bots[k]) && !due.contains(&k) {
                due.push(k);
            }
        }
        due
    }

    /// The bot's signaling socket broke or closed: with `--rejoin` it drops its peer
    /// connection and waits to join afresh (the loop starts that at once); otherwise it fails.
    fn lost(&mut self, k: usize, e: String) {
        if !self.cfg.rejoin || self.cfg.target != Target::Ours {
            self.fail(k, e);
            return;
        }
        let b = &mut self.bots[k];
        // An error and then the end of the same stream, or the old socket's end while the
        // bot already rejoins: one loss.
        if b.state != State::Active {
            return;
        }
        b.recovery.on_lost(Instant::now());
        b.state = State::Waiting;
        b.pcs = [None, None];
        b.pending = None;
        b.sink = None;
        b.connected = false;
        b.publisher.reset();
        b.rx.new_connection();
        self.shared.rejoins.fetch_add(1, Relaxed);
    }

    pub(crate) fn fail(&mut self, k: usize, e: String) {
        let b = &mut self.bots[k];
        if b.state == State::Gone {
            return;
        }
        b.state = State::Gone;
        b.pcs = [None, None];
        b.sink = None;
        self.shared.failed.fetch_add(1, Relaxed);
        self.shared.error(format!(
            "room {} bot {} ({}): {e}",
            self.name, b.sender, b.role
        ));
    }

    async fn on_joined(
        &mut self,
        k: usize,
        j: Box<Joined>,
        ws_streams: &mut SelectAll<WsStream>,
    ) -> Result<(), String> {
        let Joined {
            ws,
            at,
            janus,
            node,
        } = *j;
        let b = &mut self.bots[k];
        b.generation += 1;
        let g = b.generation;
        let (sink, stream) = ws.split();
        ws_streams.push(Box::pin(
            stream
                .map(move |m| (k, g, Some(m)))
                .chain(futures_util::stream::once(async move { (k, g, None) })),
        ));
        b.sink = Some(sink);
        b.state = State::Active;
        b.janus = janus;
        b.node = Some(node);
        if b.joined_at.is_some() {
            // A rejoin: timed by the recovery, not counted as another participant.
            b.recovery.on_joined(at);
        } else {
            b.joined_at = Some(at);
            if let Some(s) = b.started_at {
                self.shared
                    .join_ms
                    .lock()
                    .expect("invariant: no thread panics while holding a Shared lock")
                    .push((at - s).as_secs_f64() * 1e3);
            }
            self.shared.joined.fetch_add(1, Relaxed);
        }
        match self.cfg.target {
            Target::Ours => self.ours_publish(k).await,
            Target::Janus => self.janus_publish(k).await,
        }
    }
}

mod traffic;
use traffic::poll_recv_any;
