//! The allocator on simulated bandwidth traces: an estimate (and loss and queue) per
//! 100 ms tick, and the layer chosen at each.

use super::*;

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

/// Runs a trace of (estimate, loss, queue delay in ms, ticks of 100 ms) and returns the
/// spatial layer chosen at each tick for track 1.
fn run_link_trace(trace: &[(u64, f32, u64, usize)]) -> Vec<Option<u8>> {
    let t0 = Instant::now();
    let mut a = Allocator::new();
    let mut out = Vec::new();
    let mut tick = 0u64;
    for &(estimate, loss, queue_ms, ticks) in trace {
        for _ in 0..ticks {
            let now = t0 + Duration::from_millis(100 * tick);
            let i = Input {
                loss,
                queue_delay: Duration::from_millis(queue_ms),
                ..input(estimate, vec![camera(1)])
            };
            out.push(spatial(&a.update(now, &i), 1));
            tick += 1;
        }
    }
    out
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
fn loss_bursts_are_ridden_out_and_sustained_loss_steps_down() {
    // 40 % loss shrinks a 2 Mbit/s budget below 720p. Bursts of 200 ms every 3 s (a cell
    // handover, a microwave oven) are left to NACK and FEC; 3 s of it is the link.
    let mut trace = vec![(2_000_000, 0.0, 0, 30)];
    for _ in 0..5 {
        trace.push((2_000_000, 0.4, 0, 2));
        trace.push((2_000_000, 0.0, 0, 28));
    }
    let bursts_end = trace.iter().map(|t| t.3).sum::<usize>();
    trace.push((2_000_000, 0.4, 0, 30));
    trace.push((2_000_000, 0.0, 0, 100));
    let layers = run_link_trace(&trace);

    assert!(
        layers[..bursts_end].iter().all(|l| *l == Some(2)),
        "{layers:?}"
    );
    let down = first_tick_at(&layers, bursts_end, Some(1)).expect("steps down");
    assert!(down - bursts_end <= 10, "within a second: {layers:?}");
    assert!(layers[down..bursts_end + 30].iter().all(|l| *l == Some(1)));
    // Back on 720p once the loss has gone and the hold after a step down ran out.
    let loss_end = bursts_end + 30;
    let up = first_tick_at(&layers, loss_end, Some(2)).expect("back up");
    let hold = (UP_HOLD_AFTER_DOWN.max(UP_STABLE).as_millis() / 100) as usize;
    assert!(
        up - down >= hold && up - loss_end <= hold + 10,
        "{layers:?}"
    );
    assert_eq!(changes(&layers), 2, "{layers:?}");
}

#[test]
fn a_standing_queue_holds_step_ups_but_not_steps_down() {
    // (estimate, queue delay ms, ticks) -> the layer at the end of the segment.
    let layers = run_link_trace(&[
        // 360p fits; then the estimate says 720p, but the RTT stays 300 ms above its
        // floor: the link is already full, whatever GCC says.
        (600_000, 0.0, 0, 10),
        (2_000_000, 0.0, 300, 100),
        // The queue drains: up after the stable window.
        (2_000_000, 0.0, 40, 40),
        // A queue does not hold a step down.
        (300_000, 0.0, 400, 20),
    ]);
    assert_eq!(layers[9], Some(1));
    assert!(layers[10..110].iter().all(|l| *l == Some(1)), "{layers:?}");
    let up = first_tick_at(&layers, 110, Some(2)).expect("up once the queue drained");
    assert!(
        up - 110 <= (UP_STABLE.as_millis() / 100) as usize + 1,
        "{layers:?}"
    );
    let down = first_tick_at(&layers, 150, Some(0)).expect("down with a queue");
    assert!(down - 150 <= 10, "{layers:?}");
    // At the margin the queue threshold is inclusive: up to UP_QUEUE_MAX is not a queue.
    let edge = run_link_trace(&[
        (600_000, 0.0, 0, 10),
        (2_000_000, 0.0, UP_QUEUE_MAX.as_millis() as u64, 40),
    ]);
    assert_eq!(edge.last(), Some(&Some(2)), "{edge:?}");
}

/// Rural 3G as GCC reads it: the estimate swings between a dip and a peak every second or
/// two (`temporal`). Returns the temporal layer chosen at each 100 ms tick, on a 180p-only
/// ladder with three temporal layers, for (dip, peak, loss, queue ms, seconds).
fn run_swinging(dip: u64, peak: u64, loss: f32, queue_ms: u64, seconds: u64) -> Vec<Option<u8>> {
    let t0 = Instant::now();
    let mut a = Allocator::new();
    let v = VideoInput {
        ladder: Ladder::from_spatial_rates([Some(Q), None, None], 3),
        ..camera(1)
    };
    (0..seconds * 10)
        .map(|tick| {
            // 1.5 s at the peak, then 0.7 s in a dip.
            let estimate = if tick % 22 < 15 { peak } else { dip };
            let i = Input {
                loss,
                queue_delay: Duration::from_millis(queue_ms),
                ..input(estimate, vec![v.clone()])
            };
            match a.update(t0 + Duration::from_millis(100 * tick), &i).targets[0].1 {
                Target::Layer(l) => Some(l.temporal),
                _ => None,
            }
        })
        .collect()
}

#[test]
fn gcc_dips_on_a_lossy_link_do_not_take_the_frame_rate() {
    // Peak: room for audio and 180p at its full rate with the step-up margin; dip: room for
    // the base layer only.
    let peak = ((Q as f64 * 1.15 + AUDIO as f64) / HEADROOM) as u64;
    let dip = ((Q as f64 * 0.3 + AUDIO as f64) / HEADROOM) as u64;
    // (loss, queue ms) -> share of the last 20 s at the full frame rate, at least / at most
    let cases: &[(f32, u64, f64, f64)] = &[
        // Random loss within the tolerated, no queue: the frame rate stays.
        (0.0, 0, 0.95, 1.0),
        (0.03, 20, 0.95, 1.0),
        // The link shows trouble: every dip takes the frame rate, and the hold after each
        // keeps it down.
        (LOSS_TOLERATED * 1.5, 0, 0.0, 0.2),
        (0.0, UP_QUEUE_MAX.as_millis() as u64 + 50, 0.0, 0.2),
    ];
    for &(loss, queue_ms, at_least, at_most) in cases {
        let layers = run_swinging(dip, peak, loss, queue_ms, 30);
        let last = &layers[100..];
        assert!(last.iter().all(Option::is_some), "never paused: {layers:?}");
        let full = last.iter().filter(|t| **t == Some(2)).count() as f64 / last.len() as f64;
        assert!(
            (at_least..=at_most).contains(&full),
            "loss {loss} queue {queue_ms} ms: {:.0} % at the full rate: {layers:?}",
            full * 100.0
        );
    }
}

#[test]
fn a_lasting_drop_takes_the_frame_rate_within_two_windows() {
    // The link really narrows: no dip-and-peak, just lower. The peak forgets the old rate
    // after one to two `PEAK_WINDOW`s, then the frame rate follows.
    let t0 = Instant::now();
    let mut a = Allocator::new();
    let v = VideoInput {
        ladder: Ladder::from_spatial_rates([Some(Q), None, None], 3),
        ..camera(1)
    };
    let high = ((Q as f64 * 1.15 + AUDIO as f64) / HEADROOM) as u64;
    let low = ((Q as f64 * 0.3 + AUDIO as f64) / HEADROOM) as u64;
    let mut dropped_at = None;
    for tick in 0..200u64 {
        let estimate = if tick < 50 { high } else { low };
        let o = a.update(
            t0 + Duration::from_millis(100 * tick),
            &input(estimate, vec![v.clone()]),
        );
        if tick == 49 {
            assert_eq!(o.targets[0].1, Target::Layer(Layer::new(0, 2)));
        }
        if tick >= 50 && dropped_at.is_none() && o.targets[0].1 == Target::Layer(Layer::new(0, 0)) {
            dropped_at = Some(tick - 50);
        }
    }
    let after = dropped_at.expect("the base layer after a lasting drop") * 100;
    assert!(
        after as u128 <= (PEAK_WINDOW * 2).as_millis() + 500,
        "base layer {after} ms after the drop"
    );
}
