//! The media side of one bot, independent of the signaling that negotiated it: a peer
//! connection ([`Pc`]: a str0m `Rtc` in RTP mode on its own UDP socket), what a bot publishes
//! ([`Publisher`]: Opus-like audio and VP8 layers with send stamps) and what it counts on
//! receive ([`Rx`]: loss from sequence numbers, per-sender packets, latency from the stamps).

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use str0m::change::SdpApi;
use str0m::format::Codec;
use str0m::media::{Direction, KeyframeRequest, MediaKind, Mid, Pt, Rid};
use str0m::media::{Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, IceConnectionState, Input, Output, Rtc};
use tokio::net::UdpSocket;

use crate::hist::Histogram;
use crate::room::{Shared, SLOW_US};
use crate::stamp::{self, Stamp, STAMP_LEN, STREAMS, STREAM_AUDIO, STREAM_VIDEO_BASE};
use crate::vp8::{self, Vp8Packetizer};

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
/// Frame size each layer announces in its keyframes.
pub const LAYER_DIMS: [(u16, u16); 3] = [(320, 180), (640, 360), (1280, 720)];
/// Opus TOC byte: config 31 (CELT fullband, 20 ms), mono, one frame.
const OPUS_TOC: u8 = 0xF8;

/// Small deterministic jitter so bots do not send in lockstep.
pub fn jitter(seed: u32, salt: u32, max: Duration) -> Duration {
    let mut x = seed.wrapping_mul(0x9E37_79B9) ^ salt.wrapping_mul(0x85EB_CA6B);
    x ^= x >> 15;
    x = x.wrapping_mul(0x2C1B_3C6D);
    x ^= x >> 12;
    max.mul_f64((x % 10_000) as f64 / 10_000.0)
}

/// What a peer connection reports to its bot.
pub enum PcEvent<'a> {
    Connected,
    KeyframeRequest(Mid, Option<Rid>),
    Rtp(Option<MediaKind>, &'a RtpPacket),
}

/// Due timeout rounds fed within one `Pc::drive` (a keyframe is tens of packets).
const MAX_DUE_ROUNDS: usize = 256;

/// One peer connection: a str0m `Rtc` (RTP mode, Opus and VP8 only) on its own UDP socket
/// (127.0.0.1 unless `--bind-ip`) with one host candidate.
pub struct Pc {
    pub rtc: Rtc,
    pub socket: UdpSocket,
    pub local: SocketAddr,
    pub candidate: Candidate,
    pub next_timeout: Instant,
    pub connected: bool,
    /// When the datagram being handled reached the socket (kernel timestamp), for latency.
    pub arrived: Option<Instant>,
    /// The sender id, for error messages.
    sender: u32,
    /// Payload type -> kind, cached from the codec config (cleared on renegotiation).
    pt_kinds: Vec<(Pt, Option<MediaKind>)>,
}

impl Pc {
    pub fn new(sender: u32, ip: IpAddr, now: Instant) -> Result<Pc, String> {
        let std_sock = std::net::UdpSocket::bind((ip, 0)).map_err(|e| e.to_string())?;
        std_sock.set_nonblocking(true).map_err(|e| e.to_string())?;
        crate::rxtime::enable(&std_sock).map_err(|e| format!("SO_TIMESTAMPNS: {e}"))?;
        let socket = UdpSocket::from_std(std_sock).map_err(|e| e.to_string())?;
        let local = socket.local_addr().map_err(|e| e.to_string())?;
        let mut rtc = Rtc::builder()
            .set_rtp_mode(true)
            .clear_codecs()
            .enable_opus(true, false)
            .enable_vp8(true)
            .build(now);
        let candidate = Candidate::host(local, "udp").map_err(|e| e.to_string())?;
        rtc.add_local_candidate(candidate.clone());
        Ok(Pc {
            rtc,
            socket,
            local,
            candidate,
            next_timeout: now,
            connected: false,
            arrived: None,
            sender,
            pt_kinds: Vec::new(),
        })
    }

