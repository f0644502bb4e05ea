//! What a participant publishes, as the room receives it: each track's layers, what each
//! layer costs, and which layers dynacast has stopped.

use std::time::{Duration, Instant};

use str0m::media::MediaKind;
use str0m::rtp::Ssrc;

use crate::adapt::layer::Ladder;
use crate::adapt::meter::{LayerCost, RateMeter, SETTLED};
use crate::forward::keyframe::KeyframeThrottle;
use crate::ids::TrackId;
/// A layer that sent nothing for this long is gone (the publisher's encoder dropped it).
pub const LAYER_TIMEOUT: Duration = Duration::from_millis(1500);
/// A layer dynacast restarted counts as available this long before its first packet.
pub const LAYER_RESTART: Duration = Duration::from_secs(3);
/// A publisher silent on every track (audio too, which DTX keeps alive) has lost its path,
/// not a layer: its ladders hold this long before silent layers count as gone, so its
/// subscribers do not switch layers (each switch waits for a keyframe) while it comes back.
pub const OUTAGE_HOLD: Duration = Duration::from_secs(10);

/// One simulcast layer (or the only stream) of a published video track, as received.
#[derive(Debug, Default)]
pub struct InLayer {
    pub ssrc: Option<Ssrc>,
    pub meter: RateMeter,
    /// Highest temporal layer id seen (0 when the codec carries none).
    pub max_temporal: u8,
    /// What the layer costs (recent peak), kept while dynacast has the layer stopped.
    pub cost: LayerCost,
    /// Dynacast: whether the publisher was asked to send it, and when it was asked again.
    pub requested: bool,
    pub requested_at: Option<Instant>,
    /// Since when no subscriber has needed it.
    pub unneeded_since: Option<Instant>,
    /// NACKs sent for it so far (str0m reports totals; metrics want increments).
    pub nacks_sent: u64,
    /// Packets received by the last stats event: whether its RTT is new (see `media::fresh_rtt`).
    pub packets_received: u64,
    /// It has sent for `SETTLED` without a break at least once: its cost is what its encoder
    /// sends, not a ramp on the way there.
    pub settled: bool,
}

impl InLayer {
    /// Dynacast for this layer: whether some subscriber receives it or is switching to it.
    /// Returns true when the publisher must be told (the layer was stopped or restarted).
    ///
    /// A layer never seen is not stopped: there is nothing to save, and a stopped layer is
    /// offered to subscribers only at its last seen rate. A publisher whose own estimate was
    /// still ramping up may not have sent its top layer yet when the grace ran out; stopping
    /// it then meant nobody could ever ask for it (CI step test: the good subscriber held on
    /// 640x360 for a whole run). Offering such a layer at its configured rate instead made
    /// subscribers wait for a layer a weak uplink cannot send (4.9 s without the patient's
    /// video after an outage).
    pub fn dynacast(&mut self, wanted: bool, now: Instant) -> bool {
        if wanted {
            self.unneeded_since = None;
            if !self.requested {
                self.requested = true;
                self.requested_at = Some(now);
                return true;
            }
            return false;
        }
        let since = *self.unneeded_since.get_or_insert(now);
        if self.requested
            && self.ssrc.is_some()
            && now.saturating_duration_since(since) >= super::adapt::DYNACAST_GRACE
        {
            self.requested = false;
            return true;
        }
        false
    }
}

/// A track this participant sends to the SFU.
#[derive(Debug)]
pub struct Publication {
    pub track: TrackId,
    pub kind: MediaKind,
    /// Whether the client sends simulcast rids (else layer 0 is the only stream).
    pub simulcast: bool,
    pub layers: [InLayer; 3],
    /// Incoming SSRCs and the spatial layer each carries.
    pub ssrcs: Vec<(Ssrc, u8)>,
    pub loss: Option<f32>,
    /// Keyframe requests to the publisher, for all its layers (the browser throttles them per
    /// track, not per layer).
    pub keyframes: KeyframeThrottle,
    /// What this track may send; beyond it packets are dropped on arrival.
    pub budget: crate::forward::budget::IngressBudget,
}

impl Publication {
    pub fn new(track: TrackId, kind: MediaKind, simulcast: bool, budget_bps: u64) -> Self {
        let mut layers: [InLayer; 3] = Default::default();
        for l in &mut layers {
            l.requested = true;
        }
        Self {
            track,
            kind,
            simulcast,
            layers,
            ssrcs: Vec::new(),
            loss: None,
            keyframes: KeyframeThrottle::default(),
            budget: crate::forward::budget::IngressBudget::new(
                budget_bps,
                crate::forward::budget::BURST,
            ),
        }
    }

