use super::*;

const MS: fn(u64) -> Duration = Duration::from_millis;

fn thresholds(cap: Option<usize>, lag_ms: Option<u64>, cpu: Option<f64>) -> Thresholds {
    Thresholds {
        max_participants: cap,
        max_lag: lag_ms.map(MS),
        max_cpu: cpu,
    }
}

/// A scripted sample at `at_ms` after the start.
#[derive(Debug, Clone, Copy)]
enum Sample {
    Lag(u64, u64),
    Cpu(u64, f64),
}

/// Lag samples every 100 ms from `from_ms` to `to_ms` (exclusive), all `lag_ms` late.
fn lags(from_ms: u64, to_ms: u64, lag_ms: u64) -> Vec<Sample> {
    (from_ms..to_ms)
        .step_by(100)
        .map(|t| Sample::Lag(t, lag_ms))
        .collect()
}

fn cpus(from_ms: u64, to_ms: u64, cpu: f64) -> Vec<Sample> {
    (from_ms..to_ms)
        .step_by(1000)
        .map(|t| Sample::Cpu(t, cpu))
        .collect()
}

fn run(t: Thresholds, samples: &[Sample]) -> (Controller, Instant) {
    let start = Instant::now();
    let mut c = Controller::new(t);
    let mut sorted = samples.to_vec();
    sorted.sort_by_key(|s| match s {
        Sample::Lag(at, _) | Sample::Cpu(at, _) => *at,
    });
    for s in sorted {
        match s {
            Sample::Lag(at, lag) => c.observe_lag(start + MS(at), MS(lag)),
            Sample::Cpu(at, cpu) => c.observe_cpu(start + MS(at), cpu),
        }
    }
    (c, start)
}

fn busy(reason: Reason, retry_ms: u64) -> Decision {
    Decision::Busy {
        reason,
        retry_after: MS(retry_ms),
    }
}