    /// Forget cached payload types (a new description may remap them).
    pub fn renegotiated(&mut self) {
        self.pt_kinds.clear();
    }

    pub fn receive(&mut self, data: &[u8], source: SocketAddr, now: Instant) {
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        let _ = self.rtc.handle_input(input);
    }

    pub fn timeout(&mut self, now: Instant) {
        let _ = self.rtc.handle_input(Input::Timeout(now));
    }

    /// Polls the `Rtc` until it waits for time; sends its datagrams and hands events to `on`.
    pub fn drive(&mut self, shared: &Shared, mut on: impl FnMut(PcEvent<'_>)) {
        let mut due_rounds = 0;
        loop {
            if !self.rtc.is_alive() {
                self.next_timeout = Instant::now() + Duration::from_secs(3600);
                return;
            }
            let out = match self.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    shared.error(format!("bot {}: rtc: {e}", self.sender));
                    self.rtc.disconnect();
                    return;
                }
            };
            match out {
                Output::Timeout(t) => {
                    self.next_timeout = t;
                    // str0m's pacer releases one packet per timeout round and asks for the
                    // next round at once; waiting for the bots' timer (tokio's 1 ms wheel)
                    // would hold a frame's later packets here and count that as forwarding
                    // latency. Due rounds are fed at once, a bounded number per drive.
                    let now = Instant::now();
                    if t > now || due_rounds >= MAX_DUE_ROUNDS {
                        return;
                    }
                    due_rounds += 1;
                    let _ = self.rtc.handle_input(Input::Timeout(now));
                }
                Output::Transmit(t) => {
                    if let Err(e) = self.socket.try_send_to(&t.contents, t.destination) {
                        // The first few say why (e.g. a remote candidate this socket cannot
                        // reach); the count is in the report.
                        if shared.udp_send_errors.fetch_add(1, Relaxed) < 3 {
                            shared.error(format!(
                                "bot {}: send from {} to {}: {e}",
                                self.sender, self.local, t.destination
                            ));
                        }
                    }
                }
                Output::Event(e) => match e {
                    Event::Connected => {
                        self.connected = true;
                        on(PcEvent::Connected);
                    }
                    Event::IceConnectionStateChange(IceConnectionState::Disconnected) => {
                        shared.error(format!("bot {}: ICE disconnected", self.sender));
                    }
                    Event::KeyframeRequest(KeyframeRequest { mid, rid, .. }) => {
                        on(PcEvent::KeyframeRequest(mid, rid));
                    }
                    Event::RtpPacket(p) => {
                        let kind = self.kind_of(p.header.payload_type);
                        on(PcEvent::Rtp(kind, &p));
                    }
                    _ => {}
                },
            }
        }
    }

    fn kind_of(&mut self, pt: Pt) -> Option<MediaKind> {
        if let Some((_, k)) = self.pt_kinds.iter().find(|(x, _)| *x == pt) {
            return *k;
        }
        let k = self
            .rtc
            .codec_config()
            .find(|c| c.pt() == pt)
            .and_then(|c| match c.spec().codec {
                Codec::Opus => Some(MediaKind::Audio),
                Codec::Vp8 => Some(MediaKind::Video),
                _ => None,
            });
        self.pt_kinds.push((pt, k));
        k
    }
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
    dims: (u16, u16),
    interval: Duration,
    next_frame: Instant,
    next_keyframe: Instant,
    keyframe_pending: bool,
    seq: u64,
    counter: u32,
    ts_offset: u32,
    vp8: Vp8Packetizer,
    /// The rest of the frame being sent: payload, RTP timestamp, marker.
    pending: VecDeque<(Vec<u8>, u32, bool)>,
}

/// What one bot publishes: one audio and one video m-line (three rids, or one stream at the
/// `f` rate without simulcast).
pub struct Publisher {
    sender: u32,
    pub audio_mid: Option<Mid>,
    pub video_mid: Option<Mid>,
    opus_pt: Option<Pt>,
    vp8_pt: Option<Pt>,
    audio: AudioTx,
    layers: Vec<LayerTx>,
}

