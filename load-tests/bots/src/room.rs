//! One tokio task per room drives all of that room's bots: their signaling WebSockets, their
//! UDP sockets (one per bot on 127.0.0.1) and their str0m `Rtc`s.

use std::collections::HashMap;
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use futures_util::stream::{FuturesUnordered, SelectAll};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequest, MediaKind, Mid, Pt, Rid};
use str0m::media::{Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::io::ReadBuf;
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::hist::Histogram;
use crate::stamp::{self, Stamp, STAMP_LEN, STREAMS, STREAM_AUDIO, STREAM_VIDEO_BASE};
use crate::vp8::{self, Vp8Packetizer};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;
type WsSink = futures_util::stream::SplitSink<Ws, Message>;
type WsItem = (
    usize,
    Option<Result<Message, tokio_tungstenite::tungstenite::Error>>,
);
type WsStream = Pin<Box<dyn futures_util::Stream<Item = WsItem> + Send>>;
type JoinFuture = Pin<Box<dyn Future<Output = (usize, Result<Box<Joined>, String>)> + Send>>;

/// Opus-like audio: one 80-byte packet every 20 ms.
pub const AUDIO_INTERVAL: Duration = Duration::from_millis(20);
pub const AUDIO_BYTES: usize = 80;
/// A keyframe on every layer this often (and on every PLI).
pub const KEYFRAME_INTERVAL: Duration = Duration::from_secs(3);
/// A keyframe is this many times the size of a delta frame.
pub const KEYFRAME_FACTOR: usize = 3;
/// The simulcast layers: rid, bits per second, frames per second.
pub const LAYERS: [(&str, u64, u32); 3] =
    [("q", 150_000, 15), ("h", 400_000, 30), ("f", 1_200_000, 30)];
/// Opus TOC byte: config 31 (CELT fullband, 20 ms), mono, one frame.
const OPUS_TOC: u8 = 0xF8;

/// What every room task needs to know.
#[derive(Debug, Clone)]
pub struct Config {
    /// `ws://host:port/ws`
    pub ws_url: String,
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
    /// One-way latency of every stamped packet, and split by kind.
    pub hist: Mutex<Histogram>,
    pub hist_audio: Mutex<Histogram>,
    pub hist_video: Mutex<Histogram>,
    pub hist_interval: Mutex<Histogram>,
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
}

struct Joined {
    ws: Ws,
    participant_id: String,
    at: Instant,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Joining,
    Active,
    Gone,
}

struct AudioTx {
    seq: u64,
    ts: u32,
    counter: u32,
    next: Instant,
}

struct LayerTx {
    rid: Option<Rid>,
    stream: u8,
    active: bool,
    frame_bytes: usize,
    interval: Duration,
    next_frame: Instant,
    next_keyframe: Instant,
    keyframe_pending: bool,
    seq: u64,
    counter: u32,
    ts_offset: u32,
    vp8: Vp8Packetizer,
}

#[derive(Default)]
struct RxSsrc {
    first: u64,
    max: u64,
    received: u64,
}

struct Bot {
    sender: u32,
    role: &'static str,
    name: String,
    state: State,
    started_at: Option<Instant>,
    joined_at: Option<Instant>,
    sink: Option<WsSink>,
    rtc: Option<Rtc>,
    socket: Option<UdpSocket>,
    local: SocketAddr,
    pending: Option<SdpPendingOffer>,
    next_timeout: Instant,
    audio_mid: Option<Mid>,
    video_mid: Option<Mid>,
    opus_pt: Option<Pt>,
    vp8_pt: Option<Pt>,
    pt_kinds: Vec<(Pt, Option<MediaKind>)>,
    connected: bool,
    first_media: bool,
    audio: AudioTx,
    layers: Vec<LayerTx>,
    rx: HashMap<Ssrc, RxSsrc>,
    /// (sender, stream) -> (first counter, max counter, received)
    counters: HashMap<(u32, u8), (u32, u32, u64)>,
    from: HashMap<u32, (u64, u64)>,
}

/// Small deterministic jitter so bots do not send in lockstep.
fn jitter(seed: u32, salt: u32, max: Duration) -> Duration {
    let mut x = seed.wrapping_mul(0x9E37_79B9) ^ salt.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2C1B_3C6D);
    x ^= x >> 12;
    max.mul_f64((x % 10_000) as f64 / 10_000.0)
}

