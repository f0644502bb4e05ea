//! The PostgreSQL schema: the same tables as `migrations.rs` (SQLite), as an append-only
//! list of scripts with the same version numbers. A schema change adds a script to both
//! lists. The version is a one-row table (PostgreSQL has no `user_version`).
//!
//! Never edit a released script: add a new one.

use postgres::Client;

use super::migrations::MigrationError;

/// Times are unix seconds; roles and actions are their wire strings. `seq` keeps the
/// insertion order SQLite gives by `rowid`.
pub const PG_MIGRATIONS: &[&str] = &[r#"
CREATE TABLE consults (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    id TEXT PRIMARY KEY,
    clinic TEXT NOT NULL,
    title TEXT NOT NULL,
    scheduled_at BIGINT,
    created_at BIGINT NOT NULL,
    ended_at BIGINT
);
CREATE INDEX consults_by_clinic ON consults (clinic, created_at);

CREATE TABLE invites (
    seq BIGINT GENERATED ALWAYS AS IDENTITY,
    token_id TEXT PRIMARY KEY,
    consult_id TEXT NOT NULL REFERENCES consults (id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    lobby BOOLEAN NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX invites_by_consult ON invites (consult_id, seq);

CREATE TABLE audit (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consult_id TEXT NOT NULL,
    at BIGINT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    actor_role TEXT,
    subject TEXT,
    detail TEXT
);
CREATE INDEX audit_by_consult ON audit (consult_id, id);

CREATE TABLE participation (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    consult_id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at BIGINT NOT NULL,
    left_at BIGINT NOT NULL,
    median_receive_bps BIGINT,
    low_layer_share DOUBLE PRECISION NOT NULL,
    paused_share DOUBLE PRECISION NOT NULL,
    loss_percent DOUBLE PRECISION NOT NULL
);
CREATE INDEX participation_by_consult ON participation (consult_id, id);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#];

/// Advisory lock key held while migrating ("consult" in ASCII), so nodes starting at once
/// migrate one after the other: the first does the work, the others find it done.
const MIGRATION_LOCK: i64 = 0x0063_6f6e_7375_6c74;

const VERSION_TABLE: &str = "
CREATE TABLE IF NOT EXISTS consult_schema_version (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO consult_schema_version (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;
";

/// Brings the database up to `scripts.len()`, one script per transaction together with the
/// version bump, so a failed upgrade leaves the database at the last good version.
pub fn migrate(client: &mut Client, scripts: &[&str]) -> Result<(), MigrationError> {
    let known = scripts.len();
    loop {
        let mut tx = client.transaction().map_err(MigrationError::PgVersion)?;
        // Taken before the version table is created: CREATE TABLE IF NOT EXISTS is not safe
        // against itself in two sessions at once.
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .map_err(MigrationError::PgVersion)?;
        tx.batch_execute(VERSION_TABLE)
            .map_err(MigrationError::PgVersion)?;
        let current: i32 = tx
            .query_one(
                "SELECT version FROM consult_schema_version WHERE id = 1",
                &[],
            )
            .and_then(|row| row.try_get(0))
            .map_err(MigrationError::PgVersion)?;
        let done = usize::try_from(current).unwrap_or(0);
        if done > known {
            return Err(MigrationError::Newer {
                found: i64::from(current),
                known,
            });
        }
        if done == known {
            // Commits the version table of a fresh database (nothing else changed).
            return tx.commit().map_err(MigrationError::PgVersion);
        }
        let version = done + 1;
        let step = |tx: &mut postgres::Transaction| -> Result<(), postgres::Error> {
            tx.batch_execute(scripts[done])?;
            let v = i32::try_from(version).unwrap_or(i32::MAX);
            tx.execute(
                "UPDATE consult_schema_version SET version = $1 WHERE id = 1",
                &[&v],
            )?;
            Ok(())
        };
        step(&mut tx).map_err(|cause| MigrationError::PgScript { version, cause })?;
        tx.commit()
            .map_err(|cause| MigrationError::PgScript { version, cause })?;
        tracing::info!(version, "consult store schema migrated (PostgreSQL)");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn both_backends_know_the_same_schema_versions() {
        assert_eq!(
            super::PG_MIGRATIONS.len(),
            crate::consult::migrations::MIGRATIONS.len(),
            "a schema change adds a script to migrations.rs and to pg_schema.rs"
        );
    }
}
