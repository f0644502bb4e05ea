//! Per-subscriber bandwidth allocation: which layer of each subscribed video track fits this
//! subscriber's link. Pure: estimate, stats and time come in as arguments.
//!
//! Rules (see shared/SFU-LESSONS.md): audio is budgeted first and never paused; the budget is
//! filled lowest layers first, by priority, then upgraded; a drop is followed within
//! `DOWN_DELAY`, an increase only after the estimate has covered the higher layer for
//! `UP_STABLE` (hysteresis) and while the link shows no standing queue (RTT near its floor);
//! when even the lowest layer does not fit, video pauses and the probe target stays at the
//! lowest layer so the estimate can climb back.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

use super::layer::{Ladder, Layer};
use super::shaping::gross;

mod pause;
mod temporal;
use pause::{link_fails, Shortfall};
pub use pause::{LinkFailure, FAR_SHORT_DELAY, LOSS_SETTLE, PAUSE_DELAY, PAUSE_LOSS};
pub use temporal::PEAK_WINDOW;
use temporal::{at_resolution, PeakEstimate};

/// A shortfall must last this long before stepping down (filters single estimate blips).
pub const DOWN_DELAY: Duration = Duration::from_millis(300);
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
/// A layer already forwarded is kept while the budget falls short of it by less than this
/// factor and the link shows no loss (`KEEP_LOSS_MAX`) or queue: hysteresis in bitrate for
/// staying, as `UP_MARGIN` is for going up. Right after a step up the burst of the keyframe
/// the switch asked for dents GCC's estimate (and, before `LayerCost` held such rises back,
/// lifted the layer's cost too). CI step test: 720p reached at 747 kbit/s, then the estimate
/// fell to 664 and the cost of 720p rose from 475 to 545 kbit/s within 0.8 s on a clean
/// 2 Mbit/s link, and the step down doubled the hold before the next try.
pub const KEEP_MARGIN: f64 = 1.15;
/// The keep band is for clean links: on a lossy one (rural 3G's few percent) GCC's estimate
/// is already held low by its loss control, and a layer above it is a layer too many (the
/// weak-link test's 360p excursion on the 300 kbit/s link lasted 3.8 s with the band, 1.4 s
/// without).
pub const KEEP_LOSS_MAX: f32 = 0.01;
/// Random loss up to this much (rural 3G) is left to NACK/FEC and GCC's own loss control.
pub const LOSS_TOLERATED: f32 = 0.05;
/// A standing queue longer than this (RTT above its floor, see `queue`) holds every step up:
/// the link is already full of what we send, whatever the estimate says.
pub const UP_QUEUE_MAX: Duration = Duration::from_millis(150);

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

impl<K> VideoInput<K> {
    /// The steps this subscriber may take of the track, cheapest first.
    pub fn steps(&self) -> impl Iterator<Item = (Layer, u64)> + '_ {
        self.ladder
            .steps()
            .filter(|(l, _)| l.spatial <= self.max_spatial)
    }

    /// The cheapest step: the lowest resolution at its lowest frame rate.
    pub fn lowest(&self) -> Option<Layer> {
        self.steps().next().map(|(l, _)| l)
    }

    /// The lowest resolution at its full frame rate (a few tens of kbit/s).
    pub fn smallest(&self) -> Option<Layer> {
        let lowest = self.lowest()?;
        self.steps()
            .filter(|(l, _)| l.spatial == lowest.spatial)
            .last()
            .map(|(l, _)| l)
    }

    /// The best step the subscriber may take, with its rate.
    pub fn top(&self) -> Option<(Layer, u64)> {
        self.steps().last()
    }
}

#[derive(Debug, Clone)]
pub struct Input<K> {
    /// The send-side estimate towards this subscriber, bits per second.
    pub estimate_bps: u64,
    /// The estimate was measured on this subscriber's link; false while it is still the
    /// configured initial guess. Until then new subscriptions start on their lowest layer and
    /// nothing steps up or probes: a guess above a rural link's capacity would otherwise start
    /// it on a layer the link cannot carry, and the queue that builds behind it delays the
    /// keyframe of the switch down for seconds (the weak subscriber froze 4-10 s at join).
    pub measured: bool,
    /// Bitrate of the audio this subscriber receives, budgeted first.
    pub audio_bps: u64,
    /// Fraction of our packets the subscriber reports lost (0..1). Above `LOSS_TOLERATED`
    /// the budget shrinks by it: retransmissions and FEC eat that share, and more video into a
    /// lossy link only loses more.
    pub loss: f32,
    /// The subscriber's RTT above its recent floor (`queue::RttFloor`): time our packets
    /// wait in a buffer on the way. Above `UP_QUEUE_MAX` nothing steps up.
    pub queue_delay: Duration,
    /// What the subscriber's link delivered lately (sent less lost, `delivered::Delivered`),
    /// if known: evidence against an estimate far below it (`link_fails`).
    pub delivered_bps: Option<u64>,
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
    /// lowest layer while paused. Never the sum of every top layer (floods a weak link) once
    /// the link is measured; before that, the top (see `shaping`, which decides padding).
    pub probe_bps: u64,
    /// What the current targets need.
    pub allocated_bps: u64,
    /// Some track moved up to a higher resolution, or resumed, in this update: what probes
    /// are for. A temporal layer coming back is not one (it needs no probe, and counting it
    /// kept re-arming probes every few seconds into a rural link that had just refused one).
    pub stepped_up: bool,
    /// Tracks paused in this update, with the evidence that the link fails.
    pub paused: Vec<(K, LinkFailure)>,
}

