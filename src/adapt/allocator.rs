//! Per-subscriber bandwidth allocation: which layer of each subscribed video track fits this
//! subscriber's link. Pure: estimate, stats and time come in as arguments.
//!
//! Rules (see shared/SFU-LESSONS.md): audio is budgeted first and never paused; the budget is
//! filled lowest layers first, by priority, then upgraded; a drop is followed within
//! `DOWN_DELAY`, an increase only after the estimate has covered the higher layer for
//! `UP_STABLE` (hysteresis); when even the lowest layer does not fit, video pauses and the
//! probe target stays at the lowest layer so the estimate can climb back.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::layer::{Ladder, Layer};

/// A shortfall must last this long before stepping down (filters single estimate blips).
pub const DOWN_DELAY: Duration = Duration::from_millis(300);
/// Pausing video is the last resort (users see black): only after the lowest layer has not
/// fitted for this long. Until then the lowest layer is kept.
pub const PAUSE_DELAY: Duration = Duration::from_secs(2);
/// The estimate must cover a higher allocation this long before stepping up.
pub const UP_STABLE: Duration = Duration::from_secs(2);
/// After stepping down, wait this long before any step up (no oscillation).
pub const UP_HOLD_AFTER_DOWN: Duration = Duration::from_secs(4);
/// A step down this soon after a step up means the step up failed (the probe said yes, the
/// link said no): the hold before the next try doubles, up to `MAX_UP_HOLD`.
pub const FAILED_UP_WINDOW: Duration = Duration::from_secs(10);
pub const MAX_UP_HOLD: Duration = Duration::from_secs(12);
/// Paused video resumes at the lowest layer after this hold, whatever failed before: poor video
/// beats no video (mediasoup#804).
pub const RESUME_HOLD: Duration = Duration::from_secs(2);
/// Staying up this long after a step up forgets earlier failures.
pub const UP_PROVEN: Duration = Duration::from_secs(30);
/// Fraction of the estimate given to media: the rest absorbs estimate error and RTCP.
pub const HEADROOM: f64 = 0.9;
/// A step up must fit with this much to spare, so an estimate hovering at a layer's cost does
/// not flip it up and down (hysteresis in bitrate, beside the one in time).
pub const UP_MARGIN: f64 = 1.1;
/// Random loss up to this much (rural 3G) is left to NACK/FEC and GCC's own loss control.
pub const LOSS_TOLERATED: f32 = 0.05;

/// What a subscriber sees first, when bandwidth is short.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Normal = 0,
    ActiveSpeaker = 1,
    /// Screen or image share (an X-ray, a wound photo): first in a consult.
    Share = 2,
}

/// One subscribed video track as the allocator sees it.
#[derive(Debug, Clone)]
pub struct VideoInput<K> {
    pub key: K,
    pub priority: Priority,
    /// The layers the publisher sends now, with their bitrates.
    pub ladder: Ladder,
    /// The subscriber's own cap (data saver, small tile).
    pub max_spatial: u8,
}

