//! Tests of the profile format: the documented example, rejection of typos and bad values,
//! the schedule as timelines, and the profiles shipped in `load-tests/profiles/`.

use std::path::Path;

use super::*;

const EXAMPLE: &str = r#"
name = "rural-3g"
[downlink]
rate_kbps = 300
queue_ms = 400
delay_ms = 150
jitter_ms = 10
loss_pct = 3.0
[downlink.burst]
p_good_to_bad = 0.01
p_bad_to_good = 0.3
loss_in_bad_pct = 50.0
[uplink]
rate_kbps = 300
delay_ms = 150
loss_pct = 3
[[schedule]]
at_s = 10
rate_kbps = 250
[[schedule]]
at_s = 30
rate_kbps = 2000
direction = "downlink"
"#;

fn parse(s: &str) -> Result<Profile, ProfileError> {
    Profile::from_toml_str(s, "test.toml")
}

fn err(s: &str) -> String {
    parse(s).expect_err("should be rejected").to_string()
}

#[test]
fn parses_the_documented_example() {
    let p = parse(EXAMPLE).unwrap();
    assert_eq!(p.name, "rural-3g");
    assert_eq!(p.downlink.rate_kbps, 300.0);
    assert_eq!(p.downlink.queue, Duration::from_millis(400));
    assert_eq!(p.downlink.delay, Duration::from_millis(150));
    assert_eq!(p.downlink.jitter, Duration::from_millis(10));
    assert_eq!(p.downlink.loss_pct, 3.0);
    let b = p.downlink.burst.unwrap();
    assert_eq!(
        (b.p_good_to_bad, b.p_bad_to_good, b.loss_in_bad_pct),
        (0.01, 0.3, 50.0)
    );
    assert_eq!(
        p.uplink.loss_pct, 3.0,
        "integers are accepted where floats are expected"
    );
    assert_eq!(
        p.uplink.queue,
        Duration::from_millis(DEFAULT_QUEUE_MS as u64)
    );
    assert_eq!(p.uplink.burst, None);
    assert_eq!(p.schedule.len(), 2);
    assert_eq!(p.schedule[0].target, Target::Both);
    assert_eq!(p.schedule[1].target, Target::Downlink);
}

#[test]
fn missing_sections_mean_no_shaping_and_name_defaults_to_file_stem() {
    let p = Profile::from_toml_str("", "/x/good.toml").unwrap();
    assert_eq!(p.name, "good");
    assert_eq!(p.downlink, LinkParams::default());
    assert_eq!(p.uplink, LinkParams::default());
}

#[test]
fn rejects_unknown_keys_everywhere() {
    for (doc, key) in [
        ("nmae = \"x\"", "nmae"),
        ("[downlnk]\nrate_kbps = 1", "downlnk"),
        ("[downlink]\nrate_kbit = 1", "rate_kbit"),
        (
            "[uplink.burst]\np_good_to_bad = 0.1\np_bad_to_good = 0.1\nloss = 3",
            "loss",
        ),
        ("[[schedule]]\nat_s = 1\nrate = 5", "rate"),
    ] {
        let e = err(doc);
        assert!(
            e.contains("unknown field") && e.contains(key),
            "{doc:?} -> {e}"
        );
        assert!(e.contains("test.toml"), "{e}");
    }
}

#[test]
fn rejects_negative_and_out_of_range_values() {
    let e = err("[downlink]\nrate_kbps = -300");
    assert!(
        e.contains("downlink.rate_kbps must be >= 0, got -300"),
        "{e}"
    );
    let e = err("[uplink]\ndelay_ms = -1");
    assert!(e.contains("uplink.delay_ms must be >= 0"), "{e}");
    let e = err("[uplink]\nloss_pct = 101");
    assert!(e.contains("uplink.loss_pct must be <= 100, got 101"), "{e}");
    let e = err("[downlink.burst]\np_good_to_bad = 1.5\np_bad_to_good = 0.1");
    assert!(
        e.contains("downlink.burst.p_good_to_bad must be <= 1, got 1.5"),
        "{e}"
    );
    let e = err("[[schedule]]\nat_s = -2\nrate_kbps = 5");
    assert!(e.contains("schedule[0].at_s must be >= 0"), "{e}");
    let e = err("[[schedule]]\nat_s = 2\nrate_kbps = -5");
    assert!(e.contains("schedule[0].rate_kbps must be >= 0"), "{e}");
    let e = err("[downlink]\nrate_kbps = nan");
    assert!(
        e.contains("downlink.rate_kbps must be >= 0, got NaN"),
        "{e}"
    );
    let e = err("[downlink]\ndelay_ms = inf");
    assert!(e.contains("downlink.delay_ms must be <= 3600000"), "{e}");
}

#[test]
fn rejects_bad_direction_and_type_errors() {
    let e = err("[[schedule]]\nat_s = 1\nrate_kbps = 5\ndirection = \"sideways\"");
    assert!(e.contains("unknown variant `sideways`"), "{e}");
    assert!(
        e.contains("downlink") && e.contains("uplink") && e.contains("both"),
        "{e}"
    );
    let e = err("[downlink]\nrate_kbps = \"fast\"");
    assert!(e.contains("rate_kbps") || e.contains("invalid type"), "{e}");
    let e = err("[downlink\nrate_kbps = 1");
    assert!(e.contains("test.toml"), "{e}");
}

