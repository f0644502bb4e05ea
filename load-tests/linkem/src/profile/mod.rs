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
//!
//! The types live here; reading and checking a file is in `parse`, the schedule as per-direction
//! timelines in `timeline`.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde::Deserialize;

mod parse;
#[cfg(test)]
mod tests;
mod timeline;

pub use timeline::{Timeline, TimelineCursor};

/// Queue bound used when a direction has a rate limit but no `queue_ms`.
pub const DEFAULT_QUEUE_MS: f64 = 500.0;

fn ms(v: f64) -> Duration {
    Duration::from_secs_f64(v / 1e3)
}

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
