//! The media path inside a room: forward each incoming RTP packet to every open subscription,
//! and route keyframe requests back to the publisher through its throttle.

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaKind};
use str0m::rtp::{RtpPacket, RtpWrite};
use str0m::stats::{MediaEgressStats, MediaIngressStats};

use super::participant::{video_codec, Participant, SubscriptionState};
use super::Room;
use crate::forward::codec::is_keyframe_start;
use crate::forward::keyframe::Decision;
use crate::forward::rewrite::InPacket;
use crate::ids::{ParticipantId, TrackId};
use crate::metrics::Metrics;

/// Audio streams go quiet with Opus DTX; without this str0m reports them paused after 1.5 s.
const AUDIO_PAUSE_THRESHOLD: Duration = Duration::from_secs(3600);

impl Room {
    pub(super) fn forward(&mut self, from: ParticipantId, mut packet: RtpPacket) {
        let Some(i) = self.index(from) else { return };
        let publisher = &mut self.participants[i];
        let ssrc = packet.header.ssrc;
        let pub_index = match publisher.publication_by_ssrc(ssrc) {
            Some(k) => k,
            None => {
                // First packet of this SSRC: learn which track it belongs to.
                let mut api = publisher.rtc.direct_api();
                let Some(stream) = api.stream_rx(&ssrc) else {
                    return;
                };
                let mid = stream.mid();
                let Some(k) = publisher
                    .publications
                    .iter()
                    .position(|p| p.track.mid == mid)
                else {
                    return;
                };
                if publisher.publications[k].kind == MediaKind::Audio {
                    stream.set_pause_threshold(AUDIO_PAUSE_THRESHOLD);
                }
                publisher.publications[k].ssrcs.push(ssrc);
                k
            }
        };
        let Some(params) = publisher.params_for(packet.header.payload_type) else {
            return;
        };
        self.plane.metrics.rtp_packets_in.inc();
        self.plane
            .metrics
            .rtp_bytes_in
            .inc_by(packet.payload.len() as u64);
        let publication = &mut publisher.publications[pub_index];
        let kind = publication.kind;
        let track = publication.track.clone();
        let keyframe =
            kind == MediaKind::Video && is_keyframe_start(video_codec(&params), &packet.payload);
        if keyframe {
            publication.keyframes.on_keyframe();
        }

        // The subscriber's stream carries its own mid; str0m sets the transport-wide ids.
        let ext = &mut packet.header.ext_vals;
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;

        let mut wants_keyframe = false;
        for j in 0..self.participants.len() {
            if j == i {
                continue;
            }
            let s = &mut self.participants[j];
            let Some(sub) = s.subscriptions.iter_mut().find(|x| x.track == track) else {
                continue;
            };
            let SubscriptionState::Open(mid) = sub.state else {
                continue;
            };
            let input = InPacket {
                seq: *packet.seq_no,
                ts: packet.header.timestamp,
                arrival: packet.timestamp,
            };
            let out = if sub.rewriter.has_source() {
                sub.rewriter.rewrite(input)
            } else if kind == MediaKind::Audio || keyframe {
                Some(sub.rewriter.switch_to(input))
            } else {
                // A video subscriber starts on a keyframe, or it shows garbage until one.
                wants_keyframe = true;
                None
            };
            let Some(out) = out else { continue };
            let pt = match sub.pt_map.iter().find(|(a, _)| *a == params.pt()) {
                Some((_, b)) => *b,
                None => {
                    let Some(local) = s.rtc.codec_config().match_params(params.clone()) else {
                        continue; // the subscriber cannot decode this codec
                    };
                    let b = local.pt();
                    sub.pt_map.push((params.pt(), b));
                    b
                }
            };
            let mut api = s.rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            stream.write_rtp(
                RtpWrite::new(
                    pt,
                    out.seq.into(),
                    out.ts,
                    packet.timestamp,
                    packet.payload.clone(),
                )
                .marker(packet.header.marker)
                .ext_vals(packet.header.ext_vals.clone())
                .nackable(kind == MediaKind::Video),
            );
            self.plane.metrics.rtp_packets_out.inc();
            self.plane
                .metrics
                .rtp_bytes_out
                .inc_by(packet.payload.len() as u64);
            self.drive(j);
        }
        if wants_keyframe {
            self.request_keyframe(&track, Instant::now());
        }
    }

