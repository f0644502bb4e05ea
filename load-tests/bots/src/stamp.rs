//! The send stamp embedded in every synthetic RTP payload: send time (nanoseconds since a
//! process-wide epoch, so sender and receiver in one process share the clock), sender id,
//! stream index and a per-stream counter.

use std::sync::OnceLock;
use std::time::Instant;

/// Marks a stamp, so a payload that does not carry one is not misread.
pub const MAGIC: u8 = 0xC5;
/// magic(1) + send time ns(8) + sender(4) + stream(1) + counter(4).
pub const STAMP_LEN: usize = 18;
/// Stream indexes: audio, then the simulcast layers lowest first.
pub const STREAM_AUDIO: u8 = 0;
pub const STREAM_VIDEO_BASE: u8 = 1;
pub const STREAMS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub sent_ns: u64,
    pub sender: u32,
    pub stream: u8,
    pub counter: u32,
}

impl Stamp {
    pub fn encode(&self, out: &mut [u8]) {
        out[0] = MAGIC;
        out[1..9].copy_from_slice(&self.sent_ns.to_be_bytes());
        out[9..13].copy_from_slice(&self.sender.to_be_bytes());
        out[13] = self.stream;
        out[14..18].copy_from_slice(&self.counter.to_be_bytes());
    }

    pub fn decode(b: &[u8]) -> Option<Stamp> {
        if b.len() < STAMP_LEN || b[0] != MAGIC || b[13] as usize >= STREAMS {
            return None;
        }
        Some(Stamp {
            sent_ns: u64::from_be_bytes(b[1..9].try_into().ok()?),
            sender: u32::from_be_bytes(b[9..13].try_into().ok()?),
            stream: b[13],
            counter: u32::from_be_bytes(b[14..18].try_into().ok()?),
        })
    }
}

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The process epoch all stamps count from.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`].
pub fn now_ns() -> u64 {
    ns_at(Instant::now())
}

pub fn ns_at(t: Instant) -> u64 {
    t.saturating_duration_since(epoch()).as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let s = Stamp {
            sent_ns: 0x0102_0304_0506_0708,
            sender: 0xDEAD_BEEF,
            stream: 3,
            counter: 0xFFFF_FFFE,
        };
        let mut buf = [0u8; STAMP_LEN + 4];
        s.encode(&mut buf);
        assert_eq!(buf[0], MAGIC);
        assert_eq!(Stamp::decode(&buf), Some(s));
    }

    #[test]
    fn rejects_what_is_not_a_stamp() {
        let s = Stamp {
            sent_ns: 1,
            sender: 2,
            stream: 1,
            counter: 3,
        };
        let mut buf = [0u8; STAMP_LEN];
        s.encode(&mut buf);
        assert_eq!(Stamp::decode(&buf[..STAMP_LEN - 1]), None, "truncated");
        let mut bad = buf;
        bad[0] = 0;
        assert_eq!(Stamp::decode(&bad), None, "no magic");
        let mut bad = buf;
        bad[13] = STREAMS as u8;
        assert_eq!(Stamp::decode(&bad), None, "stream out of range");
    }

    #[test]
    fn clock_is_monotonic_from_the_epoch() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert_eq!(ns_at(epoch()), 0);
    }
}
