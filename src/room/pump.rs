//! The pump: each participant's str0m `Rtc` is driven from here. Datagrams and timeouts go in,
//! datagrams go out on the shared socket, and what one `Rtc` reports that concerns others
//! (media, keyframe requests, data) is queued as `Work` and handed to the room's logic. Kept
//! apart from the room's decisions because it is the per-packet path: nothing here allocates
//! per packet or takes a lock.

use std::time::Instant;

use str0m::bwe::BweKind;
use str0m::net::{Protocol, Receive};
use str0m::{Event, IceConnectionState, Input, Output, Reason};
use tracing::{debug, info, warn};

use super::{adapt, channel, consult, media, resume, Room, Work};
use crate::udp::Datagram;

/// An estimate this far below the last one is acted on at once, not at the next tick.
fn falls(new: u64, old: u64) -> bool {
    new * 10 < old * 8
}

/// Due pacer timeouts handled inside one `drive`, so one participant cannot starve the room.
const MAX_DUE_ROUNDS: u32 = 64;

impl Room {
    pub(super) fn handle_datagram(&mut self, d: Datagram) {
        let Some(i) = self.index(d.participant) else {
            return;
        };
        let Ok(contents) = d.data.as_ref().try_into() else {
            return; // not STUN/DTLS/RTP: ignore, as a NIC would
        };
        self.participants[i].heard_at = Some(d.at);
        let (proto, destination) = match d.transport {
            crate::udp::Transport::Udp => {
                self.participants[i].send_path.on_receive(d.source, &d.data);
                (Protocol::Udp, self.plane.candidate_addr)
            }
            crate::udp::Transport::Tcp { local, writer } => {
                let p = &mut self.participants[i];
                if !p.tcp.iter().any(|(a, _)| *a == d.source) {
                    p.tcp.retain(|(_, w)| !w.is_closed());
                    p.tcp.push((d.source, writer));
                }
                // str0m knows our candidate by the advertised address, not the bound one.
                (
                    Protocol::Tcp,
                    self.plane.tcp_candidate_addr.unwrap_or(local),
                )
            }
        };
        let input = Input::Receive(
            Instant::now(),
            Receive {
                proto,
                source: d.source,
                destination,
                contents,
            },
        );
        if let Err(e) = self.participants[i].rtc.handle_input(input) {
            debug!(participant = %d.participant, "input rejected: {e}");
        }
        // The queue is empty here (drained after every datagram), so RTP in it now is what
        // str0m accepted from this datagram: fresh and authenticated, proof of the source.
        let queued = self.work.len();
        self.drive(i);
        let accepted = self
            .work
            .iter()
            .skip(queued)
            .any(|w| matches!(w, Work::Rtp(from, _) if *from == d.participant));
        if accepted && proto == Protocol::Udp {
            self.participants[i].send_path.on_media(d.source, d.at);
        }
        if accepted {
            let p = &mut self.participants[i];
            if resume::media_resumed(p.last_media_at, p.video_restarted_at, d.at) {
                // Ahead of the packet that showed it, so that packet already waits for a keyframe.
                self.work.insert(queued, Work::MediaResumed(p.id));
            }
            p.last_media_at = Some(d.at);
        }
        self.process_work();
    }

    pub(super) fn handle_timeouts(&mut self) {
        let now = Instant::now();
        for i in 0..self.participants.len() {
            if self.participants[i].next_timeout <= now {
                if let Err(e) = self.participants[i].rtc.handle_input(Input::Timeout(now)) {
                    debug!("timeout input: {e}");
                }
                self.drive(i);
            }
        }
        self.poll_keyframe_throttles(now);
        if now >= self.next_adapt {
            self.next_adapt = now + adapt::ADAPT_INTERVAL;
            let before = self.paused_subscriptions;
            self.adapt(now);
            let m = &self.plane.metrics.paused_subscriptions;
            m.add(self.paused_subscriptions as i64 - before as i64);
        }
        if now >= self.next_quality {
            self.next_quality = now + adapt::QUALITY_INTERVAL;
            self.update_quality();
        }
        if now >= self.next_sample {
            self.next_sample = now + consult::SAMPLE_INTERVAL;
            self.sample_participation(now);
        }
        self.process_work();
    }

