//! Profile files (TOML): the parameters of each direction and a schedule of changes over time.
//!
//! ```toml
//! name = "rural-3g"
//! [downlink]               # a -> b: server to weak client
//! rate_kbps = 300          # 0 or absent = unlimited
//! queue_ms = 400           # drop packets that would wait longer than this for the rate limiter
//! delay_ms = 150           # one way
//! jitter_ms = 10           # uniform +-, never reorders
//! loss_pct = 3.0           # independent random loss
//! [downlink.burst]         # optional Gilbert-Elliott loss
//! p_good_to_bad = 0.01     # per packet
//! p_bad_to_good = 0.3
//! loss_in_bad_pct = 50.0
//! [uplink]                 # b -> a
//! rate_kbps = 300
//! [[schedule]]             # both directions unless `direction` is given
//! at_s = 10
//! rate_kbps = 250
//! [[schedule]]
//! at_s = 20
//! outage = true            # every packet lost (the other settings are kept for later)
//! [[schedule]]
//! at_s = 24
//! outage = false
//! [nat]                    # optional: NAT the weak side (see `nat.rs`)
//! external = ["203.0.113.1", "203.0.113.5"]
//! [[schedule]]
//! at_s = 30
//! nat_rebind = true        # new external address/port for every flow
//! [[schedule]]
//! at_s = 50
//! addr_b = "203.0.113.10"  # the weak side's own address changes (its old one is removed)
//! ```
//!
//! Unknown keys are errors, so a typo never silently turns into "no shaping".

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

/// Queue bound used when a direction has a rate limit but no `queue_ms`.
pub const DEFAULT_QUEUE_MS: f64 = 500.0;

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    // The cause is part of the message (not a `#[source]`), so `{:#}` chains print it once.
    #[error("cannot read profile {path}: {err}")]
    Io { path: String, err: std::io::Error },
    #[error("profile {path}: {err}")]
    Parse { path: String, err: toml::de::Error },
    #[error("profile {path}: {msg}")]
    Invalid { path: String, msg: String },
}

/// Direction of travel. `Downlink` is a -> b (server side to weak client side).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Downlink,
    Uplink,
}

impl Dir {
    pub fn name(self) -> &'static str {
        match self {
            Dir::Downlink => "downlink",
            Dir::Uplink => "uplink",
        }
    }
}

/// Gilbert-Elliott two-state loss model. State changes are evaluated once per packet.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Burst {
    /// Probability, per packet, to go from the good to the bad state.
    pub p_good_to_bad: f64,
    /// Probability, per packet, to go from the bad to the good state.
    pub p_bad_to_good: f64,
    /// Loss probability in the bad state, percent (added on top of `loss_pct`).
    pub loss_in_bad_pct: f64,
}

impl Burst {
    /// Long-run fraction of packets lost by the bursty part alone.
    pub fn mean_loss(&self) -> f64 {
        let s = self.p_good_to_bad + self.p_bad_to_good;
        if s == 0.0 {
            return 0.0;
        }
        self.p_good_to_bad / s * self.loss_in_bad_pct / 100.0
    }
}

/// Parameters of one direction at one moment.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkParams {
    /// Bottleneck rate in kbit/s (1000 bit/s); 0 = unlimited.
    pub rate_kbps: f64,
    /// Longest a packet may wait for the rate limiter before it is tail-dropped.
    pub queue: Duration,
    /// Fixed one-way delay added after the rate limiter.
    pub delay: Duration,
    /// Uniform jitter +- this, applied to the delay (never reorders).
    pub jitter: Duration,
    /// Independent random loss, percent.
    pub loss_pct: f64,
    pub burst: Option<Burst>,
    /// Link down: every packet is lost (counted as loss) before the rate limiter, whatever the
    /// other settings say; they apply again when the outage ends.
    pub outage: bool,
}