    /// A subscriber asked for a keyframe on one of its outgoing mids.
    pub(super) fn on_keyframe_request(&mut self, from: ParticipantId, req: KeyframeRequest) {
        let Some(j) = self.index(from) else { return };
        let Some(track) = self.participants[j]
            .subscriptions
            .iter()
            .find(|s| s.mid() == Some(req.mid))
            .map(|s| s.track.clone())
        else {
            return;
        };
        self.request_keyframe(&track, Instant::now());
    }

    /// Asks the publisher of `track` for a keyframe, unless one was asked for very recently.
    pub(super) fn request_keyframe(&mut self, track: &TrackId, now: Instant) {
        let Some(i) = self.index(track.publisher) else {
            return;
        };
        let p = &mut self.participants[i];
        let Some(publication) = p.publications.iter_mut().find(|x| &x.track == track) else {
            return;
        };
        if publication.kind != MediaKind::Video {
            return;
        }
        match publication.keyframes.on_request(now) {
            Decision::Send => {
                send_pli(p, track, &self.plane.metrics);
                self.drive(i);
            }
            Decision::Suppressed => self.plane.metrics.keyframe_requests_suppressed.inc(),
        }
    }

    /// Sends keyframe requests that were suppressed and are now due.
    pub(super) fn poll_keyframe_throttles(&mut self, now: Instant) {
        for i in 0..self.participants.len() {
            let p = &mut self.participants[i];
            let due: Vec<TrackId> = p
                .publications
                .iter_mut()
                .filter_map(|x| x.keyframes.poll(now).then(|| x.track.clone()))
                .collect();
            if due.is_empty() {
                continue;
            }
            for track in &due {
                send_pli(p, track, &self.plane.metrics);
            }
            self.drive(i);
        }
    }
}

fn send_pli(p: &mut Participant, track: &TrackId, metrics: &Metrics) {
    let mut api = p.rtc.direct_api();
    // Every layer of the track: each is an independent encoder.
    let mut any = false;
    let ssrcs: Vec<_> = p
        .publications
        .iter()
        .find(|x| &x.track == track)
        .map(|x| x.ssrcs.clone())
        .unwrap_or_default();
    for ssrc in ssrcs {
        if let Some(stream) = api.stream_rx(&ssrc) {
            stream.request_keyframe(KeyframeRequestKind::Pli);
            any = true;
        }
    }
    if !any {
        if let Some(stream) = api.stream_rx_by_mid(track.mid, None) {
            stream.request_keyframe(KeyframeRequestKind::Pli);
            any = true;
        }
    }
    if any {
        metrics.keyframe_requests_sent.inc();
    }
}

pub(super) fn on_egress_stats(p: &mut Participant, s: &MediaEgressStats, metrics: &Metrics) {
    if let Some(sub) = p.subscriptions.iter_mut().find(|x| x.mid() == Some(s.mid)) {
        if s.nacks > sub.nacks_received {
            metrics.nacks_received.inc_by(s.nacks - sub.nacks_received);
            sub.nacks_received = s.nacks;
        }
        sub.keyframes_received = s.plis + s.firs;
    }
}

pub(super) fn on_ingress_stats(p: &mut Participant, s: &MediaIngressStats, metrics: &Metrics) {
    if let Some(publication) = p.publications.iter_mut().find(|x| x.track.mid == s.mid) {
        if s.nacks > publication.nacks_sent {
            metrics.nacks_sent.inc_by(s.nacks - publication.nacks_sent);
            publication.nacks_sent = s.nacks;
        }
    }
}