    /// Polls one `Rtc` until it has nothing more to say now; sends its datagrams and queues the
    /// work that concerns other participants.
    pub(super) fn drive(&mut self, i: usize) {
        let p = &mut self.participants[i];
        let mut due_rounds = 0;
        loop {
            if !p.rtc.is_alive() {
                p.next_timeout = Instant::now();
                return;
            }
            let output = match p.rtc.poll_output() {
                Ok(o) => o,
                Err(e) => {
                    warn!(participant = %p.id, "rtc failed: {e}");
                    p.rtc.disconnect();
                    return;
                }
            };
            match output {
                Output::Timeout(t) => {
                    // A forwarded packet leaves str0m in several timeout rounds: one for its
                    // send stream to hand it to the pacer (reason `SendStream`, due at once
                    // after `write_rtp`), then one per packet for the pacer (which asks again
                    // 1 us later). Waiting for the room's timer (tokio's 1 ms wheel) for those
                    // held 90 % of forwarded packets until the timer fired (synth, 30
                    // participants pinned: p99 1.76 ms, 0.59 ms with these rounds fed here)
                    // and, before pacer rounds were fed, spread a frame's packets 1 ms apart
                    // (p99 11 ms). Only these: the rest (ICE, DTLS, feedback, BWE) keeps the
                    // room's timer; fed every due timeout, an earlier version stalled GCC's
                    // ramp-up in the weak-link test. Rural-3g A/B without and with the
                    // `SendStream` round, 8 runs each: weak subscriber's longest freeze
                    // 0.52-1.10 s against 0.58-1.16 s (not significant), good one never off
                    // 720p in either.
                    p.next_timeout = t;
                    let now = Instant::now();
                    let sending = matches!(
                        p.rtc.last_timeout_reason(),
                        Reason::Pacer(_) | Reason::SendStream
                    );
                    if t > now || !sending || due_rounds >= MAX_DUE_ROUNDS {
                        return;
                    }
                    due_rounds += 1;
                    if let Err(e) = p.rtc.handle_input(Input::Timeout(now)) {
                        debug!("timeout input: {e}");
                        return;
                    }
                }
                Output::Transmit(t) if t.proto == Protocol::Tcp => {
                    let sent = p
                        .tcp
                        .iter()
                        .find(|(a, _)| *a == t.destination)
                        .zip(crate::tcp::frame(&t.contents))
                        .is_some_and(|((_, w), framed)| w.try_send(framed).is_ok());
                    if !sent {
                        self.plane.metrics.udp_send_dropped.inc();
                    }
                }
                Output::Transmit(t) => {
                    let path = p
                        .send_path
                        .on_transmit(t.destination, &t.contents, Instant::now());
                    if path.destination != t.destination && path.moved {
                        info!(participant = %p.id, from = %t.destination, to = %path.destination, "media follows the client's new address");
                    }
                    if path.moved {
                        self.work.push_back(Work::PathMoved(p.id));
                    }
                    if self
                        .plane
                        .socket
                        .try_send_to(&t.contents, path.destination)
                        .is_err()
                    {
                        self.plane.metrics.udp_send_dropped.inc();
                    }
                }
                Output::Event(event) => match event {
                    Event::RtpPacket(packet) => self.work.push_back(Work::Rtp(p.id, packet)),
                    Event::KeyframeRequest(req) => {
                        self.plane.metrics.keyframe_requests_received.inc();
                        self.work.push_back(Work::KeyframeRequest(p.id, req));
                    }
                    Event::MediaAdded(added) if added.direction.is_receiving() => {
                        self.work
                            .push_back(Work::MediaAdded(p.id, added.mid, added.kind));
                    }
                    Event::IceConnectionStateChange(state) => {
                        debug!(participant = %p.id, ?state, "ice");
                        match state {
                            IceConnectionState::Disconnected => {
                                p.ice_lost_at.get_or_insert_with(Instant::now);
                            }
                            IceConnectionState::Connected | IceConnectionState::Completed
                                if p.ice_lost_at.is_some() =>
                            {
                                p.ice_lost_at = None;
                                resume::relearn_link(p, &mut self.next_adapt);
                            }
                            _ => {}
                        }
                    }
                    Event::Connected => info!(participant = %p.id, "media connected"),
                    Event::ChannelOpen(id, label) if label == channel::LABEL => {
                        p.channel = Some(id);
                        if let Some(mut ch) = p.rtc.channel(id) {
                            ch.set_buffered_amount_low_threshold(channel::ACK_HIGH / 2);
                        }
                    }
                    Event::ChannelData(data) => {
                        self.work.push_back(Work::ChannelData(p.id, data));
                    }
                    Event::ChannelBufferedAmountLow(_) => {
                        self.work.push_back(Work::ChannelDrained);
                    }
                    Event::ChannelClose(id) if p.channel == Some(id) => p.channel = None,
                    Event::EgressBitrateEstimate(BweKind::Twcc {
                        estimate,
                        can_probe,
                    }) => {
                        let new = estimate.as_u64();
                        // A falling estimate is acted on at once, not at the next tick.
                        if p.estimate_bps.is_some_and(|old| falls(new, old)) {
                            self.next_adapt = Instant::now();
                        }
                        tracing::trace!(participant = %p.id, estimate_bps = new, can_probe, "egress estimate");
                        p.estimate_bps = Some(new);
                        p.link_measured |= new != self.plane.initial_estimate_bps;
                        self.plane.metrics.estimate_bps.observe(estimate.as_f64());
                    }
                    Event::PeerStats(s) => {
                        p.twcc_loss = s.egress_loss_fraction;
                        p.delivered
                            .observe(s.timestamp, s.peer_bytes_tx, s.egress_loss_fraction);
                        let raw = s.bwe_tx.map(|b| b.as_u64());
                        // A fall the emitted estimate has not shown yet is acted on at once
                        // (see `Participant::gcc_estimate`).
                        if let (Some(new), Some(old)) = (raw, p.gcc_estimate()) {
                            if falls(new, old) {
                                self.next_adapt = Instant::now();
                            }
                        }
                        p.raw_estimate_bps = raw;
                        p.link_measured |= raw.is_some()
                            && super::resume::measured_again(p.relearned_at, Instant::now());
                        tracing::trace!(participant = %p.id, raw_estimate_bps = p.raw_estimate_bps, loss = p.twcc_loss, "peer stats");
                    }
                    Event::MediaEgressStats(s) => {
                        media::on_egress_stats(p, &s, &self.plane.metrics)
                    }
                    Event::MediaIngressStats(s) => {
                        media::on_ingress_stats(p, &s, &self.plane.metrics)
                    }
                    _ => {}
                },
            }
        }
    }

    pub(super) fn process_work(&mut self) {
        while let Some(work) = self.work.pop_front() {
            match work {
                Work::Rtp(from, packet) => self.forward(from, packet),
                Work::KeyframeRequest(from, req) => self.on_keyframe_request(from, req),
                Work::MediaAdded(from, mid, kind) => {
                    let simulcast = false; // only reached for media not in the client's offer
                    self.publish(from, mid, kind, simulcast)
                }
                Work::ChannelData(from, data) => {
                    self.on_channel_data(from, data.binary, &data.data)
                }
                Work::ChannelDrained => self.ack_transfers(),
                Work::PathMoved(who) => {
                    // A new path has its own propagation delay: the old floor would read the
                    // difference as a queue (or hide one).
                    if let Some(i) = self.index(who) {
                        self.participants[i].rtt_floor.reset();
                    }
                    self.restart_video_of(who, "media path moved")
                }
                Work::MediaResumed(who) => {
                    self.restart_video_of(who, "media resumed after an outage")
                }
            }
        }
    }
}