impl Publisher {
    pub fn new(sender: u32, simulcast: bool, now: Instant) -> Self {
        let layer = |i: usize, rid: Option<&str>| {
            let (_, bps, fps) = LAYERS[i];
            LayerTx {
                rid: rid.map(Rid::from),
                stream: STREAM_VIDEO_BASE + i as u8,
                active: true,
                frame_bytes: (bps / 8 / fps as u64) as usize,
                dims: LAYER_DIMS[i],
                interval: Duration::from_secs(1) / fps,
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
                pending: VecDeque::new(),
            }
        };
        let layers = if simulcast {
            (0..3).map(|i| layer(i, Some(LAYERS[i].0))).collect()
        } else {
            vec![layer(2, None)]
        };
        Publisher {
            sender,
            audio_mid: None,
            video_mid: None,
            opus_pt: None,
            vp8_pt: None,
            audio: AudioTx {
                seq: 1 + (sender as u64 * 31_337) % 30_000,
                ts: sender.wrapping_mul(0x9E37_79B9),
                counter: 0,
                next: now,
            },
            layers,
        }
    }

    /// Before a fresh join on a new peer connection (`--rejoin`): the old mids and payload
    /// types mean nothing there, and every layer is wanted until the new node says otherwise.
    /// Sequence numbers and stamp counters go on, so receivers' accounting stays continuous.
    pub fn reset(&mut self) {
        self.audio_mid = None;
        self.video_mid = None;
        self.opus_pt = None;
        self.vp8_pt = None;
        for l in &mut self.layers {
            l.active = true;
            l.keyframe_pending = true;
            l.pending.clear();
        }
    }

