//! Publications, subscriptions and SDP. The client offers once (what it publishes); after that
//! only the server offers, one outstanding offer per participant, so offers never cross.

use signaling::{ErrorCode, ServerMessage, TrackSource};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind, Mid};
use tracing::{info, warn};

use super::participant::{track_kind, Publication, Subscription, SubscriptionState};
use super::permission;
use super::Room;
use crate::forward::codec::VideoCodec;
use crate::ids::{ParticipantId, TrackId};
use crate::udp::{DemuxCommand, Route};

type SignalError = (ErrorCode, String);

impl Room {
    pub(super) fn accept_offer(&mut self, i: usize, sdp: &str) -> Result<(), SignalError> {
        let p = &mut self.participants[i];
        if p.offered {
            return Err((
                ErrorCode::WrongState,
                "the client offers once; after that only the server offers".into(),
            ));
        }
        let offer = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| (ErrorCode::BadSdp, format!("cannot parse offer: {e}")))?;
        // Nothing has used this participant's `Rtc` yet (our candidate goes out in the answer),
        // so it can be rebuilt with the client's preferred video codec first.
        if preferred_video_codec(sdp) == Some(VideoCodec::H264) {
            let (id, now) = (p.id, std::time::Instant::now());
            let (rtc, ufrag) = self.new_rtc(id, VideoCodec::H264, now);
            let p = &mut self.participants[i];
            let _ = self.plane.demux.send(DemuxCommand::Unregister {
                ufrag: std::mem::replace(&mut p.ufrag, ufrag),
            });
            p.rtc = rtc;
        }
        let p = &mut self.participants[i];
        let mids: Vec<(Mid, bool)> = offer
            .media_lines
            .iter()
            .filter(|m| !m.disabled)
            .map(|m| (m.mid(), m.simulcast().is_some()))
            .collect();
        let answer = p
            .rtc
            .sdp_api()
            .accept_offer(offer)
            .map_err(|e| (ErrorCode::BadSdp, format!("cannot accept offer: {e}")))?;
        p.offered = true;
        p.send(ServerMessage::Answer {
            sdp: answer.to_sdp_string(),
        });
        // Publish now rather than on str0m's `MediaAdded` (which waits for DTLS), so the
        // others negotiate while this participant's connection is still being set up.
        let from = p.id;
        let published: Vec<(Mid, MediaKind, bool)> = mids
            .into_iter()
            .filter_map(|(mid, simulcast)| p.rtc.media(mid).map(|m| (m, simulcast)))
            .filter(|(m, _)| m.direction().is_receiving())
            .map(|(m, simulcast)| (m.mid(), m.kind(), simulcast))
            .collect();
        for (mid, kind, simulcast) in published {
            self.publish(from, mid, kind, simulcast);
        }
        Ok(())
    }

    pub(super) fn accept_answer(&mut self, i: usize, sdp: &str) -> Result<(), SignalError> {
        let p = &mut self.participants[i];
        let Some(pending) = p.pending_offer.take() else {
            return Err((ErrorCode::WrongState, "no offer is outstanding".into()));
        };
        p.offer_sdp = None;
        let answer = match SdpAnswer::from_sdp_string(sdp) {
            Ok(a) => a,
            Err(e) => {
                // Keep the offer outstanding: the client may still send a good answer.
                p.pending_offer = Some(pending);
                return Err((ErrorCode::BadSdp, format!("cannot parse answer: {e}")));
            }
        };
        // Chromium answering an ICE restart we offered takes the controlled role (the offerer
        // controls); str0m keeps its old role, so both would claim controlled and settle it by
        // a role conflict: an extra round trip half the time. Set before the answer is applied,
        // since str0m's restart then forms the new pairs with priorities for this role. (An
        // answer str0m rejects leaves a mismatch to that same role conflict, no worse.)
        if std::mem::take(&mut p.ice_restart_offered) {
            p.rtc.direct_api().set_ice_controlling(true);
        }
        if let Err(e) = p.rtc.sdp_api().accept_answer(pending, answer) {
            // str0m dropped the pending change: offer the same changes again.
            for s in &mut p.subscriptions {
                s.state = match s.state {
                    SubscriptionState::Negotiating(_) => SubscriptionState::ToOpen,
                    SubscriptionState::Stopping(m) => SubscriptionState::ToStop(m),
                    other => other,
                };
            }
            return Err((ErrorCode::BadSdp, format!("cannot accept answer: {e}")));
        }
        let mut opened = Vec::new();
        p.subscriptions.retain_mut(|s| match s.state {
            SubscriptionState::Negotiating(m) if s.publisher_gone => {
                s.state = SubscriptionState::ToStop(m);
                true
            }
            SubscriptionState::Negotiating(m) => {
                s.state = SubscriptionState::Open(m);
                if s.kind == MediaKind::Video {
                    opened.push(s.track.clone());
                }
                true
            }
            SubscriptionState::Stopping(_) => false,
            _ => true,
        });
        // A new video subscriber needs a keyframe to start decoding; the allocator decides
        // which layer at its next tick, and the forwarder asks for that layer's keyframe.
        let _ = opened;
        Ok(())
    }

    /// A participant's offer added a track it sends: everyone else subscribes to it.
    pub(super) fn publish(
        &mut self,
        from: ParticipantId,
        mid: Mid,
        kind: MediaKind,
        simulcast: bool,
    ) {
        let Some(i) = self.index(from) else { return };
        if self.participants[i]
            .publications
            .iter()
            .any(|p| p.track.mid == mid)
        {
            return; // already published when its offer was accepted
        }
        if !permission::may(self.participants[i].role, permission::Action::Publish) {
            warn!(participant = %from, %mid, "refused a track from a receive-only role");
            self.participants[i].send(ServerMessage::error(
                ErrorCode::Forbidden,
                "observers receive only; the track you offered is not forwarded",
            ));
            return;
        }
        let source = self.participants[i].source_of(mid, kind);
        let budget_bps = match kind {
            MediaKind::Audio => crate::forward::budget::AUDIO_BUDGET_BPS,
            MediaKind::Video => crate::forward::budget::video_budget_bps(
                self.plane.video_layers.iter().map(|l| l.max_bitrate),
            ),
        };
        let track = TrackId {
            publisher: from,
            mid,
        };
        info!(track = %track, ?kind, "published");
        self.participants[i].publications.push(Publication::new(
            track.clone(),
            kind,
            simulcast,
            budget_bps,
        ));
        self.plane.metrics.tracks.inc();
        if source == TrackSource::Screen {
            return; // offered to others when the share starts
        }
        for (j, s) in self.participants.iter_mut().enumerate() {
            if j != i {
                s.subscriptions
                    .push(Subscription::new(track.clone(), kind, source));
            }
        }
    }

    /// A participant that just offered subscribes to what the others already publish.
    pub(super) fn subscribe_to_existing(&mut self, i: usize) {
        let existing: Vec<(TrackId, MediaKind, TrackSource)> = self
            .participants
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .flat_map(|(_, p)| {
                p.publications
                    .iter()
                    .map(|x| (x.track.clone(), x.kind, p.source_of(x.track.mid, x.kind)))
                    .filter(|(_, _, source)| *source != TrackSource::Screen || p.sharing)
            })
            .collect();
        let p = &mut self.participants[i];
        for (track, kind, source) in existing {
            if !p.subscriptions.iter().any(|s| s.track == track) {
                p.subscriptions.push(Subscription::new(track, kind, source));
            }
        }
    }

    /// The publisher left: its tracks go from every subscriber.
    pub(super) fn unpublish_all(&mut self, publisher: ParticipantId) {
        self.unpublish_where(publisher, |_| true);
    }

    /// One track goes from every subscriber (a screen share stopped).
    pub(super) fn unpublish(&mut self, track: &TrackId) {
        self.unpublish_where(track.publisher, |t| t == track);
    }

    fn unpublish_where(&mut self, publisher: ParticipantId, matches: impl Fn(&TrackId) -> bool) {
        let publisher_id = publisher.to_string();
        for s in &mut self.participants {
            let mut gone = Vec::new();
            s.subscriptions.retain_mut(|sub| {
                if sub.track.publisher != publisher || !matches(&sub.track) {
                    return true;
                }
                match sub.state {
                    SubscriptionState::ToOpen => return false,
                    SubscriptionState::Negotiating(_) => sub.publisher_gone = true,
                    SubscriptionState::Open(m) => sub.state = SubscriptionState::ToStop(m),
                    SubscriptionState::ToStop(_) | SubscriptionState::Stopping(_) => {}
                }
                if let Some(mid) = sub.mid() {
                    gone.push((sub.track.to_string(), mid));
                }
                true
            });
            for (track_id, mid) in gone {
                s.send(ServerMessage::TrackUnpublished {
                    participant_id: publisher_id.clone(),
                    track_id,
                    mid: mid.to_string(),
                });
            }
        }
    }

    /// Sends an offer to every participant that has changes and no offer outstanding.
    pub(super) fn negotiate_all(&mut self) {
        for i in 0..self.participants.len() {
            self.negotiate(i);
        }
    }

    fn negotiate(&mut self, i: usize) {
        let p = &mut self.participants[i];
        if !p.offered
            || p.pending_offer.is_some()
            || !(p.has_negotiation_work() || p.ice_restart_wanted)
        {
            return;
        }
        let mut api = p.rtc.sdp_api();
        let restart = std::mem::take(&mut p.ice_restart_wanted)
            // Keep our candidates: the server's address did not change, the client's did.
            .then(|| api.ice_restart(true).ufrag);
        let mut added: Vec<(TrackId, MediaKind, TrackSource, Mid)> = Vec::new();
        for s in &mut p.subscriptions {
            match s.state {
                SubscriptionState::ToOpen => {
                    let stream_id = s.track.publisher.to_string();
                    let mid = api.add_media(
                        s.kind,
                        Direction::SendOnly,
                        Some(stream_id),
                        Some(s.track.to_string()),
                        None,
                    );
                    s.state = SubscriptionState::Negotiating(mid);
                    added.push((s.track.clone(), s.kind, s.source, mid));
                }
                SubscriptionState::ToStop(mid) => {
                    api.stop_media(mid);
                    s.state = SubscriptionState::Stopping(mid);
                }
                _ => {}
            }
        }
        let Some((offer, pending)) = api.apply() else {
            warn!(participant = %p.id, "negotiation had no changes");
            return;
        };
        p.pending_offer = Some(pending);
        p.ice_restart_offered = restart.is_some();
        if let Some(ufrag) = restart {
            info!(participant = %p.id, "ICE restart offered");
            // STUN with the new username must reach this participant; the old one stays
            // registered until it leaves (packets in flight, a restart that fails).
            let _ = self.plane.demux.send(DemuxCommand::Register {
                ufrag: ufrag.clone(),
                route: Route {
                    participant: p.id,
                    inbox: self.datagram_tx.clone(),
                },
            });
            p.old_ufrags.push(std::mem::replace(&mut p.ufrag, ufrag));
        }
        let sdp = offer.to_sdp_string();
        p.offer_sdp = Some(sdp.clone());
        p.send(ServerMessage::Offer { sdp });
        for (track, kind, source, mid) in added {
            p.send(ServerMessage::TrackPublished {
                participant_id: track.publisher.to_string(),
                track_id: track.to_string(),
                kind: track_kind(kind),
                source,
                mid: mid.to_string(),
            });
        }
    }
}

