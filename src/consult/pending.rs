//! Fire-and-forget writes (audit events, participation, revocations, ends) that failed because
//! the database could not be reached: kept in order and written when it is back, so an outage
//! of the shared PostgreSQL loses no audit record. Bounded: past `MAX_PENDING` the oldest is
//! dropped, loudly (a day-long outage must not take the node's memory with it).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::backend::Backend;
use super::store::StoreError;

/// A write that can be tried again (it keeps its data until it succeeds).
pub(super) type WriteFn = Box<dyn Fn(&mut dyn Backend) -> Result<(), StoreError> + Send>;

/// Every few seconds of a 30-participant node's audit trail, for a whole hour of outage.
pub(super) const MAX_PENDING: usize = 100_000;
/// A reconnect attempt costs up to the connect timeout: not more often than this.
pub(super) const RETRY_EVERY: Duration = Duration::from_secs(1);

pub(super) struct Pending {
    items: VecDeque<(&'static str, WriteFn)>,
    last_try: Option<Instant>,
    dropped: u64,
}

impl Pending {
    pub(super) fn new() -> Self {
        Pending {
            items: VecDeque::new(),
            last_try: None,
            dropped: 0,
        }
    }

    /// Runs `write` now, or queues it behind earlier failed writes (order is kept: an audit
    /// trail out of order would lie).
    pub(super) fn write(
        &mut self,
        backend: &mut dyn Backend,
        what: &'static str,
        write: WriteFn,
        now: Instant,
    ) {
        if !self.items.is_empty() {
            self.push(what, write);
            return;
        }
        match write(backend) {
            Ok(()) => {}
            Err(e) if e.is_unavailable() => {
                tracing::warn!("consult store: {what} kept until the database is back: {e}");
                self.last_try = Some(now);
                self.push(what, write);
            }
            Err(e) => tracing::error!("consult store: writing {what} failed: {e}"),
        }
    }

    /// Writes what is queued, in order, until one fails for want of the database; at most every
    /// `RETRY_EVERY` unless `force` (a flush at shutdown).
    pub(super) fn retry(&mut self, backend: &mut dyn Backend, now: Instant, force: bool) {
        if self.items.is_empty() {
            return;
        }
        let due = self
            .last_try
            .is_none_or(|t| now.saturating_duration_since(t) >= RETRY_EVERY);
        if !due && !force {
            return;
        }
        self.last_try = Some(now);
        let before = self.items.len();
        // Out of the queue before it runs: a write that panics is not tried forever.
        while let Some((what, write)) = self.items.pop_front() {
            match write(backend) {
                Ok(()) => {}
                Err(e) if e.is_unavailable() => {
                    self.items.push_front((what, write));
                    break;
                }
                Err(e) => tracing::error!("consult store: writing {what} failed: {e}"),
            }
        }
        if self.items.len() < before {
            tracing::info!(
                written = before - self.items.len(),
                left = self.items.len(),
                "consult store: writes kept during the outage are in the database"
            );
        }
    }

    /// At shutdown: what could not be written is lost with the process; say how much.
    pub(super) fn abandon(&mut self) {
        if !self.items.is_empty() {
            tracing::error!(
                lost = self.items.len(),
                "consult store: the database is still away at shutdown; kept writes are lost"
            );
            self.items.clear();
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// How long the store thread may sleep before the next retry is due.
    pub(super) fn wait(&self, now: Instant) -> Option<Duration> {
        if self.items.is_empty() {
            return None;
        }
        Some(match self.last_try {
            Some(t) => RETRY_EVERY.saturating_sub(now.saturating_duration_since(t)),
            None => Duration::ZERO,
        })
    }

    fn push(&mut self, what: &'static str, write: WriteFn) {
        if self.items.len() >= MAX_PENDING {
            self.items.pop_front();
            self.dropped += 1;
            if self.dropped.is_power_of_two() {
                tracing::error!(
                    dropped = self.dropped,
                    "consult store: the database has been away too long; oldest kept writes lost"
                );
            }
        }
        self.items.push_back((what, write));
    }
}
