//! When to ask the bandwidth estimator for a fresh probe. Pure: time is an argument.
//!
//! str0m probes for an allocation only when the desired bitrate *rises* above its estimate;
//! an unchanged demand never probes again. GCC by itself grows an estimate at most to about
//! 1.5x what is actually sent, so a subscriber held on the middle layer while the link could
//! carry the top one may sit there for the whole call (seen in the weak-link tests: estimate
//! stuck at 500-720 kbit/s on an unshaped link, str0m's own "stagnant" probe needs 15 s of an
//! unchanged estimate, which a noisy estimate never gives). Like LiveKit's probe controller,
//! the room therefore re-arms a probe while a step up is wanted and does not fit, backing off
//! while the probes keep failing so a link that really is weak is not prodded every second.

use std::time::{Duration, Instant};

/// The first retry after a step up stopped fitting.
pub const PROBE_FIRST: Duration = Duration::from_secs(3);
/// Retries back off up to this interval while the link keeps refusing.
pub const PROBE_MAX: Duration = Duration::from_secs(24);
/// The demand must be met this long to start the back-off over. A noisy estimate pokes above
/// the probe target for a second now and then (rural-3g: 150-400 kbit/s from one second to
/// the next on a 300 kbit/s link with 3 % loss); taken as "met", each poke restarted the
/// back-off, so the weak subscriber was probed every 4-8 s for the whole call instead of
/// 3, 6, 12, 24 s apart, and a probe into a link that is already losing packets only adds to
/// its queue (one 2.2 s freeze 1.4 s after such a probe).
pub const MET_RESET: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
pub struct Prober {
    next_at: Option<Instant>,
    interval: Duration,
    /// Since when the demand has been met (the estimate covers the probe target).
    met_since: Option<Instant>,
}

impl Default for Prober {
    fn default() -> Self {
        Self {
            next_at: None,
            interval: PROBE_FIRST,
            met_since: None,
        }
    }
}