impl Default for LinkParams {
    /// No shaping at all.
    fn default() -> Self {
        Self {
            rate_kbps: 0.0,
            queue: ms(DEFAULT_QUEUE_MS),
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            loss_pct: 0.0,
            burst: None,
            outage: false,
        }
    }
}

impl std::fmt::Display for LinkParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rate_kbps > 0.0 {
            write!(
                f,
                "rate={}kbit/s queue={}ms",
                self.rate_kbps,
                self.queue.as_millis()
            )?;
        } else {
            write!(f, "rate=unlimited")?;
        }
        write!(
            f,
            " delay={}ms jitter={}ms loss={}%",
            self.delay.as_secs_f64() * 1e3,
            self.jitter.as_secs_f64() * 1e3,
            self.loss_pct
        )?;
        if let Some(b) = &self.burst {
            write!(
                f,
                " burst(g->b={} b->g={} loss_in_bad={}%)",
                b.p_good_to_bad, b.p_bad_to_good, b.loss_in_bad_pct
            )?;
        }
        if self.outage {
            write!(f, " OUTAGE (all packets lost)")?;
        }
        Ok(())
    }
}

/// Which directions a schedule entry changes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Downlink,
    Uplink,
    Both,
}

impl Target {
    pub fn applies_to(self, dir: Dir) -> bool {
        matches!(
            (self, dir),
            (Target::Both, _) | (Target::Downlink, Dir::Downlink) | (Target::Uplink, Dir::Uplink)
        )
    }
}

/// Fields a schedule entry may change; `None` keeps the current value.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParamsPatch {
    pub rate_kbps: Option<f64>,
    pub queue: Option<Duration>,
    pub delay: Option<Duration>,
    pub jitter: Option<Duration>,
    pub loss_pct: Option<f64>,
    /// `Some(None)` switches bursty loss off.
    pub burst: Option<Option<Burst>>,
    pub outage: Option<bool>,
}

impl ParamsPatch {
    pub fn apply(&self, p: &mut LinkParams) {
        if let Some(v) = self.rate_kbps {
            p.rate_kbps = v;
        }
        if let Some(v) = self.queue {
            p.queue = v;
        }
        if let Some(v) = self.delay {
            p.delay = v;
        }
        if let Some(v) = self.jitter {
            p.jitter = v;
        }
        if let Some(v) = self.loss_pct {
            p.loss_pct = v;
        }
        if let Some(v) = self.burst {
            p.burst = v;
        }
        if let Some(v) = self.outage {
            p.outage = v;
        }
    }
}

/// One `[[schedule]]` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// Time since linkem became ready.
    pub at: Duration,
    pub target: Target,
    pub patch: ParamsPatch,
    /// Change every NAT binding at this moment (needs a `[nat]` section; both directions).
    pub nat_rebind: bool,
    /// Move the weak side (ns-b) to this address: it is added, the old one removed, and both
    /// namespaces get routes so they still reach each other.
    pub addr_b: Option<Ipv4Addr>,
}

/// Defaults of the `[nat]` section's port range.
pub const NAT_PORT_MIN: u16 = 20_000;
pub const NAT_PORT_MAX: u16 = 60_999;

#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub name: String,
    pub downlink: LinkParams,
    pub uplink: LinkParams,
    /// Sorted by `at` (stable: entries with equal times keep file order).
    pub schedule: Vec<Change>,
    /// NAT of the weak side, if the profile has a `[nat]` section.
    pub nat: Option<crate::nat::NatConfig>,
}

