//! Table tests of the allocator: one file per concern, helpers here.

mod pause;
mod traces;

use super::*;
use crate::adapt::layer::Ladder;

pub(super) const Q: u64 = 150_000;
pub(super) const H: u64 = 400_000;
pub(super) const F: u64 = 1_200_000;
pub(super) const AUDIO: u64 = 40_000;

pub(super) fn ladder() -> Ladder {
    Ladder::from_spatial_rates([Some(Q), Some(H), Some(F)], 1)
}

pub(super) fn camera(key: u32) -> VideoInput<u32> {
    VideoInput {
        key,
        priority: Priority::Normal,
        ladder: ladder(),
        max_spatial: 2,
    }
}

pub(super) fn input(estimate_bps: u64, video: Vec<VideoInput<u32>>) -> Input<u32> {
    Input {
        estimate_bps,
        measured: true,
        audio_bps: AUDIO,
        loss: 0.0,
        queue_delay: Duration::ZERO,
        delivered_bps: None,
        video,
    }
}

pub(super) fn spatial(out: &Output<u32>, key: u32) -> Option<u8> {
    match out.targets.iter().find(|(k, _)| *k == key).unwrap().1 {
        Target::Layer(l) => Some(l.spatial),
        _ => None,
    }
}

#[test]
fn budget_fills_to_the_top_when_there_is_room() {
    let cases: &[(u64, Option<u8>)] = &[
        (3_000_000, Some(2)),
        (1_000_000, Some(1)),
        (300_000, Some(0)),
        // Short of audio + the lowest layer, but not far short, on a clean link: kept (see
        // `link_fails`; the table test below has the cases).
        (150_000, Some(0)),
        // Far short: paused after `FAR_SHORT_DELAY`.
        (100_000, None),
        (40_000, None),
    ];
    for &(estimate, want) in cases {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let mut o = a.update(t0, &input(estimate, vec![camera(1)]));
        for i in 1..=100 {
            o = a.update(
                t0 + Duration::from_millis(100 * i),
                &input(estimate, vec![camera(1)]),
            );
        }
        assert_eq!(spatial(&o, 1), want, "estimate {estimate}");
    }
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

#[test]
fn step_ups_are_reported_and_the_probe_asks_for_what_the_step_up_rule_wants() {
    let t0 = Instant::now();
    let mut a = Allocator::new();
    // Room for the middle layer only: the probe asks for the top one with the step-up margin.
    let o = a.update(t0, &input(600_000, vec![camera(1)]));
    assert_eq!(spatial(&o, 1), Some(1));
    assert!(!o.stepped_up, "starting is not a step up");
    let step = o.allocated_bps + F - H;
    assert_eq!(o.probe_bps, (step as f64 * UP_MARGIN / HEADROOM) as u64);
    let mut ups = Vec::new();
    for i in 1..60u64 {
        let o = a.update(
            t0 + Duration::from_millis(100 * i),
            &input(3_000_000, vec![camera(1)]),
        );
        if o.stepped_up {
            ups.push((i, spatial(&o, 1)));
        }
    }
    assert_eq!(ups.len(), 1, "one step up, reported once: {ups:?}");
    assert_eq!(ups[0].1, Some(2));
}

#[test]
fn without_a_measured_estimate_new_tracks_start_lowest_and_nothing_steps_up() {
    // The configured initial guess (600 kbit/s) may be twice a rural link: start on the lowest
    // layer, probe for nothing, and go up only once the link has been measured.
    let t0 = Instant::now();
    let mut a = Allocator::new();
    let guess = |estimate| Input {
        measured: false,
        ..input(estimate, vec![camera(1)])
    };
    let o = a.update(t0, &guess(3_000_000));
    assert_eq!(spatial(&o, 1), Some(0));
    assert_eq!(
        o.targets[0].1,
        Target::Layer(Layer::new(0, 0)),
        "one temporal layer here"
    );
    // With temporal layers: the lowest resolution at its full frame rate.
    let temporal = VideoInput {
        ladder: Ladder::from_spatial_rates([Some(Q), Some(H), Some(F)], 3),
        ..camera(7)
    };
    let o = Allocator::new().update(
        t0,
        &Input {
            measured: false,
            ..input(3_000_000, vec![temporal])
        },
    );
    assert_eq!(o.targets[0].1, Target::Layer(Layer::new(0, 2)));
    assert!(!o.stepped_up);
    assert_eq!(
        o.probe_bps,
        ((F + AUDIO) as f64 / HEADROOM) as u64,
        "probes ask for the top"
    );
    let o = a.update(t0 + UP_STABLE * 3, &guess(3_000_000));
    assert_eq!(spatial(&o, 1), Some(0), "no step up on a guess");
    // Measured: the normal step-up rule, from the lowest layer.
    let t1 = t0 + UP_STABLE * 3;
    let o = a.update(t1, &input(3_000_000, vec![camera(1)]));
    assert_eq!(spatial(&o, 1), Some(0), "not before the stable window");
    let o = a.update(t1 + UP_STABLE, &input(3_000_000, vec![camera(1)]));
    assert_eq!(spatial(&o, 1), Some(2));
    assert!(o.stepped_up);
    // A track added once the link is measured starts where the estimate says.
    let o = a.update(
        t1 + UP_STABLE * 2,
        &input(3_000_000, vec![camera(1), camera(2)]),
    );
    assert_eq!(spatial(&o, 2), Some(2));
}

#[test]
fn only_a_higher_resolution_or_a_resume_counts_as_a_step_up() {
    let t0 = Instant::now();
    let mut a = Allocator::new();
    let temporal = |estimate| {
        input(
            estimate,
            vec![VideoInput {
                ladder: Ladder::from_spatial_rates([Some(Q), Some(H), Some(F)], 3),
                ..camera(1)
            }],
        )
    };
    // Room for q at full rate with the step-up margin, not for h.
    let q_only = ((Q as f64 * 1.2 + AUDIO as f64) / HEADROOM) as u64;
    let o = a.update(t0, &temporal(q_only));
    assert_eq!(o.targets[0].1, Target::Layer(Layer::new(0, 2)));
    // A shortfall the link shows (loss beyond the tolerated) drops a temporal layer at once.
    let o = a.update(
        t0 + Duration::from_millis(100),
        &Input {
            loss: LOSS_TOLERATED * 2.0,
            ..temporal(AUDIO + Q * 3 / 4)
        },
    );
    assert!(
        matches!(o.targets[0].1, Target::Layer(l) if l.spatial == 0 && l.temporal < 2),
        "{:?}",
        o.targets
    );
    // The temporal layer coming back is not a step up.
    let mut ups = Vec::new();
    let mut back = false;
    for i in 2..200u64 {
        let o = a.update(t0 + Duration::from_millis(100 * i), &temporal(q_only));
        back |= o.targets[0].1 == Target::Layer(Layer::new(0, 2));
        if o.stepped_up {
            ups.push(o.targets[0].1);
        }
    }
    assert!(back, "q/T2 came back");
    assert!(ups.is_empty(), "not a step up: {ups:?}");
}

#[test]
fn a_tracks_steps_respect_the_subscribers_cap() {
    // (layers published, temporal layers, max spatial) -> (lowest, smallest, top)
    let l = Layer::new;
    let cases = [
        (
            [Some(Q), Some(H), Some(F)],
            1,
            2,
            Some((l(0, 0), l(0, 0), l(2, 0))),
        ),
        (
            [Some(Q), Some(H), Some(F)],
            3,
            2,
            Some((l(0, 0), l(0, 2), l(2, 2))),
        ),
        (
            [Some(Q), Some(H), Some(F)],
            3,
            0,
            Some((l(0, 0), l(0, 2), l(0, 2))),
        ),
        // The lowest layer is not published (dynacast, weak uplink): the next one is lowest.
        (
            [None, Some(H), Some(F)],
            3,
            2,
            Some((l(1, 0), l(1, 2), l(2, 2))),
        ),
        // Only layers above the cap: nothing to take.
        ([None, Some(H), Some(F)], 3, 0, None),
    ];
    for (rates, temporal, max_spatial, want) in cases {
        let v = VideoInput {
            ladder: Ladder::from_spatial_rates(rates, temporal),
            max_spatial,
            ..camera(1)
        };
        let got = v
            .lowest()
            .zip(v.smallest())
            .zip(v.top())
            .map(|((a, b), (c, _))| (a, b, c));
        assert_eq!(got, want, "{rates:?} T{temporal} max {max_spatial}");
    }
}

#[test]
fn a_layer_is_kept_through_a_small_shortfall_only_while_the_link_is_healthy() {
    // On the top layer (F) at 3 Mbit/s; then the estimate dips for 3 s. F needs 1.2 Mbit/s
    // of budget (estimate x HEADROOM - audio): 1.3 Mbit/s leaves 1.13 (6 % short), 1.1
    // leaves 0.95 (21 % short, beyond KEEP_MARGIN).
    let cases: &[(u64, f32, u64, Option<u8>)] = &[
        (1_300_000, 0.0, 0, Some(2)),
        (1_300_000, 0.0, 100, Some(2)),
        // The link shows it: loss (rural 3G's few percent are enough), or a standing queue.
        (1_300_000, 0.08, 0, Some(1)),
        (1_300_000, 0.03, 0, Some(1)),
        (1_300_000, 0.005, 0, Some(2)),
        (1_300_000, 0.0, 300, Some(1)),
        // Far short: down whatever the link shows.
        (1_100_000, 0.0, 0, Some(1)),
    ];
    for &(estimate, loss, queue_ms, want) in cases {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let o = a.update(t0, &input(3_000_000, vec![camera(1)]));
        assert_eq!(spatial(&o, 1), Some(2));
        let mut dip = input(estimate, vec![camera(1)]);
        dip.loss = loss;
        dip.queue_delay = Duration::from_millis(queue_ms);
        let mut o = o;
        for i in 1..=100 {
            o = a.update(t0 + Duration::from_millis(100 * i), &dip);
        }
        assert_eq!(
            spatial(&o, 1),
            want,
            "estimate {estimate}, loss {loss}, queue {queue_ms} ms"
        );
    }
}
