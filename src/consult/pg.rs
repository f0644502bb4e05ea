//! The PostgreSQL backend: one database shared by every node of a cluster. The SQL mirrors
//! `db.rs`; the schema is in `pg_schema.rs`.
//!
//! No TLS to the database (no second TLS stack in the build): connect over a unix socket or
//! a loopback address, or through a local tunnel. `database_url` refuses `sslmode=require`.
//!
//! The sync `postgres` client blocks, which is what the store thread is for. A connection
//! that breaks (a restart, a failover) makes that job fail with an error; the next job
//! connects again.

use std::time::Duration;

use postgres::{Client, GenericClient, NoTls, Row};
use signaling::Role;

use super::backend::Backend;
use super::database_url::DatabaseUrl;
use super::db::{role_from_str, AuditRow, ConsultRow, InviteRow, ParticipationRow};
use super::ops::EndOutcome;
use super::pg_schema::{migrate, PG_MIGRATIONS};
use super::rfc3339::unix_seconds;
use super::{AuditEvent, ParticipationRecord, StoreError};

/// Unless the URL says otherwise: long enough for a server under load, short enough that
/// an unreachable one fails the job (and start) instead of holding the store thread.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Unless the URL says otherwise: a server that stops acknowledging (a host gone from the
/// network) drops the connection after this, not after the kernel's ~15 minutes.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PgBackend {
    config: postgres::Config,
    /// The URL without its password, for messages.
    target: String,
    /// None after the connection broke: the next job connects again.
    client: Option<Client>,
}

impl PgBackend {
    /// Connects and migrates: a server that cannot reach its database does not start.
    pub fn open(url: &DatabaseUrl) -> Result<Self, StoreError> {
        let target = url.redacted();
        let mut config: postgres::Config =
            url.expose()
                .parse()
                .map_err(|cause| StoreError::PgConnect {
                    target: target.clone(),
                    cause,
                })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("consult-sfu");
        }
        let mut backend = PgBackend {
            config,
            target,
            client: None,
        };
        migrate(backend.connected()?, PG_MIGRATIONS)?;
        Ok(backend)
    }

    fn connected(&mut self) -> Result<&mut Client, StoreError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.client = None;
        }
        let client = match self.client.take() {
            Some(client) => client,
            None => {
                let client = self
                    .config
                    .connect(NoTls)
                    .map_err(|cause| StoreError::PgConnect {
                        target: self.target.clone(),
                        cause,
                    })?;
                tracing::info!(db = %self.target, "consult store connected to PostgreSQL");
                client
            }
        };
        Ok(self.client.insert(client))
    }

    /// Runs `f` on the connection. A connection that was fine at the last job but turns out
    /// broken now (the server restarted in between) gets one retry on a fresh connection:
    /// the request died with the old socket. A second failure is the job's error.
    fn run<T>(
        &mut self,
        mut f: impl FnMut(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let reused = self.client.as_ref().is_some_and(|c| !c.is_closed());
        let result = self.attempt(&mut f);
        if reused && self.client.is_none() {
            tracing::warn!(db = %self.target, "consult store: retrying on a new connection");
            return self.attempt(&mut f);
        }
        result
    }

    fn attempt<T>(
        &mut self,
        f: &mut impl FnMut(&mut Client) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let client = self.connected()?;
        let result = f(client);
        if let Err(e) = &result {
            if connection_lost(client, e) {
                tracing::warn!(db = %self.target, "consult store: lost the connection: {e}");
                self.client = None;
            }
        }
        result
    }
}

/// The error with its causes: `postgres::Error` shows only its kind ("db error", "error
/// connecting to server"); what the server or the socket said is in its source.
pub fn describe(e: &postgres::Error) -> String {
    let mut out = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// The connection is gone (not merely a failed statement), so it must not be used again.
fn connection_lost(client: &Client, e: &StoreError) -> bool {
    let StoreError::Pg(e) = e else {
        return false;
    };
    client.is_closed() || is_unavailable(e)
}

/// The server or the path to it failed, not the statement.
pub fn is_unavailable(e: &postgres::Error) -> bool {
    // 08: connection exception; 57P: the server is shutting down or restarting.
    let sqlstate = e
        .code()
        .is_some_and(|c| c.code().starts_with("08") || c.code().starts_with("57P"));
    let io = std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>());
    e.is_closed() || sqlstate || io
}

