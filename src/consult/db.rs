//! SQL over one connection. Plain functions, called only on the store thread (`worker`).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Row};
use signaling::Role;

use super::migrations::{migrate, MIGRATIONS};
use super::rfc3339::unix_seconds;
use super::{AuditEvent, ParticipationRecord, StoreError};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsultRow {
    pub id: String,
    pub clinic: String,
    pub title: String,
    pub scheduled_at: Option<i64>,
    pub created_at: i64,
    pub ended_at: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    pub token_id: String,
    pub consult_id: String,
    pub name: String,
    pub role: Role,
    pub lobby: bool,
    pub issued_at: i64,
    pub expires_at: i64,
    pub revoked: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub at: i64,
    pub action: String,
    pub actor: String,
    pub actor_role: Option<String>,
    pub subject: Option<String>,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ParticipationRow {
    pub name: String,
    pub role: Role,
    pub joined_at: i64,
    pub left_at: i64,
    pub median_receive_bps: Option<u64>,
    pub low_layer_share: f64,
    pub paused_share: f64,
    pub loss_percent: f64,
}

pub fn open(path: &Path) -> Result<Connection, StoreError> {
    let fail = |cause: rusqlite::Error| StoreError::Open {
        path: path.to_path_buf(),
        cause,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|cause| StoreError::CreateDir {
            path: parent.to_path_buf(),
            cause,
        })?;
    }
    let mut conn = Connection::open(path).map_err(fail)?;
    // WAL: readers (a second process, a backup) never block the writer. NORMAL sync loses at
    // most the last transactions on power loss, never corrupts.
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .map_err(fail)?;
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(fail)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(fail)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(fail)?;
    migrate(&mut conn, MIGRATIONS)?;
    Ok(conn)
}

pub fn role_from_str(s: &str) -> Option<Role> {
    [
        Role::Specialist,
        Role::Clinic,
        Role::Patient,
        Role::Observer,
    ]
    .into_iter()
    .find(|r| r.as_str() == s)
}

fn role_column(row: &Row, index: usize) -> rusqlite::Result<Role> {
    let s: String = row.get(index)?;
    role_from_str(&s).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            index,
            rusqlite::types::Type::Text,
            format!("unknown role {s:?}").into(),
        )
    })
}

/// The value under `key`, created with `make` the first time.
pub fn setting_or_insert(
    conn: &Connection,
    key: &str,
    make: impl FnOnce() -> String,
) -> rusqlite::Result<String> {
    if let Some(v) = conn
        .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()?
    {
        return Ok(v);
    }
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?1, ?2)",
        params![key, make()],
    )?;
    conn.query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
        r.get(0)
    })
}

pub fn insert_consult(
    conn: &mut Connection,
    consult: &ConsultRow,
    invites: &[InviteRow],
    events: &[AuditEvent],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    tx.execute(
        "INSERT INTO consults (id, clinic, title, scheduled_at, created_at, ended_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            consult.id,
            consult.clinic,
            consult.title,
            consult.scheduled_at,
            consult.created_at,
            consult.ended_at
        ],
    )?;
    for i in invites {
        tx.execute(
            "INSERT INTO invites (token_id, consult_id, name, role, lobby, issued_at, expires_at, revoked)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                i.token_id,
                i.consult_id,
                i.name,
                i.role.as_str(),
                i.lobby,
                i.issued_at,
                i.expires_at,
                i.revoked
            ],
        )?;
    }
    for e in events {
        insert_audit(&tx, e)?;
    }
    tx.commit()
}

const CONSULT_COLUMNS: &str = "id, clinic, title, scheduled_at, created_at, ended_at";

fn consult_row(r: &Row) -> rusqlite::Result<ConsultRow> {
    Ok(ConsultRow {
        id: r.get(0)?,
        clinic: r.get(1)?,
        title: r.get(2)?,
        scheduled_at: r.get(3)?,
        created_at: r.get(4)?,
        ended_at: r.get(5)?,
    })
}

/// Newest first.
pub fn list_consults(
    conn: &Connection,
    clinic: &str,
    limit: u32,
) -> rusqlite::Result<Vec<ConsultRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {CONSULT_COLUMNS} FROM consults WHERE clinic = ?1
         ORDER BY created_at DESC, rowid DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![clinic, limit], consult_row)?;
    rows.collect()
}

