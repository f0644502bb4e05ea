//! Sequence number and timestamp rewriting for one outgoing stream (one subscription).
//!
//! The subscriber must see one continuous stream whatever the publisher side does: a late join,
//! a switch to another source (simulcast layer, or a publisher that restarted), packets the SFU
//! chose not to send. Sequence numbers are kept as 64-bit extended values inside, so wrap-around
//! is just arithmetic; timestamps are 32-bit RTP time and rebased with wrapping arithmetic.

use std::time::Instant;

/// One incoming packet, as far as rewriting is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InPacket {
    /// Extended (unwrapped) sequence number of the source.
    pub seq: u64,
    /// RTP timestamp of the source.
    pub ts: u32,
    /// When the packet arrived.
    pub arrival: Instant,
}

/// Where the packet goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutPacket {
    pub seq: u64,
    pub ts: u32,
}

#[derive(Debug, Clone)]
struct Source {
    /// out = in + seq_offset (in 64-bit wrapping arithmetic).
    seq_offset: u64,
    /// Packets at or below this source sequence number belong to before the switch.
    first_seq: u64,
    ts_offset: u32,
}

#[derive(Debug, Clone)]
pub struct Rewriter {
    clock_rate: u32,
    source: Option<Source>,
    /// Highest outgoing sequence number sent.
    last_seq: u64,
    /// Timestamp and arrival of the newest packet sent, for rebasing at a switch.
    last_ts: u32,
    last_arrival: Option<Instant>,
}

impl Rewriter {
    /// `first_seq` is the sequence number before the first one sent. It must leave room below
    /// 65536 so that the receiver needs no out-of-band rollover counter.
    pub fn new(clock_rate: u32, first_seq: u16) -> Self {
        Self {
            clock_rate,
            source: None,
            last_seq: first_seq as u64,
            last_ts: 0,
            last_arrival: None,
        }
    }

    /// Starts a new source with this packet (the first ever, or the keyframe of a new layer):
    /// it follows the last sent packet without a gap, and its timestamp advances by the wall
    /// time since the last sent packet.
    pub fn switch_to(&mut self, p: InPacket) -> OutPacket {
        let out_seq = self.last_seq + 1;
        let out_ts = match self.last_arrival {
            None => p.ts,
            Some(last) => {
                let elapsed = p.arrival.saturating_duration_since(last);
                let ticks = (elapsed.as_secs_f64() * self.clock_rate as f64) as u64;
                // At least one tick, so the decoder sees a new frame.
                self.last_ts
                    .wrapping_add(ticks.clamp(1, u32::MAX as u64 / 2) as u32)
            }
        };
        self.source = Some(Source {
            seq_offset: out_seq.wrapping_sub(p.seq),
            first_seq: p.seq,
            ts_offset: out_ts.wrapping_sub(p.ts),
        });
        self.note_sent(out_seq, out_ts, p.arrival);
        OutPacket {
            seq: out_seq,
            ts: out_ts,
        }
    }

    /// Rewrites a packet of the current source; `None` if there is no source yet or the packet
    /// is older than the switch (it belongs to a stream the subscriber never saw).
    pub fn rewrite(&mut self, p: InPacket) -> Option<OutPacket> {
        let source = self.source.as_ref()?;
        if p.seq < source.first_seq {
            return None;
        }
        let out = OutPacket {
            seq: p.seq.wrapping_add(source.seq_offset),
            ts: p.ts.wrapping_add(source.ts_offset),
        };
        if out.seq > self.last_seq {
            self.note_sent(out.seq, out.ts, p.arrival);
        }
        Some(out)
    }

    /// The SFU chose not to forward this packet of the current source (e.g. a dropped temporal
    /// layer): later packets move down by one so the subscriber sees no gap. Only valid for the
    /// newest packet (`seq` above everything sent).
    pub fn skip(&mut self, seq: u64) {
        if let Some(source) = self.source.as_mut() {
            if seq.wrapping_add(source.seq_offset) == self.last_seq + 1 {
                source.seq_offset = source.seq_offset.wrapping_sub(1);
            }
        }
    }

