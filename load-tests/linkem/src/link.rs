//! The model of one direction of the emulated link.
//!
//! A packet entering at `now` goes through, in order (unless the link is down, `outage`: then
//! it is lost at once, [`Verdict::DropLoss`]):
//! 1. the rate limiter: a FIFO serializer at `rate_kbps`. If the packet would have to wait longer
//!    than `queue` before its first bit is sent, it is tail-dropped ([`Verdict::DropQueue`]);
//! 2. the lossy channel: independent random loss `loss_pct`, plus, if configured, Gilbert-Elliott
//!    bursty loss (the state advances once per packet). A lost packet has already used its share
//!    of the rate, as on a real radio link ([`Verdict::DropLoss`]);
//! 3. the delay line: `delay` +- uniform `jitter`, clamped so a packet never leaves before the one
//!    ahead of it (no reordering) and never before it finished serializing.

use std::time::{Duration, Instant};

use crate::profile::LinkParams;
use crate::rng::RngLike;

/// What happens to one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Deliver at `at`. `queue_delay` is the time spent waiting for the rate limiter.
    Deliver { at: Instant, queue_delay: Duration },
    /// Lost on the channel (random or bursty loss).
    DropLoss,
    /// Tail-dropped because the rate limiter's queue was full.
    DropQueue,
}

impl Verdict {
    pub fn departure(&self) -> Option<Instant> {
        match self {
            Verdict::Deliver { at, .. } => Some(*at),
            _ => None,
        }
    }
}

/// One direction of the link. Pure: time comes in as an argument.
#[derive(Clone, Debug)]
pub struct Link {
    params: LinkParams,
    /// When the serializer finishes the last accepted packet.
    busy_until: Option<Instant>,
    /// Departure time of the last delivered packet.
    last_departure: Option<Instant>,
    /// Gilbert-Elliott state.
    bad: bool,
}

/// Time to put `len` bytes on a wire of `rate_kbps` (1 kbit = 1000 bit).
pub fn serialization_time(len: usize, rate_kbps: f64) -> Duration {
    if rate_kbps <= 0.0 {
        return Duration::ZERO;
    }
    let bits = len as f64 * 8.0;
    Duration::from_nanos((bits / (rate_kbps * 1000.0) * 1e9).round() as u64)
}

impl Link {
    pub fn new(params: LinkParams) -> Self {
        Self {
            params,
            busy_until: None,
            last_departure: None,
            bad: false,
        }
    }

    pub fn params(&self) -> &LinkParams {
        &self.params
    }

    /// Changes the parameters from now on. Packets already accepted keep their departure times;
    /// the backlog in the rate limiter drains at the new rate only for packets arriving later.
    pub fn set_params(&mut self, params: LinkParams) {
        if params.burst.is_none() {
            self.bad = false;
        }
        self.params = params;
    }

    /// True while the Gilbert-Elliott model is in its bad state.
    pub fn in_bad_state(&self) -> bool {
        self.bad
    }

    /// Current wait a packet arriving at `now` would have before the rate limiter sends it.
    pub fn backlog(&self, now: Instant) -> Duration {
        match self.busy_until {
            Some(b) if self.params.rate_kbps > 0.0 => b.saturating_duration_since(now),
            _ => Duration::ZERO,
        }
    }

