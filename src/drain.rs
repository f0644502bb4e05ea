//! Graceful drain for rolling upgrades. Once requested (`POST /api/v1/admin/drain` or
//! SIGUSR1), `/readyz` fails and joins that would start a new consult are refused (the
//! client is told `server_restarting` and retries, reaching another node once this one has
//! left the load balancer); joins to running consults still work. When every consult has
//! ended, or `drain_timeout` after the request, the usual shutdown runs: whoever is still
//! connected is told `closed{server_restart}` and the process exits. SIGTERM alone skips the
//! waiting (the fast restart of issue 7).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Shared by the registry (refusing new consults), `/readyz`, the admin endpoint and the
/// server loop (which waits for the consults to end).
#[derive(Debug)]
pub struct Drain {
    requested: AtomicBool,
    since: Mutex<Option<Instant>>,
    notify: Notify,
    timeout: Duration,
}

impl Drain {
    pub fn new(timeout: Duration) -> Self {
        Drain {
            requested: AtomicBool::new(false),
            since: Mutex::new(None),
            notify: Notify::new(),
            timeout,
        }
    }

    /// Starts draining; true the first time (a repeated request changes nothing, in
    /// particular not the deadline).
    pub fn request(&self) -> bool {
        let first = !self.requested.swap(true, Ordering::SeqCst);
        if first {
            *self.since.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
            // notify_one stores a permit if the server loop is not waiting yet.
            self.notify.notify_one();
        }
        first
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// When draining began.
    pub fn since(&self) -> Option<Instant> {
        *self.since.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Resolves once a drain is requested.
    pub async fn requested(&self) {
        while !self.is_requested() {
            self.notify.notified().await;
        }
    }
}

/// Where a drain stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Consults still run and there is time left.
    Waiting,
    /// Every consult has ended: shut down now.
    Empty,
    /// `drain_timeout` has passed: shut down, telling those left to rejoin elsewhere.
    TimedOut,
}

/// Pure: the drain's state with `rooms` consults running at `now`, `since` the request.
pub fn progress(rooms: usize, since: Instant, now: Instant, timeout: Duration) -> Progress {
    if rooms == 0 {
        Progress::Empty
    } else if now.saturating_duration_since(since) >= timeout {
        Progress::TimedOut
    } else {
        Progress::Waiting
    }
}

/// How often the server loop looks at the room count while draining.
pub const POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_ends_when_consults_end_or_time_is_up() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(60);
        let at = |s| t0 + Duration::from_secs(s);
        // (rooms, seconds since the request, progress)
        let cases = [
            (3, 0, Progress::Waiting),
            (1, 59, Progress::Waiting),
            (0, 1, Progress::Empty),
            (0, 600, Progress::Empty),
            (1, 60, Progress::TimedOut),
            (5, 61, Progress::TimedOut),
        ];
        for (rooms, secs, want) in cases {
            assert_eq!(
                progress(rooms, t0, at(secs), timeout),
                want,
                "{rooms} {secs}"
            );
        }
        // A zero timeout: the drain is just a shutdown.
        assert_eq!(progress(2, t0, t0, Duration::ZERO), Progress::TimedOut);
    }

    #[tokio::test]
    async fn a_request_is_seen_once_and_wakes_the_waiter() {
        let drain = std::sync::Arc::new(Drain::new(Duration::from_secs(1)));
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move { drain.requested().await }
        });
        assert!(!drain.is_requested());
        assert!(drain.request());
        let since = drain.since();
        assert!(!drain.request(), "a second request changes nothing");
        assert_eq!(drain.since(), since);
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }
}
