//! When str0m's bandwidth estimator is stuck and must be restarted. Pure: time is an argument.
//!
//! str0m's loss-based estimator (a port of WebRTC's LossBasedBweV2) enters its "decreasing"
//! state whenever its own estimate is below the delay-based one, loss or not. One way in: a
//! periodic probe that measures less than the estimate sets the estimate down directly. While
//! that state lasts, the probe controller refuses every probe (loss-limited), and the estimate
//! it is given refreshes only when the estimate moves, which it does not: nothing grows it but
//! padding, itself capped at the estimate. Traced in the data-saver test on loopback, with no
//! packet lost: a probe at 434 kbit/s measured 273, the estimate then stayed at exactly
//! 273,374 bit/s for 11 s while the subscriber wanted 314 kbit/s, and the allocation probe and
//! the room's re-armed probe were both refused (CI: 289 kbit/s for 10 s, test failed).
//!
//! A stuck estimate is told apart from a busy link by not moving at all: on a link that really
//! carries no more, GCC's estimate keeps moving, if only by a few bit/s, as its delay and loss
//! signals do (step test at 250 kbit/s: 170,814 then 169,960 five seconds later). So when
//! str0m has reported no new estimate for `STALL_AFTER` while more is wanted and nothing is
//! being lost, the room restarts the estimator from the estimate it had; str0m's start-up
//! probes then measure the link within a round trip. Restarts back off while they keep finding
//! nothing, so a link that really is stuck there is not probed every few seconds. (A 1 %
//! tolerance instead of none also restarted the step test's estimator at 250 kbit/s, and its
//! recovery to 720p took 13.8-14.2 s instead of 7.9-12.)

use std::time::{Duration, Instant};

/// How long an unmoving estimate under unmet demand is tolerated.
pub const STALL_AFTER: Duration = Duration::from_secs(2);
/// Demand counts as unmet when what is wanted exceeds the estimate by this factor (str0m
/// ignores desired-rate changes under 5 %, and so does the room's shaping).
pub const WANTED_OVER: f64 = 1.05;
/// Loss (fraction) at or above which a still estimate is the link's answer, not a stall.
pub const LOSSY: f32 = 0.01;
/// The first restart may follow the previous one after this; each restart that did not help
/// doubles it up to `GAP_MAX`.
pub const GAP_FIRST: Duration = Duration::from_secs(10);
pub const GAP_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct EstimateStall {
    /// Since when the estimate has stayed exactly at the value recorded here.
    still: Option<(Instant, u64)>,
    last_restart: Option<(Instant, u64)>,
    gap: Duration,
}

impl Default for EstimateStall {
    fn default() -> Self {
        Self {
            still: None,
            last_restart: None,
            gap: GAP_FIRST,
        }
    }
}

impl EstimateStall {
    /// `estimate_bps`: str0m's latest estimate; `wanted_bps`: what the allocator probes for;
    /// `loss`: the subscriber's egress loss fraction. Returns true when the estimator should be
    /// restarted now (from `estimate_bps`).
    pub fn update(&mut self, now: Instant, estimate_bps: u64, wanted_bps: u64, loss: f32) -> bool {
        let wanted = wanted_bps as f64 > estimate_bps as f64 * WANTED_OVER;
        if !wanted || loss >= LOSSY {
            self.still = None;
            return false;
        }
        if let Some((_, at_bps)) = self.last_restart {
            // A restart that moved the estimate well up worked: the next one may come soon.
            if estimate_bps as f64 > at_bps as f64 * 1.2 {
                self.last_restart = None;
                self.gap = GAP_FIRST;
            }
        }
        let since = match self.still {
            Some((since, base)) if base == estimate_bps => since,
            _ => {
                self.still = Some((now, estimate_bps));
                now
            }
        };
        if now.saturating_duration_since(since) < STALL_AFTER {
            return false;
        }
        if let Some((at, _)) = self.last_restart {
            if now.saturating_duration_since(at) < self.gap {
                return false;
            }
            self.gap = (self.gap * 2).min(GAP_MAX);
        }
        self.last_restart = Some((now, estimate_bps));
        self.still = None;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds each (from ms, to ms, estimate, wanted, loss) every 200 ms and returns the times
    /// at which a restart was asked for.
    fn run(
        stall: &mut EstimateStall,
        t0: Instant,
        steps: &[(u64, u64, u64, u64, f32)],
    ) -> Vec<u64> {
        let mut restarts = Vec::new();
        for &(from, to, estimate, wanted, loss) in steps {
            for t in (from..to).step_by(200) {
                if stall.update(t0 + MS * t as u32, estimate, wanted, loss) {
                    restarts.push(t);
                }
            }
        }
        restarts
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            /// (from ms, to ms, estimate, wanted, loss)
            steps: Vec<(u64, u64, u64, u64, f32)>,
            restarts: Vec<u64>,
        }
        let cases = vec![
            Case {
                name: "the data-saver trace: frozen at 273k wanting 314k, no loss",
                steps: vec![(0, 5_000, 273_374, 314_414, 0.0)],
                restarts: vec![2_000],
            },
            Case {
                name: "nothing more wanted: never, however still",
                steps: vec![(0, 30_000, 600_000, 500_000, 0.0)],
                restarts: vec![],
            },
            Case {
                name: "wanted only 3 % above the estimate: never",
                steps: vec![(0, 30_000, 600_000, 618_000, 0.0)],
                restarts: vec![],
            },
            Case {
                name: "a lossy link's still estimate is its answer: never",
                steps: vec![(0, 30_000, 273_374, 314_414, 0.03)],
                restarts: vec![],
            },
            Case {
                name: "a moving estimate is GCC at work: never",
                steps: (0..150u64)
                    .map(|i| {
                        (
                            i * 200,
                            i * 200 + 200,
                            250_000 + (i % 2) * 10_000,
                            400_000,
                            0.0,
                        )
                    })
                    .collect(),
                restarts: vec![],
            },
            Case {
                name: "still for 1.8 s, then moving, then still again: counts from the move",
                steps: vec![
                    (0, 1_800, 300_000, 400_000, 0.0),
                    (1_800, 5_000, 320_000, 400_000, 0.0),
                ],
                restarts: vec![3_800],
            },
            Case {
                name: "restarts that find nothing back off: 2 s, then 10, 20, 40, 60 s apart",
                steps: vec![(0, 200_000, 250_000, 400_000, 0.0)],
                restarts: vec![2_000, 12_000, 32_000, 72_000, 132_000, 192_000],
            },
            Case {
                name: "a restart that helped resets the back-off",
                steps: vec![
                    (0, 2_200, 250_000, 600_000, 0.0),
                    (2_200, 14_000, 400_000, 600_000, 0.0),
                    (14_000, 40_000, 400_000, 600_000, 0.0),
                ],
                // Up from 250k to 400k: the next may follow 2 s later, then backs off again.
                restarts: vec![2_000, 4_200, 14_200, 34_200],
            },
        ];
        for c in cases {
            let mut stall = EstimateStall::default();
            assert_eq!(
                run(&mut stall, Instant::now(), &c.steps),
                c.restarts,
                "{}",
                c.name
            );
        }
    }
}