    pub fn on_packet(&mut self, now: Instant, len: usize, rng: &mut impl RngLike) -> Verdict {
        let p = &self.params;

        // 0. Link down: lost at the entrance; it takes no share of the rate and draws nothing.
        if p.outage {
            return Verdict::DropLoss;
        }

        // 1. Rate limiter with a bounded queue.
        let (tx_done, queue_delay) = if p.rate_kbps > 0.0 {
            let queue_delay = self.backlog(now);
            if queue_delay > p.queue {
                return Verdict::DropQueue;
            }
            let done = now + queue_delay + serialization_time(len, p.rate_kbps);
            self.busy_until = Some(done);
            (done, queue_delay)
        } else {
            (now, Duration::ZERO)
        };

        // 2. Loss: the Gilbert-Elliott state advances first, then the packet's fate is drawn.
        let mut lost = false;
        if let Some(b) = p.burst {
            self.bad = if self.bad {
                !rng.chance(b.p_bad_to_good)
            } else {
                rng.chance(b.p_good_to_bad)
            };
            if self.bad && rng.chance(b.loss_in_bad_pct / 100.0) {
                lost = true;
            }
        }
        if p.loss_pct > 0.0 && rng.chance(p.loss_pct / 100.0) {
            lost = true;
        }
        if lost {
            return Verdict::DropLoss;
        }

        // 3. Delay and jitter, without reordering.
        let mut at = tx_done + p.delay;
        if !p.jitter.is_zero() {
            let j = p.jitter.as_nanos() as f64;
            let offset = (rng.next_f64() * 2.0 - 1.0) * j;
            at = if offset >= 0.0 {
                at + Duration::from_nanos(offset as u64)
            } else {
                at.checked_sub(Duration::from_nanos((-offset) as u64))
                    .unwrap_or(tx_done)
                    .max(tx_done)
            };
        }
        if let Some(last) = self.last_departure {
            at = at.max(last);
        }
        self.last_departure = Some(at);
        Verdict::Deliver { at, queue_delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Burst, Dir, Profile};
    use crate::rng::SplitMix64;

    fn params() -> LinkParams {
        LinkParams::default()
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    /// Offers `len`-byte packets at `offered_kbps` for `secs` of simulated time.
    fn offer(
        link: &mut Link,
        t0: Instant,
        secs: f64,
        offered_kbps: f64,
        len: usize,
        rng: &mut SplitMix64,
    ) -> Vec<(Instant, Verdict)> {
        let gap = serialization_time(len, offered_kbps);
        let n = (secs / gap.as_secs_f64()) as u64;
        (0..n)
            .map(|i| {
                let now = t0 + gap * i as u32;
                (now, link.on_packet(now, len, rng))
            })
            .collect()
    }

    #[test]
    fn serialization_time_is_exact() {
        assert_eq!(serialization_time(1000, 8000.0), ms(1));
        assert_eq!(serialization_time(1500, 300.0), ms(40));
        assert_eq!(serialization_time(1500, 0.0), Duration::ZERO);
    }

    #[test]
    fn unshaped_link_forwards_immediately() {
        let mut link = Link::new(params());
        let mut rng = SplitMix64::new(1);
        let t0 = Instant::now();
        for i in 0..100u64 {
            let now = t0 + ms(i);
            assert_eq!(
                link.on_packet(now, 1200, &mut rng),
                Verdict::Deliver {
                    at: now,
                    queue_delay: Duration::ZERO
                }
            );
        }
    }

    #[test]
    fn rate_limit_yields_configured_throughput() {
        for (rate, len) in [(300.0, 1200), (250.0, 200), (2000.0, 1400), (1000.0, 60)] {
            let mut link = Link::new(LinkParams {
                rate_kbps: rate,
                delay: ms(150),
                ..params()
            });
            let mut rng = SplitMix64::new(3);
            let t0 = Instant::now();
            // Offer three times the rate for 30 s; measure deliveries from 1 s to 31 s after start
            // (shifted by the delay).
            let out = offer(&mut link, t0, 30.0, rate * 3.0, len, &mut rng);
            let (w0, w1) = (t0 + ms(1150), t0 + ms(21_150));
            let bytes: usize = out
                .iter()
                .filter_map(|(_, v)| v.departure())
                .filter(|at| *at >= w0 && *at < w1)
                .count()
                * len;
            let kbps = bytes as f64 * 8.0 / 20.0 / 1000.0;
            assert!(
                (kbps / rate - 1.0).abs() < 0.05,
                "rate {rate} len {len}: got {kbps} kbit/s"
            );
            assert!(
                out.iter().any(|(_, v)| *v == Verdict::DropQueue),
                "overload must drop"
            );
        }
    }

    #[test]
    fn below_the_rate_nothing_is_dropped_or_queued_much() {
        let mut link = Link::new(LinkParams {
            rate_kbps: 1000.0,
            ..params()
        });
        let mut rng = SplitMix64::new(3);
        let out = offer(&mut link, Instant::now(), 10.0, 900.0, 1000, &mut rng);
        for (_, v) in &out {
            match v {
                Verdict::Deliver { queue_delay, .. } => assert!(*queue_delay < ms(1)),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn queue_bound_drops_and_caps_waiting_time() {
        let queue = ms(400);
        let mut link = Link::new(LinkParams {
            rate_kbps: 300.0,
            queue,
            ..params()
        });
        let mut rng = SplitMix64::new(5);
        let out = offer(&mut link, Instant::now(), 10.0, 1000.0, 1000, &mut rng);
        let mut max_wait = Duration::ZERO;
        let (mut drops, mut ok) = (0, 0);
        for (now, v) in &out {
            match v {
                Verdict::Deliver { at, queue_delay } => {
                    ok += 1;
                    assert!(*queue_delay <= queue);
                    max_wait = max_wait.max(*at - *now);
                }
                Verdict::DropQueue => drops += 1,
                Verdict::DropLoss => panic!("no loss configured"),
            }
        }
        // Waiting for the queue + own serialization (26.7 ms for 1000 B at 300 kbit/s).
        assert!(
            max_wait <= queue + serialization_time(1000, 300.0),
            "{max_wait:?}"
        );
        assert!(
            max_wait >= queue - ms(30),
            "the queue fills up to its bound: {max_wait:?}"
        );
        // About 70 % of an offered 1000 kbit/s cannot fit into 300 kbit/s.
        let frac = drops as f64 / (drops + ok) as f64;
        assert!((0.62..0.72).contains(&frac), "drop fraction {frac}");
    }

    #[test]
    fn zero_queue_accepts_only_when_idle() {
        let mut link = Link::new(LinkParams {
            rate_kbps: 100.0,
            queue: Duration::ZERO,
            ..params()
        });
        let mut rng = SplitMix64::new(5);
        let t0 = Instant::now();
        assert!(link.on_packet(t0, 1000, &mut rng).departure().is_some()); // busy 80 ms
        assert_eq!(
            link.on_packet(t0 + ms(40), 1000, &mut rng),
            Verdict::DropQueue
        );
        assert!(link
            .on_packet(t0 + ms(80), 1000, &mut rng)
            .departure()
            .is_some());
    }

    #[test]
    fn delay_and_jitter_bounds_hold_and_nothing_is_reordered() {
        let (delay, jitter) = (ms(150), ms(10));
        let mut link = Link::new(LinkParams {
            delay,
            jitter,
            ..params()
        });
        let mut rng = SplitMix64::new(9);
        let t0 = Instant::now();
        // Sparse packets (every 50 ms > 2 * jitter): the jitter bound holds exactly and uses its
        // whole range.
        let (mut lo, mut hi) = (Duration::MAX, Duration::ZERO);
        for i in 0..2000u32 {
            let now = t0 + ms(50) * i;
            let at = link.on_packet(now, 100, &mut rng).departure().unwrap();
            let d = at - now;
            assert!(d >= delay - jitter && d <= delay + jitter, "{d:?}");
            lo = lo.min(d);
            hi = hi.max(d);
        }
        assert!(
            lo < ms(141) && hi > ms(159),
            "jitter range used: {lo:?}..{hi:?}"
        );

        // Dense packets (every 1 ms): departures never go backwards, never earlier than
        // delay - jitter, and later than delay + jitter only when held behind an earlier packet.
        let mut link = Link::new(LinkParams {
            delay,
            jitter,
            ..params()
        });
        let mut last = None;
        for i in 0..20_000u32 {
            let now = t0 + ms(1) * i;
            let at = link.on_packet(now, 100, &mut rng).departure().unwrap();
            assert!(at - now >= delay - jitter);
            if let Some(l) = last {
                assert!(at >= l, "reordered at packet {i}");
                if at - now > delay + jitter {
                    assert_eq!(at, l, "only held back by the previous packet");
                }
            }
            last = Some(at);
        }
    }

    #[test]
    fn jitter_larger_than_delay_never_departs_before_arrival() {
        let mut link = Link::new(LinkParams {
            delay: ms(2),
            jitter: ms(20),
            ..params()
        });
        let mut rng = SplitMix64::new(11);
        let t0 = Instant::now();
        for i in 0..1000u32 {
            let now = t0 + ms(100) * i;
            assert!(link.on_packet(now, 100, &mut rng).departure().unwrap() >= now);
        }
    }

    #[test]
    fn delay_adds_to_serialization() {
        let mut link = Link::new(LinkParams {
            rate_kbps: 300.0,
            delay: ms(150),
            ..params()
        });
        let mut rng = SplitMix64::new(1);
        let t0 = Instant::now();
        let at = link.on_packet(t0, 1500, &mut rng).departure().unwrap();
        assert_eq!(at - t0, ms(190));
    }

    #[test]
    fn random_loss_matches_configuration() {
        for pct in [1.0, 3.0, 10.0, 50.0] {
            let mut link = Link::new(LinkParams {
                loss_pct: pct,
                ..params()
            });
            let mut rng = SplitMix64::new(1234);
            let t0 = Instant::now();
            let n = 100_000;
            let lost = (0..n)
                .filter(|i| link.on_packet(t0 + ms(*i), 100, &mut rng) == Verdict::DropLoss)
                .count();
            let got = lost as f64 / n as f64 * 100.0;
            // Binomial sd at 3 %, n = 1e5 is 0.054 pp; allow ~4 sd.
            let tol = 4.0 * (pct / 100.0 * (1.0 - pct / 100.0) / n as f64).sqrt() * 100.0;
            assert!((got - pct).abs() < tol, "configured {pct} %, got {got} %");
        }
    }

    /// Returns (loss fraction, mean length of runs of consecutive losses).
    fn loss_runs(link: &mut Link, n: u64, seed: u64) -> (f64, f64) {
        let mut rng = SplitMix64::new(seed);
        let t0 = Instant::now();
        let (mut lost, mut runs, mut in_run) = (0u64, 0u64, false);
        for i in 0..n {
            let l = link.on_packet(t0 + ms(i), 100, &mut rng) == Verdict::DropLoss;
            if l {
                lost += 1;
                if !in_run {
                    runs += 1;
                }
            }
            in_run = l;
        }
        (lost as f64 / n as f64, lost as f64 / runs.max(1) as f64)
    }

    #[test]
    fn gilbert_elliott_gives_bursts() {
        let burst = Burst {
            p_good_to_bad: 0.015,
            p_bad_to_good: 0.25,
            loss_in_bad_pct: 85.0,
        };
        let mut link = Link::new(LinkParams {
            burst: Some(burst),
            ..params()
        });
        let (frac, mean_run) = loss_runs(&mut link, 200_000, 77);
        assert!(
            (frac - burst.mean_loss()).abs() < 0.005,
            "loss {frac} vs {}",
            burst.mean_loss()
        );
        assert!(mean_run > 1.5, "mean burst length {mean_run}");

        // The same average loss, independent: runs are barely longer than 1.
        let mut link = Link::new(LinkParams {
            loss_pct: burst.mean_loss() * 100.0,
            ..params()
        });
        let (frac2, mean_run2) = loss_runs(&mut link, 200_000, 77);
        assert!((frac2 - frac).abs() < 0.005);
        assert!(mean_run2 < 1.1, "independent loss run length {mean_run2}");
    }

    #[test]
    fn turning_burst_off_resets_to_good_state() {
        let burst = Burst {
            p_good_to_bad: 1.0,
            p_bad_to_good: 0.0,
            loss_in_bad_pct: 100.0,
        };
        let mut link = Link::new(LinkParams {
            burst: Some(burst),
            ..params()
        });
        let mut rng = SplitMix64::new(1);
        let t0 = Instant::now();
        assert_eq!(link.on_packet(t0, 100, &mut rng), Verdict::DropLoss);
        assert!(link.in_bad_state());
        link.set_params(params());
        assert!(!link.in_bad_state());
        assert!(link
            .on_packet(t0 + ms(1), 100, &mut rng)
            .departure()
            .is_some());
    }

    #[test]
    fn schedule_changes_apply_at_the_right_time() {
        let profile = Profile::from_toml_str(
            "[downlink]\nrate_kbps = 2000\ndelay_ms = 20\n[uplink]\nrate_kbps = 2000\ndelay_ms = 20\n\
             [[schedule]]\nat_s = 10\nrate_kbps = 250\ndirection = \"downlink\"\n\
             [[schedule]]\nat_s = 30\nrate_kbps = 2000\n",
            "step.toml",
        )
        .unwrap();
        for dir in [Dir::Downlink, Dir::Uplink] {
            let tl = profile.timeline(dir);
            let mut cursor = tl.cursor();
            let mut link = Link::new(cursor.initial().clone());
            let mut rng = SplitMix64::new(2);
            let t0 = Instant::now();
            let mut changes = vec![];
            // 5 Mbit/s of 1250-byte packets (every 2 ms) for 40 s; departures per second.
            let mut per_sec = vec![0usize; 41];
            for i in 0..20_000u32 {
                let now = t0 + ms(2) * i;
                if let Some(p) = cursor.advance(now - t0) {
                    changes.push(((now - t0).as_millis(), p.rate_kbps));
                    link.set_params(p.clone());
                }
                if let Some(at) = link.on_packet(now, 1250, &mut rng).departure() {
                    per_sec[(at - t0).as_secs() as usize] += 1250 * 8;
                }
            }
            let kbps = |s: usize| per_sec[s] as f64 / 1000.0;
            match dir {
                Dir::Downlink => {
                    assert_eq!(changes, vec![(10_000, 250.0), (30_000, 2000.0)]);
                    for s in 1..10 {
                        assert!((kbps(s) / 2000.0 - 1.0).abs() < 0.05, "s{s}: {}", kbps(s));
                    }
                    // The backlog queued at 2 Mbit/s drains within the first second after 10 s.
                    for s in 12..30 {
                        assert!((kbps(s) / 250.0 - 1.0).abs() < 0.05, "s{s}: {}", kbps(s));
                    }
                    for s in 32..40 {
                        assert!((kbps(s) / 2000.0 - 1.0).abs() < 0.05, "s{s}: {}", kbps(s));
                    }
                }
                Dir::Uplink => {
                    assert_eq!(
                        changes,
                        vec![(30_000, 2000.0)],
                        "rate unchanged, step still taken"
                    );
                    for s in 1..40 {
                        assert!((kbps(s) / 2000.0 - 1.0).abs() < 0.05, "s{s}: {}", kbps(s));
                    }
                }
            }
        }
    }
}
