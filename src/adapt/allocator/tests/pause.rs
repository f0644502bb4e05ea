//! When video pauses for bandwidth, and when it must not.

use super::*;

#[test]
fn a_collapse_goes_to_the_lowest_layer_first_and_pauses_only_if_it_lasts() {
    let t0 = Instant::now();
    let mut a = Allocator::new();
    a.update(t0, &input(3_000_000, vec![camera(1)]));
    let at = |ms| t0 + Duration::from_millis(ms);
    // A collapse the link shows (loss beyond `PAUSE_LOSS`).
    let collapsed = || Input {
        loss: PAUSE_LOSS * 2.0,
        ..input(100_000, vec![camera(1)])
    };
    assert_eq!(spatial(&a.update(at(1000), &collapsed()), 1), Some(2));
    assert_eq!(spatial(&a.update(at(1300), &collapsed()), 1), Some(0));
    assert_eq!(spatial(&a.update(at(2900), &collapsed()), 1), Some(0));
    let o = a.update(at(3000), &collapsed());
    assert_eq!(o.targets[0].1, Target::PausedForBandwidth);
    // A short collapse never pauses.
    let mut a = Allocator::new();
    a.update(t0, &input(3_000_000, vec![camera(1)]));
    a.update(at(1000), &collapsed());
    a.update(at(1500), &collapsed());
    let o = a.update(at(2000), &input(500_000, vec![camera(1)]));
    assert_eq!(spatial(&o, 1), Some(0));
}