// ---- raw serde shapes -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    name: Option<String>,
    downlink: Option<RawDir>,
    uplink: Option<RawDir>,
    #[serde(default)]
    schedule: Vec<RawChange>,
    nat: Option<RawNat>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNat {
    external: Vec<String>,
    port_min: Option<u16>,
    port_max: Option<u16>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDir {
    rate_kbps: Option<f64>,
    queue_ms: Option<f64>,
    delay_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss_pct: Option<f64>,
    burst: Option<RawBurst>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBurst {
    p_good_to_bad: f64,
    p_bad_to_good: f64,
    loss_in_bad_pct: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChange {
    at_s: f64,
    direction: Option<Target>,
    rate_kbps: Option<f64>,
    queue_ms: Option<f64>,
    delay_ms: Option<f64>,
    jitter_ms: Option<f64>,
    loss_pct: Option<f64>,
    burst: Option<RawBurst>,
    /// `burst_off = true` switches Gilbert-Elliott loss off.
    burst_off: Option<bool>,
    outage: Option<bool>,
    nat_rebind: Option<bool>,
    addr_b: Option<String>,
}

// ---- validation -------------------------------------------------------------------------------

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1e3)
}

struct Checker<'a> {
    path: &'a str,
}

impl Checker<'_> {
    fn err(&self, msg: String) -> ProfileError {
        ProfileError::Invalid {
            path: self.path.to_string(),
            msg,
        }
    }

    /// A finite number in `[lo, hi]`.
    fn range(&self, what: &str, v: f64, lo: f64, hi: f64) -> Result<f64, ProfileError> {
        if v.is_nan() || v < lo {
            return Err(self.err(format!("{what} must be >= {lo}, got {v}")));
        }
        if v > hi {
            return Err(self.err(format!("{what} must be <= {hi}, got {v}")));
        }
        Ok(v)
    }

    fn opt_range(
        &self,
        what: &str,
        v: Option<f64>,
        lo: f64,
        hi: f64,
    ) -> Result<Option<f64>, ProfileError> {
        v.map(|v| self.range(what, v, lo, hi)).transpose()
    }

    /// Milliseconds, at most an hour.
    fn opt_ms(&self, what: &str, v: Option<f64>) -> Result<Option<Duration>, ProfileError> {
        Ok(self.opt_range(what, v, 0.0, 3_600_000.0)?.map(ms))
    }

    fn rate(&self, what: &str, v: Option<f64>) -> Result<Option<f64>, ProfileError> {
        self.opt_range(what, v, 0.0, 100_000_000.0)
    }

    fn burst(&self, at: &str, b: &RawBurst) -> Result<Burst, ProfileError> {
        Ok(Burst {
            p_good_to_bad: self.range(&format!("{at}.p_good_to_bad"), b.p_good_to_bad, 0.0, 1.0)?,
            p_bad_to_good: self.range(&format!("{at}.p_bad_to_good"), b.p_bad_to_good, 0.0, 1.0)?,
            loss_in_bad_pct: self.range(
                &format!("{at}.loss_in_bad_pct"),
                b.loss_in_bad_pct.unwrap_or(100.0),
                0.0,
                100.0,
            )?,
        })
    }

    fn dir(&self, at: &str, raw: Option<&RawDir>) -> Result<LinkParams, ProfileError> {
        let mut p = LinkParams::default();
        let Some(raw) = raw else { return Ok(p) };
        let patch = ParamsPatch {
            rate_kbps: self.rate(&format!("{at}.rate_kbps"), raw.rate_kbps)?,
            queue: self.opt_ms(&format!("{at}.queue_ms"), raw.queue_ms)?,
            delay: self.opt_ms(&format!("{at}.delay_ms"), raw.delay_ms)?,
            jitter: self.opt_ms(&format!("{at}.jitter_ms"), raw.jitter_ms)?,
            loss_pct: self.opt_range(&format!("{at}.loss_pct"), raw.loss_pct, 0.0, 100.0)?,
            burst: raw
                .burst
                .as_ref()
                .map(|b| self.burst(&format!("{at}.burst"), b).map(Some))
                .transpose()?,
            outage: None,
        };
        patch.apply(&mut p);
        Ok(p)
    }

    fn change(&self, i: usize, raw: &RawChange, has_nat: bool) -> Result<Change, ProfileError> {
        let at = format!("schedule[{i}]");
        let at_s = self.range(&format!("{at}.at_s"), raw.at_s, 0.0, 1e7)?;
        if raw.burst.is_some() && raw.burst_off == Some(true) {
            return Err(self.err(format!("{at}: both `burst` and `burst_off = true` given")));
        }
        let burst = match (&raw.burst, raw.burst_off) {
            (Some(b), _) => Some(Some(self.burst(&format!("{at}.burst"), b)?)),
            (None, Some(true)) => Some(None),
            _ => None,
        };
        let patch = ParamsPatch {
            rate_kbps: self.rate(&format!("{at}.rate_kbps"), raw.rate_kbps)?,
            queue: self.opt_ms(&format!("{at}.queue_ms"), raw.queue_ms)?,
            delay: self.opt_ms(&format!("{at}.delay_ms"), raw.delay_ms)?,
            jitter: self.opt_ms(&format!("{at}.jitter_ms"), raw.jitter_ms)?,
            loss_pct: self.opt_range(&format!("{at}.loss_pct"), raw.loss_pct, 0.0, 100.0)?,
            burst,
            outage: raw.outage,
        };
        let nat_rebind = match raw.nat_rebind {
            Some(false) => {
                return Err(self.err(format!(
                    "{at}: `nat_rebind = false` does nothing; leave it out"
                )))
            }
            Some(true) if !has_nat => {
                return Err(self.err(format!("{at}: `nat_rebind` needs a [nat] section")))
            }
            Some(true) => true,
            None => false,
        };
        let addr_b = match &raw.addr_b {
            Some(a) => {
                let ip: Ipv4Addr = a
                    .parse()
                    .map_err(|_| self.err(format!("{at}.addr_b {a:?} is not an IPv4 address")))?;
                crate::cli::check_addr(&format!("{at}.addr_b"), ip).map_err(|e| self.err(e.0))?;
                Some(ip)
            }
            None => None,
        };
        if patch == ParamsPatch::default() && !nat_rebind && addr_b.is_none() {
            return Err(self.err(format!("{at} (at_s = {at_s}) changes nothing")));
        }
        Ok(Change {
            at: Duration::from_secs_f64(at_s),
            target: raw.direction.unwrap_or(Target::Both),
            patch,
            nat_rebind,
            addr_b,
        })
    }

    fn nat(&self, raw: &RawNat) -> Result<crate::nat::NatConfig, ProfileError> {
        if raw.external.is_empty() {
            return Err(self.err("nat.external needs at least one address".into()));
        }
        let mut addrs = Vec::new();
        for (i, a) in raw.external.iter().enumerate() {
            let ip: Ipv4Addr = a
                .parse()
                .map_err(|_| self.err(format!("nat.external[{i}] {a:?} is not an IPv4 address")))?;
            crate::cli::check_addr(&format!("nat.external[{i}]"), ip).map_err(|e| self.err(e.0))?;
            if addrs.contains(&ip) {
                return Err(self.err(format!("nat.external[{i}] {ip} is listed twice")));
            }
            addrs.push(ip);
        }
        let port_min = raw.port_min.unwrap_or(NAT_PORT_MIN);
        let port_max = raw.port_max.unwrap_or(NAT_PORT_MAX);
        if port_min == 0 || port_min > port_max {
            return Err(self.err(format!(
                "nat ports: need 1 <= port_min <= port_max, got {port_min}..{port_max}"
            )));
        }
        Ok(crate::nat::NatConfig {
            addrs,
            port_min,
            port_max,
        })
    }
}