pub fn consult(conn: &Connection, id: &str) -> rusqlite::Result<Option<ConsultRow>> {
    conn.query_row(
        &format!("SELECT {CONSULT_COLUMNS} FROM consults WHERE id = ?1"),
        [id],
        consult_row,
    )
    .optional()
}

const INVITE_COLUMNS: &str =
    "token_id, consult_id, name, role, lobby, issued_at, expires_at, revoked";

fn invite_row(r: &Row) -> rusqlite::Result<InviteRow> {
    Ok(InviteRow {
        token_id: r.get(0)?,
        consult_id: r.get(1)?,
        name: r.get(2)?,
        role: role_column(r, 3)?,
        lobby: r.get(4)?,
        issued_at: r.get(5)?,
        expires_at: r.get(6)?,
        revoked: r.get(7)?,
    })
}

/// In the order they were listed at creation.
pub fn invites(conn: &Connection, consult_id: &str) -> rusqlite::Result<Vec<InviteRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {INVITE_COLUMNS} FROM invites WHERE consult_id = ?1 ORDER BY rowid"
    ))?;
    let rows = stmt.query_map([consult_id], invite_row)?;
    rows.collect()
}

pub fn invite(conn: &Connection, token_id: &str) -> rusqlite::Result<Option<InviteRow>> {
    conn.query_row(
        &format!("SELECT {INVITE_COLUMNS} FROM invites WHERE token_id = ?1"),
        [token_id],
        invite_row,
    )
    .optional()
}

pub fn revoke(conn: &Connection, token_id: &str) -> rusqlite::Result<bool> {
    conn.execute(
        "UPDATE invites SET revoked = 1 WHERE token_id = ?1",
        [token_id],
    )
    .map(|n| n == 1)
}

/// Sets `ended_at` unless already ended; true if this call ended it.
pub fn end_consult(conn: &Connection, id: &str, at: i64) -> rusqlite::Result<bool> {
    conn.execute(
        "UPDATE consults SET ended_at = ?2 WHERE id = ?1 AND ended_at IS NULL",
        params![id, at],
    )
    .map(|n| n == 1)
}

pub fn insert_audit(conn: &Connection, e: &AuditEvent) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO audit (consult_id, at, action, actor, actor_role, subject, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.consult_id,
            unix_seconds(e.at),
            e.action.as_str(),
            e.actor,
            e.actor_role.map(Role::as_str),
            e.subject,
            e.detail
        ],
    )?;
    Ok(())
}

/// Oldest first.
pub fn audit_events(conn: &Connection, consult_id: &str) -> rusqlite::Result<Vec<AuditRow>> {
    let mut stmt = conn.prepare(
        "SELECT at, action, actor, actor_role, subject, detail FROM audit
         WHERE consult_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([consult_id], |r| {
        Ok(AuditRow {
            at: r.get(0)?,
            action: r.get(1)?,
            actor: r.get(2)?,
            actor_role: r.get(3)?,
            subject: r.get(4)?,
            detail: r.get(5)?,
        })
    })?;
    rows.collect()
}

pub fn insert_participation(conn: &Connection, p: &ParticipationRecord) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO participation (consult_id, name, role, joined_at, left_at,
             median_receive_bps, low_layer_share, paused_share, loss_percent)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        params![
            p.consult_id,
            p.name,
            p.role.as_str(),
            unix_seconds(p.joined_at),
            unix_seconds(p.left_at),
            p.median_receive_bps
                .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
            p.low_layer_share,
            p.paused_share,
            p.loss_percent
        ],
    )?;
    Ok(())
}

/// In the order they were written.
pub fn participation(
    conn: &Connection,
    consult_id: &str,
) -> rusqlite::Result<Vec<ParticipationRow>> {
    let mut stmt = conn.prepare(
        "SELECT name, role, joined_at, left_at, median_receive_bps, low_layer_share,
                paused_share, loss_percent
         FROM participation WHERE consult_id = ?1 ORDER BY id",
    )?;
    let rows = stmt.query_map([consult_id], |r| {
        let bps: Option<i64> = r.get(4)?;
        Ok(ParticipationRow {
            name: r.get(0)?,
            role: role_column(r, 1)?,
            joined_at: r.get(2)?,
            left_at: r.get(3)?,
            median_receive_bps: bps.map(|b| u64::try_from(b).unwrap_or(0)),
            low_layer_share: r.get(5)?,
            paused_share: r.get(6)?,
            loss_percent: r.get(7)?,
        })
    })?;
    rows.collect()
}