#[derive(Debug, Clone)]
struct TrackState {
    target: Target,
    /// Since when the wanted allocation has been below the current one.
    short: Option<Shortfall>,
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
    peak: PeakEstimate,
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
            peak: PeakEstimate::default(),
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
        let mut wanted = greedy(budget, &input.video);
        // Headroom and loss shrink what video gets, but do not by themselves pause it: video
        // pauses only when the whole estimate, less audio, cannot carry the lowest layer. On a
        // lossy rural link GCC holds its estimate well below the link (loss-based control
        // does not grow in 2-10 % loss) and the loss reported after a start-up overshoot is
        // high; with the headroom as well, a 300 kbit/s link that carries 180p and audio with
        // room to spare paused its video for seconds (CI: 144 kbit/s estimate, 79 of audio).
        let plain = input.estimate_bps.saturating_sub(input.audio_bps);
        for ((w, floor), v) in wanted
            .iter_mut()
            .zip(greedy(plain, &input.video))
            .zip(&input.video)
        {
            if *w == Target::PausedForBandwidth && floor != Target::PausedForBandwidth {
                if let Some(lowest) = v.lowest() {
                    *w = Target::Layer(lowest);
                }
            }
        }
        let wanted_up = greedy((budget as f64 / UP_MARGIN) as u64, &input.video);
        let healthy = input.loss <= KEEP_LOSS_MAX && input.queue_delay <= UP_QUEUE_MAX;
        let wanted_keep = greedy((budget as f64 * KEEP_MARGIN) as u64, &input.video);
        // The frame rate at the lowest resolution follows the peak estimate while the link
        // shows no trouble (see `temporal`).
        self.peak.observe(now, input.estimate_bps);
        let steady =
            input.measured && input.loss <= LOSS_TOLERATED && input.queue_delay <= UP_QUEUE_MAX;
        let peak_budget =
            ((self.peak.get() as f64 * HEADROOM) as u64).saturating_sub(input.audio_bps);
        let wanted_peak = greedy(peak_budget, &input.video);
        let wanted_peak_up = greedy((peak_budget as f64 / UP_MARGIN) as u64, &input.video);
        self.tracks
            .retain(|k, _| input.video.iter().any(|v| &v.key == k));

