//! Riding through dropped connections: a participant whose signaling or media dropped keeps
//! its place for the reconnect grace period, the others see it as reconnecting (not a leave and
//! a join), and a client that comes back with its resume token continues as the same
//! participant, with its publications and subscriptions as the server holds them.

use std::time::{Duration, Instant, SystemTime};

use signaling::{JoinError, ServerMessage};
use tokio::sync::{mpsc, oneshot};
use tracing::info;

use super::participant::{track_kind, Forwarding, Participant, SubscriptionState};
use super::Room;
use crate::ids::ParticipantId;

impl Room {
    /// Moves participant `id` onto a new signaling connection and brings its client up to date:
    /// `joined` (resumed), the offer it may have missed, its subscriptions, and (once the
    /// allocator runs) each video subscription's layer.
    pub(super) fn resume(
        &mut self,
        id: ParticipantId,
        session: u64,
        outbox: mpsc::Sender<ServerMessage>,
        kick: oneshot::Sender<()>,
    ) -> Result<(), JoinError> {
        let Some(i) = self.index(id) else {
            return Err(JoinError::ResumeFailed(
                "the reconnect grace period is over".into(),
            ));
        };
        let now = Instant::now();
        let token = self
            .plane
            .resume_keys
            .issue(&self.id.0, id.0, SystemTime::now());
        let others = self
            .participants
            .iter()
            .filter(|p| p.id != id)
            .map(Participant::info)
            .collect();
        let p = &mut self.participants[i];
        // Dropping the old kick sender closes the old connection, if it still lingers: the
        // participant is never on two connections.
        p._kick = kick;
        p.outbox = outbox;
        p.session = session;
        p.signal_lost_at = None;
        p.resume_refresh_at = now + crate::resume::REFRESH;
        p.send(ServerMessage::Joined {
            participant_id: id.to_string(),
            room: self.id.0.clone(),
            title: self.title.clone(),
            you: p.info(),
            participants: others,
            video_layers: self.plane.video_layers.clone(),
            resume_token: Some(token),
            resumed: true,
        });
        if p.pending_offer.is_some() {
            if let Some(sdp) = p.offer_sdp.clone() {
                p.send(ServerMessage::Offer { sdp });
            }
        }
        for s in &mut p.subscriptions {
            let mid = match s.state {
                SubscriptionState::Open(m) | SubscriptionState::Negotiating(m) => m,
                _ => continue,
            };
            // The client may have missed layer changes: the next allocation says it again.
            s.reported = None;
            let message = ServerMessage::TrackPublished {
                participant_id: s.track.publisher.to_string(),
                track_id: s.track.to_string(),
                kind: track_kind(s.kind),
                source: s.source,
                mid: mid.to_string(),
            };
            let _ = p.outbox.try_send(message);
        }
        info!(participant = %id, "resumed");
        self.plane.metrics.resumes.inc();
        if super::permission::may(p.role, super::permission::Action::Admit) {
            self.send_lobby_to(i);
        }
        self.announce_reconnecting();
        Ok(())
    }

    /// Tells everyone whose participants started or stopped reconnecting.
    pub(super) fn announce_reconnecting(&mut self) {
        for i in 0..self.participants.len() {
            let p = &self.participants[i];
            let now_reconnecting = p.lost_since().is_some() || p.silent;
            if now_reconnecting == p.reconnecting {
                continue;
            }
            let (id, silent) = (p.id, p.silent);
            self.participants[i].reconnecting = now_reconnecting;
            info!(participant = %id, reconnecting = now_reconnecting, silent, "connection state");
            for other in self.participants.iter().filter(|o| o.id != id) {
                other.send(ServerMessage::ParticipantReconnecting {
                    participant_id: id.to_string(),
                    reconnecting: now_reconnecting,
                });
            }
        }
    }

    /// Tokens are short-lived; connected participants get a fresh one before theirs expires.
    pub(super) fn refresh_resume_tokens(&mut self, now: Instant) {
        for p in &mut self.participants {
            if now < p.resume_refresh_at || p.signal_lost_at.is_some() {
                continue;
            }
            p.resume_refresh_at = now + crate::resume::REFRESH;
            let token = self
                .plane
                .resume_keys
                .issue(&self.id.0, p.id.0, SystemTime::now());
            p.send(ServerMessage::ResumeToken {
                resume_token: token,
            });
        }
    }
}