impl Bot {
    fn new(sender: u32, k: usize, simulcast: bool, now: Instant) -> Self {
        let role = match k {
            0 => "clinic",
            1 => "specialist",
            _ => "patient",
        };
        let layer = |i: usize, rid: Option<&str>| {
            let (_, bps, fps) = LAYERS[i];
            let interval = Duration::from_secs(1) / fps;
            LayerTx {
                rid: rid.map(Rid::from),
                stream: STREAM_VIDEO_BASE + i as u8,
                active: true,
                frame_bytes: (bps / 8 / fps as u64) as usize,
                interval,
                next_frame: now,
                next_keyframe: now + KEYFRAME_INTERVAL,
                keyframe_pending: true,
                seq: 1 + (sender as u64 * 7919 + i as u64 * 104_729) % 30_000,
                counter: 0,
                ts_offset: sender.wrapping_mul(2_654_435_761).wrapping_add(i as u32),
                vp8: Vp8Packetizer::new(
                    (sender as u16).wrapping_mul(97).wrapping_add(i as u16),
                    sender as u8,
                ),
            }
        };
        let layers = if simulcast {
            (0..3).map(|i| layer(i, Some(LAYERS[i].0))).collect()
        } else {
            vec![layer(2, None)]
        };
        Bot {
            sender,
            role,
            name: format!("synth {role} {sender}"),
            state: State::Waiting,
            started_at: None,
            joined_at: None,
            sink: None,
            rtc: None,
            socket: None,
            local: SocketAddr::from(([127, 0, 0, 1], 0)),
            pending: None,
            next_timeout: now + Duration::from_secs(3600),
            audio_mid: None,
            video_mid: None,
            opus_pt: None,
            vp8_pt: None,
            pt_kinds: Vec::new(),
            connected: false,
            first_media: false,
            audio: AudioTx {
                seq: 1 + (sender as u64 * 31_337) % 30_000,
                ts: sender.wrapping_mul(0x9E37_79B9),
                counter: 0,
                next: now,
            },
            layers,
            rx: HashMap::new(),
            counters: HashMap::new(),
            from: HashMap::new(),
        }
    }

    async fn send_json(&mut self, v: Value) -> bool {
        let Some(sink) = self.sink.as_mut() else {
            return false;
        };
        sink.send(Message::Text(v.to_string().into())).await.is_ok()
    }
}

/// Connects, joins and waits for `joined` (retrying `unknown_room` until `deadline`).
async fn join(
    url: String,
    room: String,
    name: String,
    role: &'static str,
    deadline: Instant,
) -> Result<Box<Joined>, String> {
    let fut = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        let msg = json!({"v":1,"type":"join","room":room,"name":name,"role":role}).to_string();
        ws.send(Message::Text(msg.clone().into()))
            .await
            .map_err(|e| format!("send join: {e}"))?;
        loop {
            let m = ws
                .next()
                .await
                .ok_or("socket closed before joined")?
                .map_err(|e| format!("ws: {e}"))?;
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).map_err(|e| format!("bad json: {e}"))?;
            match v["type"].as_str() {
                Some("joined") => {
                    return Ok(Box::new(Joined {
                        ws,
                        participant_id: v["participant_id"].as_str().unwrap_or("").to_string(),
                        at: Instant::now(),
                    }))
                }
                Some("error") if v["code"] == "unknown_room" => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    ws.send(Message::Text(msg.clone().into()))
                        .await
                        .map_err(|e| format!("send join: {e}"))?;
                }
                Some("error") => return Err(format!("join refused: {v}")),
                _ => {}
            }
        }
    };
    tokio::time::timeout_at(deadline.into(), fut)
        .await
        .unwrap_or_else(|_| Err("join timed out".into()))
}