    /// Adds the two `sendonly` m-lines to an offer being built.
    pub fn add_media(&mut self, api: &mut SdpApi<'_>) {
        let stream_id = format!("synth-{}", self.sender);
        let audio = api.add_media(
            MediaKind::Audio,
            Direction::SendOnly,
            Some(stream_id.clone()),
            Some(format!("{stream_id}-a")),
            None,
        );
        let simulcast = self.layers.iter().any(|l| l.rid.is_some()).then(|| {
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
        self.audio_mid = Some(audio);
        self.video_mid = Some(video);
    }

    /// After the answer: the payload types to send with.
    pub fn negotiated(&mut self, rtc: &Rtc) {
        let pt = |codec| {
            rtc.codec_config()
                .find(|p| p.spec().codec == codec)
                .map(|p| p.pt())
        };
        self.opus_pt = pt(Codec::Opus);
        self.vp8_pt = pt(Codec::Vp8);
    }

    /// Media starts (jittered) once ICE and DTLS are up, each layer with a keyframe.
    pub fn start(&mut self, now: Instant) {
        self.audio.next = now + jitter(self.sender, 0, AUDIO_INTERVAL);
        for (n, l) in self.layers.iter_mut().enumerate() {
            l.next_frame = now + jitter(self.sender, n as u32 + 1, l.interval);
            l.next_keyframe = l.next_frame + KEYFRAME_INTERVAL;
            l.keyframe_pending = true;
        }
    }

    pub fn keyframe_request(&mut self, mid: Mid, rid: Option<Rid>) {
        if Some(mid) == self.video_mid {
            for l in &mut self.layers {
                if rid.is_none() || l.rid == rid {
                    l.keyframe_pending = true;
                }
            }
        }
    }

    /// Dynacast: only the rids in `active` are sent; a restarted one starts with a keyframe.
    pub fn set_active(&mut self, active: &[&str], now: Instant) {
        for l in &mut self.layers {
            let Some(rid) = l.rid else { continue };
            let on = active.iter().any(|a| *a == &*rid);
            if on && !l.active {
                l.keyframe_pending = true;
                l.next_frame = now;
            }
            l.active = on;
        }
    }

    /// When the next packet is due.
    pub fn next_due(&self) -> Instant {
        self.layers
            .iter()
            .filter(|l| l.active || !l.pending.is_empty())
            .map(|l| match l.pending.is_empty() {
                true => l.next_frame,
                false => Instant::now(),
            })
            .fold(self.audio.next, Instant::min)
    }

    /// Writes the next packet that is due, stamped as it is written; true if one was written.
    /// The caller drives the `Rtc` (which transmits it) and calls again until nothing is due:
    /// so each stamp is the time that packet reached the socket, and the latency measured is
    /// forwarding, not the time a frame's later packets waited behind its earlier ones here.
    pub fn send(&mut self, rtc: &mut Rtc, shared: &Shared, now: Instant) -> bool {
        let (Some(audio_mid), Some(video_mid)) = (self.audio_mid, self.video_mid) else {
            return false;
        };
        if let Some(pt) = self.opus_pt {
            let a = &mut self.audio;
            if a.next <= now {
                let mut payload = vec![0u8; AUDIO_BYTES];
                payload[0] = OPUS_TOC;
                Stamp {
                    sent_ns: stamp::now_ns(),
                    sender: self.sender,
                    stream: STREAM_AUDIO,
                    counter: a.counter,
                }
                .encode(&mut payload[1..1 + STAMP_LEN]);
                for (k, x) in payload[1 + STAMP_LEN..].iter_mut().enumerate() {
                    *x = (k as u8) ^ (a.counter as u8);
                }
                let mut api = rtc.direct_api();
                let wrote = if let Some(stream) = api.stream_tx_by_mid(audio_mid, None) {
                    stream.write_rtp(RtpWrite::new(pt, a.seq.into(), a.ts, now, payload));
                    shared.sent_packets.fetch_add(1, Relaxed);
                    shared.sent_audio.fetch_add(1, Relaxed);
                    shared.sent_bytes.fetch_add(AUDIO_BYTES as u64, Relaxed);
                    true
                } else {
                    false
                };
                a.seq += 1;
                a.counter = a.counter.wrapping_add(1);
                a.ts = a.ts.wrapping_add(960);
                a.next += AUDIO_INTERVAL;
                if a.next + Duration::from_millis(200) < now {
                    // Far behind (the machine stalled): skip rather than burst.
                    a.next = now + AUDIO_INTERVAL;
                }
                if wrote {
                    return true;
                }
            }
        }
        let Some(pt) = self.vp8_pt else {
            return false;
        };
        let epoch = stamp::epoch();
        for l in &mut self.layers {
            if l.pending.is_empty() && l.active && l.next_frame <= now {
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
                let packets = vp8::packetize(&meta, size, l.dims);
                let ts = ((now - epoch).as_micros() as u64 * 9 / 100) as u32;
                let ts = ts.wrapping_add(l.ts_offset);
                let n = packets.len();
                l.pending.extend(
                    packets
                        .into_iter()
                        .enumerate()
                        .map(|(k, p)| (p, ts, k + 1 == n)),
                );
                l.next_frame += l.interval;
                if l.next_frame + Duration::from_millis(200) < now {
                    l.next_frame = now + l.interval;
                }
            }
            let Some((mut p, ts, marker)) = l.pending.pop_front() else {
                continue;
            };
            let mut api = rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(video_mid, l.rid) else {
                l.pending.clear();
                continue;
            };
            Stamp {
                sent_ns: stamp::now_ns(),
                sender: self.sender,
                stream: l.stream,
                counter: l.counter,
            }
            .encode(&mut p[vp8::STAMP_OFFSET..vp8::STAMP_OFFSET + STAMP_LEN]);
            let len = p.len() as u64;
            stream.write_rtp(
                RtpWrite::new(pt, l.seq.into(), ts, now, p)
                    .marker(marker)
                    .nackable(true),
            );
            l.seq += 1;
            l.counter = l.counter.wrapping_add(1);
            shared.sent_packets.fetch_add(1, Relaxed);
            shared.sent_video.fetch_add(1, Relaxed);
            shared.sent_bytes.fetch_add(len, Relaxed);
            return true;
        }
        false
    }
}

mod rx;
pub use rx::Rx;
