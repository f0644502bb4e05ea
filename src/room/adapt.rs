//! The adaptation tick: per subscriber, feed the allocator and apply its targets; per
//! publisher, dynacast (stop layers nobody receives); per participant, connection quality.
//! Deciding lives in `crate::adapt`; this file only gathers inputs and applies outputs.

use std::time::{Duration, Instant};

use signaling::{PauseReason, ServerMessage};
use str0m::bwe::Bitrate;
use str0m::media::MediaKind;

use super::participant::{Forwarding, SubscriptionState};
use super::Room;
use crate::adapt::allocator::{self, Priority, Target, VideoInput};
use crate::adapt::layer::{Layer, RIDS};
use crate::adapt::quality::{quality, Limit};
use crate::adapt::shaping::{self, Phase};
use crate::ids::TrackId;

/// How often allocations are recomputed.
pub const ADAPT_INTERVAL: Duration = Duration::from_millis(200);
/// How often connection quality is re-evaluated.
pub const QUALITY_INTERVAL: Duration = Duration::from_secs(2);
/// A layer nobody has needed for this long is stopped at the publisher. Long enough that a
/// subscriber dipping for a few seconds does not make the publisher restart an encoder.
pub const DYNACAST_GRACE: Duration = Duration::from_secs(5);
/// Per-packet cost the RTP meters do not see: IPv4 + UDP + SRTP tag + TWCC, at 50 packets/s.
pub const AUDIO_OVERHEAD_BPS: u64 = 50 * (20 + 8 + 16 + 8) * 8;
/// While a subscriber waits for the keyframe of a layer it switches to, and this long after,
/// it gets neither padding nor probes beyond its media: a probe cluster on top of a keyframe
/// burst made a 2 Mbit/s link's estimate fall from ~1 Mbit/s to ~0.36 right after each step
/// up to 720p (CI step test: 2 of 2 runs stuck on 360p before the step).
pub const SWITCH_QUIET: Duration = Duration::from_secs(1);
/// Video held below what a subscriber would take counts against its quality only after this
/// long: the first seconds of every call are a ramp-up.
pub const REDUCED_GRACE: Duration = Duration::from_secs(6);