const CONSULT_COLUMNS: &str = "id, clinic, title, scheduled_at, created_at, ended_at";
const INVITE_COLUMNS: &str =
    "token_id, consult_id, name, role, lobby, issued_at, expires_at, revoked";

fn role(row: &Row, index: usize) -> Result<Role, StoreError> {
    let s: String = row.try_get(index)?;
    role_from_str(&s).ok_or(StoreError::UnknownRole(s))
}

fn consult_row(r: &Row) -> Result<ConsultRow, StoreError> {
    Ok(ConsultRow {
        id: r.try_get(0)?,
        clinic: r.try_get(1)?,
        title: r.try_get(2)?,
        scheduled_at: r.try_get(3)?,
        created_at: r.try_get(4)?,
        ended_at: r.try_get(5)?,
    })
}

fn invite_row(r: &Row) -> Result<InviteRow, StoreError> {
    Ok(InviteRow {
        token_id: r.try_get(0)?,
        consult_id: r.try_get(1)?,
        name: r.try_get(2)?,
        role: role(r, 3)?,
        lobby: r.try_get(4)?,
        issued_at: r.try_get(5)?,
        expires_at: r.try_get(6)?,
        revoked: r.try_get(7)?,
    })
}

fn consult_by_id(c: &mut impl GenericClient, id: &str) -> Result<Option<ConsultRow>, StoreError> {
    c.query_opt(
        &format!("SELECT {CONSULT_COLUMNS} FROM consults WHERE id = $1"),
        &[&id],
    )?
    .as_ref()
    .map(consult_row)
    .transpose()
}

fn insert_audit(c: &mut impl GenericClient, e: &AuditEvent) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO audit (consult_id, at, action, actor, actor_role, subject, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &e.consult_id,
            &unix_seconds(e.at),
            &e.action.as_str(),
            &e.actor,
            &e.actor_role.map(Role::as_str),
            &e.subject,
            &e.detail,
        ],
    )?;
    Ok(())
}