#[test]
fn rejects_empty_schedule_entries_and_missing_at() {
    let e = err("[[schedule]]\nat_s = 3");
    assert!(e.contains("schedule[0] (at_s = 3) changes nothing"), "{e}");
    let e = err("[[schedule]]\nrate_kbps = 3");
    assert!(e.contains("missing field `at_s`"), "{e}");
    let e = err(
        "[[schedule]]\nat_s = 1\nburst_off = true\n[schedule.burst]\np_good_to_bad = 0.1\np_bad_to_good = 0.5",
    );
    assert!(e.contains("both `burst` and `burst_off = true`"), "{e}");
}

#[test]
fn timeline_applies_changes_per_direction() {
    let p = parse(EXAMPLE).unwrap();
    let down = p.timeline(Dir::Downlink);
    let up = p.timeline(Dir::Uplink);
    let s = Duration::from_secs;
    assert_eq!(down.params_at(s(0)).rate_kbps, 300.0);
    assert_eq!(
        down.params_at(Duration::from_millis(9_999)).rate_kbps,
        300.0
    );
    assert_eq!(down.params_at(s(10)).rate_kbps, 250.0);
    assert_eq!(down.params_at(s(30)).rate_kbps, 2000.0);
    assert_eq!(
        down.params_at(s(30)).delay,
        Duration::from_millis(150),
        "other fields kept"
    );
    assert_eq!(up.params_at(s(10)).rate_kbps, 250.0);
    assert_eq!(
        up.params_at(s(100)).rate_kbps,
        250.0,
        "downlink-only change"
    );
    assert_eq!(up.steps().len(), 2);
}

#[test]
fn timeline_orders_by_time_and_merges_equal_times() {
    let p = parse(
        "[[schedule]]\nat_s = 20\nrate_kbps = 2\n[[schedule]]\nat_s = 5\nrate_kbps = 1\n\
         [[schedule]]\nat_s = 5\ndelay_ms = 7\n[[schedule]]\nat_s = 0\nloss_pct = 1",
    )
    .unwrap();
    let tl = p.timeline(Dir::Uplink);
    let times: Vec<_> = tl.steps().iter().map(|s| s.0.as_secs()).collect();
    assert_eq!(times, vec![0, 5, 20]);
    assert_eq!(tl.params_at(Duration::ZERO).loss_pct, 1.0);
    let at5 = tl.params_at(Duration::from_secs(5));
    assert_eq!((at5.rate_kbps, at5.delay), (1.0, Duration::from_millis(7)));
}

#[test]
fn burst_can_be_switched_on_and_off_by_schedule() {
    let p = parse(
        "[[schedule]]\nat_s = 1\n[schedule.burst]\np_good_to_bad = 0.1\np_bad_to_good = 0.5\n\
         [[schedule]]\nat_s = 2\nburst_off = true",
    )
    .unwrap();
    let tl = p.timeline(Dir::Downlink);
    assert!(tl.params_at(Duration::ZERO).burst.is_none());
    let b = tl.params_at(Duration::from_secs(1)).burst.unwrap();
    assert_eq!(b.loss_in_bad_pct, 100.0, "default loss in bad state");
    assert!(tl.params_at(Duration::from_secs(2)).burst.is_none());
}

#[test]
fn cursor_reports_each_step_once() {
    let p = parse(EXAMPLE).unwrap();
    let tl = p.timeline(Dir::Downlink);
    let mut c = tl.cursor();
    assert_eq!(c.initial().rate_kbps, 300.0);
    assert_eq!(c.next_at(), Some(Duration::from_secs(10)));
    assert!(c.advance(Duration::from_secs(9)).is_none());
    assert_eq!(c.advance(Duration::from_secs(10)).unwrap().rate_kbps, 250.0);
    assert!(c.advance(Duration::from_secs(11)).is_none());
    // Jumping over several steps yields the latest.
    let mut c2 = tl.cursor();
    assert_eq!(
        c2.advance(Duration::from_secs(60)).unwrap().rate_kbps,
        2000.0
    );
    assert_eq!(c2.next_at(), None);
}

#[test]
fn shipped_profiles_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../profiles");
    let mut n = 0;
    for name in ["rural-3g", "step-down", "bursty-loss", "good"] {
        let p = Profile::load(&dir.join(format!("{name}.toml"))).unwrap();
        assert_eq!(p.name, name);
        n += 1;
    }
    assert_eq!(n, 4);
    let bursty = Profile::load(&dir.join("bursty-loss.toml")).unwrap();
    let b = bursty.downlink.burst.unwrap();
    let mean = b.mean_loss() + bursty.downlink.loss_pct / 100.0;
    assert!((0.04..0.06).contains(&mean), "bursty-loss averages {mean}");
    let step = Profile::load(&dir.join("step-down.toml")).unwrap();
    let tl = step.timeline(Dir::Downlink);
    assert_eq!(tl.params_at(Duration::from_secs(5)).rate_kbps, 2000.0);
    assert_eq!(tl.params_at(Duration::from_secs(25)).rate_kbps, 250.0);
    assert_eq!(tl.params_at(Duration::from_secs(45)).rate_kbps, 2000.0);
    assert_eq!(
        step.timeline(Dir::Uplink)
            .params_at(Duration::from_secs(15))
            .rate_kbps,
        2000.0
    );
}