impl Room {
    pub(super) fn adapt(&mut self, now: Instant) {
        let nominal: Vec<u64> = self
            .plane
            .video_layers
            .iter()
            .map(|l| l.max_bitrate)
            .collect();
        // Ladders of every published video track, once per tick.
        let mut ladders = Vec::new();
        let mut audio_rates: Vec<(TrackId, u64)> = Vec::new();
        for p in &mut self.participants {
            let outage = p.media_outage(now);
            for publication in &mut p.publications {
                if publication.kind == MediaKind::Video {
                    let ladder = publication.ladder(now, &nominal, outage);
                    ladders.push((publication.track.clone(), ladder));
                } else {
                    // Only audio that flows costs anything (muted, DTX silence or no mic: ~0).
                    let meter = &mut publication.layers[0].meter;
                    let rate = if meter.active(now, Duration::from_secs(1)) {
                        meter.bps(now).unwrap_or(32_000) + AUDIO_OVERHEAD_BPS
                    } else {
                        0
                    };
                    audio_rates.push((publication.track.clone(), rate));
                }
            }
        }

        let speaker = self.speakers.update(now);
        if speaker != self.active_speaker {
            self.active_speaker = speaker;
            if let Some(id) = speaker {
                for p in &self.participants {
                    p.send(ServerMessage::ActiveSpeaker {
                        participant_id: id.to_string(),
                    });
                }
            }
        }
        let mut keyframes: Vec<(TrackId, u8)> = Vec::new();
        for j in 0..self.participants.len() {
            let s = &mut self.participants[j];
            let audio_bps: u64 = s
                .subscriptions
                .iter()
                .filter(|x| x.kind == MediaKind::Audio && x.open_mid().is_some())
                .filter_map(|x| audio_rates.iter().find(|(t, _)| *t == x.track))
                .map(|(_, r)| *r)
                .sum();
            let video: Vec<VideoInput<TrackId>> = s
                .subscriptions
                .iter()
                .filter(|x| x.kind == MediaKind::Video && x.open_mid().is_some())
                .filter_map(|x| {
                    let ladder = ladders.iter().find(|(t, _)| *t == x.track)?.1.clone();
                    Some(VideoInput {
                        key: x.track.clone(),
                        priority: if x.source == signaling::TrackSource::Screen {
                            Priority::Share
                        } else if Some(x.track.publisher) == speaker {
                            Priority::ActiveSpeaker
                        } else {
                            Priority::Normal
                        },
                        ladder,
                        max_spatial: if s.data_saver { 0 } else { s.max_spatial },
                    })
                })
                .collect();
            let input = allocator::Input {
                estimate_bps: s.usable_estimate(now, self.plane.initial_estimate_bps),
                measured: s.link_measured,
                audio_bps,
                loss: s.link_stats().egress_loss.unwrap_or(0.0),
                queue_delay: s.rtt_floor.queue_delay(),
                delivered_bps: s.delivered.bps(now),
                video,
            };
            let out = s.allocator.update(now, &input);
            for (track, why) in &out.paused {
                tracing::info!(
                    participant = %s.id,
                    %track,
                    ?why,
                    estimate_bps = input.estimate_bps,
                    audio_bps = input.audio_bps,
                    delivered_bps = input.delivered_bps,
                    "video paused for bandwidth"
                );
            }
            let paused = out
                .targets
                .iter()
                .any(|(_, t)| *t == Target::PausedForBandwidth);
            let reduced = input.video.iter().zip(&out.targets).any(|(v, (_, t))| {
                matches!((t, v.top()), (Target::Layer(l), Some((best, _))) if *l != best)
            });
            let since = if paused || reduced {
                *s.limited_since.get_or_insert(now)
            } else {
                s.limited_since = None;
                now
            };
            s.limit = if paused {
                Limit::Paused
            } else if reduced && now.saturating_duration_since(since) >= REDUCED_GRACE {
                Limit::Reduced
            } else {
                Limit::None
            };

            for (track, target) in &out.targets {
                let Some(sub) = s.subscriptions.iter_mut().find(|x| &x.track == track) else {
                    continue;
                };
                let Forwarding::Video(forwarder) = &mut sub.forwarding else {
                    continue;
                };
                let layer = match target {
                    Target::Layer(l) => Some(*l),
                    _ => None,
                };
                if forwarder.target() != layer {
                    forwarder.set_target(layer);
                }
                if let Some(spatial) = forwarder.switch_pending() {
                    keyframes.push((track.clone(), spatial));
                    s.probe_quiet_until = Some(now + SWITCH_QUIET);
                }
                if sub.reported != Some(*target) {
                    tracing::debug!(
                        participant = %s.id,
                        %track,
                        ?target,
                        estimate_bps = input.estimate_bps,
                        audio_bps = input.audio_bps,
                        loss = input.loss,
                        queue_ms = input.queue_delay.as_millis() as u64,
                        delivered_bps = input.delivered_bps,
                        ladder = ?input.video.iter().find(|v| &v.key == track).map(|v| &v.ladder),
                        "subscription target"
                    );
                    sub.reported = Some(*target);
                    let (layer, temporal, paused) = match target {
                        Target::Layer(l) => (Some(l.rid().to_string()), Some(l.temporal), None),
                        Target::PausedForBandwidth => (None, None, Some(PauseReason::Bandwidth)),
                        Target::Unavailable => (None, None, Some(PauseReason::Unavailable)),
                    };
                    if let Some(mid) = sub.mid() {
                        let _ = s.outbox.try_send(ServerMessage::LayerChanged {
                            participant_id: track.publisher.to_string(),
                            track_id: track.to_string(),
                            mid: mid.to_string(),
                            layer,
                            temporal,
                            paused,
                        });
                    }
                }
            }

            // Padding and probes (see `shaping` for why each phase is shaped as it is).
            let switching = input.measured && s.probe_quiet_until.is_some_and(|t| now < t);
            let rearm = s.prober.update(
                now,
                input.estimate_bps,
                out.probe_bps,
                out.allocated_bps,
                out.stepped_up,
                switching,
            );
            let phase = match (rearm, switching, input.measured) {
                (true, _, _) => Phase::Rearm,
                (false, true, _) => Phase::Switching,
                (false, false, false) => Phase::Unmeasured,
                (false, false, true) => Phase::Steady,
            };
            if rearm {
                self.plane.metrics.probe_requests.inc();
                tracing::debug!(participant = %s.id, estimate_bps = input.estimate_bps, probe_bps = out.probe_bps, "probe re-armed");
            }
            // Only on a steady tick: a re-arm or a switch lowers what str0m is told to probe
            // for, and the start-up probes after a restart would then look for nothing more.
            // A second without transport feedback counts as lossy (`EstimateStall`), so an
            // outage, where nothing moves the estimate either, restarts nothing.
            if let Some(estimate) = s
                .raw_estimate_bps
                .filter(|_| phase == Phase::Steady && s.ice_lost_at.is_none())
            {
                if s.stall.update(now, estimate, out.probe_bps, s.twcc_loss) {
                    self.plane.metrics.bwe_restarts.inc();
                    tracing::info!(participant = %s.id, estimate_bps = estimate, probe_bps = out.probe_bps, "bandwidth estimate stood still: estimator restarted");
                    s.rtc.bwe().reset(Bitrate::bps(estimate));
                }
            }
            let setting =
                shaping::setting(phase, out.allocated_bps, out.probe_bps, input.estimate_bps);
            if setting.differs_from(&s.bwe_setting) {
                tracing::trace!(participant = %s.id, ?phase, ?setting, "bwe setting");
                s.bwe_setting = setting;
                s.rtc.bwe().set_bitrate(
                    Bitrate::bps(setting.pad_bps),
                    Bitrate::bps(setting.probe_bps),
                );
            }
        }
        let paused = self
            .participants
            .iter()
            .flat_map(|p| &p.subscriptions)
            .filter(|x| matches!(x.reported, Some(Target::PausedForBandwidth)))
            .count();
        self.paused_subscriptions = paused;

        for (track, spatial) in keyframes {
            // A layer not flowing (its publisher just came back, dynacast restarts it) sends a
            // keyframe when it starts, and its first packets ask for one otherwise
            // (`Verdict::DropNeedKeyframe`); asked for now, a layer the publisher's estimate
            // cannot carry yet answers with one keyframe and falls silent again.
            if self.layer_flowing(&track, spatial, now) {
                self.request_keyframe(&track, spatial, now);
            }
        }
        self.dynacast(now);
        for i in 0..self.participants.len() {
            self.drive(i);
        }
    }