#[derive(Debug, Clone)]
pub struct Input<K> {
    /// The send-side estimate towards this subscriber, bits per second.
    pub estimate_bps: u64,
    /// Bitrate of the audio this subscriber receives, budgeted first.
    pub audio_bps: u64,
    /// Fraction of our packets the subscriber reports lost (0..1). Above `LOSS_TOLERATED`
    /// the budget shrinks by it: retransmissions and FEC eat that share, and more video into a
    /// lossy link only loses more.
    pub loss: f32,
    pub video: Vec<VideoInput<K>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Layer(Layer),
    /// Not even the lowest layer fits.
    PausedForBandwidth,
    /// The publisher sends no layer the subscriber may take.
    Unavailable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Output<K> {
    pub targets: Vec<(K, Target)>,
    /// What to ask the bandwidth estimator to probe for: the allocation one step up, or the
    /// lowest layer while paused. Never the sum of every top layer (floods a weak link).
    pub probe_bps: u64,
    /// What the current targets need.
    pub allocated_bps: u64,
}

#[derive(Debug, Clone)]
struct TrackState {
    target: Target,
    /// Since when the wanted allocation has been below the current one.
    short_since: Option<Instant>,
    /// Since when the wanted allocation has been above the current one.
    room_since: Option<Instant>,
    last_down: Option<Instant>,
    last_up: Option<Instant>,
    /// Current hold after a step down; grows while step ups keep failing.
    up_hold: Duration,
}

impl TrackState {
    fn note_down(&mut self, now: Instant) {
        let failed_up = self
            .last_up
            .is_some_and(|t| now.saturating_duration_since(t) < FAILED_UP_WINDOW);
        if failed_up {
            self.up_hold = (self.up_hold * 2).min(MAX_UP_HOLD);
        }
        self.last_down = Some(now);
    }
}

/// The allocation state of one subscriber.
#[derive(Debug, Clone)]
pub struct Allocator<K> {
    tracks: HashMap<K, TrackState>,
}

impl<K: Clone + Eq + Hash> Default for Allocator<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Clone + Eq + Hash> Allocator<K> {
    pub fn new() -> Self {
        Self {
            tracks: HashMap::new(),
        }
    }

