//! The SQLite backend: one file, one node (the default). The SQL is in `db.rs`.

use std::path::Path;

use rusqlite::Connection;

use super::backend::Backend;
use super::db::{self, AuditRow, ConsultRow, InviteRow, ParticipationRow};
use super::ops::EndOutcome;
use super::{rfc3339, AuditEvent, ParticipationRecord, StoreError};

pub struct SqliteBackend {
    conn: Connection,
}

impl SqliteBackend {
    /// Opens (creating or migrating) the file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SqliteBackend {
            conn: db::open(path)?,
        })
    }
}

impl Backend for SqliteBackend {
    fn insert_consult(
        &mut self,
        consult: &ConsultRow,
        invites: &[InviteRow],
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        Ok(db::insert_consult(
            &mut self.conn,
            consult,
            invites,
            events,
        )?)
    }

    fn list_consults(&mut self, clinic: &str, limit: u32) -> Result<Vec<ConsultRow>, StoreError> {
        Ok(db::list_consults(&self.conn, clinic, limit)?)
    }

    fn consult(&mut self, id: &str) -> Result<Option<ConsultRow>, StoreError> {
        Ok(db::consult(&self.conn, id)?)
    }

    fn invites(&mut self, consult_id: &str) -> Result<Vec<InviteRow>, StoreError> {
        Ok(db::invites(&self.conn, consult_id)?)
    }

    fn invite(&mut self, token_id: &str) -> Result<Option<InviteRow>, StoreError> {
        Ok(db::invite(&self.conn, token_id)?)
    }

    fn revoke(&mut self, token_id: &str) -> Result<bool, StoreError> {
        Ok(db::revoke(&self.conn, token_id)?)
    }

    fn end_consult(
        &mut self,
        clinic: Option<&str>,
        ended: &AuditEvent,
    ) -> Result<EndOutcome, StoreError> {
        let tx = self.conn.transaction()?;
        let found = db::consult(&tx, &ended.consult_id)?
            .filter(|c| clinic.is_none_or(|clinic| c.clinic == clinic));
        let Some(mut consult) = found else {
            return Ok(EndOutcome::NotFound);
        };
        let at = rfc3339::unix_seconds(ended.at);
        if !db::end_consult(&tx, &consult.id, at)? {
            return Ok(EndOutcome::AlreadyEnded);
        }
        db::insert_audit(&tx, ended)?;
        tx.commit()?;
        consult.ended_at = Some(at);
        Ok(EndOutcome::Ended(consult))
    }

    fn insert_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        Ok(db::insert_audit(&self.conn, event)?)
    }

    fn audit_events(&mut self, consult_id: &str) -> Result<Vec<AuditRow>, StoreError> {
        Ok(db::audit_events(&self.conn, consult_id)?)
    }

    fn insert_participation(&mut self, record: &ParticipationRecord) -> Result<(), StoreError> {
        Ok(db::insert_participation(&self.conn, record)?)
    }

    fn participation(&mut self, consult_id: &str) -> Result<Vec<ParticipationRow>, StoreError> {
        Ok(db::participation(&self.conn, consult_id)?)
    }

    fn setting_or_insert(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
        Ok(db::setting_or_insert(&self.conn, key, || {
            value.to_string()
        })?)
    }
}
