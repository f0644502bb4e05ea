//! What a subscriber's link demonstrably carried lately: the rate we sent it, less what its
//! transport feedback reports lost. Pure: byte counts and time come in as arguments.
//!
//! GCC's estimate can sink far below a link that still carries everything sent on it: on a
//! lossy rural link its loss control reads random loss as congestion (weak-link test, 300
//! kbit/s with 3 % loss: the estimate fell to 60 kbit/s while audio at 80 and the lowest video
//! layer at 48 arrived with 2.6 % loss and no standing queue, and the video paused for good).
//! The allocator takes this as evidence against such an estimate (`allocator::link_fails`).

use std::time::{Duration, Instant};

/// Shorter intervals are summed with the next: str0m's stats come about once a second, and a
/// rate over a few packets would be noise.
pub const MIN_INTERVAL: Duration = Duration::from_millis(500);
/// A rate older than this says nothing about the link now.
pub const FRESH: Duration = Duration::from_millis(2500);

#[derive(Debug, Clone, Default)]
pub struct Delivered {
    /// The start of the interval being measured: when, and the byte count then.
    from: Option<(Instant, u64)>,
    /// The last rate measured, and when.
    rate: Option<(Instant, u64)>,
}

impl Delivered {
    /// A stats report: `bytes_sent` is the transport's running byte count towards the
    /// subscriber (all datagrams: media, retransmissions, padding), `loss` the fraction its
    /// feedback reported lost over the last second (`None`: no feedback, nothing proven).
    pub fn observe(&mut self, at: Instant, bytes_sent: u64, loss: Option<f32>) {
        let Some((since, bytes_then)) = self.from else {
            self.from = Some((at, bytes_sent));
            return;
        };
        let elapsed = at.saturating_duration_since(since);
        if elapsed < MIN_INTERVAL {
            return;
        }
        self.from = Some((at, bytes_sent));
        let Some(loss) = loss else {
            self.rate = None;
            return;
        };
        // A counter that went back (a new transport) proves nothing.
        let sent = bytes_sent.saturating_sub(bytes_then);
        let sent_bps = sent as f64 * 8.0 / elapsed.as_secs_f64();
        let delivered = sent_bps * f64::from(1.0 - loss.clamp(0.0, 1.0));
        self.rate = Some((at, delivered as u64));
    }

    /// The rate delivered over the last interval, if it is recent.
    pub fn bps(&self, now: Instant) -> Option<u64> {
        self.rate
            .filter(|(at, _)| now.saturating_duration_since(*at) <= FRESH)
            .map(|(_, bps)| bps)
    }

    /// The path changed: what the old one carried says nothing about the new one.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let ms = Duration::from_millis;
        // Reports (ms, bytes sent so far, loss), then the rate read at `read` ms.
        type Case = (
            &'static str,
            &'static [(u64, u64, Option<f32>)],
            u64,
            Option<u64>,
        );
        let cases: &[Case] = &[
            ("nothing yet", &[], 0, None),
            (
                "one report is no interval",
                &[(0, 10_000, Some(0.0))],
                0,
                None,
            ),
            (
                "16 kB in a second, no loss",
                &[(0, 0, Some(0.0)), (1000, 16_000, Some(0.0))],
                1000,
                Some(128_000),
            ),
            (
                "a quarter lost",
                &[(0, 0, Some(0.0)), (1000, 16_000, Some(0.25))],
                1000,
                Some(96_000),
            ),
            (
                "no feedback: nothing proven",
                &[(0, 0, Some(0.0)), (1000, 16_000, None)],
                1000,
                None,
            ),
            (
                "a short interval is summed with the next",
                &[
                    (0, 0, Some(0.0)),
                    (200, 8_000, Some(0.0)),
                    (1000, 20_000, Some(0.0)),
                ],
                1000,
                Some(160_000),
            ),
            (
                "stale",
                &[(0, 0, Some(0.0)), (1000, 16_000, Some(0.0))],
                1000 + FRESH.as_millis() as u64 + 1,
                None,
            ),
            (
                "a counter that went back proves nothing",
                &[(0, 50_000, Some(0.0)), (1000, 16_000, Some(0.0))],
                1000,
                Some(0),
            ),
        ];
        for (name, reports, read, want) in cases {
            let t0 = Instant::now();
            let mut d = Delivered::default();
            for &(t, bytes, loss) in *reports {
                d.observe(t0 + ms(t), bytes, loss);
            }
            assert_eq!(d.bps(t0 + ms(*read)), *want, "{name}");
        }
    }

    #[test]
    fn reset_forgets_the_old_path() {
        let t0 = Instant::now();
        let mut d = Delivered::default();
        d.observe(t0, 0, Some(0.0));
        d.observe(t0 + Duration::from_secs(1), 16_000, Some(0.0));
        d.reset();
        assert_eq!(d.bps(t0 + Duration::from_secs(1)), None);
    }
}