impl Room {
    /// `who`'s media path changed, or its media came back after an outage: what it receives
    /// restarts from keyframes, and so does its video at every subscriber (what it sent and
    /// received in between is lost).
    pub(super) fn restart_video_of(&mut self, who: ParticipantId, why: &str) {
        info!(participant = %who, "{why}: video restarts from keyframes");
        let mut wanted = Vec::new();
        for p in &mut self.participants {
            if p.id == who {
                // What it receives starts again from what its link carries now (the keyframe
                // comes with the allocator's choice, at once: see `relearn_link`).
                relearn_link(p, &mut self.next_adapt);
                continue;
            }
            for s in &mut p.subscriptions {
                if let Forwarding::Video(f) = &mut s.forwarding {
                    if s.track.publisher == who {
                        f.restart();
                        // The lowest layer's keyframe only: it starts every subscriber's picture
                        // at once (`VideoForwarder::on_packet` bridges with it), while a
                        // publisher back from an outage or a move has a collapsed estimate and
                        // its encoder may not send the upper layers for seconds (CI, 4 s
                        // outage: the clinic waited 3.3 s for the patient's `f`). Asked for
                        // anyway, such a layer answers with one keyframe and falls silent
                        // again, and the subscriber switched to it froze (address-change
                        // test: 1.4 s). The upper layers are asked for once they flow (see
                        // `Room::adapt`). Several subscribers of one track: asked once.
                        if f.target().is_some() && !wanted.contains(&s.track) {
                            wanted.push(s.track.clone());
                        }
                    }
                }
            }
        }
        // Asked now rather than when the next packet shows the restart: the publisher that
        // moved hears from us on its new address at once, a round trip before its media does.
        let now = Instant::now();
        // Its layers come back one by one (audio first, then each layer's keyframe): until
        // they do, they count as restarting, not gone, or its subscribers would switch layers
        // (and wait for another keyframe) on the way.
        if let Some(p) = self.participants.iter_mut().find(|p| p.id == who) {
            p.video_restarted_at = Some(now);
            for publication in &mut p.publications {
                publication.keyframes.path_restarted();
            }
            for layer in p.publications.iter_mut().flat_map(|x| x.layers.iter_mut()) {
                if layer.requested {
                    layer.requested_at = Some(now);
                }
            }
        }
        for track in wanted {
            self.request_keyframe(&track, 0, now);
        }
    }
}

/// No datagram at all from a participant for this long shows it to the others as reconnecting
/// at once, without starting the grace period: ICE and signaling take 15-20 s to call a
/// connection lost (40 s outage test: the others saw "reconnecting" 22 s after the link
/// dropped), while anyone in a consult sends several datagrams a second (media, a muted
/// microphone's DTX frames every 400 ms, RTCP and transport feedback for what it receives).
pub const SILENT_AFTER: Duration = Duration::from_secs(3);

/// Whether a participant that should be sending (it publishes, or receives, media) has gone
/// silent: nothing heard for `SILENT_AFTER`. Before its first datagram it is joining, not
/// silent.
pub fn is_silent(heard_at: Option<Instant>, expects_traffic: bool, now: Instant) -> bool {
    expects_traffic && heard_at.is_some_and(|t| now.saturating_duration_since(t) >= SILENT_AFTER)
}

/// A gap this long in a participant's incoming media is an outage, not loss: even muted, a
/// browser sends audio (DTX) at least every 400 ms. After one, video restarts from keyframes
/// at once: in the 4 s outage test neither str0m's ICE agent saw the outage nor did the path
/// move, so the browsers' own keyframe requests, after their NACKs for the lost seconds had
/// failed, brought video back 0.4-2.5 s after the link returned, often over 2 s (audio: 0.1-0.3 s).
pub const MEDIA_GAP_RESTART: Duration = Duration::from_secs(1);

/// Whether media arriving `now` ends an outage (the previous packet came `MEDIA_GAP_RESTART`
/// or more before it) that no restart since that packet has covered. A moved path restarts
/// video when ICE nominates it, a moment before the media on it arrives; restarting again
/// then threw away the keyframes already asked for (address-change test: 0.19 s apart).
pub fn media_resumed(last: Option<Instant>, restarted: Option<Instant>, now: Instant) -> bool {
    last.is_some_and(|t| {
        now.saturating_duration_since(t) >= MEDIA_GAP_RESTART && restarted.is_none_or(|r| r <= t)
    })
}

/// After `relearn_link`, how long before a once-a-second stats report shows the link as it is
/// now: a round trip and a feedback interval on a rural link (RTT up to 300 ms, TWCC every
/// 100 ms), with margin.
pub const RELEARN_FRESH: Duration = Duration::from_millis(500);

