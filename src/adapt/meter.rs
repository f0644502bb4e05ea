//! Bitrate of one incoming layer over a sliding window, from packet sizes and arrival times.
//! Pure: time is an argument; a fixed ring of buckets, no allocation per packet.

use std::time::{Duration, Instant};

const BUCKETS: usize = 10;
const BUCKET: Duration = Duration::from_millis(100);

/// Bits per second over the last second.
#[derive(Debug, Clone)]
pub struct RateMeter {
    bytes: [u64; BUCKETS],
    /// Start of the newest bucket.
    head: Option<Instant>,
    index: usize,
    /// When the first byte was counted: a meter younger than the window under-reports.
    started: Option<Instant>,
    last_packet: Option<Instant>,
}

impl Default for RateMeter {
    fn default() -> Self {
        Self::new()
    }
}

impl RateMeter {
    pub fn new() -> Self {
        Self {
            bytes: [0; BUCKETS],
            head: None,
            index: 0,
            started: None,
            last_packet: None,
        }
    }

    pub fn add(&mut self, now: Instant, bytes: usize) {
        self.advance(now);
        self.bytes[self.index] += bytes as u64;
        self.started.get_or_insert(now);
        self.last_packet = Some(now);
    }

    fn advance(&mut self, now: Instant) {
        let Some(head) = self.head else {
            self.head = Some(now);
            return;
        };
        let steps = (now.saturating_duration_since(head).as_millis() / BUCKET.as_millis()) as usize;
        if steps == 0 {
            return;
        }
        for _ in 0..steps.min(BUCKETS) {
            self.index = (self.index + 1) % BUCKETS;
            self.bytes[self.index] = 0;
        }
        self.head = Some(head + BUCKET * steps as u32);
    }

    /// Bits per second over the window, or `None` until a full window has been seen.
    pub fn bps(&mut self, now: Instant) -> Option<u64> {
        self.advance(now);
        let started = self.started?;
        if now.saturating_duration_since(started) < BUCKET * BUCKETS as u32 {
            return None;
        }
        let total: u64 = self.bytes.iter().sum();
        Some(total * 8 * 1000 / (BUCKET.as_millis() as u64 * BUCKETS as u64))
    }

    /// Whether packets arrived within `window`: a layer the publisher stopped sending is not
    /// available to subscribers.
    pub fn active(&self, now: Instant, window: Duration) -> bool {
        self.last_packet
            .is_some_and(|t| now.saturating_duration_since(t) <= window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_a_steady_rate() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        // 1200-byte packets every 10 ms = 960 kbps.
        for i in 0..300u64 {
            m.add(t0 + Duration::from_millis(i * 10), 1200);
        }
        let now = t0 + Duration::from_millis(2995);
        let bps = m.bps(now).unwrap();
        assert!((900_000..=1_000_000).contains(&bps), "{bps}");
        assert!(m.active(now, Duration::from_millis(100)));
    }

    #[test]
    fn young_meters_report_nothing_and_silence_decays() {
        let t0 = Instant::now();
        let mut m = RateMeter::new();
        m.add(t0, 1000);
        assert_eq!(m.bps(t0 + Duration::from_millis(500)), None);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(m.bps(later), Some(0));
        assert!(!m.active(later, Duration::from_secs(1)));
    }
}
