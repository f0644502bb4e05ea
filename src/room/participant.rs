//! One participant inside a room task: its `Rtc`, what it publishes, what it subscribes to, and
//! the server-offers-only negotiation state.

use std::time::{Duration, Instant};

use signaling::{ParticipantInfo, Role, ServerMessage, TrackKind};
use str0m::change::SdpPendingOffer;
use str0m::format::PayloadParams;
use str0m::media::{MediaKind, Mid, Pt};
use str0m::rtp::Ssrc;
use str0m::Rtc;
use tokio::sync::{mpsc, oneshot};

use crate::forward::codec::VideoCodec;
use crate::forward::keyframe::KeyframeThrottle;
use crate::forward::rewrite::Rewriter;
use crate::ids::{ParticipantId, TrackId};

/// A track this participant sends to the SFU.
#[derive(Debug)]
pub struct Publication {
    pub track: TrackId,
    pub kind: MediaKind,
    pub keyframes: KeyframeThrottle,
    /// Incoming SSRCs seen for this track (one per simulcast layer), for fast lookup.
    pub ssrcs: Vec<Ssrc>,
    /// NACKs sent for it so far (str0m reports totals; metrics want increments).
    pub nacks_sent: u64,
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

/// A remote track this participant receives.
#[derive(Debug)]
pub struct Subscription {
    pub track: TrackId,
    pub kind: MediaKind,
    pub state: SubscriptionState,
    /// Set when the publisher left while this was being negotiated.
    pub publisher_gone: bool,
    pub rewriter: Rewriter,
    /// Publisher payload type -> ours, learned on first use.
    pub pt_map: Vec<(Pt, Pt)>,
    pub nacks_received: u64,
    pub keyframes_received: u64,
}

impl Subscription {
    pub fn new(track: TrackId, kind: MediaKind) -> Self {
        let clock_rate = if kind == MediaKind::Audio {
            48_000
        } else {
            90_000
        };
        Self {
            track,
            kind,
            state: SubscriptionState::ToOpen,
            publisher_gone: false,
            // Starting low keeps the rollover counter at 0 for a long time; see str0m's
            // `RtpWrite` docs on ROC.
            rewriter: Rewriter::new(clock_rate, 1000),
            pt_map: Vec::new(),
            nacks_received: 0,
            keyframes_received: 0,
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
}

/// How long ICE may stay disconnected before the participant is dropped. Rural links stall
/// for seconds; a consent refresh brings the media back without a new join.
pub const ICE_GRACE: Duration = Duration::from_secs(20);

pub struct Participant {
    pub id: ParticipantId,
    pub name: String,
    pub role: Role,
    pub audio_muted: bool,
    pub video_muted: bool,
    pub outbox: mpsc::Sender<ServerMessage>,
    /// Dropping it tells the signaling connection to close.
    pub _kick: oneshot::Sender<()>,
    pub rtc: Rtc,
    pub ufrag: String,
    /// The client's one offer has been answered.
    pub offered: bool,
    pub pending_offer: Option<SdpPendingOffer>,
    pub publications: Vec<Publication>,
    pub subscriptions: Vec<Subscription>,
    pub next_timeout: Instant,
    pub ice_lost_at: Option<Instant>,
}

impl Participant {
    pub fn info(&self) -> ParticipantInfo {
        ParticipantInfo {
            participant_id: self.id.to_string(),
            name: self.name.clone(),
            role: self.role,
            audio_muted: self.audio_muted,
            video_muted: self.video_muted,
        }
    }

    /// Queues a message for the client; a client too slow to read its signaling is dropped by
    /// the caller seeing `false`.
    pub fn send(&self, message: ServerMessage) -> bool {
        self.outbox.try_send(message).is_ok()
    }

    pub fn publication_by_ssrc(&self, ssrc: Ssrc) -> Option<usize> {
        self.publications
            .iter()
            .position(|p| p.ssrcs.contains(&ssrc))
    }

    /// The codec parameters of one of this participant's payload types.
    pub fn params_for(&self, pt: Pt) -> Option<PayloadParams> {
        self.rtc.codec_config().find(|p| p.pt() == pt).cloned()
    }

    pub fn has_negotiation_work(&self) -> bool {
        self.subscriptions.iter().any(|s| {
            matches!(
                s.state,
                SubscriptionState::ToOpen | SubscriptionState::ToStop(_)
            )
        })
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