/// The codec of the first payload type on the offer's first video m-line: the client's choice.
pub fn preferred_video_codec(sdp: &str) -> Option<VideoCodec> {
    let mut lines = sdp.lines();
    let m = lines.by_ref().find(|l| l.starts_with("m=video "))?;
    let pt = m.split_whitespace().nth(3)?;
    let prefix = format!("a=rtpmap:{pt} ");
    let codec = lines
        .take_while(|l| !l.starts_with("m="))
        .find_map(|l| l.strip_prefix(prefix.as_str()))?
        .split('/')
        .next()?
        .to_ascii_uppercase();
    Some(match codec.as_str() {
        "H264" => VideoCodec::H264,
        "VP8" => VideoCodec::Vp8,
        _ => VideoCodec::Other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preferred_video_codec_is_the_first_on_the_video_line() {
        let sdp = |m: &str, maps: &str| {
            format!("v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n{m}\r\n{maps}")
        };
        let cases = [
            (
                sdp(
                    "m=video 9 UDP/TLS/RTP/SAVPF 102 96",
                    "a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n",
                ),
                Some(VideoCodec::H264),
            ),
            (
                sdp(
                    "m=video 9 UDP/TLS/RTP/SAVPF 96 102",
                    "a=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\n",
                ),
                Some(VideoCodec::Vp8),
            ),
            (
                sdp(
                    "m=video 9 UDP/TLS/RTP/SAVPF 98",
                    "a=rtpmap:98 VP9/90000\r\n",
                ),
                Some(VideoCodec::Other),
            ),
            (sdp("m=video 9 UDP/TLS/RTP/SAVPF 98", ""), None),
            ("v=0\r\n".to_string(), None),
        ];
        for (text, want) in cases {
            assert_eq!(preferred_video_codec(&text), want, "{text}");
        }
    }
}