        let mut targets = Vec::with_capacity(input.video.len());
        let mut stepped_up = false;
        let mut paused = Vec::new();
        for (((((v, want), want_up), want_keep), peak), peak_up) in input
            .video
            .iter()
            .zip(wanted)
            .zip(wanted_up)
            .zip(wanted_keep)
            .zip(wanted_peak)
            .zip(wanted_peak_up)
        {
            // A new subscription starts where a measured estimate says, but with the lowest
            // layer rather than paused: poor video beats no video, and if even that does not
            // fit the normal step-down pauses it. Without a measurement, the lowest layer.
            let lowest = v.lowest().map(Target::Layer);
            // Unmeasured: the lowest resolution at its full frame rate.
            let smallest = v.smallest().map(Target::Layer);
            let start = match (want, lowest, smallest) {
                (Target::PausedForBandwidth, Some(lowest), _) => lowest,
                (_, _, Some(smallest)) if !input.measured => smallest,
                (other, _, _) => other,
            };
            let state = self.tracks.entry(v.key.clone()).or_insert(TrackState {
                target: start,
                short: None,
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
            let (want, want_up) = if steady {
                (
                    frame_rate_kept(v, current, want, peak),
                    frame_rate_raised(v, current, want_up, peak_up),
                )
            } else {
                (want, want_up)
            };
            // Within the keep band on a healthy link the shortfall is noise, not a shortfall.
            let short = rank(v, want) < rank(v, current)
                && !(healthy && rank(v, want_keep) >= rank(v, current));
            let next = if !current_valid {
                // The layer went away (publisher stopped it) or the cap changed: move now.
                want
            } else if short {
                state.room_since = None;
                let short = state.short.get_or_insert(Shortfall::new(now));
                short.observe(now, input.loss);
                let waited = now.saturating_duration_since(short.since);
                let fails = match (want, lowest) {
                    (Target::PausedForBandwidth, Some(lowest)) if waited >= PAUSE_DELAY => {
                        link_fails(input, short, now, plain, rate_of(v, lowest))
                    }
                    _ => None,
                };
                match (want, lowest) {
                    (Target::PausedForBandwidth, Some(lowest)) if fails.is_none() => {
                        if waited >= DOWN_DELAY && current != lowest {
                            // A step towards a pause: set here, so that the shortfall clock
                            // keeps running (the generic change below would reset it).
                            short.restart_loss(now);
                            state.target = lowest;
                            state.note_down(now);
                        }
                        current
                    }
                    _ if waited >= DOWN_DELAY => {
                        if let Some(why) = fails {
                            paused.push((v.key.clone(), why));
                        }
                        want
                    }
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
            } else if input.measured
                && input.queue_delay <= UP_QUEUE_MAX
                && rank(v, want_up) > rank(v, current)
            {
                state.short = None;
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
                state.short = None;
                state.room_since = None;
                current
            };
            if next != current {
                if rank(v, next) < rank(v, current) {
                    state.note_down(now);
                } else if current != Target::Unavailable {
                    state.last_up = Some(now);
                    stepped_up |= match (current, next) {
                        (Target::Layer(c), Target::Layer(n)) => n.spatial > c.spatial,
                        (Target::PausedForBandwidth, Target::Layer(_)) => true,
                        _ => false,
                    };
                }
                state.short = None;
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
        // Unmeasured: ask for everything this subscriber could take, so that str0m's start-up
        // probes (short bursts at 3x and 6x its initial estimate, capped at twice this) find a
        // fast link at once.
        let probe_bps = if input.measured {
            probe_target(input, &targets, allocated_bps)
        } else {
            let top: u64 = input
                .video
                .iter()
                .filter_map(|v| v.top())
                .map(|(_, r)| r)
                .sum();
            gross(top + input.audio_bps)
        };
        Output {
            targets,
            probe_bps,
            allocated_bps,
            stepped_up,
            paused,
        }
    }
}

/// A drop of the frame rate alone (`want` at `current`'s resolution, the lowest) goes no lower
/// than the peak allows (`temporal`). So does a dip below the lowest step (on rural 3G GCC
/// dips below audio and the base layer), but only down to it: whether to pause is
/// `link_fails`'s, once the peak no longer holds the frame rate up.
fn frame_rate_kept<K>(v: &VideoInput<K>, current: Target, want: Target, peak: Target) -> Target {
    match (current, want, at_resolution(v, current, peak)) {
        (Target::Layer(c), Target::Layer(w), Some(k)) if w.spatial == c.spatial && w < c => {
            Target::Layer(Layer::new(
                c.spatial,
                w.temporal.max(k.temporal.min(c.temporal)),
            ))
        }
        (Target::Layer(c), Target::PausedForBandwidth, Some(k)) => {
            let kept = Layer::new(c.spatial, k.temporal.min(c.temporal));
            match v.lowest() {
                Some(lowest) if lowest.spatial == c.spatial && kept > lowest => Target::Layer(kept),
                _ => want,
            }
        }
        _ => want,
    }
}

/// Where the estimate allows no step up, the peak may still raise the frame rate at
/// `current`'s resolution, the lowest (`temporal`).
fn frame_rate_raised<K>(
    v: &VideoInput<K>,
    current: Target,
    want_up: Target,
    peak_up: Target,
) -> Target {
    match at_resolution(v, current, peak_up) {
        Some(u) if rank(v, Target::Layer(u)) > rank(v, want_up) => Target::Layer(u),
        _ => want_up,
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

/// Fills `budget`: lowest layers first in priority order, then upgrades a step at a time,
/// higher priorities first, round-robin within a priority.
fn greedy<K>(budget: u64, video: &[VideoInput<K>]) -> Vec<Target> {
    let ladders: Vec<Vec<(Layer, u64)>> = video.iter().map(|v| v.steps().collect()).collect();
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
        let ladder: Vec<(Layer, u64)> = v.steps().collect();
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
    // Ask the estimator for a little more than the media needs, as the headroom takes it away,
    // and for a step up as much as the step-up rule wants to see (`UP_MARGIN`).
    let margin = if best.is_some() { UP_MARGIN } else { 1.0 };
    (wanted as f64 * margin / HEADROOM) as u64
}

#[cfg(test)]
mod tests;