#[test]
fn decisions() {
    let cap = thresholds(Some(10), None, None);
    let lag = thresholds(None, Some(50), None);
    let cpu = thresholds(None, None, Some(0.8));
    let all = thresholds(Some(10), Some(50), Some(0.8));
    let off = thresholds(None, None, None);
    // (case, thresholds, samples, decided at ms, participants, expected)
    type Case = (&'static str, Thresholds, Vec<Sample>, u64, usize, Decision);
    let cases: Vec<Case> = vec![
        (
            "nothing configured admits",
            off,
            lags(0, 3000, 900),
            3000,
            1000,
            Decision::Admit,
        ),
        ("under the cap", cap, vec![], 0, 9, Decision::Admit),
        (
            "at the cap",
            cap,
            vec![],
            0,
            10,
            busy(Reason::ParticipantCap, 15_000),
        ),
        (
            "over the cap",
            cap,
            vec![],
            0,
            11,
            busy(Reason::ParticipantCap, 15_000),
        ),
        (
            "quiet loop",
            lag,
            lags(0, 3000, 1),
            3000,
            100,
            Decision::Admit,
        ),
        (
            "too few lag samples to judge",
            lag,
            lags(0, 400, 500),
            400,
            1,
            Decision::Admit,
        ),
        (
            "sustained lag",
            lag,
            lags(0, 3000, 80),
            3000,
            1,
            busy(Reason::EventLoopLag, 5000),
        ),
        (
            "one late tick in the window is not saturation (median)",
            lag,
            [lags(0, 3000, 2), vec![Sample::Lag(2950, 900)]].concat(),
            3000,
            1,
            Decision::Admit,
        ),
        (
            "lag under the threshold but above half: still busy (hysteresis)",
            lag,
            [lags(0, 2000, 80), lags(2000, 12_000, 40)].concat(),
            12_000,
            1,
            busy(Reason::EventLoopLag, 5000),
        ),
        (
            "calm for part of the hold: busy, shorter hint",
            lag,
            [lags(0, 2000, 80), lags(2000, 6000, 1)].concat(),
            6000,
            1,
            // The median of the last 11 turns calm at 2.5 s (6 of 11 calm): 3.5 s of calm
            // at 6 s leaves 1.5 s, raised to the shortest hint.
            busy(Reason::EventLoopLag, 3000),
        ),
        (
            "calm for the whole hold: admits again",
            lag,
            [lags(0, 2000, 80), lags(2000, 9000, 1)].concat(),
            9000,
            1,
            Decision::Admit,
        ),
        (
            "CPU under",
            cpu,
            cpus(0, 5000, 0.5),
            5000,
            1,
            Decision::Admit,
        ),
        (
            "CPU over",
            cpu,
            cpus(0, 5000, 0.9),
            5000,
            1,
            busy(Reason::Cpu, 5000),
        ),
        (
            "CPU one spike averaged out",
            cpu,
            [cpus(0, 2000, 0.5), cpus(2000, 3000, 1.0)].concat(),
            3000,
            1,
            Decision::Admit,
        ),
        (
            "CPU between low mark and threshold: stays busy",
            cpu,
            [cpus(0, 4000, 0.95), cpus(4000, 20_000, 0.75)].concat(),
            20_000,
            1,
            busy(Reason::Cpu, 5000),
        ),
        (
            "CPU well under for the hold: admits",
            cpu,
            [cpus(0, 4000, 0.95), cpus(4000, 20_000, 0.3)].concat(),
            20_000,
            1,
            Decision::Admit,
        ),
        (
            "saturation wins over the cap (its own reason)",
            all,
            lags(0, 3000, 200),
            3000,
            100,
            busy(Reason::EventLoopLag, 5000),
        ),
        (
            "all quiet, at the cap",
            all,
            [lags(0, 3000, 1), cpus(0, 3000, 0.2)].concat(),
            3000,
            10,
            busy(Reason::ParticipantCap, 15_000),
        ),
        (
            "lag calm but CPU still high: busy",
            all,
            [
                lags(0, 2000, 80),
                lags(2000, 20_000, 1),
                cpus(0, 20_000, 0.85),
            ]
            .concat(),
            20_000,
            1,
            busy(Reason::Cpu, 5000),
        ),
    ];
    for (name, t, samples, at, participants, expected) in cases {
        let (c, start) = run(t, &samples);
        assert_eq!(c.decide(start + MS(at), participants), expected, "{name}");
    }
}

#[test]
fn does_not_flap_on_a_lag_hovering_around_the_threshold() {
    let (mut c, start) = run(thresholds(None, Some(50), None), &lags(0, 3000, 80));
    let mut changes = 0;
    let mut last = c.is_saturated();
    // 30 s of a median swinging between 45 and 55 ms every second.
    for t in (3000..33_000).step_by(100) {
        let lag = if (t / 1000) % 2 == 0 { 55 } else { 45 };
        c.observe_lag(start + MS(t), MS(lag));
        if c.is_saturated() != last {
            changes += 1;
            last = c.is_saturated();
        }
    }
    assert_eq!(changes, 0, "stays busy: 45 ms is not under half of 50");
}

#[test]
fn medians_and_means() {
    let (c, _) = run(
        thresholds(None, Some(50), Some(0.8)),
        &[
            lags(0, 500, 10),
            vec![Sample::Lag(500, 30)],
            cpus(0, 3000, 0.4),
        ]
        .concat(),
    );
    assert_eq!(c.lag(), Some(MS(10)));
    assert!((c.cpu().unwrap() - 0.4).abs() < 1e-9);
    assert!(!c.is_saturated());
}

#[test]
fn a_starved_loop_ticking_rarely_still_turns_busy() {
    // Five ticks a second apart, each 900 ms late: few samples, all of them bad.
    let samples: Vec<Sample> = (0..5).map(|i| Sample::Lag(i * 1000, 900)).collect();
    let (c, start) = run(thresholds(None, Some(50), None), &samples);
    assert!(c.is_saturated());
    assert_eq!(
        c.decide(start + MS(5000), 1),
        busy(Reason::EventLoopLag, 5000)
    );
}

#[test]
fn bad_cpu_readings_are_ignored() {
    let (mut c, start) = run(thresholds(None, None, Some(0.8)), &[]);
    // Negative and non-finite readings (a clock step, a parse glitch).
    c.observe_cpu(start, f64::NAN);
    c.observe_cpu(start, -1.0);
    assert_eq!(c.cpu(), None);
    assert!(!c.is_saturated());
}

#[test]
fn reason_labels() {
    assert_eq!(Reason::ParticipantCap.as_str(), "participant_cap");
    assert_eq!(Reason::EventLoopLag.as_str(), "event_loop_lag");
    assert_eq!(Reason::Cpu.as_str(), "cpu");
}