    /// Stops simulcast layers no subscriber receives or is switching to, and restarts them as
    /// soon as one is wanted again.
    fn dynacast(&mut self, now: Instant) {
        let mut needed: Vec<(TrackId, [bool; 3])> = Vec::new();
        for p in &self.participants {
            for sub in &p.subscriptions {
                let Forwarding::Video(f) = &sub.forwarding else {
                    continue;
                };
                if !matches!(
                    sub.state,
                    SubscriptionState::Open(_) | SubscriptionState::Negotiating(_)
                ) {
                    continue;
                }
                let entry = match needed.iter_mut().find(|(t, _)| *t == sub.track) {
                    Some(e) => e,
                    None => {
                        needed.push((sub.track.clone(), [false; 3]));
                        needed.last_mut().expect("invariant: just pushed")
                    }
                };
                if let Some(Layer { spatial, .. }) = f.target() {
                    entry.1[spatial as usize] = true;
                }
                if let Some(spatial) = f.current() {
                    entry.1[spatial as usize] = true;
                }
                if matches!(sub.state, SubscriptionState::Negotiating(_)) {
                    // Not allocated yet: it will start low.
                    entry.1[0] = true;
                }
            }
        }
        for p in &mut self.participants {
            for publication in &mut p.publications {
                if publication.kind != MediaKind::Video || !publication.simulcast {
                    continue;
                }
                let wanted = needed
                    .iter()
                    .find(|(t, _)| *t == publication.track)
                    .map(|(_, n)| *n)
                    .unwrap_or([false; 3]);
                let mut changed = false;
                for (s, layer) in publication.layers.iter_mut().enumerate() {
                    changed |= layer.dynacast(wanted[s], now);
                }
                if changed {
                    let active: Vec<String> = publication
                        .layers
                        .iter()
                        .zip(RIDS)
                        .filter(|(l, _)| l.requested)
                        .map(|(_, rid)| rid.to_string())
                        .collect();
                    self.plane.metrics.dynacast_changes.inc();
                    let _ = p.outbox.try_send(ServerMessage::PublishLayers {
                        mid: publication.track.mid.to_string(),
                        active,
                    });
                }
            }
        }
    }

    /// Tells everyone each participant's connection quality when it changes.
    pub(super) fn update_quality(&mut self) {
        let mut changes = Vec::new();
        for p in &mut self.participants {
            let q = quality(&p.link_stats());
            if p.quality != Some(q) {
                p.quality = Some(q);
                changes.push((p.id, q, p.estimate_bps));
            }
        }
        for (id, q, estimate) in changes {
            for p in &self.participants {
                p.send(ServerMessage::ConnectionQuality {
                    participant_id: id.to_string(),
                    quality: q,
                    estimate_bps: if p.id == id { estimate } else { None },
                });
            }
        }
    }
}