impl Backend for PgBackend {
    fn insert_consult(
        &mut self,
        consult: &ConsultRow,
        invites: &[InviteRow],
        events: &[AuditEvent],
    ) -> Result<(), StoreError> {
        self.run(|c| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO consults (id, clinic, title, scheduled_at, created_at, ended_at)
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &consult.id,
                    &consult.clinic,
                    &consult.title,
                    &consult.scheduled_at,
                    &consult.created_at,
                    &consult.ended_at,
                ],
            )?;
            for i in invites {
                tx.execute(
                    "INSERT INTO invites (token_id, consult_id, name, role, lobby, issued_at,
                         expires_at, revoked)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    &[
                        &i.token_id,
                        &i.consult_id,
                        &i.name,
                        &i.role.as_str(),
                        &i.lobby,
                        &i.issued_at,
                        &i.expires_at,
                        &i.revoked,
                    ],
                )?;
            }
            for e in events {
                insert_audit(&mut tx, e)?;
            }
            Ok(tx.commit()?)
        })
    }

    fn list_consults(&mut self, clinic: &str, limit: u32) -> Result<Vec<ConsultRow>, StoreError> {
        let limit = i64::from(limit);
        self.run(|c| {
            c.query(
                &format!(
                    "SELECT {CONSULT_COLUMNS} FROM consults WHERE clinic = $1
                     ORDER BY created_at DESC, seq DESC LIMIT $2"
                ),
                &[&clinic, &limit],
            )?
            .iter()
            .map(consult_row)
            .collect()
        })
    }

    fn consult(&mut self, id: &str) -> Result<Option<ConsultRow>, StoreError> {
        self.run(|c| consult_by_id(c, id))
    }

    fn invites(&mut self, consult_id: &str) -> Result<Vec<InviteRow>, StoreError> {
        self.run(|c| {
            c.query(
                &format!("SELECT {INVITE_COLUMNS} FROM invites WHERE consult_id = $1 ORDER BY seq"),
                &[&consult_id],
            )?
            .iter()
            .map(invite_row)
            .collect()
        })
    }

    fn invite(&mut self, token_id: &str) -> Result<Option<InviteRow>, StoreError> {
        self.run(|c| {
            c.query_opt(
                &format!("SELECT {INVITE_COLUMNS} FROM invites WHERE token_id = $1"),
                &[&token_id],
            )?
            .as_ref()
            .map(invite_row)
            .transpose()
        })
    }

    fn revoke(&mut self, token_id: &str) -> Result<bool, StoreError> {
        self.run(|c| {
            let n = c.execute(
                "UPDATE invites SET revoked = TRUE WHERE token_id = $1",
                &[&token_id],
            )?;
            Ok(n == 1)
        })
    }

    fn end_consult(
        &mut self,
        clinic: Option<&str>,
        ended: &AuditEvent,
    ) -> Result<EndOutcome, StoreError> {
        let at = unix_seconds(ended.at);
        self.run(|c| {
            let mut tx = c.transaction()?;
            let found = consult_by_id(&mut tx, &ended.consult_id)?
                .filter(|c| clinic.is_none_or(|clinic| c.clinic == clinic));
            let Some(mut consult) = found else {
                return Ok(EndOutcome::NotFound);
            };
            // Two nodes ending it at once: the second waits for the first's row lock, then
            // sees ended_at set and changes nothing, so there is one `ended` row.
            let changed = tx.execute(
                "UPDATE consults SET ended_at = $2 WHERE id = $1 AND ended_at IS NULL",
                &[&consult.id, &at],
            )?;
            if changed != 1 {
                return Ok(EndOutcome::AlreadyEnded);
            }
            insert_audit(&mut tx, ended)?;
            tx.commit()?;
            consult.ended_at = Some(at);
            Ok(EndOutcome::Ended(consult))
        })
    }

    fn insert_audit(&mut self, event: &AuditEvent) -> Result<(), StoreError> {
        self.run(|c| insert_audit(c, event))
    }

    fn audit_events(&mut self, consult_id: &str) -> Result<Vec<AuditRow>, StoreError> {
        self.run(|c| {
            c.query(
                "SELECT at, action, actor, actor_role, subject, detail FROM audit
                 WHERE consult_id = $1 ORDER BY id",
                &[&consult_id],
            )?
            .iter()
            .map(|r| {
                Ok(AuditRow {
                    at: r.try_get(0)?,
                    action: r.try_get(1)?,
                    actor: r.try_get(2)?,
                    actor_role: r.try_get(3)?,
                    subject: r.try_get(4)?,
                    detail: r.try_get(5)?,
                })
            })
            .collect()
        })
    }

    fn insert_participation(&mut self, p: &ParticipationRecord) -> Result<(), StoreError> {
        let bps = p
            .median_receive_bps
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX));
        self.run(|c| {
            c.execute(
                "INSERT INTO participation (consult_id, name, role, joined_at, left_at,
                     median_receive_bps, low_layer_share, paused_share, loss_percent)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                &[
                    &p.consult_id,
                    &p.name,
                    &p.role.as_str(),
                    &unix_seconds(p.joined_at),
                    &unix_seconds(p.left_at),
                    &bps,
                    &p.low_layer_share,
                    &p.paused_share,
                    &p.loss_percent,
                ],
            )?;
            Ok(())
        })
    }

    fn participation(&mut self, consult_id: &str) -> Result<Vec<ParticipationRow>, StoreError> {
        self.run(|c| {
            c.query(
                "SELECT name, role, joined_at, left_at, median_receive_bps, low_layer_share,
                        paused_share, loss_percent
                 FROM participation WHERE consult_id = $1 ORDER BY id",
                &[&consult_id],
            )?
            .iter()
            .map(|r| {
                let bps: Option<i64> = r.try_get(4)?;
                Ok(ParticipationRow {
                    name: r.try_get(0)?,
                    role: role(r, 1)?,
                    joined_at: r.try_get(2)?,
                    left_at: r.try_get(3)?,
                    median_receive_bps: bps.map(|b| u64::try_from(b).unwrap_or(0)),
                    low_layer_share: r.try_get(5)?,
                    paused_share: r.try_get(6)?,
                    loss_percent: r.try_get(7)?,
                })
            })
            .collect()
        })
    }

    fn setting_or_insert(&mut self, key: &str, value: &str) -> Result<String, StoreError> {
        self.run(|c| {
            // Nodes starting together all try; the first insert wins, the others' conflict
            // waits for it to commit, and everyone reads the winner's value.
            c.execute(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
                &[&key, &value],
            )?;
            Ok(
                c.query_one("SELECT value FROM settings WHERE key = $1", &[&key])?
                    .try_get(0)?,
            )
        })
    }
}