impl Profile {
    /// Parses a profile; `path` only labels error messages.
    pub fn from_toml_str(text: &str, path: &str) -> Result<Profile, ProfileError> {
        let raw: RawProfile = toml::from_str(text).map_err(|err| ProfileError::Parse {
            path: path.to_string(),
            err,
        })?;
        let c = Checker { path };
        let name = raw.name.unwrap_or_else(|| {
            Path::new(path)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        let downlink = c.dir("downlink", raw.downlink.as_ref())?;
        let uplink = c.dir("uplink", raw.uplink.as_ref())?;
        let nat = raw.nat.as_ref().map(|n| c.nat(n)).transpose()?;
        let mut schedule = raw
            .schedule
            .iter()
            .enumerate()
            .map(|(i, r)| c.change(i, r, nat.is_some()))
            .collect::<Result<Vec<_>, _>>()?;
        schedule.sort_by_key(|ch| ch.at); // stable
        Ok(Profile {
            name,
            downlink,
            uplink,
            schedule,
            nat,
        })
    }

    pub fn load(path: &Path) -> Result<Profile, ProfileError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ProfileError::Io {
            path: p.clone(),
            err,
        })?;
        Self::from_toml_str(&text, &p)
    }

    pub fn base(&self, dir: Dir) -> &LinkParams {
        match dir {
            Dir::Downlink => &self.downlink,
            Dir::Uplink => &self.uplink,
        }
    }

