//! The store's schema, as an append-only list of SQL scripts. `PRAGMA user_version` counts
//! how many have run; each runs in its own transaction together with the version bump, so a
//! failed upgrade leaves the file as it was.
//!
//! Never edit a released script: add a new one.

use rusqlite::Connection;

/// Times are unix seconds; roles and actions are their wire strings.
pub const MIGRATIONS: &[&str] = &[r#"
CREATE TABLE consults (
    id TEXT PRIMARY KEY,
    clinic TEXT NOT NULL,
    title TEXT NOT NULL,
    scheduled_at INTEGER,
    created_at INTEGER NOT NULL,
    ended_at INTEGER
);
CREATE INDEX consults_by_clinic ON consults (clinic, created_at);

CREATE TABLE invites (
    token_id TEXT PRIMARY KEY,
    consult_id TEXT NOT NULL REFERENCES consults (id),
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    lobby INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX invites_by_consult ON invites (consult_id);

CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consult_id TEXT NOT NULL,
    at INTEGER NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    actor_role TEXT,
    subject TEXT,
    detail TEXT
);
CREATE INDEX audit_by_consult ON audit (consult_id, id);

CREATE TABLE participation (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    consult_id TEXT NOT NULL,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    joined_at INTEGER NOT NULL,
    left_at INTEGER NOT NULL,
    median_receive_bps INTEGER,
    low_layer_share REAL NOT NULL,
    paused_share REAL NOT NULL,
    loss_percent REAL NOT NULL
);
CREATE INDEX participation_by_consult ON participation (consult_id, id);

CREATE TABLE settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"#];

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("the database is at schema version {found}, newer than this server knows ({known}); run the newer server or restore a backup")]
    Newer { found: i64, known: usize },
    #[error("migration to schema version {version} failed: {source}")]
    Script {
        version: usize,
        source: rusqlite::Error,
    },
    #[error("reading the schema version: {0}")]
    Version(rusqlite::Error),
    #[error("migration to schema version {version} failed: {}", super::pg::describe(.cause))]
    PgScript {
        version: usize,
        cause: postgres::Error,
    },
    #[error("reading the schema version: {}", super::pg::describe(.0))]
    PgVersion(postgres::Error),
}

/// Brings the database up to `scripts.len()`; a database already there is left untouched.
pub fn migrate(conn: &mut Connection, scripts: &[&str]) -> Result<(), MigrationError> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(MigrationError::Version)?;
    let known = scripts.len();
    if current > known as i64 {
        return Err(MigrationError::Newer {
            found: current,
            known,
        });
    }
    let start = usize::try_from(current).unwrap_or(0);
    for (index, script) in scripts.iter().enumerate().skip(start) {
        let version = index + 1;
        let step = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = conn.transaction()?;
            tx.execute_batch(script)?;
            tx.pragma_update(None, "user_version", version as i64)?;
            tx.commit()
        };
        step(conn).map_err(|source| MigrationError::Script { version, source })?;
        tracing::info!(version, "consult store schema migrated");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(conn: &Connection) -> i64 {
        conn.pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    fn tables(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn fresh_database_gets_the_whole_schema_and_reopening_is_a_noop() {
        let dir = std::env::temp_dir().join(format!(
            "consult-mig-{}",
            crate::consult::random::token_id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("db.sqlite");
        {
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn, MIGRATIONS).unwrap();
            assert_eq!(version(&conn), MIGRATIONS.len() as i64);
            assert_eq!(
                tables(&conn),
                ["audit", "consults", "invites", "participation", "settings"]
            );
            conn.execute("INSERT INTO settings (key, value) VALUES ('k', 'v')", [])
                .unwrap();
        }
        let mut conn = Connection::open(&path).unwrap();
        migrate(&mut conn, MIGRATIONS).unwrap();
        assert_eq!(version(&conn), MIGRATIONS.len() as i64);
        let v: String = conn
            .query_row("SELECT value FROM settings WHERE key = 'k'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(v, "v", "reopening keeps the data");
        drop(conn);
        std::fs::remove_dir_all(dir).unwrap();
    }

    const V1: &str = "CREATE TABLE notes (id INTEGER PRIMARY KEY, text TEXT NOT NULL);";
    const V2: &str = "ALTER TABLE notes ADD COLUMN author TEXT NOT NULL DEFAULT 'unknown';
                      UPDATE notes SET author = 'migrated';";

    #[test]
    fn an_old_database_is_upgraded_in_order_and_keeps_its_rows() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &[V1]).unwrap();
        conn.execute("INSERT INTO notes (text) VALUES ('hello')", [])
            .unwrap();
        assert_eq!(version(&conn), 1);

        migrate(&mut conn, &[V1, V2]).unwrap();
        assert_eq!(version(&conn), 2);
        let (text, author): (String, String) = conn
            .query_row("SELECT text, author FROM notes", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((text.as_str(), author.as_str()), ("hello", "migrated"));

        // Running again must not re-run V2 (its UPDATE would overwrite this).
        conn.execute("UPDATE notes SET author = 'edited'", [])
            .unwrap();
        migrate(&mut conn, &[V1, V2]).unwrap();
        let author: String = conn
            .query_row("SELECT author FROM notes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(author, "edited");
    }

    #[test]
    fn a_failing_script_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        let bad = "CREATE TABLE half (a); INSERT INTO no_such_table VALUES (1);";
        let err = migrate(&mut conn, &[V1, bad]).unwrap_err();
        assert!(
            matches!(err, MigrationError::Script { version: 2, .. }),
            "{err}"
        );
        assert_eq!(version(&conn), 1);
        assert_eq!(
            tables(&conn),
            ["notes"],
            "the failed script's table is rolled back"
        );
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, &[V1, V2]).unwrap();
        let err = migrate(&mut conn, &[V1]).unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
    }
}