    pub fn update(&mut self, now: Instant, input: &Input<K>) -> Output<K> {
        let loss_factor = if input.loss > LOSS_TOLERATED {
            1.0 - f64::from(input.loss.min(0.5))
        } else {
            1.0
        };
        let budget = ((input.estimate_bps as f64 * HEADROOM * loss_factor) as u64)
            .saturating_sub(input.audio_bps);
        let wanted = greedy(budget, &input.video);
        let wanted_up = greedy((budget as f64 / UP_MARGIN) as u64, &input.video);
        self.tracks
            .retain(|k, _| input.video.iter().any(|v| &v.key == k));

        let mut targets = Vec::with_capacity(input.video.len());
        for ((v, want), want_up) in input.video.iter().zip(wanted).zip(wanted_up) {
            // A new subscription starts where the estimate says, but with the lowest layer
            // rather than paused: poor video beats no video, and if even that does not fit the
            // normal step-down pauses it.
            let start = match want {
                Target::PausedForBandwidth => v
                    .ladder
                    .steps()
                    .find(|(l, _)| l.spatial <= v.max_spatial)
                    .map_or(want, |(l, _)| Target::Layer(l)),
                other => other,
            };
            let state = self.tracks.entry(v.key.clone()).or_insert(TrackState {
                target: start,
                short_since: None,
                room_since: None,
                last_down: None,
                last_up: None,
                up_hold: UP_HOLD_AFTER_DOWN,
            });
            if state
                .last_up
                .is_some_and(|t| now.saturating_duration_since(t) >= UP_PROVEN)
                && state
                    .last_down
                    .is_none_or(|d| d < state.last_up.unwrap_or(d))
            {
                state.up_hold = UP_HOLD_AFTER_DOWN;
            }
            let current = state.target;
            let current_valid = match current {
                Target::Layer(l) => v.ladder.rate(l).is_some() && l.spatial <= v.max_spatial,
                Target::PausedForBandwidth => true,
                // Nothing was published yet: the first layers start at once (as above).
                Target::Unavailable => false,
            };
            let want = if current == Target::Unavailable {
                start
            } else {
                want
            };
            let lowest = v
                .ladder
                .steps()
                .find(|(l, _)| l.spatial <= v.max_spatial)
                .map(|(l, _)| Target::Layer(l));
            let next = if !current_valid {
                // The layer went away (publisher stopped it) or the cap changed: move now.
                want
            } else if rank(v, want) < rank(v, current) {
                state.room_since = None;
                let since = *state.short_since.get_or_insert(now);
                let waited = now.saturating_duration_since(since);
                match (want, lowest) {
                    (Target::PausedForBandwidth, Some(lowest)) if waited < PAUSE_DELAY => {
                        if waited >= DOWN_DELAY && current != lowest {
                            // A step towards a pause: set here, so that the shortfall clock
                            // keeps running (the generic change below would reset it).
                            state.target = lowest;
                            state.note_down(now);
                        }
                        current
                    }
                    _ if waited >= DOWN_DELAY => want,
                    _ => {
                        // Meanwhile, drop one temporal layer at once: it takes effect without a
                        // keyframe, costs nothing to undo, and relieves the link while the
                        // shortfall is confirmed. It sets no hold, so a blip costs only the
                        // stable window.
                        if let Target::Layer(l) = current {
                            if l.temporal > 0 {
                                let lighter = Layer::new(l.spatial, l.temporal - 1);
                                if v.ladder.rate(lighter).is_some() {
                                    state.target = Target::Layer(lighter);
                                }
                            }
                        }
                        current
                    }
                }
            } else if rank(v, want_up) > rank(v, current) {
                state.short_since = None;
                let since = *state.room_since.get_or_insert(now);
                // Paused video comes back at the lowest layer after a short hold, whatever
                // failed before; later steps up follow the (backed-off) hold.
                let resume = current == Target::PausedForBandwidth;
                let hold = if resume { RESUME_HOLD } else { state.up_hold };
                let held = state
                    .last_down
                    .is_none_or(|t| now.saturating_duration_since(t) >= hold);
                if now.saturating_duration_since(since) >= UP_STABLE && held {
                    match (resume, lowest) {
                        (true, Some(lowest)) => lowest,
                        _ => want_up,
                    }
                } else {
                    current
                }
            } else {
                state.short_since = None;
                state.room_since = None;
                current
            };
            if next != current {
                if rank(v, next) < rank(v, current) {
                    state.note_down(now);
                } else if current != Target::Unavailable {
                    state.last_up = Some(now);
                }
                state.short_since = None;
                state.room_since = None;
                state.target = next;
            }
            targets.push((v.key.clone(), state.target));
        }

        let allocated_bps: u64 = input
            .video
            .iter()
            .zip(&targets)
            .map(|(v, (_, t))| rate_of(v, *t))
            .sum::<u64>()
            + input.audio_bps;
        let probe_bps = probe_target(input, &targets, allocated_bps);
        Output {
            targets,
            probe_bps,
            allocated_bps,
        }
    }
}

fn rate_of<K>(v: &VideoInput<K>, t: Target) -> u64 {
    match t {
        Target::Layer(l) => v.ladder.rate(l).unwrap_or(0),
        _ => 0,
    }
}

/// Position on the track's ladder: 0 paused, 1 lowest step, ...
fn rank<K>(v: &VideoInput<K>, t: Target) -> usize {
    match t {
        Target::Layer(l) => v.ladder.position(l).map_or(0, |p| p + 1),
        _ => 0,
    }
}

/// The steps a subscriber may take of one track, cheapest first.
fn steps<K>(v: &VideoInput<K>) -> Vec<(Layer, u64)> {
    v.ladder
        .steps()
        .filter(|(l, _)| l.spatial <= v.max_spatial)
        .collect()
}

/// Fills `budget`: lowest layers first in priority order, then upgrades a step at a time,
/// higher priorities first, round-robin within a priority.
fn greedy<K>(budget: u64, video: &[VideoInput<K>]) -> Vec<Target> {
    let ladders: Vec<Vec<(Layer, u64)>> = video.iter().map(steps).collect();
    let mut chosen: Vec<Option<usize>> = vec![None; video.len()];
    let mut order: Vec<usize> = (0..video.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(video[i].priority));
    let mut left = budget;

    for &i in &order {
        if let Some(&(_, rate)) = ladders[i].first() {
            if rate <= left {
                chosen[i] = Some(0);
                left -= rate;
            }
        }
    }
    let mut priorities: Vec<Priority> = video.iter().map(|v| v.priority).collect();
    priorities.sort_by(|a, b| b.cmp(a));
    priorities.dedup();
    for p in priorities {
        loop {
            let mut upgraded = false;
            for &i in order.iter().filter(|&&i| video[i].priority == p) {
                let Some(step) = chosen[i] else { continue };
                let Some(&(_, next)) = ladders[i].get(step + 1) else {
                    continue;
                };
                let cost = next - ladders[i][step].1;
                if cost <= left {
                    chosen[i] = Some(step + 1);
                    left -= cost;
                    upgraded = true;
                }
            }
            if !upgraded {
                break;
            }
        }
    }
    chosen
        .iter()
        .zip(&ladders)
        .map(|(c, ladder)| match (c, ladder.is_empty()) {
            (_, true) => Target::Unavailable,
            (Some(step), false) => Target::Layer(ladder[*step].0),
            (None, false) => Target::PausedForBandwidth,
        })
        .collect()
}

/// The allocation one step up from now for the most important track that can go up.
fn probe_target<K>(input: &Input<K>, targets: &[(K, Target)], allocated: u64) -> u64 {
    let mut best: Option<(Priority, u64)> = None;
    for (v, (_, t)) in input.video.iter().zip(targets) {
        let ladder = steps(v);
        let next = match t {
            Target::Layer(l) => ladder
                .iter()
                .position(|(x, _)| x == l)
                .and_then(|p| ladder.get(p + 1))
                .map(|(_, r)| r.saturating_sub(v.ladder.rate(*l).unwrap_or(0))),
            Target::PausedForBandwidth => ladder.first().map(|(_, r)| *r),
            Target::Unavailable => None,
        };
        if let Some(extra) = next {
            if best.is_none_or(|(p, _)| v.priority > p) {
                best = Some((v.priority, extra));
            }
        }
    }
    let wanted = allocated + best.map_or(0, |(_, extra)| extra);
    // Ask the estimator for a little more than the media needs, as the headroom takes it away.
    (wanted as f64 / HEADROOM) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapt::layer::Ladder;

    const Q: u64 = 150_000;
    const H: u64 = 400_000;
    const F: u64 = 1_200_000;
    const AUDIO: u64 = 40_000;

    fn ladder() -> Ladder {
        Ladder::from_spatial_rates([Some(Q), Some(H), Some(F)], 1)
    }

    fn camera(key: u32) -> VideoInput<u32> {
        VideoInput {
            key,
            priority: Priority::Normal,
            ladder: ladder(),
            max_spatial: 2,
        }
    }

    fn input(estimate_bps: u64, video: Vec<VideoInput<u32>>) -> Input<u32> {
        Input {
            estimate_bps,
            audio_bps: AUDIO,
            loss: 0.0,
            video,
        }
    }

    fn spatial(out: &Output<u32>, key: u32) -> Option<u8> {
        match out.targets.iter().find(|(k, _)| *k == key).unwrap().1 {
            Target::Layer(l) => Some(l.spatial),
            _ => None,
        }
    }

    /// Runs a bandwidth trace (estimate per 100 ms tick) and returns the spatial layer chosen
    /// at each tick for track 1.
    fn run_trace(trace: &[(u64, usize)]) -> Vec<Option<u8>> {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let mut out = Vec::new();
        let mut tick = 0u64;
        for &(estimate, ticks) in trace {
            for _ in 0..ticks {
                let now = t0 + Duration::from_millis(100 * tick);
                let o = a.update(now, &input(estimate, vec![camera(1)]));
                out.push(spatial(&o, 1));
                tick += 1;
            }
        }
        out
    }

    fn first_tick_at(layers: &[Option<u8>], from: usize, want: Option<u8>) -> Option<usize> {
        layers[from..]
            .iter()
            .position(|l| *l == want)
            .map(|p| p + from)
    }

    fn changes(layers: &[Option<u8>]) -> usize {
        layers.windows(2).filter(|w| w[0] != w[1]).count()
    }

    #[test]
    fn budget_fills_to_the_top_when_there_is_room() {
        let cases: &[(u64, Option<u8>)] = &[
            (3_000_000, Some(2)),
            (1_000_000, Some(1)),
            (300_000, Some(0)),
            (150_000, None),
            (40_000, None),
        ];
        for &(estimate, want) in cases {
            let t0 = Instant::now();
            let mut a = Allocator::new();
            let mut o = a.update(t0, &input(estimate, vec![camera(1)]));
            for i in 1..=30 {
                o = a.update(
                    t0 + Duration::from_millis(100 * i),
                    &input(estimate, vec![camera(1)]),
                );
            }
            assert_eq!(spatial(&o, 1), want, "estimate {estimate}");
        }
    }

    #[test]
    fn steps_down_within_a_second_and_back_up_after_a_stable_window() {
        // 2 Mbps for 5 s, 250 kbps for 10 s, 2 Mbps for 20 s; ticks of 100 ms.
        let layers = run_trace(&[(2_000_000, 50), (250_000, 100), (2_000_000, 200)]);
        assert_eq!(layers[49], Some(2));
        let down = first_tick_at(&layers, 50, Some(0)).unwrap();
        assert!(
            down - 50 <= 10,
            "stepped down {} ms after the drop",
            (down - 50) * 100
        );
        let up = first_tick_at(&layers, 150, Some(2)).unwrap();
        assert!(
            up - 150 <= 150,
            "back on top {} ms after recovery",
            (up - 150) * 100
        );
        assert!(up - 150 >= 20, "not before the stable window");
        assert_eq!(changes(&layers), 2, "{layers:?}");
    }

    #[test]
    fn a_collapse_goes_to_the_lowest_layer_first_and_pauses_only_if_it_lasts() {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        a.update(t0, &input(3_000_000, vec![camera(1)]));
        let at = |ms| t0 + Duration::from_millis(ms);
        assert_eq!(
            spatial(&a.update(at(1000), &input(100_000, vec![camera(1)])), 1),
            Some(2)
        );
        assert_eq!(
            spatial(&a.update(at(1300), &input(100_000, vec![camera(1)])), 1),
            Some(0)
        );
        assert_eq!(
            spatial(&a.update(at(2900), &input(100_000, vec![camera(1)])), 1),
            Some(0)
        );
        let o = a.update(at(3000), &input(100_000, vec![camera(1)]));
        assert_eq!(o.targets[0].1, Target::PausedForBandwidth);
        // A short collapse never pauses.
        let mut a = Allocator::new();
        a.update(t0, &input(3_000_000, vec![camera(1)]));
        a.update(at(1000), &input(100_000, vec![camera(1)]));
        a.update(at(1500), &input(100_000, vec![camera(1)]));
        let o = a.update(at(2000), &input(500_000, vec![camera(1)]));
        assert_eq!(spatial(&o, 1), Some(0));
    }

    #[test]
    fn a_drop_sheds_a_temporal_layer_at_once_and_the_spatial_layer_after_the_delay() {
        let mut v = camera(1);
        v.ladder = Ladder::from_spatial_rates([Some(Q), Some(H), Some(F)], 3);
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let o = a.update(t0, &input(3_000_000, vec![v.clone()]));
        assert_eq!(o.targets[0].1, Target::Layer(Layer::new(2, 2)));
        let o = a.update(
            t0 + Duration::from_millis(100),
            &input(300_000, vec![v.clone()]),
        );
        assert_eq!(o.targets[0].1, Target::Layer(Layer::new(2, 1)), "at once");
        let o = a.update(
            t0 + Duration::from_millis(100) + DOWN_DELAY,
            &input(300_000, vec![v.clone()]),
        );
        match o.targets[0].1 {
            Target::Layer(l) => assert_eq!(l.spatial, 0, "{l:?}"),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn an_oscillating_estimate_does_not_make_the_layer_oscillate() {
        // 1.6 Mbps and 500 kbps alternating every second for 30 s.
        let trace: Vec<(u64, usize)> = (0..30)
            .map(|i| (if i % 2 == 0 { 1_600_000 } else { 500_000 }, 10))
            .collect();
        let layers = run_trace(&trace);
        assert!(
            changes(&layers) <= 2,
            "{} changes: {layers:?}",
            changes(&layers)
        );
        assert_eq!(*layers.last().unwrap(), Some(1));
    }

    #[test]
    fn step_ups_that_keep_failing_are_tried_less_and_less_often() {
        // A rural link whose estimate overshoots: whenever h is tried, the estimate collapses
        // 1 s later and recovers 2 s after that.
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let mut layers = Vec::new();
        let mut collapse_at: Option<u64> = None;
        for tick in 0..1200u64 {
            let now = t0 + Duration::from_millis(100 * tick);
            let estimate = match collapse_at {
                Some(c) if tick >= c && tick < c + 20 => 150_000,
                _ => 700_000,
            };
            let o = a.update(now, &input(estimate, vec![camera(1)]));
            let s = spatial(&o, 1);
            if s == Some(1) && layers.last() != Some(&Some(1)) {
                collapse_at = Some(tick + 10);
            }
            layers.push(s);
        }
        let ups = layers
            .windows(2)
            .filter(|w| w[1] == Some(1) && w[0] != Some(1))
            .count();
        // Without backoff: one try every ~7 s, 16 in 2 minutes. With it: the hold doubles up
        // to MAX_UP_HOLD (bounded so a recovered link is used within ~15 s).
        let bound = 3 + 120 / MAX_UP_HOLD.as_secs() as usize;
        assert!(ups <= bound, "{ups} tries, at most {bound}");
    }

    #[test]
    fn short_estimate_blips_from_loss_bursts_are_ignored() {
        // 200 ms dips every 3 s.
        let mut trace = Vec::new();
        for _ in 0..10 {
            trace.push((2_000_000, 28));
            trace.push((300_000, 2));
        }
        let layers = run_trace(&trace);
        assert!(layers.iter().all(|l| *l == Some(2)), "{layers:?}");
    }

    #[test]
    fn pauses_when_nothing_fits_keeps_probing_and_comes_back() {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        // A new subscription starts on the lowest layer rather than paused...
        let o = a.update(t0, &input(120_000, vec![camera(1)]));
        assert_eq!(spatial(&o, 1), Some(0));
        // ...and pauses once it is clear that even that does not fit.
        let o = a.update(t0 + DOWN_DELAY, &input(120_000, vec![camera(1)]));
        assert_eq!(spatial(&o, 1), Some(0), "not after a moment");
        let o = a.update(t0 + PAUSE_DELAY, &input(120_000, vec![camera(1)]));
        assert_eq!(o.targets[0].1, Target::PausedForBandwidth);
        let t0 = t0 + PAUSE_DELAY;
        assert!(
            o.probe_bps >= Q + AUDIO,
            "probes for the lowest layer: {}",
            o.probe_bps
        );
        assert!(o.probe_bps < H, "but not for more: {}", o.probe_bps);
        let mut back = None;
        for i in 1..60u64 {
            let o = a.update(
                t0 + Duration::from_millis(100 * i),
                &input(400_000, vec![camera(1)]),
            );
            if spatial(&o, 1) == Some(0) {
                back = Some(i);
                break;
            }
        }
        let back = back.expect("video resumes when the link allows");
        // The pause was a step down: the hold after it applies, then the stable window.
        assert!(back <= 45, "{back}");
    }

    #[test]
    fn share_is_served_before_cameras_and_cameras_share_fairly() {
        let mut share = camera(9);
        share.priority = Priority::Share;
        let video = vec![camera(1), camera(2), share];
        let mut a = Allocator::new();
        let o = a.update(Instant::now(), &input(2_500_000, video));
        assert_eq!(spatial(&o, 9), Some(2), "share on top");
        assert_eq!(spatial(&o, 1), spatial(&o, 2), "cameras equal");
        assert_eq!(spatial(&o, 1), Some(1));
        assert!(o.allocated_bps <= 2_500_000);
    }

    #[test]
    fn an_estimate_hovering_at_a_layer_cost_does_not_step_up() {
        // h costs 400 kbps + 40 kbps audio: 489 kbps of estimate at 0.9 headroom.
        let t0 = Instant::now();
        let mut a = Allocator::new();
        a.update(t0, &input(300_000, vec![camera(1)]));
        let mut last = None;
        for i in 1..100u64 {
            let o = a.update(
                t0 + Duration::from_millis(100 * i),
                &input(500_000, vec![camera(1)]),
            );
            last = spatial(&o, 1);
        }
        assert_eq!(last, Some(0), "500 kbps is not enough margin for h");
        for i in 100..200u64 {
            let o = a.update(
                t0 + Duration::from_millis(100 * i),
                &input(560_000, vec![camera(1)]),
            );
            last = spatial(&o, 1);
        }
        assert_eq!(last, Some(1), "with 10 % to spare it goes up");
    }

    #[test]
    fn heavy_loss_shrinks_the_budget_light_loss_does_not() {
        let cases: &[(f32, Option<u8>)] = &[
            (0.0, Some(2)),
            (0.03, Some(2)),
            (0.2, Some(1)),
            (0.45, Some(1)),
        ];
        for &(loss, want) in cases {
            let mut a = Allocator::new();
            let mut i = input(1_500_000, vec![camera(1)]);
            i.loss = loss;
            let o = a.update(Instant::now(), &i);
            assert_eq!(spatial(&o, 1), want, "loss {loss}");
        }
    }

    #[test]
    fn data_saver_caps_the_layer_and_the_probe() {
        let mut v = camera(1);
        v.max_spatial = 0;
        let mut a = Allocator::new();
        let o = a.update(Instant::now(), &input(5_000_000, vec![v]));
        assert_eq!(spatial(&o, 1), Some(0));
        assert_eq!(o.probe_bps, ((Q + AUDIO) as f64 / HEADROOM) as u64);
    }

    #[test]
    fn a_layer_the_publisher_stopped_is_left_at_once() {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let o = a.update(t0, &input(3_000_000, vec![camera(1)]));
        assert_eq!(spatial(&o, 1), Some(2));
        let mut v = camera(1);
        v.ladder = Ladder::from_spatial_rates([Some(Q), Some(H), None], 1);
        let o = a.update(t0 + Duration::from_millis(100), &input(3_000_000, vec![v]));
        assert_eq!(spatial(&o, 1), Some(1));
        let gone = VideoInput {
            ladder: Ladder::from_spatial_rates([None, None, None], 1),
            ..camera(1)
        };
        let o = a.update(
            t0 + Duration::from_millis(200),
            &input(3_000_000, vec![gone]),
        );
        assert_eq!(o.targets[0].1, Target::Unavailable);
    }

    #[test]
    fn video_starts_at_once_when_the_publisher_begins_sending() {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let nothing = VideoInput {
            ladder: Ladder::from_spatial_rates([None, None, None], 1),
            ..camera(1)
        };
        let o = a.update(t0, &input(3_000_000, vec![nothing]));
        assert_eq!(o.targets[0].1, Target::Unavailable);
        let o = a.update(
            t0 + Duration::from_millis(100),
            &input(3_000_000, vec![camera(1)]),
        );
        assert_eq!(spatial(&o, 1), Some(2));
    }

    #[test]
    fn temporal_layers_are_steps_between_spatial_layers() {
        let mut v = camera(1);
        v.ladder = Ladder::from_spatial_rates([Some(Q), Some(H), Some(F)], 3);
        let mut a = Allocator::new();
        // Enough for h at a reduced frame rate, not for the full h.
        let o = a.update(Instant::now(), &input(420_000, vec![v]));
        match o.targets[0].1 {
            Target::Layer(l) => assert_eq!((l.spatial, l.temporal < 2), (1, true), "{l:?}"),
            t => panic!("{t:?}"),
        }
    }
}
