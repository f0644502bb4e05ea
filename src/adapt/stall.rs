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
//! carries no more, GCC's raw estimate changes with every feedback report as its delay and
//! loss signals do. The estimate read here is therefore the raw one (`PeerStats::bwe_tx`, once
//! a second), not the smoothed `EgressBitrateEstimate`, which str0m re-emits only when its
//! 3-second average moves by 5 %. When the raw estimate has stayed exactly the same for
//! `STALL_AFTER` while more is wanted and nothing was lost meanwhile, the room restarts the
//! estimator from the estimate it had; str0m's start-up probes then measure the link within a
//! round trip. Restarts back off while they keep finding nothing, so a link that really is
//! stuck there is not probed every few seconds. (With a 1 % tolerance on the smoothed value,
//! the step test's estimator was also restarted at 250 kbit/s, and its recovery to 720p took
//! 13.8-14.2 s instead of 7.9-12.)

use std::time::{Duration, Instant};

/// How long an unmoving estimate under unmet demand is tolerated.
pub const STALL_AFTER: Duration = Duration::from_secs(2);
/// Demand counts as unmet when what is wanted exceeds the estimate by this factor (the room's
/// shaping hands str0m no change under 5 % either).
pub const WANTED_OVER: f64 = 1.05;
/// Loss (fraction) at or above which a still estimate is the link's answer, not a stall: the
/// estimate must have stood still for `STALL_AFTER` with no second this lossy, and an unknown
/// loss (no transport feedback that second) counts as lossy.
pub const LOSSY: f32 = 0.01;
/// A restart "helped" when the estimate stuck next is this much above the one it restarted.
pub const HELPED: f64 = 1.2;
/// The first restart may follow the previous one after this; each restart that did not help
/// doubles it up to `GAP_MAX`.
pub const GAP_FIRST: Duration = Duration::from_secs(10);
pub const GAP_MAX: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct EstimateStall {
    /// Since when the estimate has stayed exactly at the value recorded here with no lossy
    /// second.
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
    /// `estimate_bps`: str0m's raw estimate; `wanted_bps`: what the allocator probes for;
    /// `loss`: the subscriber's egress loss over the last second (`None`: no feedback).
    /// Returns true when the estimator should be restarted now (from `estimate_bps`).
    pub fn update(
        &mut self,
        now: Instant,
        estimate_bps: u64,
        wanted_bps: u64,
        loss: Option<f32>,
    ) -> bool {
        let wanted = wanted_bps as f64 > estimate_bps as f64 * WANTED_OVER;
        if !wanted {
            self.still = None;
            return false;
        }
        let lossy = loss.is_none_or(|l| l >= LOSSY);
        let since = match self.still {
            Some((since, base)) if base == estimate_bps && !lossy => since,
            _ => {
                self.still = Some((now, estimate_bps));
                now
            }
        };
        if now.saturating_duration_since(since) < STALL_AFTER {
            return false;
        }
        if let Some((at, at_bps)) = self.last_restart {
            // Judged on the estimate stuck now, not on a passing peak: a probe that lifted it
            // for a moment before it fell back did not help.
            if estimate_bps as f64 > at_bps as f64 * HELPED {
                self.gap = GAP_FIRST;
            } else if now.saturating_duration_since(at) < self.gap {
                return false;
            } else {
                self.gap = (self.gap * 2).min(GAP_MAX);
            }
        }
        self.last_restart = Some((now, estimate_bps));
        self.still = None;
        true
    }

    /// The link is being relearnt (an outage ended, the path moved): what stood still before
    /// says nothing now, while the back-off still protects a link that keeps failing.
    pub fn relearn(&mut self) {
        self.still = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const CLEAN: Option<f32> = Some(0.0);

    type Step = (u64, u64, u64, u64, Option<f32>);

    /// Feeds each (from ms, to ms, estimate, wanted, loss) every 200 ms, as the room's
    /// adaptation tick does, and returns the times at which a restart was asked for.
    fn run(stall: &mut EstimateStall, t0: Instant, steps: &[Step]) -> Vec<u64> {
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
            steps: Vec<Step>,
            restarts: Vec<u64>,
        }
        let cases = vec![
            Case {
                name: "the data-saver trace: frozen at 273k wanting 314k, no loss",
                steps: vec![(0, 5_000, 273_374, 314_414, CLEAN)],
                restarts: vec![2_000],
            },
            Case {
                name: "nothing more wanted: never, however still",
                steps: vec![(0, 30_000, 600_000, 500_000, CLEAN)],
                restarts: vec![],
            },
            Case {
                name: "wanted only 3 % above the estimate: never",
                steps: vec![(0, 30_000, 600_000, 618_000, CLEAN)],
                restarts: vec![],
            },
            Case {
                name: "a lossy link's still estimate is its answer: never",
                steps: vec![(0, 30_000, 273_374, 314_414, Some(0.03))],
                restarts: vec![],
            },
            Case {
                name: "no transport feedback (loss unknown): never",
                steps: vec![(0, 30_000, 273_374, 314_414, None)],
                restarts: vec![],
            },
            Case {
                name: "a lossy second restarts the window",
                steps: vec![
                    (0, 1_000, 273_374, 314_414, CLEAN),
                    (1_000, 1_200, 273_374, 314_414, Some(0.05)),
                    (1_200, 5_000, 273_374, 314_414, CLEAN),
                ],
                restarts: vec![3_000],
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
                            CLEAN,
                        )
                    })
                    .collect(),
                restarts: vec![],
            },
            Case {
                name: "moving by a few bit/s every 1.8 s is still GCC at work: never",
                steps: (0..20u64)
                    .map(|i| {
                        (
                            i * 1_800,
                            i * 1_800 + 1_800,
                            170_814 - i * 40,
                            190_000,
                            CLEAN,
                        )
                    })
                    .collect(),
                restarts: vec![],
            },
            Case {
                name: "still for 1.8 s, then moving, then still again: counts from the move",
                steps: vec![
                    (0, 1_800, 300_000, 400_000, CLEAN),
                    (1_800, 5_000, 320_000, 400_000, CLEAN),
                ],
                restarts: vec![3_800],
            },
            Case {
                name: "restarts that find nothing back off: 2 s, then 10, 20, 40, 60 s apart",
                steps: vec![(0, 200_000, 250_000, 400_000, CLEAN)],
                restarts: vec![2_000, 12_000, 32_000, 72_000, 132_000, 192_000],
            },
            Case {
                name: "a restart that helped resets the back-off",
                steps: vec![
                    (0, 2_200, 250_000, 600_000, CLEAN),
                    (2_200, 40_000, 400_000, 600_000, CLEAN),
                ],
                // Up from 250k to 400k: the next may follow 2 s later, then backs off again.
                restarts: vec![2_000, 4_200, 14_200, 34_200],
            },
            Case {
                name: "a passing peak after a restart is no help: the back-off holds",
                steps: vec![
                    (0, 2_200, 250_000, 600_000, CLEAN),
                    (2_200, 2_400, 400_000, 600_000, CLEAN),
                    (2_400, 30_000, 250_000, 600_000, CLEAN),
                ],
                restarts: vec![2_000, 12_000],
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

    #[test]
    fn relearning_the_link_keeps_the_back_off() {
        let t0 = Instant::now();
        let mut stall = EstimateStall::default();
        let steps = [(0, 2_200, 250_000, 400_000, CLEAN)];
        assert_eq!(run(&mut stall, t0, &steps), vec![2_000]);
        stall.relearn();
        // Still stuck after the outage: the next restart waits out the gap from the last one.
        let steps = [(3_000, 20_000, 250_000, 400_000, CLEAN)];
        assert_eq!(run(&mut stall, t0, &steps), vec![12_000]);
    }
}