    /// When the NAT's bindings change, in order: the NAT generation at `elapsed` is the number
    /// of entries `<= elapsed`.
    pub fn nat_rebinds(&self) -> Vec<Duration> {
        self.schedule
            .iter()
            .filter(|c| c.nat_rebind)
            .map(|c| c.at)
            .collect()
    }

    /// When the weak side's address changes, and to what, in order.
    pub fn addr_b_changes(&self) -> Vec<(Duration, Ipv4Addr)> {
        self.schedule
            .iter()
            .filter_map(|c| c.addr_b.map(|a| (c.at, a)))
            .collect()
    }

    /// The full parameter set of one direction over time.
    pub fn timeline(&self, dir: Dir) -> Timeline {
        let mut cur = self.base(dir).clone();
        let mut steps = vec![(Duration::ZERO, cur.clone())];
        for ch in self
            .schedule
            .iter()
            .filter(|c| c.target.applies_to(dir) && c.patch != ParamsPatch::default())
        {
            ch.patch.apply(&mut cur);
            match steps.last_mut() {
                // Several changes at the same instant (or at 0) collapse into one step.
                Some(last) if last.0 == ch.at => last.1 = cur.clone(),
                _ => steps.push((ch.at, cur.clone())),
            }
        }
        Timeline { steps }
    }
}

/// Piecewise-constant parameters of one direction: `steps[i].1` holds from `steps[i].0` on.
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    steps: Vec<(Duration, LinkParams)>,
}

impl Timeline {
    pub fn steps(&self) -> &[(Duration, LinkParams)] {
        &self.steps
    }

    /// Parameters in force at `elapsed`.
    pub fn params_at(&self, elapsed: Duration) -> &LinkParams {
        let i = self.steps.partition_point(|s| s.0 <= elapsed);
        &self.steps[i.saturating_sub(1)].1
    }

    pub fn cursor(&self) -> TimelineCursor<'_> {
        TimelineCursor { tl: self, idx: 0 }
    }
}

/// Walks a [`Timeline`] forward as time passes.
pub struct TimelineCursor<'a> {
    tl: &'a Timeline,
    idx: usize,
}

impl<'a> TimelineCursor<'a> {
    /// Parameters at the start (elapsed = 0).
    pub fn initial(&self) -> &'a LinkParams {
        &self.tl.steps[0].1
    }

    /// If a step began in `(last call, elapsed]`, returns the parameters now in force.
    pub fn advance(&mut self, elapsed: Duration) -> Option<&'a LinkParams> {
        let mut changed = None;
        while let Some(next) = self.tl.steps.get(self.idx + 1) {
            if next.0 > elapsed {
                break;
            }
            self.idx += 1;
            changed = Some(&next.1);
        }
        changed
    }

    /// When the next step begins, if any.
    pub fn next_at(&self) -> Option<Duration> {
        self.tl.steps.get(self.idx + 1).map(|s| s.0)
    }
}

#[cfg(test)]
mod tests {
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
}
