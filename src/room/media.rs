//! The media path inside a room: forward each incoming RTP packet to every open subscription,
//! and route keyframe requests back to the publisher through its throttle.

use std::time::{Duration, Instant};

use str0m::media::{KeyframeRequest, KeyframeRequestKind, MediaKind};
use str0m::rtp::{RtpPacket, RtpWrite, Vp8Descriptor};
use str0m::stats::{MediaEgressStats, MediaIngressStats};

use super::participant::{video_codec, Forwarding, Participant};
use super::Room;
use crate::adapt::layer::spatial_of_rid;
use crate::forward::codec::{is_keyframe_start, vp8_info, VideoCodec};
use crate::forward::keyframe::Decision;
use crate::forward::rewrite::InPacket;
use crate::forward::video::{Verdict, VideoPacket};
use crate::ids::{ParticipantId, TrackId};
use crate::metrics::Metrics;

/// Audio streams go quiet with Opus DTX; without this str0m reports them paused after 1.5 s.
const AUDIO_PAUSE_THRESHOLD: Duration = Duration::from_secs(3600);
/// Video waiting longer than this in a subscriber's pacer means its link collapsed faster than
/// the estimate followed. Adding more only delays the keyframe that would fix the picture: drop
/// until the queue drains, then restart from a keyframe of the (by then lower) target layer.
const MAX_PACER_DELAY: Duration = Duration::from_millis(400);