    /// The layers subscribers may be given now. A layer dynacast stopped counts, at its last
    /// rate (or the configured one), so it can be asked for again.
    /// `outage`: the publisher is silent on every track (see `OUTAGE_HOLD`).
    pub fn ladder(&mut self, now: Instant, nominal_bps: &[u64], outage: bool) -> Ladder {
        let mut rates = [None; 3];
        let mut temporal = 1;
        for (s, l) in self.layers.iter_mut().enumerate() {
            if !self.simulcast && s > 0 {
                break;
            }
            let measured = l.meter.bps(now).filter(|b| *b > 0);
            if l.meter.active(now, LAYER_TIMEOUT) {
                let cost = match measured {
                    Some(b) => {
                        let settled = l.meter.age(now).is_some_and(|a| a >= SETTLED);
                        l.settled |= settled;
                        Some(l.cost.observe(now, b, settled))
                    }
                    None => l.cost.last(),
                };
                rates[s] = cost.or(nominal_bps.get(s).copied());
                temporal = temporal.max(l.max_temporal + 1);
            } else if l.ssrc.is_some() {
                let restarting = l
                    .requested_at
                    .is_some_and(|t| now.saturating_duration_since(t) < LAYER_RESTART);
                if !l.requested || restarting || outage {
                    rates[s] = stopped_cost(l.cost.last(), nominal_bps.get(s).copied(), l.settled);
                }
            }
        }
        Ladder::from_spatial_rates(rates, temporal)
    }
}

/// What a layer that is not flowing is offered at: its last cost, or its configured rate if
/// it has none. A layer stopped before its encoder had settled was last measured on the way
/// up, so it is offered at no less than its configured rate: at its ramp-up price (148 kbit/s
/// for 640x360, which sends 330 once settled) the rural-3g subscriber asked for it, and went
/// back to 320x180 2.6 s later when the restarted layer showed what it costs.
fn stopped_cost(last: Option<u64>, nominal: Option<u64>, settled: bool) -> Option<u64> {
    match (last, nominal) {
        (Some(c), Some(n)) if !settled => Some(c.max(n)),
        (Some(c), _) => Some(c),
        (None, n) => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ParticipantId;

    fn spatial_layers(ladder: &crate::adapt::layer::Ladder) -> Vec<u8> {
        let mut s: Vec<u8> = ladder.steps().map(|(l, _)| l.spatial).collect();
        s.dedup();
        s
    }

    #[test]
    fn dynacast_stops_only_layers_it_has_seen_and_restarts_them_when_wanted() {
        let now = Instant::now();
        let grace = super::super::adapt::DYNACAST_GRACE;
        let mut layer = InLayer {
            requested: true,
            ..Default::default()
        };
        // Never seen (the publisher's encoder has not reached it yet): never stopped, so it
        // is still asked for when the publisher's estimate allows it.
        assert!(!layer.dynacast(false, now));
        assert!(!layer.dynacast(false, now + grace * 10));
        assert!(layer.requested);
        // Seen, then unneeded for the grace: stopped once.
        layer.ssrc = Some(Ssrc::from(7));
        layer.unneeded_since = None;
        assert!(!layer.dynacast(false, now + grace * 10));
        assert!(!layer.dynacast(false, now + grace * 11 - Duration::from_millis(1)));
        assert!(layer.dynacast(false, now + grace * 11));
        assert!(!layer.requested);
        assert!(!layer.dynacast(false, now + grace * 12));
        // Stopped, it is offered at its last rate; wanted again: restarted once.
        let nominal = [150_000, 400_000, 1_200_000];
        let track = TrackId {
            publisher: ParticipantId(1),
            mid: str0m::media::Mid::from("1"),
        };
        let mut p = Publication::new(track, MediaKind::Video, true, 5_000_000);
        p.layers[2] = layer;
        assert_eq!(spatial_layers(&p.ladder(now, &nominal, false)), [2]);
        let at = now + grace * 13;
        assert!(p.layers[2].dynacast(true, at));
        assert_eq!(p.layers[2].requested_at, Some(at));
        assert!(!p.layers[2].dynacast(true, at));
        // A never-seen layer is not offered (a weak uplink may never send it).
        let mut fresh = Publication::new(p.track.clone(), MediaKind::Video, true, 5_000_000);
        fresh.layers[2].requested = false;
        assert!(spatial_layers(&fresh.ladder(now, &nominal, false)).is_empty());
    }

    #[test]
    fn a_layer_stopped_while_ramping_up_is_offered_at_its_configured_rate() {
        // (last cost, configured, settled) -> offered
        let cases = [
            (None, None, false, None),
            (None, Some(400_000), false, Some(400_000)),
            (Some(148_000), Some(400_000), false, Some(400_000)), // stopped on the way up
            (Some(148_000), Some(400_000), true, Some(148_000)),  // settled: what it costs
            (Some(520_000), Some(400_000), false, Some(520_000)), // never below what was seen
            (Some(148_000), None, false, Some(148_000)),
        ];
        for (last, nominal, settled, offered) in cases {
            assert_eq!(
                super::stopped_cost(last, nominal, settled),
                offered,
                "{last:?} {nominal:?} {settled}"
            );
        }
    }
}