impl Prober {
    /// `probe_bps`: what the next step up needs (the allocator's probe target);
    /// `allocated_bps`: what the current targets need; `stepped_up`: the allocator moved a
    /// track up in this update (layer bitrates alone drift, so that is not read from rates);
    /// `quiet`: a layer switch is under way, so a due probe waits (a probe cluster on top of
    /// the switch's keyframe makes GCC back off). A step up starts a switch, so both come
    /// together: when the room skipped this call while switching, the step up was never seen
    /// and the back-off of the failed probes before it went on (probes 6-24 s apart while
    /// climbing back after the step test's recovery).
    /// Returns true when a new probe should be requested now.
    pub fn update(
        &mut self,
        now: Instant,
        estimate_bps: u64,
        probe_bps: u64,
        allocated_bps: u64,
        stepped_up: bool,
        quiet: bool,
    ) -> bool {
        if probe_bps <= estimate_bps || probe_bps <= allocated_bps {
            // Nothing more is wanted, or the estimate already covers it: once that has
            // lasted, the next want starts a fresh back-off.
            let since = *self.met_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= MET_RESET {
                *self = Self::default();
            }
            return false;
        }
        self.met_since = None;
        if stepped_up {
            // The last probe (or plain growth) worked: the next one can come soon.
            self.interval = PROBE_FIRST;
            self.next_at = Some(now + PROBE_FIRST);
            return false;
        }
        match self.next_at {
            None => {
                self.next_at = Some(now + self.interval);
                false
            }
            Some(at) if now >= at && !quiet => {
                self.interval = (self.interval * 2).min(PROBE_MAX);
                self.next_at = Some(now + self.interval);
                true
            }
            Some(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Feeds (time in ms, estimate, probe target, allocated) and returns the times at which a
    /// probe was requested. A rise of the allocation by more than a third is a step up; smaller
    /// moves are layer bitrates drifting.
    fn run(steps: &[(u64, u64, u64, u64)]) -> Vec<u64> {
        let t0 = Instant::now();
        let mut p = Prober::default();
        let mut last = 0;
        steps
            .iter()
            .filter(|(t, e, probe, alloc)| {
                let up = last > 0 && *alloc * 3 > last * 4;
                last = *alloc;
                p.update(t0 + MS * *t as u32, *e, *probe, *alloc, up, false)
            })
            .map(|(t, ..)| *t)
            .collect()
    }

    fn every(
        from: u64,
        to: u64,
        step: u64,
        e: u64,
        probe: u64,
        alloc: u64,
    ) -> Vec<(u64, u64, u64, u64)> {
        (from..to)
            .step_by(step as usize)
            .map(|t| (t, e, probe, alloc))
            .collect()
    }

    #[test]
    fn table() {
        struct Case {
            name: &'static str,
            steps: Vec<(u64, u64, u64, u64)>,
            probes: Vec<u64>,
        }
        let cases = vec![
            Case {
                name: "estimate covers the next step: never",
                steps: every(0, 60_000, 200, 2_000_000, 1_400_000, 600_000),
                probes: vec![],
            },
            Case {
                name: "at the top layer (probe target is the allocation): never",
                steps: every(0, 60_000, 200, 700_000, 900_000, 900_000),
                probes: vec![],
            },
            Case {
                name: "stuck below the next step: 3 s, then backing off 6, 12, 24, 24",
                steps: every(0, 80_000, 200, 650_000, 1_400_000, 500_000),
                probes: vec![3_000, 9_000, 21_000, 45_000, 69_000],
            },
            Case {
                name: "a step up resets the back-off",
                steps: [
                    every(0, 10_000, 200, 650_000, 1_400_000, 500_000),
                    every(10_000, 30_000, 200, 1_000_000, 2_000_000, 900_000),
                ]
                .concat(),
                probes: vec![3_000, 9_000, 13_000, 19_000],
            },
            Case {
                name: "layer bitrates drifting up are no step up",
                steps: (0..80_000u64)
                    .step_by(200)
                    .map(|t| (t, 650_000, 1_400_000, 400_000 + t))
                    .collect(),
                probes: vec![3_000, 9_000, 21_000, 45_000, 69_000],
            },
            Case {
                name: "demand met for a while starts over",
                steps: [
                    every(0, 10_000, 200, 650_000, 1_400_000, 500_000),
                    every(10_000, 12_400, 200, 1_600_000, 1_400_000, 500_000),
                    every(12_400, 20_000, 200, 650_000, 1_400_000, 500_000),
                ]
                .concat(),
                probes: vec![3_000, 9_000, 15_400],
            },
            Case {
                name: "an estimate poking above the target for a second keeps the back-off",
                steps: (0..80_000u64)
                    .step_by(200)
                    .map(|t| {
                        // Above the target for 1 s every 5 s.
                        let e = if t % 5_000 < 1_000 { 300_000 } else { 220_000 };
                        (t, e, 260_000, 130_000)
                    })
                    .collect(),
                // The first want starts at 1 s; each due probe waits out a poke.
                probes: vec![4_000, 11_000, 23_000, 47_000, 71_000],
            },
        ];
        for c in cases {
            assert_eq!(run(&c.steps), c.probes, "{}", c.name);
        }
    }

    #[test]
    fn a_step_up_during_a_switch_resets_the_back_off_and_due_probes_wait_for_the_switch() {
        let t0 = Instant::now();
        let mut p = Prober::default();
        let mut probes = Vec::new();
        for t in (0..40_000u64).step_by(200) {
            // Stuck below the next step; a step up at 22 s starts a 1 s switch, and another
            // switch runs from 30.8 to 31.4 s.
            let stepped_up = t == 22_000;
            let quiet = (22_000..23_000).contains(&t) || (30_800..31_400).contains(&t);
            if p.update(
                t0 + MS * t as u32,
                650_000,
                1_400_000,
                500_000,
                stepped_up,
                quiet,
            ) {
                probes.push(t);
            }
        }
        // Backing off 3, 9, 21 s; after the step up 3 s again (25 s), then 6 s (31 s, held
        // to the end of the switch).
        assert_eq!(probes, [3_000, 9_000, 21_000, 25_000, 31_400]);
    }
}