/// Removes candidates from an SDP, as a browser's offer made before gathering has none: the
/// bot trickles its candidate instead.
fn strip_candidates(sdp: &str) -> String {
    sdp.split("\r\n")
        .filter(|l| !l.starts_with("a=candidate:") && *l != "a=end-of-candidates")
        .collect::<Vec<_>>()
        .join("\r\n")
}

struct RoomRun {
    room: usize,
    name: String,
    cfg: Arc<Config>,
    shared: Arc<Shared>,
    bots: Vec<Bot>,
    hist: [Histogram; 2],
}

/// Runs one room's bots until `cfg.end`, then leaves. Returns what each bot received.
pub async fn run_room(room: usize, cfg: Arc<Config>, shared: Arc<Shared>) -> Vec<BotSummary> {
    let now = Instant::now();
    let bots = (0..cfg.per_room)
        .map(|k| Bot::new((room * cfg.per_room + k) as u32, k, cfg.simulcast, now))
        .collect();
    let mut r = RoomRun {
        room,
        name: format!("{}{room}", cfg.room_prefix),
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
    Udp(usize, usize, SocketAddr),
    Timer,
}

impl RoomRun {
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
            if let Some(k) = self
                .bots
                .iter()
                .position(|b| b.state != State::Active && b.state != State::Gone)
            {
                if self.bots[k].state == State::Waiting {
                    let slot = self.cfg.join_slot(self.room * self.cfg.per_room + k);
                    if slot <= now {
                        let b = &mut self.bots[k];
                        b.state = State::Joining;
                        b.started_at = Some(now);
                        let deadline = now + Duration::from_secs(20);
                        let fut = join(
                            self.cfg.ws_url.clone(),
                            self.name.clone(),
                            b.name.clone(),
                            b.role,
                            deadline,
                        );
                        joins.push(Box::pin(async move { (k, fut.await) }));
                    } else {
                        next_join = Some(slot);
                    }
                }
            }
            if now >= next_flush {
                self.flush();
                next_flush = now + Duration::from_secs(1);
            }

            let deadline = self
                .bots
                .iter()
                .filter(|b| b.rtc.is_some())
                .flat_map(|b| {
                    let media = b.connected.then(|| {
                        b.layers
                            .iter()
                            .filter(|l| l.active)
                            .map(|l| l.next_frame)
                            .chain([b.audio.next])
                            .min()
                    });
                    [Some(b.next_timeout), media.flatten()]
                })
                .flatten()
                .chain(next_join)
                .chain([next_flush, self.cfg.end])
                .min()
                .unwrap_or(self.cfg.end);

            let bots = &self.bots;
            let start = rr;
            let wake = tokio::select! {
                Some((k, res)) = joins.next(), if !joins.is_empty() => Wake::Joined(k, res),
                Some(item) = ws_streams.next(), if !ws_streams.is_empty() => Wake::Ws(item),
                (i, n, src) = poll_fn(|cx| poll_recv_any(cx, bots, &mut buf, start)) => Wake::Udp(i, n, src),
                _ = tokio::time::sleep_until(deadline.into()) => Wake::Timer,
            };
            match wake {
                Wake::Joined(k, Ok(j)) => {
                    if let Err(e) = self.on_joined(k, j, &mut ws_streams).await {
                        self.fail(k, format!("after join: {e}"));
                    }
                }
                Wake::Joined(k, Err(e)) => self.fail(k, e),
                Wake::Ws((k, Some(Ok(m)))) => {
                    if let Message::Text(t) = m {
                        if let Ok(v) = serde_json::from_str::<Value>(&t) {
                            self.on_signal(k, v).await;
                        }
                    }
                }
                Wake::Ws((k, Some(Err(e)))) => self.fail(k, format!("ws error: {e}")),
                Wake::Ws((k, None)) => {
                    if Instant::now() < self.cfg.end {
                        self.shared.left_early.fetch_add(1, Relaxed);
                        self.fail(k, "server closed the signaling socket".into());
                    }
                }
                Wake::Udp(i, n, src) => {
                    rr = i + 1;
                    let now = Instant::now();
                    self.on_datagram(i, &buf[..n], src, now);
                    // Drain what else is queued on every socket before selecting again.
                    for _ in 0..64 {
                        let mut any = false;
                        for j in 0..self.bots.len() {
                            let Some(sock) = self.bots[j].socket.as_ref() else {
                                continue;
                            };
                            if let Ok((n, src)) = sock.try_recv_from(&mut buf) {
                                any = true;
                                self.on_datagram(j, &buf[..n], src, Instant::now());
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
                if self.bots[i].rtc.is_none() {
                    continue;
                }
                if self.bots[i].next_timeout <= now {
                    let b = &mut self.bots[i];
                    if let Some(rtc) = b.rtc.as_mut() {
                        let _ = rtc.handle_input(Input::Timeout(now));
                    }
                    self.drive(i);
                }
                self.send_media(i, now);
            }
        }
        self.leave_all().await;
        self.flush();
    }

    fn fail(&mut self, k: usize, e: String) {
        let b = &mut self.bots[k];
        if b.state == State::Gone {
            return;
        }
        b.state = State::Gone;
        b.rtc = None;
        b.socket = None;
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
        let (sink, stream) = j.ws.split();
        ws_streams.push(Box::pin(
            stream
                .map(move |m| (k, Some(m)))
                .chain(futures_util::stream::once(async move { (k, None) })),
        ));
        let now = Instant::now();
        let b = &mut self.bots[k];
        b.sink = Some(sink);
        b.state = State::Active;
        b.joined_at = Some(j.at);
        if let Some(s) = b.started_at {
            self.shared
                .join_ms
                .lock()
                .unwrap()
                .push((j.at - s).as_secs_f64() * 1e3);
        }
        self.shared.joined.fetch_add(1, Relaxed);

        let std_sock = std::net::UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
        std_sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        let socket = UdpSocket::from_std(std_sock).map_err(|e| e.to_string())?;
        b.local = socket.local_addr().map_err(|e| e.to_string())?;
        b.socket = Some(socket);

        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let candidate = Candidate::host(b.local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate.clone());
        let mut api = rtc.sdp_api();
        let stream_id = format!("synth-{}", b.sender);
        let audio = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-a")),
            None,
        );
        let simulcast = self.cfg.simulcast.then(|| {
            let mut s = Simulcast::new();
            for (rid, _, _) in LAYERS {
                s.add_send_layer(SimulcastLayer::new(rid));
            }
            s
        });
        let video = api.add_media(
            MediaKind::Video,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-v")),
            simulcast,
        );
        let (offer, pending) = api.apply().ok_or("no offer")?;
        b.audio_mid = Some(audio);
        b.video_mid = Some(video);
        b.pending = Some(pending);
        b.rtc = Some(rtc);
        let sdp = strip_candidates(&offer.to_sdp_string());
        let _ = j.participant_id;
        if !b.send_json(json!({"v":1,"type":"offer","sdp":sdp})).await {
            return Err("send offer failed".into());
        }
        let cand = json!({"v":1,"type":"candidate","candidate":candidate.to_sdp_string(),"sdp_mid":audio.to_string(),"sdp_m_line_index":0});
        b.send_json(cand).await;
        b.send_json(json!({"v":1,"type":"candidate","candidate":"","sdp_mid":audio.to_string(),"sdp_m_line_index":0}))
            .await;
        self.drive(k);
        Ok(())
    }

    async fn on_signal(&mut self, k: usize, v: Value) {
        let kind = v["type"].as_str().unwrap_or("");
        match kind {
            "answer" => {
                let b = &mut self.bots[k];
                let (Some(rtc), Some(pending)) = (b.rtc.as_mut(), b.pending.take()) else {
                    return;
                };
                let res = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap_or(""))
                    .map_err(|e| e.to_string())
                    .and_then(|a| {
                        rtc.sdp_api()
                            .accept_answer(pending, a)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = res {
                    self.fail(k, format!("accept answer: {e}"));
                    return;
                }
                let b = &mut self.bots[k];
                let rtc = b.rtc.as_ref().unwrap();
                b.opus_pt = rtc
                    .codec_config()
                    .find(|p| p.spec().codec == Codec::Opus)
                    .map(|p| p.pt());
                b.vp8_pt = rtc
                    .codec_config()
                    .find(|p| p.spec().codec == Codec::Vp8)
                    .map(|p| p.pt());
                self.drive(k);
            }
            "offer" => {
                self.shared.server_offers.fetch_add(1, Relaxed);
                let b = &mut self.bots[k];
                let Some(rtc) = b.rtc.as_mut() else { return };
                let res = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap_or(""))
                    .map_err(|e| e.to_string())
                    .and_then(|o| rtc.sdp_api().accept_offer(o).map_err(|e| e.to_string()));
                match res {
                    Ok(answer) => {
                        b.pt_kinds.clear();
                        let sdp = answer.to_sdp_string();
                        b.send_json(json!({"v":1,"type":"answer","sdp":sdp})).await;
                        self.drive(k);
                    }
                    Err(e) => self.fail(k, format!("accept offer: {e}")),
                }
            }
            "publish_layers" if self.cfg.dynacast => {
                self.shared.publish_layers.fetch_add(1, Relaxed);
                let b = &mut self.bots[k];
                if v["mid"].as_str() != b.video_mid.map(|m| m.to_string()).as_deref() {
                    return;
                }
                let active: Vec<&str> = v["active"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                let now = Instant::now();
                for l in &mut b.layers {
                    let Some(rid) = l.rid else { continue };
                    let on = active.iter().any(|a| *a == &*rid);
                    if on && !l.active {
                        // A restarted encoder starts with a keyframe.
                        l.keyframe_pending = true;
                        l.next_frame = now;
                    }
                    l.active = on;
                }
            }
            "layer_changed" => {
                self.shared.layer_changes.fetch_add(1, Relaxed);
            }
            "error" => {
                self.shared.signaling_errors.fetch_add(1, Relaxed);
                let b = &self.bots[k];
                self.shared.error(format!(
                    "room {} bot {}: server error {}",
                    self.name, b.sender, v
                ));
            }
            _ => {}
        }
    }

    fn on_datagram(&mut self, i: usize, data: &[u8], source: SocketAddr, now: Instant) {
        let b = &mut self.bots[i];
        let Some(rtc) = b.rtc.as_mut() else { return };
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: b.local,
                contents,
            },
        );
        let _ = rtc.handle_input(input);
        self.drive(i);
    }

    /// Polls one `Rtc` until it waits for time; sends its datagrams and counts what it got.
    fn drive(&mut self, i: usize) {
        let shared = &*self.shared;
        let hist = &mut self.hist;
        let b = &mut self.bots[i];
        loop {
            let Some(rtc) = b.rtc.as_mut() else { return };
            if !rtc.is_alive() {
                b.next_timeout = Instant::now() + Duration::from_secs(3600);
                return;
            }
            let out = match rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    shared.error(format!("bot {}: rtc: {e}", b.sender));
                    rtc.disconnect();
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    b.next_timeout = t;
                    return;
                }
                Output::Transmit(t) => {
                    if let Some(s) = b.socket.as_ref() {
                        if s.try_send_to(&t.contents, t.destination).is_err() {
                            shared.udp_send_errors.fetch_add(1, Relaxed);
                        }
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        b.connected = true;
                        shared.connected.fetch_add(1, Relaxed);
                        let now = Instant::now();
                        if let Some(s) = b.started_at {
                            shared
                                .connect_ms
                                .lock()
                                .unwrap()
                                .push((now - s).as_secs_f64() * 1e3);
                        }
                        b.audio.next = now + jitter(b.sender, 0, AUDIO_INTERVAL);
                        for (n, l) in b.layers.iter_mut().enumerate() {
                            l.next_frame = now + jitter(b.sender, n as u32 + 1, l.interval);
                            l.next_keyframe = l.next_frame + KEYFRAME_INTERVAL;
                            l.keyframe_pending = true;
                        }
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        shared.error(format!("bot {}: ICE disconnected", b.sender));
                    }
                    Event::KeyframeRequest(KeyframeRequest { mid, rid, .. }) => {
                        shared.keyframe_requests.fetch_add(1, Relaxed);
                        if Some(mid) == b.video_mid {
                            for l in &mut b.layers {
                                if rid.is_none() || l.rid == rid {
                                    l.keyframe_pending = true;
                                }
                            }
                        }
                    }
                    Event::RtpPacket(p) => on_rtp(b, &p, shared, hist),
                    _ => {}
                },
            }
        }
    }

    fn send_media(&mut self, i: usize, now: Instant) {
        let shared = &*self.shared;
        let b = &mut self.bots[i];
        if !b.connected || b.state != State::Active {
            return;
        }
        let (Some(rtc), Some(audio_mid), Some(video_mid)) =
            (b.rtc.as_mut(), b.audio_mid, b.video_mid)
        else {
            return;
        };
        let mut wrote = false;
        if let Some(pt) = b.opus_pt {
            while b.audio.next <= now {
                let mut payload = vec![0u8; AUDIO_BYTES];
                payload[0] = OPUS_TOC;
                Stamp {
                    sent_ns: stamp::now_ns(),
                    sender: b.sender,
                    stream: STREAM_AUDIO,
                    counter: b.audio.counter,
                }
                .encode(&mut payload[1..1 + STAMP_LEN]);
                for (k, x) in payload[1 + STAMP_LEN..].iter_mut().enumerate() {
                    *x = (k as u8) ^ (b.audio.counter as u8);
                }
                let mut api = rtc.direct_api();
                if let Some(stream) = api.stream_tx_by_mid(audio_mid, None) {
                    stream.write_rtp(RtpWrite::new(
                        pt,
                        b.audio.seq.into(),
                        b.audio.ts,
                        now,
                        payload,
                    ));
                    shared.sent_packets.fetch_add(1, Relaxed);
                    shared.sent_audio.fetch_add(1, Relaxed);
                    shared.sent_bytes.fetch_add(AUDIO_BYTES as u64, Relaxed);
                    wrote = true;
                }
                b.audio.seq += 1;
                b.audio.counter = b.audio.counter.wrapping_add(1);
                b.audio.ts = b.audio.ts.wrapping_add(960);
                b.audio.next += AUDIO_INTERVAL;
                if b.audio.next + Duration::from_millis(200) < now {
                    // Far behind (the machine stalled): skip rather than burst.
                    b.audio.next = now + AUDIO_INTERVAL;
                }
            }
        }
        if let Some(pt) = b.vp8_pt {
            let epoch = stamp::epoch();
            for l in &mut b.layers {
                if !l.active || l.next_frame > now {
                    continue;
                }
                let keyframe = l.keyframe_pending || now >= l.next_keyframe;
                if keyframe {
                    l.keyframe_pending = false;
                    l.next_keyframe = now + KEYFRAME_INTERVAL;
                    shared.keyframes_sent.fetch_add(1, Relaxed);
                }
                let meta = l.vp8.next_frame(keyframe);
                let size = if keyframe {
                    l.frame_bytes * KEYFRAME_FACTOR
                } else {
                    l.frame_bytes
                };
                let mut packets = vp8::packetize(&meta, size);
                let ts = ((now - epoch).as_micros() as u64 * 9 / 100) as u32;
                let ts = ts.wrapping_add(l.ts_offset);
                let n = packets.len();
                let sent_ns = stamp::now_ns();
                let mut api = rtc.direct_api();
                let Some(stream) = api.stream_tx_by_mid(video_mid, l.rid) else {
                    l.next_frame += l.interval;
                    continue;
                };
                for (k, mut p) in packets.drain(..).enumerate() {
                    Stamp {
                        sent_ns,
                        sender: b.sender,
                        stream: l.stream,
                        counter: l.counter,
                    }
                    .encode(&mut p[vp8::STAMP_OFFSET..vp8::STAMP_OFFSET + STAMP_LEN]);
                    let len = p.len() as u64;
                    stream.write_rtp(
                        RtpWrite::new(pt, l.seq.into(), ts, now, p)
                            .marker(k + 1 == n)
                            .nackable(true),
                    );
                    l.seq += 1;
                    l.counter = l.counter.wrapping_add(1);
                    shared.sent_packets.fetch_add(1, Relaxed);
                    shared.sent_video.fetch_add(1, Relaxed);
                    shared.sent_bytes.fetch_add(len, Relaxed);
                }
                wrote = true;
                l.next_frame += l.interval;
                if l.next_frame + Duration::from_millis(200) < now {
                    l.next_frame = now + l.interval;
                }
            }
        }
        if wrote {
            self.drive(i);
        }
    }

    async fn leave_all(&mut self) {
        for b in &mut self.bots {
            if b.sink.is_some() {
                b.send_json(json!({"v":1,"type":"leave"})).await;
                if let Some(mut s) = b.sink.take() {
                    let _ = s.close().await;
                }
            }
            if let Some(rtc) = b.rtc.as_mut() {
                rtc.disconnect();
            }
            b.socket = None;
        }
    }

    /// Moves this room's latency samples and RTP accounting into the shared totals.
    fn flush(&mut self) {
        for (k, h) in self.hist.iter_mut().enumerate() {
            if h.count() == 0 {
                continue;
            }
            self.shared.hist.lock().unwrap().merge(h);
            self.shared.hist_interval.lock().unwrap().merge(h);
            let by_kind = if k == 0 {
                &self.shared.hist_audio
            } else {
                &self.shared.hist_video
            };
            by_kind.lock().unwrap().merge(h);
            h.clear();
        }
    }

    fn summaries(&self) -> Vec<BotSummary> {
        let mut out = Vec::new();
        let ids: Vec<u32> = self.bots.iter().map(|b| b.sender).collect();
        for b in &self.bots {
            // Final loss accounting.
            let (mut exp, mut rec) = (0, 0);
            for s in b.rx.values() {
                exp += s.max - s.first + 1;
                rec += s.received;
            }
            self.shared.rtp_expected.fetch_add(exp, Relaxed);
            self.shared.rtp_received.fetch_add(rec.min(exp), Relaxed);
            let (mut aexp, mut arec) = (0u64, 0u64);
            for ((_, stream), (first, max, n)) in &b.counters {
                if *stream == STREAM_AUDIO {
                    let e = max.wrapping_sub(*first) as u64 + 1;
                    aexp += e;
                    arec += (*n).min(e);
                }
            }
            self.shared.audio_expected.fetch_add(aexp, Relaxed);
            self.shared.audio_received.fetch_add(arec, Relaxed);
            out.push(BotSummary {
                sender: b.sender,
                room: self.room,
                role: b.role,
                joined: b.joined_at.is_some(),
                connected: b.connected,
                peers: ids.iter().copied().filter(|x| *x != b.sender).collect(),
                from: b.from.clone(),
            });
        }
        out
    }
}

