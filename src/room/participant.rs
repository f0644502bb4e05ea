//! One participant inside a room task: its `Rtc`, what it subscribes to, and the
//! server-offers-only negotiation state (what it publishes: `publication`).

use std::time::{Duration, Instant};

use signaling::{ParticipantInfo, Quality, Role, ServerMessage, TrackKind, TrackSource};
use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::Ssrc;
use str0m::Rtc;
use tokio::sync::{mpsc, oneshot};

use crate::adapt::allocator::{Allocator, Target};
use crate::adapt::prober::Prober;
use crate::adapt::quality::{egress_loss, Limit, LinkStats};
use crate::adapt::queue::RttFloor;
use crate::adapt::shaping::BweSetting;
use crate::adapt::stall::EstimateStall;
use crate::forward::codec::VideoCodec;
use crate::forward::rewrite::Rewriter;
use crate::forward::video::VideoForwarder;
use crate::ids::{ParticipantId, TrackId};

pub use super::publication::{InLayer, Publication, LAYER_RESTART, LAYER_TIMEOUT, OUTAGE_HOLD};

/// The emitted estimate, or the raw one when that is lower (see `Participant::gcc_estimate`).
fn falls_first(emitted: Option<u64>, raw: Option<u64>) -> Option<u64> {
    match (emitted, raw) {
        (Some(e), Some(raw)) => Some(e.min(raw)),
        (e, _) => e,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubscriptionState {
    /// Not yet in an offer.
    ToOpen,
    /// In the outstanding offer, on this mid.
    Negotiating(Mid),
    /// Answered: media flows on this mid.
    Open(Mid),
    /// To be stopped in the next offer.
    ToStop(Mid),
    /// Stop is in the outstanding offer.
    Stopping(Mid),
}

#[derive(Debug)]
pub enum Forwarding {
    Audio(Rewriter),
    Video(VideoForwarder),
}

/// A remote track this participant receives.
#[derive(Debug)]
pub struct Subscription {
    pub track: TrackId,
    pub kind: MediaKind,
    pub source: TrackSource,
    pub state: SubscriptionState,
    /// Set when the publisher left while this was being negotiated.
    pub publisher_gone: bool,
    pub forwarding: Forwarding,
    /// Publisher payload type -> ours (and whether RED must be unwrapped for this subscriber),
    /// learned on first use.
    pub pt_map: Vec<(Pt, Pt, bool)>,
    pub nacks_received: u64,
    /// Packets sent by the last stats event: whether its RTT is new (see `media::fresh_rtt`).
    pub packets_sent: u64,
    pub loss: Option<f32>,
    /// What the client was last told about this video subscription.
    pub reported: Option<Target>,
}

/// First outgoing sequence number: low, so the rollover counter stays 0 for a long time; see
/// str0m's `RtpWrite` docs on ROC.
const FIRST_SEQ: u16 = 1000;

impl Subscription {
    pub fn new(track: TrackId, kind: MediaKind, source: TrackSource) -> Self {
        let forwarding = match kind {
            MediaKind::Audio => Forwarding::Audio(Rewriter::new(48_000, FIRST_SEQ)),
            MediaKind::Video => Forwarding::Video(VideoForwarder::new(FIRST_SEQ)),
        };
        Self {
            track,
            kind,
            source,
            state: SubscriptionState::ToOpen,
            publisher_gone: false,
            forwarding,
            pt_map: Vec::new(),
            nacks_received: 0,
            packets_sent: 0,
            loss: None,
            reported: None,
        }
    }

    pub fn mid(&self) -> Option<Mid> {
        match self.state {
            SubscriptionState::ToOpen => None,
            SubscriptionState::Negotiating(m)
            | SubscriptionState::Open(m)
            | SubscriptionState::ToStop(m)
            | SubscriptionState::Stopping(m) => Some(m),
        }
    }

    pub fn open_mid(&self) -> Option<Mid> {
        match self.state {
            SubscriptionState::Open(m) => Some(m),
            _ => None,
        }
    }

    pub fn video(&mut self) -> Option<&mut VideoForwarder> {
        match &mut self.forwarding {
            Forwarding::Video(v) => Some(v),
            Forwarding::Audio(_) => None,
        }
    }
}

/// A limit on what the allocator may use after the send queue overflowed.
#[derive(Debug, Clone, Copy)]
pub struct CongestionCap {
    pub cap: u64,
    pub at: Instant,
    /// GCC's estimate when the cap was last lowered.
    pub estimate_then: u64,
}

/// Congestion caps are lowered at most this often (one halving per reaction of the link).
pub const CONGESTION_STEP: Duration = Duration::from_millis(500);
/// A congestion cap holds this long before it starts to lift (unless the estimate falls below
/// it first, when GCC has caught up).
pub const CONGESTION_HOLD: Duration = Duration::from_secs(5);

pub struct Participant {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    /// The invite's token id (revoked when removed); `None` for open join.
    pub token_id: Option<String>,
    pub joined_at: std::time::SystemTime,
    /// Payload bytes forwarded to this participant so far (for the consult summary).
    pub rx_bytes: u64,
    pub log: super::participation::ParticipationLog,
    /// The send-only transceiver the client keeps for screen sharing, and whether it shares.
    pub screen_mid: Option<Mid>,
    pub sharing: bool,
    /// The `consult` data channel (chat, images), once open.
    pub channel: Option<str0m::channel::ChannelId>,
    /// ICE-TCP connections from this client (remote address, writer), when it uses TCP.
    pub tcp: Vec<(std::net::SocketAddr, crate::tcp::TcpWriter)>,
    pub audio_muted: bool,
    pub video_muted: bool,
    pub outbox: mpsc::Sender<ServerMessage>,
    /// Dropping it tells the signaling connection to close.
    pub _kick: oneshot::Sender<()>,
    /// The signaling connection this participant is on now: a resume moves it to a new one,
    /// and the old connection's late `Disconnected` is then ignored.
    pub session: u64,
    /// When the signaling connection dropped without a `leave`: the place is kept for the
    /// reconnect grace period.
    pub signal_lost_at: Option<Instant>,
    /// What the others were last told (`participant_reconnecting`).
    pub reconnecting: bool,
    /// When any datagram from them last arrived, and whether that is too long ago
    /// (`resume::is_silent`): shown as reconnecting before ICE or signaling call it lost.
    pub heard_at: Option<Instant>,
    pub silent: bool,
    /// When the next fresh resume token is due.
    pub resume_refresh_at: Instant,
    /// The client asked for an ICE restart; done with the next offer.
    pub ice_restart_wanted: bool,
    /// The offer outstanding restarts ICE.
    pub ice_restart_offered: bool,
    /// The SDP of the offer outstanding, sent again after a resume (the first may be lost).
    pub offer_sdp: Option<String>,
    pub rtc: Rtc,
    pub ufrag: String,
    /// Earlier ICE usernames (before ICE restarts), unregistered when the participant goes.
    pub old_ufrags: Vec<String>,
    /// The client's one offer has been answered.
    pub offered: bool,
    pub pending_offer: Option<SdpPendingOffer>,
    pub publications: Vec<Publication>,
    pub subscriptions: Vec<Subscription>,
    pub next_timeout: Instant,
    pub ice_lost_at: Option<Instant>,
    /// Where this participant's media goes over UDP (follows a rebound NAT).
    pub send_path: super::path::SendPath,
    /// Bandwidth adaptation of what this participant receives.
    pub allocator: Allocator<TrackId>,
    pub prober: Prober,
    pub stall: EstimateStall,
    /// str0m's estimate as it emits it (`EgressBitrateEstimate`: smoothed, re-emitted when it
    /// moves by 5 %).
    pub estimate_bps: Option<u64>,
    /// str0m's unsmoothed estimate, once a second (`EstimateStall` reads whether it moves;
    /// `gcc_estimate` takes it when it is lower).
    pub raw_estimate_bps: Option<u64>,
    /// str0m's estimate has moved off the configured initial value: it now reflects this
    /// link (str0m reports the initial value as soon as media can flow, before any feedback).
    pub link_measured: bool,
    /// When `relearn_link` last made the estimate unmeasured (see `resume::measured_again`).
    pub relearned_at: Option<Instant>,
    /// A cap on the estimate after this participant's send queue overflowed, and when it was
    /// last lowered: GCC can take seconds to notice a link that collapsed.
    pub congestion_cap: Option<CongestionCap>,
    /// What str0m's estimator was last told (padding floor, probe target).
    pub bwe_setting: BweSetting,
    /// No padding or probes before this: a layer switch is under way (see `SWITCH_QUIET`).
    pub probe_quiet_until: Option<Instant>,
    pub data_saver: bool,
    /// The subscriber's own cap (`set_preference.max_layer`).
    pub max_spatial: u8,
    pub rtt: Option<Duration>,
    /// The lowest RTT lately: what is above it is queueing (an allocator input).
    pub rtt_floor: RttFloor,
    /// When media from them last arrived (see `resume::media_resumed`).
    pub last_media_at: Option<Instant>,
    /// When video to and from them last restarted from keyframes (path moved, outage ended).
    pub video_restarted_at: Option<Instant>,
    /// Fraction of what we sent them in the last second that their TWCC feedback reports lost.
    pub twcc_loss: Option<f32>,
    /// What their link delivered lately: evidence against an estimate far below it.
    pub delivered: crate::adapt::delivered::Delivered,
    pub quality: Option<Quality>,
    /// Whether the allocator holds this participant's video back, and since when.
    pub limit: Limit,
    pub limited_since: Option<Instant>,
}

impl Participant {
    /// What a published mid carries: the screen transceiver the client named, else by kind.
    pub fn source_of(&self, mid: Mid, kind: MediaKind) -> TrackSource {
        match kind {
            MediaKind::Audio => TrackSource::Microphone,
            MediaKind::Video if self.screen_mid == Some(mid) => TrackSource::Screen,
            MediaKind::Video => TrackSource::Camera,
        }
    }

    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: self.id.to_string(),
            name: self.name.clone(),
            role: self.role,
            audio_muted: self.audio_muted,
            video_muted: self.video_muted,
        }
    }

    /// Queues a message for the client. A client too slow to read its signaling loses
    /// messages; `reap` drops it when its connection closes.
    pub fn send(&self, message: ServerMessage) -> bool {
        self.outbox.try_send(message).is_ok()
    }

    pub fn publication_by_ssrc(&self, ssrc: Ssrc) -> Option<(usize, u8)> {
        self.publications.iter().enumerate().find_map(|(i, p)| {
            p.ssrcs
                .iter()
                .find(|(s, _)| *s == ssrc)
                .map(|(_, spatial)| (i, *spatial))
        })
    }

    /// The codec parameters of one of this participant's payload types, and whether the
    /// payload type is the RED (RFC 2198) wrapping of that codec.
    pub fn params_for(&self, pt: Pt) -> Option<(PayloadParams, bool)> {
        self.rtc
            .codec_config()
            .find(|p| p.pt() == pt || p.red() == Some(pt))
            .map(|p| (*p, p.pt() != pt))
    }

    pub fn has_negotiation_work(&self) -> bool {
        self.subscriptions.iter().any(|s| {
            matches!(
                s.state,
                SubscriptionState::ToOpen | SubscriptionState::ToStop(_)
            )
        })
    }

    /// GCC's estimate of this participant's downlink: the emitted one, or the raw one when
    /// that is lower. The emitted estimate lags a fall: rural-3g, the raw estimate fell from
    /// 243 to 163 kbit/s and the emitted one followed only 2.5 s later; meanwhile the room went
    /// on sending 240 kbit/s into the pacer, its queue passed `MAX_PACER_DELAY`, and the
    /// congestion cap that followed paused the weak subscriber's video for 8 s. A rise still
    /// waits for the emitted estimate.
    pub fn gcc_estimate(&self) -> Option<u64> {
        falls_first(self.estimate_bps, self.raw_estimate_bps)
    }

    /// The link collapsed under what we send (the pacer queue overflowed): cut what the
    /// allocator may use by 30 %, at most once per `CONGESTION_STEP`.
    pub fn on_congestion(&mut self, now: Instant, initial_bps: u64) {
        let estimate = self.gcc_estimate().unwrap_or(initial_bps);
        let cap = match self.congestion_cap {
            Some(c) if now.saturating_duration_since(c.at) < CONGESTION_STEP => return,
            Some(c) => c.cap.min(estimate),
            None => estimate,
        };
        self.congestion_cap = Some(CongestionCap {
            cap: cap * 7 / 10,
            at: now,
            estimate_then: estimate,
        });
    }

    /// The estimate the allocator works with: GCC's, under the congestion cap while one holds.
    /// The cap is lifted gradually (8 %/s after `CONGESTION_HOLD`), not at once: when the
    /// queue overflowed while GCC still said all was well, GCC's number is not to be trusted
    /// again the moment the cap expires.
    pub fn usable_estimate(&mut self, now: Instant, initial_bps: u64) -> u64 {
        let estimate = self.gcc_estimate().unwrap_or(initial_bps);
        let Some(c) = self.congestion_cap else {
            return estimate;
        };
        let grown = now
            .saturating_duration_since(c.at)
            .saturating_sub(CONGESTION_HOLD)
            .as_secs_f64();
        let cap = (c.cap as f64 * 1.08f64.powf(grown)) as u64;
        // GCC clearly rising since the cap was set means the link really got better.
        let rising = estimate as f64 >= c.estimate_then as f64 * 1.5;
        if cap >= estimate || rising {
            self.congestion_cap = None;
            estimate
        } else {
            cap
        }
    }

    /// Its media path is down (`media_outage`) and its video has not been restarted since:
    /// keyframe requests to it would be lost. A restart comes with the first packet back,
    /// before that packet reaches the meters `media_outage` reads.
    pub fn unreachable(&self, now: Instant) -> bool {
        self.media_outage(now)
            && self
                .video_restarted_at
                .is_none_or(|t| now.saturating_duration_since(t) >= LAYER_TIMEOUT)
    }

    /// No RTP on any track for `LAYER_TIMEOUT`, after some within `OUTAGE_HOLD`: its media
    /// path is down (an outage, a new address being found), not one layer.
    pub fn media_outage(&self, now: Instant) -> bool {
        let meters = || {
            self.publications
                .iter()
                .flat_map(|x| x.layers.iter())
                .map(|l| &l.meter)
        };
        !meters().any(|m| m.active(now, LAYER_TIMEOUT))
            && meters().any(|m| m.active(now, OUTAGE_HOLD))
    }

    /// Since when the participant has been unreachable (signaling or media), if it is.
    pub fn lost_since(&self) -> Option<Instant> {
        match (self.signal_lost_at, self.ice_lost_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// A fresh RTT from any of this participant's streams (see `media::fresh_rtt`): the
    /// latest for its link stats, and one more sample for the floor that queueing is read
    /// against.
    pub fn observe_rtt(&mut self, at: Instant, rtt: Duration) {
        self.rtt = Some(rtt);
        self.rtt_floor.observe(at, rtt);
    }

    pub fn link_stats(&self) -> LinkStats {
        let max = |a: Option<f32>, b: Option<f32>| match (a, b) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, None) | (None, x) => x,
        };
        LinkStats {
            egress_loss: egress_loss(self.twcc_loss, self.subscriptions.iter().map(|s| s.loss)),
            ingress_loss: self
                .publications
                .iter()
                .fold(None, |acc, p| max(acc, p.loss)),
            rtt: self.rtt,
            limit: self.limit,
        }
    }
}

pub fn track_kind(kind: MediaKind) -> TrackKind {
    match kind {
        MediaKind::Audio => TrackKind::Audio,
        MediaKind::Video => TrackKind::Video,
    }
}

pub fn video_codec(params: &PayloadParams) -> VideoCodec {
    use str0m::format::Codec;
    match params.spec().codec {
        Codec::Vp8 => VideoCodec::Vp8,
        Codec::H264 => VideoCodec::H264,
        _ => VideoCodec::Other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_estimate_falls_with_the_raw_one_and_rises_with_the_emitted_one() {
        // (emitted, raw) -> used
        let cases = [
            (None, None, None),
            (None, Some(200_000), None), // nothing emitted yet: not measured
            (Some(600_000), None, Some(600_000)),
            (Some(243_000), Some(163_000), Some(163_000)), // a fall, before it is emitted
            (Some(163_000), Some(250_000), Some(163_000)), // a rise waits for the emitted one
            (Some(300_000), Some(300_000), Some(300_000)),
        ];
        for (emitted, raw, used) in cases {
            assert_eq!(
                super::falls_first(emitted, raw),
                used,
                "{emitted:?} {raw:?}"
            );
        }
    }
}
