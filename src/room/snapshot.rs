//! A point-in-time view of a room for operators and benchmarks (`GET /status`). No names:
//! who is in a consult is medical information; roles and numbers are enough to operate it.

use std::time::Instant;

use serde::Serialize;

use super::participant::{Forwarding, Participant};
use super::Room;
use crate::adapt::allocator::Target;
use crate::adapt::layer::RIDS;

#[derive(Debug, Clone, Serialize)]
pub struct RoomSnapshot {
    pub room: String,
    pub participants: Vec<ParticipantSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParticipantSnapshot {
    pub participant_id: String,
    pub role: signaling::Role,
    pub quality: Option<signaling::Quality>,
    pub estimate_bps: Option<u64>,
    pub rtt_ms: Option<u64>,
    /// What the adaptation reads of this participant's link, so that a stalled step up can be
    /// explained from outside: loss both ways (0..1), the queue (RTT above its floor), and the
    /// rates last handed to the estimator (padding fills up to `pad_bps`; `probe_bps` is what
    /// it probes for).
    pub egress_loss: Option<f32>,
    pub ingress_loss: Option<f32>,
    pub queue_delay_ms: u64,
    pub pad_bps: u64,
    pub probe_bps: u64,
    pub data_saver: bool,
    pub publications: Vec<PublicationSnapshot>,
    pub subscriptions: Vec<SubscriptionSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PublicationSnapshot {
    pub track_id: String,
    pub kind: &'static str,
    pub layers: Vec<LayerSnapshot>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerSnapshot {
    pub rid: &'static str,
    pub bps: Option<u64>,
    pub requested: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SubscriptionSnapshot {
    pub track_id: String,
    pub kind: &'static str,
    pub mid: Option<String>,
    /// The allocator's target: a rid, or null when paused.
    pub target: Option<&'static str>,
    pub target_temporal: Option<u8>,
    pub paused: Option<&'static str>,
    /// The layer actually forwarded now (it changes on the target's next keyframe).
    pub current: Option<&'static str>,
}

fn kind_name(kind: str0m::media::MediaKind) -> &'static str {
    match kind {
        str0m::media::MediaKind::Audio => "audio",
        str0m::media::MediaKind::Video => "video",
    }
}

impl Room {
    pub(super) fn snapshot(&mut self, now: Instant) -> RoomSnapshot {
        RoomSnapshot {
            room: self.id.0.clone(),
            participants: self
                .participants
                .iter_mut()
                .map(|p| participant(p, now))
                .collect(),
        }
    }
}

fn participant(p: &mut Participant, now: Instant) -> ParticipantSnapshot {
    let link = p.link_stats();
    ParticipantSnapshot {
        participant_id: p.id.to_string(),
        role: p.role,
        quality: p.quality,
        estimate_bps: p.estimate_bps,
        rtt_ms: p.rtt.map(|d| d.as_millis() as u64),
        egress_loss: link.egress_loss,
        ingress_loss: link.ingress_loss,
        queue_delay_ms: p.rtt_floor.queue_delay().as_millis() as u64,
        pad_bps: p.bwe_setting.pad_bps,
        probe_bps: p.bwe_setting.probe_bps,
        data_saver: p.data_saver,
        publications: p
            .publications
            .iter_mut()
            .map(|x| PublicationSnapshot {
                track_id: x.track.to_string(),
                kind: kind_name(x.kind),
                layers: x
                    .layers
                    .iter_mut()
                    .zip(RIDS)
                    .filter(|(l, _)| l.ssrc.is_some())
                    .map(|(l, rid)| LayerSnapshot {
                        rid,
                        bps: l.meter.bps(now),
                        requested: l.requested,
                    })
                    .collect(),
            })
            .collect(),
        subscriptions: p
            .subscriptions
            .iter()
            .map(|s| {
                let (target, target_temporal, paused) = match s.reported {
                    Some(Target::Layer(l)) => (Some(l.rid()), Some(l.temporal), None),
                    Some(Target::PausedForBandwidth) => (None, None, Some("bandwidth")),
                    Some(Target::Unavailable) => (None, None, Some("unavailable")),
                    None => (None, None, None),
                };
                let current = match &s.forwarding {
                    Forwarding::Video(f) => f.current().map(|c| RIDS[c.min(2) as usize]),
                    Forwarding::Audio(_) => None,
                };
                SubscriptionSnapshot {
                    track_id: s.track.to_string(),
                    kind: kind_name(s.kind),
                    mid: s.mid().map(|m| m.to_string()),
                    target,
                    target_temporal,
                    paused,
                    current,
                }
            })
            .collect(),
    }
}