impl Room {
    pub(super) fn forward(&mut self, from: ParticipantId, mut packet: RtpPacket) {
        let Some(i) = self.index(from) else { return };
        let now = Instant::now();
        let publisher = &mut self.participants[i];
        let ssrc = packet.header.ssrc;
        let (pub_index, spatial) = match publisher.publication_by_ssrc(ssrc) {
            Some(found) => found,
            None => {
                // First packet of this SSRC: learn its track and layer.
                let mut api = publisher.rtc.direct_api();
                let Some(stream) = api.stream_rx(&ssrc) else {
                    return;
                };
                let mid = stream.mid();
                let spatial = stream
                    .rid()
                    .and_then(|rid| spatial_of_rid(rid.as_ref()))
                    .unwrap_or(0);
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
                let publication = &mut publisher.publications[k];
                publication.ssrcs.push((ssrc, spatial));
                publication.layers[spatial as usize].ssrc = Some(ssrc);
                let _ = self
                    .plane
                    .demux
                    .send(crate::udp::DemuxCommand::RegisterSsrc {
                        ufrag: publisher.ufrag.clone(),
                        ssrc: *ssrc,
                    });
                (k, spatial)
            }
        };
        let Some((params, is_red)) = publisher.params_for(packet.header.payload_type) else {
            return;
        };
        let size = packet.payload.len() + packet.header.header_len;
        if !publisher.publications[pub_index].budget.allow(now, size) {
            self.plane.metrics.rtp_over_budget.inc();
            return;
        }
        let in_pt = packet.header.payload_type;
        self.plane.metrics.rtp_packets_in.inc();
        self.plane
            .metrics
            .rtp_bytes_in
            .inc_by(packet.payload.len() as u64);
        let publication = &mut publisher.publications[pub_index];
        let kind = publication.kind;
        if kind == MediaKind::Audio && publisher.audio_muted {
            // Muted (by themselves or by the operator): nothing of the microphone goes out.
            return;
        }
        let track = publication.track.clone();
        let layer = &mut publication.layers[spatial as usize];
        let keyframes = &mut publication.keyframes;
        layer
            .meter
            .add(now, packet.payload.len() + packet.header.header_len);

        let codec = video_codec(&params);
        let vp8 = (kind == MediaKind::Video && codec == VideoCodec::Vp8)
            .then(|| vp8_info(&packet.payload))
            .flatten();
        let keyframe = match (kind, vp8) {
            (MediaKind::Audio, _) => false,
            (_, Some(info)) => info.keyframe,
            (_, None) => is_keyframe_start(codec, &packet.payload),
        };
        if keyframe {
            // Once per keyframe packet: a few a second at most, to trace how long a restart
            // waited for the publisher's answer.
            tracing::debug!(%track, spatial, "keyframe received");
            keyframes.on_keyframe(spatial);
        }
        if let (MediaKind::Audio, Some(level)) = (kind, packet.header.ext_vals.audio_level) {
            self.speakers.on_level(&from, now, level);
        }
        if let Some(t) = vp8.and_then(|v| v.temporal) {
            layer.max_temporal = layer.max_temporal.max(t);
        }
        // Parsed once for every subscriber that needs its picture ids rewritten.
        let descriptor = vp8
            .filter(|v| v.picture_id.is_some())
            .and_then(|_| Vp8Descriptor::parse(&packet.payload).ok());

        // The subscriber's stream carries its own mid; str0m sets the transport-wide ids.
        let ext = &mut packet.header.ext_vals;
        ext.mid = None;
        ext.rid = None;
        ext.rid_repair = None;

        let mut keyframe_wanted: Option<u8> = None;
        for j in 0..self.participants.len() {
            if j == i {
                continue;
            }
            let s = &mut self.participants[j];
            // A stopped share restarted can leave an old subscription stopping beside the new.
            let Some(sub) = s
                .subscriptions
                .iter_mut()
                .find(|x| x.track == track && x.open_mid().is_some())
            else {
                continue;
            };
            let Some(mid) = sub.open_mid() else { continue };
            let input = InPacket {
                seq: *packet.seq_no,
                ts: packet.header.timestamp,
                arrival: packet.timestamp,
            };
            let (seq, ts, patch) = match &mut sub.forwarding {
                Forwarding::Audio(rewriter) => {
                    let out = if rewriter.has_source() {
                        rewriter.rewrite(input)
                    } else {
                        Some(rewriter.switch_to(input))
                    };
                    let Some(out) = out else { continue };
                    (out.seq, out.ts, None)
                }
                Forwarding::Video(forwarder) => {
                    let queued_since = s
                        .rtc
                        .direct_api()
                        .stream_tx_by_mid(mid, None)
                        .and_then(|st| st.queue_info().and_then(|q| q.first_unsent()));
                    if queued_since
                        .is_some_and(|t| now.saturating_duration_since(t) > MAX_PACER_DELAY)
                    {
                        if forwarder.current().is_some() {
                            forwarder.restart();
                            self.plane.metrics.congestion_restarts.inc();
                            s.on_congestion(now, self.plane.initial_estimate_bps);
                        }
                        continue;
                    }
                    let verdict = forwarder.on_packet(VideoPacket {
                        spatial,
                        temporal: vp8.and_then(|v| v.temporal),
                        keyframe,
                        seq: input.seq,
                        ts: input.ts,
                        arrival: input.arrival,
                        picture_id: vp8.and_then(|v| v.picture_id),
                        tl0_pic_idx: vp8.and_then(|v| v.tl0_pic_idx),
                    });
                    match verdict {
                        Verdict::Forward {
                            seq,
                            ts,
                            picture_id,
                            tl0_pic_idx,
                            switched,
                        } => {
                            if switched {
                                tracing::debug!(participant = %s.id, %track, spatial, "forwarding from a keyframe");
                                self.plane.metrics.layer_switches.inc();
                            }
                            let patch = descriptor.and_then(|d| {
                                let mut b = d.patch();
                                if let Some(p) = picture_id {
                                    b = b.picture_id(p);
                                }
                                if let Some(t) = tl0_pic_idx {
                                    b = b.tl0_pic_idx(t);
                                }
                                b.build().ok()
                            });
                            (seq, ts, patch)
                        }
                        Verdict::Drop => continue,
                        Verdict::DropNeedKeyframe { spatial } => {
                            keyframe_wanted = Some(spatial);
                            continue;
                        }
                    }
                }
            };
            let (pt, unwrap_red) = match sub.pt_map.iter().find(|(a, _, _)| *a == in_pt) {
                Some((_, b, u)) => (*b, *u),
                None => {
                    let Some(local) = s.rtc.codec_config().match_params(params) else {
                        continue; // the subscriber cannot decode this codec
                    };
                    let mapped = match (is_red, local.red()) {
                        (true, Some(red)) => (red, false),
                        (true, None) => (local.pt(), true),
                        (false, _) => (local.pt(), false),
                    };
                    sub.pt_map.push((in_pt, mapped.0, mapped.1));
                    mapped
                }
            };
            let payload = if unwrap_red {
                // Rare: a subscriber without RED. Costs one copy of the primary block.
                match crate::forward::red::primary(&packet.payload) {
                    Some(p) => std::sync::Arc::from(p),
                    None => continue,
                }
            } else {
                packet.payload.clone()
            };
            let mut api = s.rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(mid, None) else {
                continue;
            };
            let mut write = RtpWrite::new(pt, seq.into(), ts, packet.timestamp, payload)
                .marker(packet.header.marker)
                .ext_vals(packet.header.ext_vals.clone())
                .nackable(kind == MediaKind::Video);
            if let Some(patch) = patch {
                write = write.vp8_patch(patch);
            }
            stream.write_rtp(write);
            s.rx_bytes += packet.payload.len() as u64;
            self.plane.metrics.rtp_packets_out.inc();
            self.plane
                .metrics
                .rtp_bytes_out
                .inc_by(packet.payload.len() as u64);
            self.drive(j);
        }
        if let Some(spatial) = keyframe_wanted {
            self.request_keyframe(&track, spatial, now);
        }
    }

