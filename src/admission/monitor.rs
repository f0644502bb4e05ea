//! The IO side of admission control: a task that measures the event loop's lag and the
//! process's CPU and feeds [`Controller`], and the [`Gate`] the join path asks.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use signaling::JoinError;

use super::{Controller, Decision, Thresholds};
use crate::metrics::Metrics;

/// The lag tick. Short enough that a few hundred ms of overload show within a second; the
/// tick itself costs about a microsecond.
pub const TICK: Duration = Duration::from_millis(100);
/// CPU is read every this many ticks (1 s): `/proc/self/stat` has 10 ms resolution.
const CPU_EVERY_TICKS: u32 = 10;

/// Shared by the registry (one `check` per join) and the monitor task.
pub struct Gate {
    state: Mutex<State>,
    metrics: Arc<Metrics>,
}

struct State {
    controller: Controller,
    /// Joins admitted here that their room has not counted yet (`consult_participants`
    /// rises when the room has taken the join): without them, a burst of joins arriving
    /// together at the cap would all see the same count and all get in.
    in_flight: usize,
}

/// An admitted join on its way into its room; counted against the cap until dropped. Keep it
/// until the room has answered the join.
#[must_use = "hold it until the room has answered the join, or a burst can overshoot the cap"]
pub struct Admitted<'a> {
    gate: &'a Gate,
}

impl Drop for Admitted<'_> {
    fn drop(&mut self) {
        let mut s = self.gate.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
    }
}

impl Gate {
    pub fn new(thresholds: Thresholds, metrics: Arc<Metrics>) -> Self {
        Gate {
            state: Mutex::new(State {
                controller: Controller::new(thresholds),
                in_flight: 0,
            }),
            metrics,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // Every update leaves the state consistent (pushes, counts, assignments), so a
        // poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Admits a join, or refuses it with `server_busy` and a retry hint (counted). Every join
    /// comes here, rejoins to a running consult too: admission is about the node's load.
    pub fn check(&self) -> Result<Admitted<'_>, JoinError> {
        let counted = usize::try_from(self.metrics.participants.get()).unwrap_or(0);
        let mut s = self.lock();
        let participants = counted + s.in_flight;
        match s.controller.decide(Instant::now(), participants) {
            Decision::Admit => {
                s.in_flight += 1;
                Ok(Admitted { gate: self })
            }
            Decision::Busy {
                reason,
                retry_after,
            } => {
                self.metrics.join_refused(reason.as_str());
                tracing::debug!(
                    reason = reason.as_str(),
                    participants,
                    "join refused: server busy"
                );
                Err(JoinError::Busy { retry_after })
            }
        }
    }
}

/// Runs until aborted: every [`TICK`] records how late the tick fired, every second the
/// process CPU, and refreshes the admission gauges.
pub async fn run(gate: Arc<Gate>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let mut cpu_prev: Option<(Instant, f64)> = read_cpu_seconds().map(|c| (Instant::now(), c));
    if cpu_prev.is_none() && gate.lock().controller.thresholds().max_cpu.is_some() {
        tracing::warn!("cannot read /proc/self/stat: admission control ignores CPU");
    }
    let mut ticks: u32 = 0;
    loop {
        let due = Instant::now() + TICK;
        tokio::time::sleep_until(due.into()).await;
        let now = Instant::now();
        let lag = now.saturating_duration_since(due);
        ticks = ticks.wrapping_add(1);
        let cpu = if ticks.is_multiple_of(CPU_EVERY_TICKS) {
            let reading = read_cpu_seconds();
            let fraction = match (cpu_prev, reading) {
                (Some((t0, c0)), Some(c1)) => {
                    let wall = now.saturating_duration_since(t0).as_secs_f64();
                    (wall > 0.0).then(|| (c1 - c0) / wall / cores)
                }
                _ => None,
            };
            if let Some(c1) = reading {
                cpu_prev = Some((now, c1));
            }
            fraction
        } else {
            None
        };
        let (lag_median, saturated) = {
            let mut state = gate.lock();
            let c = &mut state.controller;
            c.observe_lag(now, lag);
            if let Some(f) = cpu {
                c.observe_cpu(now, f);
            }
            (c.lag(), c.is_saturated())
        };
        let m = &gate.metrics;
        m.event_loop_lag_seconds
            .set(lag_median.unwrap_or_default().as_secs_f64());
        m.admission_busy.set(i64::from(saturated));
        m.tokio_tasks.set(
            i64::try_from(
                tokio::runtime::Handle::current()
                    .metrics()
                    .num_alive_tasks(),
            )
            .unwrap_or(i64::MAX),
        );
    }
}

/// utime + stime of this process in seconds, from `/proc/self/stat` (Linux).
pub(crate) fn read_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    parse_cpu_seconds(&stat)
}

/// The fields after the command name (which may hold spaces and parentheses, hence the last
/// ')'): state is the first, utime the 12th, stime the 13th, in clock ticks of USER_HZ, which
/// Linux fixes at 100 for every /proc reader.
fn parse_cpu_seconds(stat: &str) -> Option<f64> {
    let after = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_stat() {
        let cases = [
            (
                "1234 (consult-sfu) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 9 0",
                Some(3.0),
            ),
            (
                "7 (a (weird) name) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0 20 0 1 0",
                Some(0.03),
            ),
            ("7 (short) R 1", None),
            ("garbage", None),
        ];
        for (text, expected) in cases {
            let got = parse_cpu_seconds(text);
            match (got, expected) {
                (Some(g), Some(e)) => assert!((g - e).abs() < 1e-9, "{text}: {g}"),
                _ => assert_eq!(got, expected, "{text}"),
            }
        }
    }

    #[test]
    fn joins_on_their_way_in_count_against_the_cap() {
        let metrics = Arc::new(Metrics::new());
        let gate = Gate::new(
            Thresholds {
                max_participants: Some(3),
                max_lag: None,
                max_cpu: None,
            },
            metrics.clone(),
        );
        metrics.participants.set(1);
        // Two joins admitted at once, neither counted by its room yet: the third is refused.
        let a = gate.check().expect("2 of 3");
        let b = gate.check().expect("3 of 3");
        assert!(matches!(gate.check(), Err(JoinError::Busy { .. })));
        // The room counts one, the other is refused by its room (dropped uncounted).
        metrics.participants.set(2);
        drop(a);
        drop(b);
        let _c = gate.check().expect("a place is free");
        assert!(matches!(gate.check(), Err(JoinError::Busy { .. })));
        assert!(metrics
            .render()
            .contains("consult_joins_refused_total{reason=\"participant_cap\"} 2"));
    }

    #[test]
    fn reads_its_own_cpu() {
        assert!(read_cpu_seconds().is_some_and(|c| c >= 0.0));
    }
}
