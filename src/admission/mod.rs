//! Admission control (issue 7, "Overload and soak"): whether a new join is admitted or gets
//! `server_busy` with a retry hint, so that running consults keep their quality when the node
//! nears saturation. Pure: the measuring task ([`monitor`]) feeds samples with their time,
//! and the join path asks [`Controller::decide`] with the participant count and the time.
//!
//! Three triggers, each optional: a participant cap per node (exact, no hysteresis: a cap is a
//! cap), the event loop's lag (how late a periodic tick fires: every runtime worker busy or
//! the process starved of CPU) and the process's CPU use as a fraction of the machine's cores.
//! The measured two have hysteresis: the node turns busy when one crosses its threshold and
//! admits again only after both have stayed clearly below it (lag under half, CPU 10 points
//! under) for [`CALM_HOLD`], so a consult's own bursts (keyframes, a join's DTLS handshake)
//! do not make admission flap.

pub mod monitor;

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Lag samples looked at: the last 11 ticks (about 1.1 s at the monitor's 100 ms). Counted,
/// not timed: a starved loop ticks rarely, and each of those late ticks must still count.
pub const LAG_SAMPLES: usize = 11;
/// A lag verdict needs this many samples (a start is not judged on one tick).
pub const MIN_LAG_SAMPLES: usize = 5;
/// CPU samples looked at (the monitor gives one a second): their mean is compared.
pub const CPU_WINDOW: Duration = Duration::from_secs(3);
/// Back to admitting only after every measure has stayed below its low mark this long.
pub const CALM_HOLD: Duration = Duration::from_secs(5);
/// The CPU low mark is the threshold minus this (fraction of the cores).
pub const CPU_HYSTERESIS: f64 = 0.1;
/// Retry hint at the participant cap: a slot frees when a consult ends, which takes minutes;
/// asking again much sooner only adds load.
pub const RETRY_AT_CAP: Duration = Duration::from_secs(15);
/// Shortest retry hint when saturated (the hold is usually longer).
pub const MIN_RETRY_SATURATED: Duration = Duration::from_secs(3);

/// What to refuse at. `None`: that trigger is off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Participants on this node (all consults); a join at this count is refused.
    pub max_participants: Option<usize>,
    /// Median lag of the event loop's periodic tick over the last [`LAG_SAMPLES`].
    pub max_lag: Option<Duration>,
    /// Process CPU as a fraction of all cores (0.8: 1.6 of 2 cores), mean over [`CPU_WINDOW`].
    pub max_cpu: Option<f64>,
}

/// Why a join is refused; also the `reason` label of `consult_joins_refused_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    ParticipantCap,
    EventLoopLag,
    Cpu,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ParticipantCap => "participant_cap",
            Reason::EventLoopLag => "event_loop_lag",
            Reason::Cpu => "cpu",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Admit,
    Busy {
        reason: Reason,
        retry_after: Duration,
    },
}

/// The node is saturated, for `reason`; calm (every measure under its low mark) since
/// `calm_since`, if it is.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Saturated {
    reason: Reason,
    calm_since: Option<Instant>,
}

#[derive(Debug, Clone)]
pub struct Controller {
    thresholds: Thresholds,
    lag: VecDeque<Duration>,
    cpu: VecDeque<(Instant, f64)>,
    saturated: Option<Saturated>,
}

impl Controller {
    pub fn new(thresholds: Thresholds) -> Self {
        Controller {
            thresholds,
            lag: VecDeque::new(),
            cpu: VecDeque::new(),
            saturated: None,
        }
    }

    pub fn thresholds(&self) -> Thresholds {
        self.thresholds
    }

    /// One tick of the event-loop monitor: it fired `lag` after it was due.
    pub fn observe_lag(&mut self, now: Instant, lag: Duration) {
        self.lag.push_back(lag);
        while self.lag.len() > LAG_SAMPLES {
            self.lag.pop_front();
        }
        self.update(now);
    }

    /// The process used `fraction` of all cores since the previous sample.
    pub fn observe_cpu(&mut self, now: Instant, fraction: f64) {
        if fraction.is_finite() && fraction >= 0.0 {
            self.cpu.push_back((now, fraction));
        }
        trim(&mut self.cpu, now, CPU_WINDOW);
        self.update(now);
    }

    /// Median lag over the window, once there are enough samples.
    pub fn lag(&self) -> Option<Duration> {
        if self.lag.len() < MIN_LAG_SAMPLES {
            return None;
        }
        let mut v: Vec<Duration> = self.lag.iter().copied().collect();
        v.sort_unstable();
        Some(v[v.len() / 2])
    }

    /// Mean CPU fraction over the window.
    pub fn cpu(&self) -> Option<f64> {
        if self.cpu.is_empty() {
            return None;
        }
        Some(self.cpu.iter().map(|(_, c)| c).sum::<f64>() / self.cpu.len() as f64)
    }

    /// Saturated now (for the `consult_admission_busy` gauge); the cap is not a saturation.
    pub fn is_saturated(&self) -> bool {
        self.saturated.is_some()
    }

    fn update(&mut self, now: Instant) {
        let lag = self.lag();
        let cpu = self.cpu();
        let over_lag = matches!((lag, self.thresholds.max_lag), (Some(l), Some(m)) if l > m);
        let over_cpu = matches!((cpu, self.thresholds.max_cpu), (Some(c), Some(m)) if c > m);
        if over_lag || over_cpu {
            let reason = if over_lag {
                Reason::EventLoopLag
            } else {
                Reason::Cpu
            };
            self.saturated = Some(Saturated {
                reason,
                calm_since: None,
            });
            return;
        }
        let Some(s) = &mut self.saturated else {
            return;
        };
        let calm_lag = match (lag, self.thresholds.max_lag) {
            (Some(l), Some(m)) => l <= m / 2,
            // Too few ticks to tell: not known to be calm.
            (None, Some(_)) => false,
            (_, None) => true,
        };
        // No CPU reading (not Linux, /proc unreadable) cannot hold the node busy forever.
        let calm_cpu = match (cpu, self.thresholds.max_cpu) {
            (Some(c), Some(m)) => c <= m - CPU_HYSTERESIS,
            _ => true,
        };
        if !(calm_lag && calm_cpu) {
            s.calm_since = None;
            return;
        }
        let since = *s.calm_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= CALM_HOLD {
            self.saturated = None;
        }
    }

    /// Whether a join arriving at `now`, with `participants` on the node, is admitted.
    pub fn decide(&self, now: Instant, participants: usize) -> Decision {
        if let Some(s) = self.saturated {
            let calm_for = s
                .calm_since
                .map_or(Duration::ZERO, |c| now.saturating_duration_since(c));
            return Decision::Busy {
                reason: s.reason,
                retry_after: CALM_HOLD.saturating_sub(calm_for).max(MIN_RETRY_SATURATED),
            };
        }
        match self.thresholds.max_participants {
            Some(max) if participants >= max => Decision::Busy {
                reason: Reason::ParticipantCap,
                retry_after: RETRY_AT_CAP,
            },
            _ => Decision::Admit,
        }
    }
}

fn trim<T>(samples: &mut VecDeque<(Instant, T)>, now: Instant, window: Duration) {
    while samples
        .front()
        .is_some_and(|(t, _)| now.saturating_duration_since(*t) > window)
    {
        samples.pop_front();
    }
}

#[cfg(test)]
mod tests;