    pub fn has_source(&self) -> bool {
        self.source.is_some()
    }

    fn note_sent(&mut self, seq: u64, ts: u32, arrival: Instant) {
        self.last_seq = seq;
        self.last_ts = ts;
        self.last_arrival = Some(arrival);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pkt(t0: Instant, seq: u64, ts: u32, ms: u64) -> InPacket {
        InPacket {
            seq,
            ts,
            arrival: t0 + Duration::from_millis(ms),
        }
    }

    #[test]
    fn late_joiner_starts_low_and_follows_the_source() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 100);
        // The source has wrapped twice already: extended seq above 2^17.
        let first = r.switch_to(pkt(t0, 200_000, 5_000, 0));
        assert_eq!(
            first,
            OutPacket {
                seq: 101,
                ts: 5_000
            }
        );
        let next = r.rewrite(pkt(t0, 200_001, 8_000, 33)).unwrap();
        assert_eq!(
            next,
            OutPacket {
                seq: 102,
                ts: 8_000
            }
        );
        // Reordered packet of the same source, newer than the switch.
        assert_eq!(r.rewrite(pkt(t0, 200_000, 5_000, 34)).unwrap().seq, 101);
        // Older than the switch: never seen by this subscriber.
        assert_eq!(r.rewrite(pkt(t0, 199_999, 2_000, 35)), None);
    }

    #[test]
    fn switching_source_keeps_seq_and_ts_continuous() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 0);
        r.switch_to(pkt(t0, 10, 1_000, 0));
        for i in 1..10u64 {
            r.rewrite(pkt(t0, 10 + i, 1_000 + 3_000 * i as u32, 33 * i));
        }
        // New layer: unrelated seq and ts, 33 ms after the last packet.
        let out = r.switch_to(pkt(t0, 50_000, 4_000_000_000, 330));
        assert_eq!(out.seq, 11, "no gap");
        let last_ts = 1_000 + 3_000 * 9;
        assert_eq!(out.ts, last_ts + 2_970, "advanced by 33 ms at 90 kHz");
        let after = r.rewrite(pkt(t0, 50_001, 4_000_003_000, 363)).unwrap();
        assert_eq!(
            after,
            OutPacket {
                seq: 12,
                ts: last_ts + 2_970 + 3_000
            }
        );
        // Late packets of the old source are dropped, not sent with wrong numbers.
        assert_eq!(r.rewrite(pkt(t0, 19, 28_000, 364)), None);
    }

    #[test]
    fn sequence_and_timestamp_wrap_around() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(48_000, 65_530);
        r.switch_to(pkt(t0, 7, u32::MAX - 960, 0));
        let mut last = None;
        for i in 1..20u64 {
            let out = r
                .rewrite(pkt(
                    t0,
                    7 + i,
                    (u32::MAX - 960).wrapping_add(960 * i as u32),
                    20 * i,
                ))
                .unwrap();
            assert_eq!(out.seq, 65_531 + i, "extended seq continues past 65535");
            last = Some(out);
        }
        let last = last.unwrap();
        assert_eq!(last.seq as u16, ((65_531u64 + 19) % 65_536) as u16);
        assert_eq!(last.ts, (u32::MAX - 960).wrapping_add(960 * 19), "ts wraps");
    }

    #[test]
    fn skipped_packets_leave_no_gap() {
        let t0 = Instant::now();
        let mut r = Rewriter::new(90_000, 0);
        r.switch_to(pkt(t0, 1, 0, 0));
        r.skip(2);
        r.skip(3);
        assert_eq!(r.rewrite(pkt(t0, 4, 3_000, 10)).unwrap().seq, 2);
        // Skipping something that is not the newest does nothing.
        r.skip(3);
        assert_eq!(r.rewrite(pkt(t0, 5, 6_000, 20)).unwrap().seq, 3);
    }

    #[test]
    fn nothing_goes_out_before_a_source() {
        let mut r = Rewriter::new(90_000, 0);
        assert!(!r.has_source());
        assert_eq!(r.rewrite(pkt(Instant::now(), 1, 0, 0)), None);
    }
}
