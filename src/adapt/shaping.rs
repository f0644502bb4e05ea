//! What a subscriber's bandwidth estimator is asked for each adaptation tick: the rate padding
//! may fill the link up to, and the rate to probe for (str0m's `Bwe::set_bitrate(current,
//! desired)`). Pure: the allocator's output and the tick's facts come in as arguments.
//!
//! GCC only grows an estimate that is used, so a subscriber held low, or paused with audio
//! alone, would never climb back without padding and probes (mediasoup#316, jitsi#1447); but
//! every rule below narrowing that came from a failure in the weak-link tests:
//! - before the link is measured, padding stays at the media: padding up to a guess floods a
//!   link slower than the guess, while str0m's one-time start-up probes (capped by the first
//!   desired rate) are what finds a fast link at once, so the probe target is the top;
//! - while a layer switch is under way, neither padding nor probes go beyond the media: a
//!   probe cluster on top of a keyframe burst made a 2 Mbit/s link's estimate fall from
//!   ~1 Mbit/s to ~0.36. Nor beyond half the estimate: str0m caps a cluster at twice the
//!   desired rate, and the chain of exponential probes that found room for the step up goes
//!   on while the new layer's keyframe is paced out. In the step-down benchmark that chain
//!   (clusters at 1.7-2.2 Mbit/s in the 0.5 s after a switch to 720p) filled the 2 Mbit/s
//!   link under the keyframe, GCC saw overuse and fell to 0.85 of what was acked (1.25 ->
//!   0.75 Mbit/s), and the step up failed;
//! - str0m probes only when the desired rate rises, so a re-armed probe (`Prober`) lowers the
//!   setting for one tick and the next tick's regular setting is a rise again.

use super::allocator::HEADROOM;

/// The two rates handed to the estimator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BweSetting {
    /// Padding fills the link up to this (str0m's "current" bitrate).
    pub pad_bps: u64,
    /// What the estimator probes for (str0m's "desired" bitrate).
    pub probe_bps: u64,
}

/// What this tick is for the estimator, most constraining first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// A re-armed probe: dip for one tick so the next setting rises.
    Rearm,
    /// The link is measured and a layer switch is under way (`SWITCH_QUIET`).
    Switching,
    /// str0m's estimate is still its configured initial guess.
    Unmeasured,
    Steady,
}

/// The media rate an allocation needs before headroom takes its share.
pub fn gross(allocated_bps: u64) -> u64 {
    (allocated_bps as f64 / HEADROOM) as u64
}

/// `allocated_bps` and `probe_bps` are the allocator's (what the targets need, what to look
/// for); `estimate_bps` is the usable estimate.
pub fn setting(phase: Phase, allocated_bps: u64, probe_bps: u64, estimate_bps: u64) -> BweSetting {
    let media = gross(allocated_bps);
    match phase {
        Phase::Rearm => {
            let dip = estimate_bps.min(probe_bps) / 2;
            BweSetting {
                pad_bps: dip,
                probe_bps: dip,
            }
        }
        Phase::Switching => {
            let quiet = media.min(probe_bps).min(estimate_bps / 2);
            BweSetting {
                pad_bps: quiet,
                probe_bps: quiet,
            }
        }
        Phase::Unmeasured => BweSetting {
            pad_bps: media.min(probe_bps),
            probe_bps,
        },
        Phase::Steady => BweSetting {
            pad_bps: probe_bps,
            probe_bps,
        },
    }
}

impl BweSetting {
    /// Worth handing to str0m: either rate moved by more than 5 % (each call may start a
    /// probe or reshape padding; estimate-driven jitter below that changes nothing useful).
    pub fn differs_from(&self, applied: &BweSetting) -> bool {
        let moved = |a: u64, b: u64| a.abs_diff(b) * 20 > b.max(1);
        moved(self.pad_bps, applied.pad_bps) || moved(self.probe_bps, applied.probe_bps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_phase_shapes_padding_and_probes() {
        // (phase, allocated, probe target, estimate) -> (pad, probe)
        let media = gross(300_000);
        let cases = [
            // Measured, nothing switching: pad up to the probe target and probe for it.
            (Phase::Steady, 300_000, 500_000, 400_000, (500_000, 500_000)),
            // Nothing more wanted: the probe target is the media itself.
            (Phase::Steady, 300_000, media, 900_000, (media, media)),
            // Unmeasured: padding only to the media, probes for the top.
            (
                Phase::Unmeasured,
                300_000,
                2_000_000,
                600_000,
                (media, 2_000_000),
            ),
            // A probe target below the media (paused tracks): never pad above it.
            (
                Phase::Unmeasured,
                300_000,
                200_000,
                600_000,
                (200_000, 200_000),
            ),
            // Switching: both held to the media, and to half the estimate (no cluster
            // above the estimate).
            (
                Phase::Switching,
                300_000,
                2_000_000,
                900_000,
                (media, media),
            ),
            (
                Phase::Switching,
                300_000,
                200_000,
                900_000,
                (200_000, 200_000),
            ),
            (
                Phase::Switching,
                1_200_000,
                1_500_000,
                1_250_000,
                (625_000, 625_000),
            ),
            // Re-arm: half of what the estimate or the target allows, whichever is less.
            (
                Phase::Rearm,
                300_000,
                2_000_000,
                800_000,
                (400_000, 400_000),
            ),
            (Phase::Rearm, 300_000, 500_000, 800_000, (250_000, 250_000)),
        ];
        for (phase, allocated, probe, estimate, (pad_bps, probe_bps)) in cases {
            assert_eq!(
                setting(phase, allocated, probe, estimate),
                BweSetting { pad_bps, probe_bps },
                "{phase:?} allocated {allocated} probe {probe} estimate {estimate}"
            );
        }
    }

    #[test]
    fn a_rearm_dips_below_the_next_steady_setting() {
        // The whole point: the tick after a re-arm must be a rise, or str0m does not probe.
        for (allocated, probe, estimate) in [
            (300_000, 500_000, 400_000),
            (100_000, 3_000_000, 150_000),
            (80_000, 200_000, 5_000_000),
        ] {
            let dip = setting(Phase::Rearm, allocated, probe, estimate);
            let next = setting(Phase::Steady, allocated, probe, estimate);
            assert!(next.probe_bps > dip.probe_bps && next.differs_from(&dip));
        }
    }

    #[test]
    fn only_changes_over_five_percent_are_applied() {
        let applied = BweSetting {
            pad_bps: 1_000_000,
            probe_bps: 2_000_000,
        };
        let cases = [
            (1_000_000, 2_000_000, false),
            (1_040_000, 2_000_000, false),
            (960_000, 1_910_000, false),
            (1_060_000, 2_000_000, true),
            (1_000_000, 1_880_000, true),
            (1_000_000, 2_120_000, true),
        ];
        for (pad_bps, probe_bps, differs) in cases {
            let s = BweSetting { pad_bps, probe_bps };
            assert_eq!(s.differs_from(&applied), differs, "{s:?}");
        }
        // From nothing applied yet, anything is a change.
        assert!(applied.differs_from(&BweSetting::default()));
    }
}