    /// A subscriber asked for a keyframe on one of its outgoing mids: ask for the layer it
    /// receives (or is switching to).
    pub(super) fn on_keyframe_request(&mut self, from: ParticipantId, req: KeyframeRequest) {
        let Some(j) = self.index(from) else { return };
        let Some(sub) = self.participants[j]
            .subscriptions
            .iter_mut()
            .find(|s| s.mid() == Some(req.mid))
        else {
            return;
        };
        let track = sub.track.clone();
        let spatial = sub
            .video()
            .and_then(|v| v.current().or(v.target().map(|l| l.spatial)))
            .unwrap_or(0);
        tracing::debug!(participant = %from, %track, spatial, kind = ?req.kind, "subscriber asked for a keyframe");
        self.request_keyframe(&track, spatial, Instant::now());
    }

    /// Whether `track`'s publisher sent packets of this spatial layer within
    /// `forward::video::LAYER_SILENT`.
    pub(super) fn layer_flowing(&self, track: &TrackId, spatial: u8, now: Instant) -> bool {
        self.index(track.publisher)
            .and_then(|i| {
                self.participants[i]
                    .publications
                    .iter()
                    .find(|x| &x.track == track)
            })
            .and_then(|x| x.layers.get(usize::from(spatial)))
            .is_some_and(|l| l.meter.active(now, crate::forward::video::LAYER_SILENT))
    }

    /// Asks the publisher of `track` for a keyframe of one layer, unless one was asked for
    /// very recently (requests from all subscribers collapse here).
    pub(super) fn request_keyframe(&mut self, track: &TrackId, spatial: u8, now: Instant) {
        let Some(i) = self.index(track.publisher) else {
            return;
        };
        let p = &mut self.participants[i];
        if p.unreachable(now) {
            // Its path is down: the request would be lost, or arrive with the link and hold
            // back the restart's own (the browser acts on one per track per 300 ms).
            // `restart_video_of` asks when its media comes back.
            tracing::debug!(%track, spatial, "keyframe request dropped (publisher silent)");
            return;
        }
        let Some(publication) = p.publications.iter_mut().find(|x| &x.track == track) else {
            return;
        };
        if publication.kind != MediaKind::Video {
            return;
        }
        match publication.keyframes.on_request(spatial, now) {
            Decision::Send => {
                tracing::debug!(%track, spatial, "keyframe request sent");
                let ssrc = publication.layers[usize::from(spatial.min(2))].ssrc;
                send_pli(p, track, ssrc, &self.plane.metrics);
                self.drive(i);
            }
            Decision::Suppressed => {
                tracing::debug!(%track, spatial, "keyframe request suppressed (throttle)");
                self.plane.metrics.keyframe_requests_suppressed.inc()
            }
        }
    }

    /// Sends keyframe requests that were suppressed and are now due.
    pub(super) fn poll_keyframe_throttles(&mut self, now: Instant) {
        for i in 0..self.participants.len() {
            let p = &mut self.participants[i];
            if p.unreachable(now) {
                // See `request_keyframe`; cancelled, not kept, or the room would wake for them
                // in a loop.
                for publication in &mut p.publications {
                    publication.keyframes.cancel();
                }
                continue;
            }
            let mut due = Vec::new();
            for publication in &mut p.publications {
                while let Some(spatial) = publication.keyframes.poll(now) {
                    tracing::debug!(track = %publication.track, spatial, "keyframe request sent (held back)");
                    let ssrc = publication.layers[usize::from(spatial)].ssrc;
                    due.push((publication.track.clone(), ssrc));
                }
            }
            if due.is_empty() {
                continue;
            }
            for (track, ssrc) in &due {
                send_pli(p, track, *ssrc, &self.plane.metrics);
            }
            self.drive(i);
        }
    }
}

