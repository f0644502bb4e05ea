//! Reading a profile file. The serde shapes mirror the TOML one to one and reject unknown
//! keys; the checker then turns them into a [`Profile`] with range checks whose messages name
//! the offending key (`schedule[2].rate_kbps`), so a bad profile fails at start, not mid-run.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::{
    ms, Burst, Change, LinkParams, ParamsPatch, Profile, ProfileError, Target, NAT_PORT_MAX,
    NAT_PORT_MIN,
};

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
}
