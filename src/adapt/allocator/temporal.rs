//! The frame rate at the lowest resolution follows the link, not each dip of GCC's estimate.
//!
//! On rural 3G (300 kbit/s, 150 ms one way, 3 % random loss) GCC's delay trend flags overuse
//! every second or two on the link's jitter and its loss control turns to decreasing on 3-5 %
//! loss, so the estimate swings between about 120 and 280 kbit/s. Each dip dropped a temporal
//! layer at once and each drop held step ups for `UP_HOLD_AFTER_DOWN`: in 11 weak-link runs the
//! weak subscriber spent 30-72 % of 42 s on 180p's base layer (a quarter of the frame rate,
//! about 4 frames a second) on a link that carries audio and 180p at its full rate with a
//! third to spare. A frame rate step needs no keyframe and undoes at once, so at the lowest
//! resolution the allocator reads the highest estimate of the last few seconds instead, as long
//! as the link itself shows no trouble: loss within `LOSS_TOLERATED` and no standing queue
//! (`UP_QUEUE_MAX`). Above it, shedding a temporal layer at once stays the first answer to a
//! falling estimate (a link that collapses under 720p needs the relief before the resolution
//! step's keyframe), and resolution steps, pauses and probes follow the estimate itself.

use std::time::{Duration, Instant};

use super::{Target, VideoInput};
use crate::adapt::layer::Layer;

/// The peak is the highest estimate over the last one to two of these: longer than GCC's dips
/// (a second or two), short enough that a link that really narrowed shows within seconds,
/// and it shows sooner as loss or a queue.
pub const PEAK_WINDOW: Duration = Duration::from_secs(3);

/// The highest estimate seen lately.
#[derive(Debug, Clone, Default)]
pub(super) struct PeakEstimate {
    /// Highest of the window being filled, and since when it is filled.
    current: Option<(Instant, u64)>,
    /// Highest of the window before it.
    previous: Option<u64>,
}

impl PeakEstimate {
    pub(super) fn observe(&mut self, now: Instant, bps: u64) {
        match self.current {
            Some((start, max)) if now.saturating_duration_since(start) < PEAK_WINDOW => {
                self.current = Some((start, max.max(bps)));
            }
            Some((start, max)) => {
                let recent = now.saturating_duration_since(start) < PEAK_WINDOW * 2;
                self.previous = recent.then_some(max);
                self.current = Some((now, bps));
            }
            None => self.current = Some((now, bps)),
        }
    }

    pub(super) fn get(&self) -> u64 {
        let current = self.current.map_or(0, |(_, max)| max);
        current.max(self.previous.unwrap_or(0))
    }
}

/// What the peak allows at the resolution of `current`: `peak` (the peak's own target for the
/// track) brought to `current`'s spatial layer, at most its full frame rate. None when either
/// is no layer, `current` is above the lowest resolution, or the peak itself wants a lower one.
pub(super) fn at_resolution<K>(v: &VideoInput<K>, current: Target, peak: Target) -> Option<Layer> {
    let (Target::Layer(c), Target::Layer(p)) = (current, peak) else {
        return None;
    };
    if p.spatial < c.spatial || v.lowest().is_none_or(|l| l.spatial != c.spatial) {
        return None;
    }
    if p.spatial == c.spatial {
        return Some(p);
    }
    v.steps()
        .filter(|(l, _)| l.spatial == c.spatial)
        .last()
        .map(|(l, _)| l)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapt::allocator::Priority;
    use crate::adapt::layer::Ladder;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_peak_covers_one_to_two_windows() {
        let t0 = Instant::now();
        let mut p = PeakEstimate::default();
        assert_eq!(p.get(), 0);
        // (ms, estimate, peak after it)
        let steps = [
            (0, 200_000, 200_000),
            (1_000, 150_000, 200_000),
            (2_900, 120_000, 200_000),
            // A new window: the last one's peak still counts.
            (3_100, 130_000, 200_000),
            (5_000, 180_000, 200_000),
            // Two windows on, the first peak is gone.
            (6_200, 140_000, 180_000),
            // A gap of more than two windows keeps nothing old.
            (20_000, 90_000, 90_000),
        ];
        for (ms, bps, want) in steps {
            p.observe(t0 + MS * ms, bps);
            assert_eq!(p.get(), want, "at {ms} ms");
        }
    }

    #[test]
    fn the_peak_target_is_brought_to_the_current_resolution() {
        let v = VideoInput {
            key: 1u32,
            priority: Priority::Normal,
            ladder: Ladder::from_spatial_rates([Some(150_000), Some(400_000), Some(1_200_000)], 3),
            max_spatial: 2,
        };
        let l = |s, t| Target::Layer(Layer::new(s, t));
        let cases = [
            // (current, peak's target, at the current resolution)
            (l(0, 0), l(0, 2), Some(Layer::new(0, 2))),
            (l(0, 2), l(0, 1), Some(Layer::new(0, 1))),
            // The peak allows a higher resolution: the full frame rate of this one.
            (l(0, 0), l(1, 0), Some(Layer::new(0, 2))),
            (l(0, 1), l(2, 2), Some(Layer::new(0, 2))),
            // Above the lowest resolution, the estimate itself rules.
            (l(1, 1), l(2, 2), None),
            (l(1, 1), l(1, 2), None),
            // The peak wants a lower resolution, or there is no layer: nothing.
            (l(1, 2), l(0, 2), None),
            (Target::PausedForBandwidth, l(0, 2), None),
            (l(0, 1), Target::PausedForBandwidth, None),
        ];
        for (current, peak, want) in cases {
            assert_eq!(
                at_resolution(&v, current, peak),
                want,
                "{current:?} {peak:?}"
            );
        }
    }
}
