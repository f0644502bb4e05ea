//! The one store interface: what the store thread can ask of a database. SQLite
//! (`sqlite.rs`, one node, the default) and PostgreSQL (`pg.rs`, shared by several nodes)
//! implement it, and the same tests (`tests/store_backends/`) run against both.
//!
//! Methods run on the store thread only, one at a time, so they may block.

use super::db::{AuditRow, ConsultRow, InviteRow, ParticipationRow};
use super::ops::EndOutcome;
use super::{AuditEvent, ParticipationRecord, StoreError};

pub trait Backend: Send {
    /// The consult with its invites and first audit rows, all or nothing.
    fn insert_consult(
        &mut self,
        consult: &ConsultRow,
        invites: &[InviteRow],
        events: &[AuditEvent],
    ) -> Result<(), StoreError>;

    /// The clinic's consults, newest first.
    fn list_consults(&mut self, clinic: &str, limit: u32) -> Result<Vec<ConsultRow>, StoreError>;

    fn consult(&mut self, id: &str) -> Result<Option<ConsultRow>, StoreError>;

    /// In the order they were listed at creation.
    fn invites(&mut self, consult_id: &str) -> Result<Vec<InviteRow>, StoreError>;

    fn invite(&mut self, token_id: &str) -> Result<Option<InviteRow>, StoreError>;

    /// True if the invite exists (revoked now or before).
    fn revoke(&mut self, token_id: &str) -> Result<bool, StoreError>;

    /// Ends the consult at `ended.at` and writes `ended` to the audit trail, in one
    /// transaction. With `clinic`, only that clinic's consult (others are `NotFound`).
    /// Ended twice, even by two nodes at once: one `Ended`, one audit row.
    fn end_consult(
        &mut self,
        clinic: Option<&str>,
        ended: &AuditEvent,
    ) -> Result<EndOutcome, StoreError>;

    fn insert_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError>;

    /// Oldest first.
    fn audit_events(&mut self, consult_id: &str) -> Result<Vec<AuditRow>, StoreError>;

    fn insert_participation(&mut self, record: &ParticipationRecord) -> Result<(), StoreError>;

    /// In the order they were written.
    fn participation(&mut self, consult_id: &str) -> Result<Vec<ParticipationRow>, StoreError>;

    /// The value under `key`; the first caller's `value` wins, also among nodes starting at
    /// once, so every node ends up with the same one.
    fn setting_or_insert(&mut self, key: &str, value: &str) -> Result<String, StoreError>;
}