/// Whether str0m's unsmoothed estimate, reported `now`, counts as a measurement of the link
/// again after `relearn_link`. The emitted estimate counts as soon as it moves (it is emitted
/// only then); the unsmoothed one is reported every second whether it moved or not, and a
/// steady link keeps it unchanged for many seconds (1,276,747 bit/s for 15 s before the 4 s
/// outage), so it counts once the report is late enough to include feedback from after the
/// relearn. Before any relearn, only a move off the initial value counts (`relearned_at` None).
pub fn measured_again(relearned_at: Option<Instant>, now: Instant) -> bool {
    relearned_at.is_some_and(|t| now.saturating_duration_since(t) >= RELEARN_FRESH)
}

/// After an outage or a move, a subscriber's video starts again from what its link carries
/// now: the allocation is forgotten (hysteresis, holds, probe back-off) and every video
/// subscription waits for the allocator's next choice, whose keyframe it then asks for. Kept,
/// the old targets asked for keyframes of the layers from before the outage: CI, 4 s outage,
/// the patient's view of the clinic stayed on `f` with the estimate collapsed to 162 kbit/s,
/// that keyframe was paced into the just-restored link, the step down to `q` 0.4 s later
/// waited behind it, and video came back 3.3 s after the link (bound 3 s).
/// `next_adapt` is the room's: the allocation runs at once, so the keyframes asked for are
/// those of the layers that fit now. The estimate is unmeasured again until str0m reports a
/// new one: at this moment it still shows the link from before the outage (no feedback came
/// in between), and the fresh allocation picked `f` from it, asked for its keyframe, and
/// stepped down to `q` at the next report, 70 ms later, with the keyframe already on its way
/// (4 s outage, local: the patient's view of the clinic back 2.07 s after the link). Unmeasured,
/// it starts on the smallest layer.
pub(super) fn relearn_link(p: &mut Participant, next_adapt: &mut Instant) {
    *next_adapt = Instant::now();
    p.link_measured = false;
    p.relearned_at = Some(Instant::now());
    p.allocator = crate::adapt::allocator::Allocator::new();
    p.prober = crate::adapt::prober::Prober::default();
    p.stall.relearn();
    p.delivered.reset();
    for s in &mut p.subscriptions {
        if let Forwarding::Video(f) = &mut s.forwarding {
            f.set_target(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_estimate_counts_again_once_it_includes_feedback() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // (relearned at, reported at) -> counts
        let cases = [
            (None, t0, false),
            (Some(t0), t0, false),
            (Some(t0), t0 + ms(499), false),
            (Some(t0), t0 + ms(500), true),
            (Some(t0), t0 + ms(1000), true),
        ];
        for (relearned, now, want) in cases {
            assert_eq!(
                measured_again(relearned, now),
                want,
                "{relearned:?} {now:?}"
            );
        }
    }

    #[test]
    fn a_gap_of_a_second_or_more_is_an_outage() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // (previous packet, last restart, this packet) -> resumed
        let cases = [
            (None, None, t0, false),
            (Some(t0), None, t0 + ms(20), false),
            // Opus DTX while muted: a packet every 400 ms.
            (Some(t0), None, t0 + ms(400), false),
            (Some(t0), None, t0 + ms(999), false),
            (Some(t0), None, t0 + ms(1000), true),
            (Some(t0), None, t0 + ms(4200), true),
            // Out of order (a queued datagram older than the last): not a gap.
            (Some(t0 + ms(50)), None, t0, false),
            // A restart long before the gap does not cover it.
            (Some(t0), Some(t0 - ms(5000)), t0 + ms(2000), true),
            (Some(t0), Some(t0), t0 + ms(2000), true),
            // The path moved during the gap and video restarted then: covered.
            (Some(t0), Some(t0 + ms(1800)), t0 + ms(2000), false),
            (Some(t0), Some(t0 + ms(2000)), t0 + ms(2000), false),
        ];
        for (last, restarted, now, want) in cases {
            assert_eq!(
                media_resumed(last, restarted, now),
                want,
                "{last:?} {restarted:?} {now:?}"
            );
        }
    }

    #[test]
    fn a_participant_that_should_send_and_is_not_heard_for_3_s_is_silent() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // (last datagram, publishes or receives, now) -> silent
        let cases = [
            // Joining: nothing heard yet.
            (None, true, t0 + ms(10_000), false),
            (Some(t0), true, t0 + ms(400), false),
            (Some(t0), true, t0 + ms(2999), false),
            (Some(t0), true, t0 + ms(3000), true),
            (Some(t0), true, t0 + ms(40_000), true),
            // Alone and receive-only: only consent checks every few seconds, not silence.
            (Some(t0), false, t0 + ms(5000), false),
            // A datagram that was queued while time moved on is not from the future.
            (Some(t0 + ms(5)), true, t0, false),
        ];
        for (heard, expects, now, want) in cases {
            assert_eq!(
                is_silent(heard, expects, now),
                want,
                "{heard:?} {expects} {now:?}"
            );
        }
    }
}
