//! How a parsed profile plays out over time: the per-direction [`Timeline`] of parameters
//! that the link follows, and the NAT and address events the shell acts on. Kept apart from
//! parsing so the run-time side never sees the raw file shapes.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::{Dir, LinkParams, ParamsPatch, Profile};

impl Profile {
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