fn send_pli(
    p: &mut Participant,
    track: &TrackId,
    ssrc: Option<str0m::rtp::Ssrc>,
    metrics: &Metrics,
) {
    let mut api = p.rtc.direct_api();
    let stream = match ssrc {
        Some(ssrc) => api.stream_rx(&ssrc),
        None => api.stream_rx_by_mid(track.mid, None),
    };
    if let Some(stream) = stream {
        stream.request_keyframe(KeyframeRequestKind::Pli);
        metrics.keyframe_requests_sent.inc();
    }
}

pub(super) fn on_egress_stats(p: &mut Participant, s: &MediaEgressStats, metrics: &Metrics) {
    let Some(sub) = p.subscriptions.iter_mut().find(|x| x.mid() == Some(s.mid)) else {
        return;
    };
    if s.nacks > sub.nacks_received {
        metrics.nacks_received.inc_by(s.nacks - sub.nacks_received);
        sub.nacks_received = s.nacks;
    }
    sub.loss = s.loss;
    if let Some(rtt) = fresh_rtt(&mut sub.packets_sent, s.packets, s.rtt) {
        p.observe_rtt(s.timestamp, rtt);
    }
}

pub(super) fn on_ingress_stats(p: &mut Participant, s: &MediaIngressStats, metrics: &Metrics) {
    if let Some(publication) = p.publications.iter_mut().find(|x| x.track.mid == s.mid) {
        // str0m keeps totals per stream, and a simulcast track has one stream per layer.
        let spatial = s.rid.and_then(|r| spatial_of_rid(r.as_ref())).unwrap_or(0);
        let layer = &mut publication.layers[spatial as usize];
        if s.nacks > layer.nacks_sent {
            metrics.nacks_sent.inc_by(s.nacks - layer.nacks_sent);
            layer.nacks_sent = s.nacks;
        }
        if s.loss.is_some() {
            publication.loss = s.loss;
        }
        if let Some(rtt) = fresh_rtt(&mut layer.packets_received, s.packets, s.rtt) {
            p.observe_rtt(s.timestamp, rtt);
        }
    }
}

/// The stream's RTT if it carried packets since its last stats event, else None.
///
/// str0m reports a stream's last measured RTT in every stats event, also for a stream that
/// stopped (a paused subscription, a layer dynacast stopped). That RTT was measured when the
/// stream stopped, often because the link was full, and read as the current RTT it looks like
/// a standing queue that holds every step up, the resume of paused video included.
fn fresh_rtt(last_packets: &mut u64, packets: u64, rtt: Option<Duration>) -> Option<Duration> {
    let advanced = packets > *last_packets;
    *last_packets = packets;
    rtt.filter(|_| advanced)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_stream_that_carried_packets_reports_a_fresh_rtt() {
        let ms = Duration::from_millis;
        /// (packets in the stats event, its rtt in ms)
        type Event = (u64, Option<u64>);
        /// (name, stats events, the rtt taken from each)
        type Case<'a> = (&'a str, &'a [Event], &'a [Option<u64>]);
        let cases: &[Case] = &[
            (
                "flowing",
                &[(10, Some(80)), (20, Some(90))],
                &[Some(80), Some(90)],
            ),
            (
                "paused: the last rtt is repeated, never taken",
                &[
                    (10, Some(80)),
                    (50, Some(400)),
                    (50, Some(400)),
                    (50, Some(400)),
                ],
                &[Some(80), Some(400), None, None],
            ),
            (
                "resumed",
                &[(50, Some(400)), (50, Some(400)), (60, Some(120))],
                &[Some(400), None, Some(120)],
            ),
            ("no rtt yet", &[(10, None), (20, None)], &[None, None]),
            ("nothing sent yet", &[(0, Some(80))], &[None]),
        ];
        for (name, events, want) in cases {
            let mut last = 0;
            let got: Vec<_> = events
                .iter()
                .map(|&(packets, rtt)| fresh_rtt(&mut last, packets, rtt.map(ms)))
                .collect();
            let want: Vec<_> = want.iter().map(|w| w.map(ms)).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