#[test]
fn pauses_when_nothing_fits_keeps_probing_and_comes_back() {
    let t0 = Instant::now();
    let mut a = Allocator::new();
    // A new subscription starts on the lowest layer rather than paused...
    let o = a.update(t0, &input(100_000, vec![camera(1)]));
    assert_eq!(spatial(&o, 1), Some(0));
    // ...and pauses once it is clear that even that does not fit: far short with nothing
    // else to show it, after `FAR_SHORT_DELAY`.
    let o = a.update(t0 + DOWN_DELAY, &input(100_000, vec![camera(1)]));
    assert_eq!(spatial(&o, 1), Some(0), "not after a moment");
    let o = a.update(t0 + PAUSE_DELAY, &input(100_000, vec![camera(1)]));
    assert_eq!(spatial(&o, 1), Some(0), "not on the estimate alone");
    let o = a.update(t0 + FAR_SHORT_DELAY, &input(100_000, vec![camera(1)]));
    assert_eq!(o.targets[0].1, Target::PausedForBandwidth);
    let t0 = t0 + FAR_SHORT_DELAY;
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
fn the_lowest_layer_stays_while_the_whole_estimate_carries_it() {
    // Audio + the lowest layer fit the estimate but not its headroom share: video stays on.
    let t0 = Instant::now();
    let mut a = Allocator::new();
    let fits = AUDIO + Q;
    a.update(t0, &input(fits, vec![camera(1)]));
    let o = a.update(t0 + PAUSE_DELAY * 3, &input(fits, vec![camera(1)]));
    assert_eq!(spatial(&o, 1), Some(0), "{:?}", o.targets);
    // Below that it pauses, after the pause delay, once the link shows it (loss here).
    let short = Input {
        loss: PAUSE_LOSS * 2.0,
        ..input(fits - 1, vec![camera(1)])
    };
    let o = a.update(t0 + PAUSE_DELAY * 4, &short);
    assert_eq!(spatial(&o, 1), Some(0), "not at once");
    let o = a.update(t0 + PAUSE_DELAY * 6, &short);
    assert_eq!(o.targets[0].1, Target::PausedForBandwidth);
    // Coming back needs the headroom and the step-up margin: no flapping at the edge.
    let o = a.update(t0 + PAUSE_DELAY * 10, &input(fits, vec![camera(1)]));
    assert_eq!(o.targets[0].1, Target::PausedForBandwidth);
}

#[test]
fn loss_alone_does_not_pause_video_the_estimate_still_carries() {
    // 300 kbit/s estimate with 35 % reported loss (a start-up overshoot): the loss shrinks the
    // budget below the lowest layer, the estimate alone does not.
    let t0 = Instant::now();
    let mut a = Allocator::new();
    let lossy = |estimate| Input {
        loss: 0.35,
        ..input(estimate, vec![camera(1)])
    };
    a.update(t0, &lossy(300_000));
    let o = a.update(t0 + PAUSE_DELAY * 2, &lossy(300_000));
    assert_eq!(spatial(&o, 1), Some(0), "{:?}", o.targets);
    // Where the estimate itself is too small, it still pauses.
    let o = a.update(t0 + PAUSE_DELAY * 3, &lossy(150_000));
    assert_eq!(spatial(&o, 1), Some(0), "not at once");
    let o = a.update(t0 + PAUSE_DELAY * 5, &lossy(150_000));
    assert_eq!(o.targets[0].1, Target::PausedForBandwidth);
}

#[test]
fn a_short_estimate_pauses_only_a_link_that_shows_it_fails() {
    let ms = Duration::from_millis;
    // GCC's estimate short of audio (40) + the lowest layer (150), for 10 s on a link with this
    // loss, standing queue and delivered rate: (name, estimate, loss, queue, delivered, why it
    // paused if it did).
    type Case = (
        &'static str,
        u64,
        f32,
        Duration,
        Option<u64>,
        Option<&'static str>,
    );
    let cases: &[Case] = &[
        // The weak-link test's case: GCC's loss control sank below a link that carries.
        ("short, clean link", 150_000, 0.018, ms(80), None, None),
        (
            "short, loss beyond what FEC absorbs",
            150_000,
            0.15,
            ms(80),
            None,
            Some("loss"),
        ),
        (
            "short, standing queue",
            150_000,
            0.0,
            UP_QUEUE_MAX + ms(50),
            None,
            Some("queue"),
        ),
        (
            "far short: nothing left for video",
            100_000,
            0.0,
            ms(0),
            None,
            Some("far"),
        ),
        (
            "far short, and the link delivers too little",
            100_000,
            0.0,
            ms(0),
            Some(150_000),
            Some("far"),
        ),
        // The weak-link test again, GCC sunk below the audio itself: what arrives says the
        // estimate is wrong.
        (
            "far short, but the link delivers audio and the lowest layer",
            30_000,
            0.026,
            ms(40),
            Some(AUDIO + Q + 5_000),
            None,
        ),
        (
            "far short, delivers, but loss beyond what FEC absorbs",
            30_000,
            0.15,
            ms(40),
            Some(AUDIO + Q + 5_000),
            Some("loss"),
        ),
        (
            "far short, delivers, but a standing queue",
            30_000,
            0.0,
            UP_QUEUE_MAX + ms(50),
            Some(AUDIO + Q + 5_000),
            Some("queue"),
        ),
        (
            "not short",
            200_000,
            0.08,
            UP_QUEUE_MAX + ms(50),
            None,
            None,
        ),
    ];
    for &(name, estimate, loss, queue, delivered_bps, why) in cases {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let mut o = a.update(t0, &input(2_000_000, vec![camera(1)]));
        let i = Input {
            loss,
            queue_delay: queue,
            delivered_bps,
            ..input(estimate, vec![camera(1)])
        };
        let mut reasons = Vec::new();
        for k in 1..=100 {
            o = a.update(t0 + ms(100 * k), &i);
            reasons.extend(o.paused.iter().map(|(_, why)| match why {
                LinkFailure::Loss(_) => "loss",
                LinkFailure::Queue(_) => "queue",
                LinkFailure::FarShort => "far",
            }));
        }
        let got = o.targets[0].1 == Target::PausedForBandwidth;
        assert_eq!(got, why.is_some(), "{name}: {:?}", o.targets);
        assert_eq!(reasons, why.into_iter().collect::<Vec<_>>(), "{name}");
        if why.is_none() {
            assert!(spatial(&o, 1).is_some(), "{name}");
        }
    }
}

#[test]
fn a_pause_reads_the_loss_over_the_whole_shortfall() {
    // GCC's estimate short of audio + the lowest layer for 10 s on rural 3G's random loss,
    // whose per-second figure swings well above its mean: (name, loss in even seconds, in odd
    // seconds, paused at the end).
    let cases: &[(&str, f32, f32, bool)] = &[
        ("swings above the limit, mean 4.5 %", 0.02, 0.12, false),
        ("swings, mean 7.5 %", 0.03, 0.12, false),
        ("swings, mean 12 %: the link fails", 0.09, 0.15, true),
        ("steady 3 %", 0.03, 0.03, false),
    ];
    let ms = Duration::from_millis;
    for &(name, even, odd, paused) in cases {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let mut o = a.update(t0, &input(2_000_000, vec![camera(1)]));
        for k in 1..=50u64 {
            let loss = if (k / 5) % 2 == 0 { even } else { odd };
            let i = Input {
                loss,
                ..input(150_000, vec![camera(1)])
            };
            o = a.update(t0 + ms(200 * k), &i);
        }
        let got = o.targets[0].1 == Target::PausedForBandwidth;
        assert_eq!(got, paused, "{name}: {:?}", o.targets);
    }
}

#[test]
fn a_far_shortfall_alone_pauses_only_when_it_lasts() {
    // GCC's estimate far below audio + the lowest layer on a link that shows nothing wrong
    // (rural 3G's dips): (name, how long, paused at the end, why).
    let cases: &[(&str, u64, bool)] = &[
        ("a 5 s dip keeps the layer", 5_000, false),
        (
            "just short of the delay",
            FAR_SHORT_DELAY.as_millis() as u64 - 200,
            false,
        ),
        (
            "lasting past the delay pauses",
            FAR_SHORT_DELAY.as_millis() as u64 + 500,
            true,
        ),
    ];
    let ms = Duration::from_millis;
    for &(name, dip, paused) in cases {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let mut o = a.update(t0, &input(2_000_000, vec![camera(1)]));
        let mut reasons = Vec::new();
        for k in 1..=dip / 100 {
            o = a.update(t0 + ms(100 * k), &input(60_000, vec![camera(1)]));
            reasons.extend(o.paused.iter().map(|(_, why)| *why));
        }
        let got = o.targets[0].1 == Target::PausedForBandwidth;
        assert_eq!(got, paused, "{name}: {:?}", o.targets);
        let want: &[LinkFailure] = if paused {
            &[LinkFailure::FarShort]
        } else {
            &[]
        };
        assert_eq!(reasons, want, "{name}");
    }
}

#[test]
fn the_loss_of_a_collapse_under_a_high_layer_does_not_pause_the_lowest() {
    // The estimate falls from 3 Mbit/s to short of audio + the lowest layer under the top
    // layer; the link reports the collapse's loss for a while, then what the lowest layer
    // sees: (name, ms of collapse loss after the fall, loss then, paused 6 s after the fall).
    let cases: &[(&str, u64, f32, bool)] = &[
        (
            "a second of collapse loss, then a link that carries",
            1_200,
            0.01,
            false,
        ),
        ("collapse loss, then rural 3 % loss", 1_200, 0.03, false),
        ("a starved link: the loss stays", 6_000, 0.30, true),
        ("the lowest layer loses too", 1_200, 0.20, true),
    ];
    let ms = Duration::from_millis;
    for &(name, burst, then, paused) in cases {
        let t0 = Instant::now();
        let mut a = Allocator::new();
        let mut o = a.update(t0, &input(3_000_000, vec![camera(1)]));
        assert_eq!(spatial(&o, 1), Some(2));
        let mut paused_at = None;
        for k in 1..=60u64 {
            let loss = if 100 * k <= burst { 0.40 } else { then };
            let i = Input {
                loss,
                ..input(150_000, vec![camera(1)])
            };
            o = a.update(t0 + ms(100 * k), &i);
            if o.targets[0].1 == Target::PausedForBandwidth {
                paused_at.get_or_insert(100 * k);
            }
        }
        assert_eq!(paused_at.is_some(), paused, "{name}: {paused_at:?}");
        if let Some(at) = paused_at {
            // The clock runs from the fall; the loss counts from a settle after the step.
            let latest = (DOWN_DELAY + LOSS_SETTLE + PAUSE_DELAY).as_millis() as u64;
            assert!(at <= latest, "{name}: paused {at} ms after the fall");
        }
    }
}
