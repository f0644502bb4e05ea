//! How much a publisher may send. A browser sends what its layers are configured for, with
//! keyframe bursts on top; a broken or hostile client sending far more would cost every
//! subscriber's link and the server's CPU. The excess is dropped on arrival, before any
//! forwarding work, and counted. Pure: a token bucket with time passed in.

use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct IngressBudget {
    bytes_per_sec: f64,
    burst_bytes: f64,
    tokens: f64,
    last: Option<Instant>,
}

impl IngressBudget {
    /// `rate_bps` sustained, and up to `burst` of it at once (a keyframe, a burst after a
    /// network hiccup).
    pub fn new(rate_bps: u64, burst: Duration) -> Self {
        let bytes_per_sec = rate_bps as f64 / 8.0;
        let burst_bytes = bytes_per_sec * burst.as_secs_f64();
        Self {
            bytes_per_sec,
            burst_bytes,
            tokens: burst_bytes,
            last: None,
        }
    }

    /// Whether a packet of `bytes` fits now; if it does, it is charged.
    pub fn allow(&mut self, now: Instant, bytes: usize) -> bool {
        if let Some(last) = self.last {
            let elapsed = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + elapsed * self.bytes_per_sec).min(self.burst_bytes);
        }
        self.last = Some(now);
        let cost = bytes as f64;
        if cost <= self.tokens {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// Opus tops out at 510 kbit/s; RED doubles what it carries.
pub const AUDIO_BUDGET_BPS: u64 = 1_100_000;
/// Video may use this many times its configured layers (encoders overshoot, keyframes).
pub const VIDEO_BUDGET_FACTOR: u64 = 3;
/// Never less than this for a video track (a screen share at high resolution).
pub const VIDEO_BUDGET_MIN_BPS: u64 = 4_000_000;
/// Bucket depth.
pub const BURST: Duration = Duration::from_secs(1);

/// The budget of a video publication whose simulcast layers are configured at `layers_bps`.
pub fn video_budget_bps(layers_bps: impl IntoIterator<Item = u64>) -> u64 {
    let sum: u64 = layers_bps.into_iter().sum();
    (sum * VIDEO_BUDGET_FACTOR).max(VIDEO_BUDGET_MIN_BPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends `pps` packets of `size` bytes per second for `secs`; returns the share allowed.
    fn run(rate_bps: u64, pps: u64, size: usize, secs: u64) -> f64 {
        let t0 = Instant::now();
        let mut b = IngressBudget::new(rate_bps, BURST);
        let total = pps * secs;
        let allowed = (0..total)
            .filter(|i| b.allow(t0 + Duration::from_micros(i * 1_000_000 / pps), size))
            .count();
        allowed as f64 / total as f64
    }

    #[test]
    fn lets_through_what_fits_and_drops_the_excess() {
        // (budget, packets/s, bytes, seconds, allowed share: min, max)
        let cases = [
            // 1.2 Mbit/s of video under a 5 Mbit/s budget: all of it.
            (5_000_000, 100, 1500, 10, 1.0, 1.0),
            // Exactly at the budget: all of it (the bucket refills as fast as it drains).
            (1_200_000, 100, 1500, 10, 1.0, 1.0),
            // Three times the budget for 10 s: about a third, plus the first second's burst.
            (1_200_000, 300, 1500, 10, 0.33, 0.40),
            // Ten times: about a tenth.
            (1_000_000, 833, 1500, 10, 0.09, 0.13),
        ];
        for (rate, pps, size, secs, lo, hi) in cases {
            let share = run(rate, pps, size, secs);
            assert!(
                (lo..=hi).contains(&share),
                "{rate} bit/s, {pps} x {size} B/s: allowed {share:.3}, want {lo}..={hi}"
            );
        }
    }

    #[test]
    fn a_keyframe_burst_within_the_bucket_passes_and_idle_time_refills_it() {
        let t0 = Instant::now();
        let mut b = IngressBudget::new(1_600_000, BURST); // 200 kB/s, 200 kB deep
                                                          // A 150 kB keyframe at once: fits the bucket.
        assert!((0..100).all(|_| b.allow(t0, 1500)));
        // 60 kB more at the same instant: only what is left of the bucket.
        let more = (0..40).filter(|_| b.allow(t0, 1500)).count();
        assert_eq!(more, 33);
        // Half a second later, 100 kB have come back.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!((0..100).filter(|_| b.allow(t1, 1500)).count(), 67);
    }

    #[test]
    fn video_budget_scales_with_the_configured_layers() {
        assert_eq!(video_budget_bps([150_000, 400_000, 1_200_000]), 5_250_000);
        assert_eq!(video_budget_bps([300_000]), VIDEO_BUDGET_MIN_BPS);
    }
}
