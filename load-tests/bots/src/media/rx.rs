//! The receive side of a bot: loss from sequence numbers, packets per sender, latency from
//! the stamps.

use super::*;

#[derive(Default)]
struct RxSsrc {
    first: u64,
    max: u64,
    received: u64,
}

/// What one bot received, over all its peer connections.
#[derive(Default)]
pub struct Rx {
    ssrcs: HashMap<Ssrc, RxSsrc>,
    /// (sender, stream) -> (first counter, max counter, received)
    counters: HashMap<(u32, u8), (u32, u32, u64)>,
    /// sender -> (audio packets, video packets)
    pub from: HashMap<u32, (u64, u64)>,
    first_media: bool,
    /// (expected, received) by sequence numbers on earlier peer connections (`--rejoin`).
    closed: (u64, u64),
}

fn seq_totals<'a>(ssrcs: impl Iterator<Item = &'a RxSsrc>) -> (u64, u64) {
    let (mut exp, mut rec) = (0, 0);
    for s in ssrcs {
        exp += s.max - s.first + 1;
        rec += s.received;
    }
    (exp, rec)
}

impl Rx {
    /// The peer connection is replaced (`--rejoin`): a new node numbers its streams anew, so
    /// the sequence-number accounting of the old one is closed rather than mixed in.
    pub fn new_connection(&mut self) {
        let (e, r) = seq_totals(self.ssrcs.values());
        self.closed.0 += e;
        self.closed.1 += r;
        self.ssrcs.clear();
    }

    /// Counts one received packet; `hist` is the room's [audio, video] latency histograms.
    /// Returns the stamped sender, if the packet carried a stamp.
    pub fn on_rtp(
        &mut self,
        kind: Option<MediaKind>,
        p: &RtpPacket,
        started_at: Option<Instant>,
        arrived: Instant,
        shared: &Shared,
        hist: &mut [Histogram; 2],
    ) -> Option<u32> {
        shared.received_packets.fetch_add(1, Relaxed);
        shared
            .received_bytes
            .fetch_add(p.payload.len() as u64, Relaxed);
        let seq = *p.seq_no;
        let rx = self.ssrcs.entry(p.header.ssrc).or_insert_with(|| RxSsrc {
            first: seq,
            max: seq,
            received: 0,
        });
        rx.first = rx.first.min(seq);
        rx.max = rx.max.max(seq);
        rx.received += 1;

        let offset = match kind {
            Some(MediaKind::Audio) => 1,
            Some(MediaKind::Video) => match vp8::parse_descriptor(&p.payload) {
                Some(d) => d.len + vp8::FRAME_HEADER_LEN,
                None => usize::MAX,
            },
            None => usize::MAX,
        };
        let Some(s) = p.payload.get(offset..).and_then(Stamp::decode) else {
            shared.received_unstamped.fetch_add(1, Relaxed);
            return None;
        };
        let recv_ns = stamp::ns_at(arrived);
        let us = recv_ns.saturating_sub(s.sent_ns) / 1_000;
        hist[usize::from(s.stream != STREAM_AUDIO)].record_us(us);
        if us >= SLOW_US {
            shared.slow_count.fetch_add(1, Relaxed);
            let mut slow = shared.slow.lock().unwrap();
            if slow.len() < 50 {
                slow.push((us, recv_ns as f64 / 1e9, s.stream));
            }
        }
        shared.received_by_stream[s.stream as usize].fetch_add(1, Relaxed);
        let from = self.from.entry(s.sender).or_default();
        if s.stream == STREAM_AUDIO {
            from.0 += 1;
            shared.received_audio.fetch_add(1, Relaxed);
        } else {
            from.1 += 1;
            shared.received_video.fetch_add(1, Relaxed);
        }
        if !self.first_media {
            self.first_media = true;
            if let Some(start) = started_at {
                shared
                    .first_media_ms
                    .lock()
                    .unwrap()
                    .push((p.timestamp - start).as_secs_f64() * 1e3);
            }
        }
        debug_assert!((s.stream as usize) < STREAMS);
        let c = self
            .counters
            .entry((s.sender, s.stream))
            .or_insert((s.counter, s.counter, 0));
        if s.counter.wrapping_sub(c.1) < u32::MAX / 2 {
            c.1 = s.counter;
        } else if c.0.wrapping_sub(s.counter) < u32::MAX / 2 {
            c.0 = s.counter;
        }
        c.2 += 1;
        Some(s.sender)
    }

    /// Adds this bot's loss accounting to the shared totals (once, at the end).
    pub fn finish(&self, shared: &Shared) {
        let (exp, rec) = seq_totals(self.ssrcs.values());
        let (exp, rec) = (exp + self.closed.0, rec + self.closed.1);
        shared.rtp_expected.fetch_add(exp, Relaxed);
        shared.rtp_received.fetch_add(rec.min(exp), Relaxed);
        let (mut aexp, mut arec) = (0u64, 0u64);
        for ((_, stream), (first, max, n)) in &self.counters {
            if *stream == STREAM_AUDIO {
                let e = max.wrapping_sub(*first) as u64 + 1;
                aexp += e;
                arec += (*n).min(e);
            }
        }
        shared.audio_expected.fetch_add(aexp, Relaxed);
        shared.audio_received.fetch_add(arec, Relaxed);
    }
}