fn on_rtp(b: &mut Bot, p: &RtpPacket, shared: &Shared, hist: &mut [Histogram; 2]) {
    let pt = p.header.payload_type;
    let kind = match b.pt_kinds.iter().find(|(x, _)| *x == pt) {
        Some((_, k)) => *k,
        None => {
            let k = b.rtc.as_ref().and_then(|rtc| {
                let params = rtc.codec_config().find(|c| c.pt() == pt)?;
                match params.spec().codec {
                    Codec::Opus => Some(MediaKind::Audio),
                    Codec::Vp8 => Some(MediaKind::Video),
                    _ => None,
                }
            });
            b.pt_kinds.push((pt, k));
            k
        }
    };
    shared.received_packets.fetch_add(1, Relaxed);
    shared
        .received_bytes
        .fetch_add(p.payload.len() as u64, Relaxed);
    let seq = *p.seq_no;
    let rx = b.rx.entry(p.header.ssrc).or_insert_with(|| RxSsrc {
        first: seq,
        max: seq,
        received: 0,
    });
    if seq < rx.first {
        rx.first = seq;
    }
    rx.max = rx.max.max(seq);
    rx.received += 1;

    let offset = match kind {
        Some(MediaKind::Audio) => 1,
        Some(MediaKind::Video) => match vp8::parse_descriptor(&p.payload) {
            Some(d) => d.len + vp8::FRAME_HEADER_LEN,
            None => usize::MAX,
        },
        None => usize::MAX,
    };
    let Some(s) = p.payload.get(offset..).and_then(Stamp::decode) else {
        shared.received_unstamped.fetch_add(1, Relaxed);
        return;
    };
    let recv_ns = stamp::ns_at(p.timestamp);
    let us = recv_ns.saturating_sub(s.sent_ns) / 1_000;
    hist[usize::from(s.stream != STREAM_AUDIO)].record_us(us);
    if us >= SLOW_US {
        shared.slow_count.fetch_add(1, Relaxed);
        let mut slow = shared.slow.lock().unwrap();
        if slow.len() < 50 {
            slow.push((us, recv_ns as f64 / 1e9, s.stream));
        }
    }
    shared.received_by_stream[s.stream as usize].fetch_add(1, Relaxed);
    let from = b.from.entry(s.sender).or_default();
    if s.stream == STREAM_AUDIO {
        from.0 += 1;
        shared.received_audio.fetch_add(1, Relaxed);
    } else {
        from.1 += 1;
        shared.received_video.fetch_add(1, Relaxed);
    }
    if !b.first_media {
        b.first_media = true;
        if let Some(start) = b.started_at {
            shared
                .first_media_ms
                .lock()
                .unwrap()
                .push((p.timestamp - start).as_secs_f64() * 1e3);
        }
    }
    debug_assert!((s.stream as usize) < STREAMS);
    let c = b
        .counters
        .entry((s.sender, s.stream))
        .or_insert((s.counter, s.counter, 0));
    if s.counter.wrapping_sub(c.1) < u32::MAX / 2 {
        c.1 = s.counter;
    } else if c.0.wrapping_sub(s.counter) < u32::MAX / 2 {
        c.0 = s.counter;
    }
    c.2 += 1;
}

/// Polls every bot's socket (starting at `start`, for fairness) for one datagram.
fn poll_recv_any(
    cx: &mut std::task::Context<'_>,
    bots: &[Bot],
    buf: &mut [u8],
    start: usize,
) -> Poll<(usize, usize, SocketAddr)> {
    let n = bots.len();
    for k in 0..n {
        let i = (start + k) % n;
        let Some(sock) = bots[i].socket.as_ref() else {
            continue;
        };
        let mut rb = ReadBuf::new(buf);
        match sock.poll_recv_from(cx, &mut rb) {
            Poll::Ready(Ok(addr)) => return Poll::Ready((i, rb.filled().len(), addr)),
            Poll::Ready(Err(_)) | Poll::Pending => {}
        }
    }
    Poll::Pending
}
