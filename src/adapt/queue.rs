//! How much of a subscriber's round-trip time is queueing: the RTT above the lowest seen
//! lately. Pure: RTT samples and time come in as arguments.
//!
//! The RTT floor is the path's propagation delay; anything above it is packets waiting in a
//! buffer on the way, usually the last hop's (a 3G cell, a clinic's DSL modem). A link that
//! already queues what we send has no room for a higher layer whatever the estimate says, so
//! the allocator holds step ups while the queue stands (GCC's delay detector reacts to a
//! *growing* queue, not to one that stays full).

use std::time::{Duration, Instant};

/// The floor is the minimum over the last one to two of these: long enough to include a
/// moment with an empty queue, short enough to follow a path that moved (another cell,
/// a network change) within a minute.
pub const FLOOR_WINDOW: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Default)]
pub struct RttFloor {
    /// Minimum of the window being filled, and since when it is filled.
    current: Option<(Instant, Duration)>,
    /// Minimum of the window before it.
    previous: Option<Duration>,
    last: Option<Duration>,
}

impl RttFloor {
    pub fn observe(&mut self, now: Instant, rtt: Duration) {
        match self.current {
            Some((start, min)) if now.saturating_duration_since(start) < FLOOR_WINDOW => {
                self.current = Some((start, min.min(rtt)));
            }
            Some((start, min)) => {
                // A gap of more than two windows leaves nothing recent to keep.
                let recent = now.saturating_duration_since(start) < FLOOR_WINDOW * 2;
                self.previous = recent.then_some(min);
                self.current = Some((now, rtt));
            }
            None => self.current = Some((now, rtt)),
        }
        self.last = Some(rtt);
    }

    /// Forgets the floor: the path changed (new address), its propagation delay may differ.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    /// The latest RTT above the floor; zero until a sample arrived.
    pub fn queue_delay(&self) -> Duration {
        let (Some(last), Some((_, min))) = (self.last, self.current) else {
            return Duration::ZERO;
        };
        let floor = self.previous.map_or(min, |p| p.min(min));
        last.saturating_sub(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Feeds one sample per second and returns the queue delay after each.
    fn run(samples: &[u64]) -> Vec<u64> {
        let t0 = Instant::now();
        let mut f = RttFloor::default();
        samples
            .iter()
            .enumerate()
            .map(|(i, &rtt)| {
                f.observe(t0 + Duration::from_secs(i as u64), ms(rtt));
                f.queue_delay().as_millis() as u64
            })
            .collect()
    }

    #[test]
    fn queue_delay_is_the_rtt_above_the_recent_floor() {
        let cases: &[(&str, &[u64], &[u64])] = &[
            ("nothing yet", &[], &[]),
            ("steady path", &[300, 300, 300], &[0, 0, 0]),
            (
                "a queue builds and drains",
                &[300, 320, 600, 900, 310],
                &[0, 20, 300, 600, 10],
            ),
            (
                "the floor is the lowest, not the first",
                &[400, 250, 400],
                &[0, 0, 150],
            ),
        ];
        for (name, samples, want) in cases {
            assert_eq!(run(samples), *want, "{name}");
        }
        assert_eq!(RttFloor::default().queue_delay(), Duration::ZERO);
    }

    #[test]
    fn the_floor_follows_a_path_that_got_longer_within_two_windows() {
        // 40 ms for a while, then a path with 300 ms (a new cell) that never queues.
        let w = FLOOR_WINDOW.as_secs() as usize;
        let mut samples = vec![40; w];
        samples.extend(vec![300; 2 * w + 1]);
        let delays = run(&samples);
        // Right after the move it looks like a queue...
        assert_eq!(delays[w], 260);
        // ...and within two windows the floor is the new path's.
        assert_eq!(*delays.last().unwrap(), 0, "{delays:?}");
    }

    #[test]
    fn a_long_silence_or_a_reset_forgets_the_old_floor() {
        let t0 = Instant::now();
        let mut f = RttFloor::default();
        f.observe(t0, ms(40));
        f.observe(t0 + FLOOR_WINDOW * 3, ms(300));
        assert_eq!(f.queue_delay(), Duration::ZERO);

        f.observe(t0 + FLOOR_WINDOW * 3 + ms(500), ms(200));
        f.reset();
        f.observe(t0 + FLOOR_WINDOW * 3 + ms(1000), ms(350));
        assert_eq!(f.queue_delay(), Duration::ZERO);
    }
}
