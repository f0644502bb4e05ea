//! The store thread: owns the one database connection (SQLite or PostgreSQL, behind
//! `Backend`) and runs jobs sent over a channel, in order. Async callers await a oneshot
//! reply; fire-and-forget jobs log their errors.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::backend::Backend;
use super::database_url::DatabaseUrl;
use super::migrations::MigrationError;
use super::pending::{Pending, WriteFn};
use super::pg::{self, PgBackend};
use super::sqlite::SqliteBackend;
use super::{random, Consults};

/// Settings-table key of the generated token secret (hex).
const SECRET_KEY: &str = "token_secret";
/// Settings-table key of the local dev operator's API key.
const DEV_OPERATOR_KEY: &str = "dev_operator_key";

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// SQLite file, used when `database_url` is None.
    pub db_path: PathBuf,
    /// PostgreSQL shared by several nodes; None: SQLite at `db_path`.
    pub database_url: Option<DatabaseUrl>,
    /// Configured secret; None: generated once and kept in the database.
    pub token_secret: Option<String>,
    /// Base of invite links, without a trailing slash.
    pub public_url: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    // The causes are in the messages and not `source`s, so error chains say them once.
    #[error("cannot create the folder {path} for the consult database: {cause}")]
    CreateDir {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("cannot open the consult database {path}: {cause}")]
    Open {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("consult database: {0}")]
    Migration(#[from] MigrationError),
    #[error("consult database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot connect to the consult database {target}: {}", pg::describe(.cause))]
    PgConnect {
        /// The URL without its password.
        target: String,
        cause: postgres::Error,
    },
    #[error("consult database (PostgreSQL): {}", pg::describe(.0))]
    Pg(#[from] postgres::Error),
    #[error("consult database: a row has an unknown role {0:?}")]
    UnknownRole(String),
    #[error("cannot start the consult store thread: {0}")]
    Thread(std::io::Error),
    #[error("the consult store has stopped")]
    Closed,
    #[error("consults are disabled on this server")]
    Disabled,
}

impl StoreError {
    /// The database could not be reached (not a bad statement): a write may succeed later.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::PgConnect { .. } => true,
            StoreError::Pg(e) => pg::is_unavailable(e),
            _ => false,
        }
    }
}

type CallFn = Box<dyn FnOnce(&mut dyn Backend) + Send>;

enum Job {
    /// A read or a write whose caller waits for the result.
    Call(CallFn),
    /// Fire and forget: kept and tried again while the database is unreachable.
    Write { what: &'static str, write: WriteFn },
    /// Replies once every earlier job ran, kept writes included if the database is back.
    Flush(oneshot::Sender<()>),
}

pub(super) struct Shared {
    jobs: mpsc::Sender<Job>,
    pub(super) secret: Vec<u8>,
    pub(super) public_url: String,
}

impl Shared {
    pub(super) async fn start(options: StoreOptions) -> Result<Self, StoreError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = oneshot::channel();
        let StoreOptions {
            db_path,
            database_url,
            token_secret,
            public_url,
        } = options;
        std::thread::Builder::new()
            .name("consult-store".into())
            .spawn(move || {
                let mut backend = match open(&db_path, database_url.as_ref(), token_secret) {
                    Ok((backend, secret)) => {
                        let _ = ready.send(Ok(secret));
                        backend
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let mut pending = Pending::new();
                // Ends when every handle is dropped, after running what they sent.
                loop {
                    let next = match pending.wait(Instant::now()) {
                        None => queue.recv().ok(),
                        Some(wait) => match queue.recv_timeout(wait) {
                            Ok(job) => Some(job),
                            Err(mpsc::RecvTimeoutError::Timeout) => {
                                pending.retry(backend.as_mut(), Instant::now(), false);
                                continue;
                            }
                            Err(mpsc::RecvTimeoutError::Disconnected) => None,
                        },
                    };
                    let Some(job) = next else {
                        pending.retry(backend.as_mut(), Instant::now(), true);
                        pending.abandon();
                        break;
                    };
                    // A bug in one job must not take the audit trail down with it.
                    let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
                        let now = Instant::now();
                        match job {
                            Job::Call(f) => {
                                // Reads see the writes sent before them, and an operator's
                                // writes land after those.
                                if !pending.is_empty() {
                                    pending.retry(backend.as_mut(), now, true);
                                }
                                f(backend.as_mut())
                            }
                            Job::Write { what, write } => {
                                pending.retry(backend.as_mut(), now, false);
                                pending.write(backend.as_mut(), what, write, now);
                            }
                            Job::Flush(done) => {
                                pending.retry(backend.as_mut(), now, true);
                                let _ = done.send(());
                            }
                        }
                    }));
                    if ran.is_err() {
                        tracing::error!("a consult store job panicked; the store goes on");
                    }
                }
            })
            .map_err(StoreError::Thread)?;
        let secret = opened.await.map_err(|_| StoreError::Closed)??;
        Ok(Shared {
            jobs,
            secret,
            public_url,
        })
    }
}

fn open(
    path: &std::path::Path,
    database_url: Option<&DatabaseUrl>,
    configured_secret: Option<String>,
) -> Result<(Box<dyn Backend>, Vec<u8>), StoreError> {
    let mut backend: Box<dyn Backend> = match database_url {
        Some(url) => Box::new(PgBackend::open(url)?),
        None => Box::new(SqliteBackend::open(path)?),
    };
    let secret = match configured_secret {
        Some(s) => s.into_bytes(),
        // Kept in the database so invite links survive restarts; with PostgreSQL, the one
        // row every node reads, so each node verifies the others' invites.
        None => {
            let made = random::hex(&random::bytes::<32>());
            backend.setting_or_insert(SECRET_KEY, &made)?.into_bytes()
        }
    };
    Ok((backend, secret))
}

impl StoreOptions {
    /// Where the records are, for logs: the SQLite path or the URL without its password.
    pub fn describe(&self) -> String {
        match &self.database_url {
            Some(url) => url.redacted(),
            None => self.db_path.display().to_string(),
        }
    }
}

impl Consults {
    fn shared(&self) -> Result<&Shared, StoreError> {
        self.inner.as_deref().ok_or(StoreError::Disabled)
    }

    /// Runs `f` on the store thread and waits for its result.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Backend) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, replied) = oneshot::channel();
        self.shared()?
            .jobs
            .send(Job::Call(Box::new(move |backend| {
                let _ = reply.send(f(backend));
            })))
            .map_err(|_| StoreError::Closed)?;
        replied.await.map_err(|_| StoreError::Closed)?
    }

    /// Queues `f` without waiting (the channel is unbounded, so this never blocks). If the
    /// database cannot be reached, `f` is kept and run again when it is back (`pending`).
    pub(super) fn fire(
        &self,
        what: &'static str,
        f: impl Fn(&mut dyn Backend) -> Result<(), StoreError> + Send + 'static,
    ) {
        let Some(shared) = self.inner.as_deref() else {
            return;
        };
        let job = Job::Write {
            what,
            write: Box::new(f),
        };
        if shared.jobs.send(job).is_err() {
            tracing::error!("consult store stopped: {what} lost");
        }
    }

    /// Waits until every job sent before runs (for shutdown and tests); writes kept during an
    /// outage are tried once more first.
    pub(super) async fn flush_jobs(&self) -> Result<(), StoreError> {
        let (done, flushed) = oneshot::channel();
        self.shared()?
            .jobs
            .send(Job::Flush(done))
            .map_err(|_| StoreError::Closed)?;
        flushed.await.map_err(|_| StoreError::Closed)
    }

    /// The secret invite tokens are signed with.
    pub(super) fn secret(&self) -> Result<&[u8], StoreError> {
        Ok(&self.shared()?.secret)
    }

    /// A key for another purpose (`label`), derived from the invite secret: the same on every
    /// node that shares the secret, and never the secret itself.
    pub fn derived_key(&self, label: &str) -> Result<Vec<u8>, StoreError> {
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, self.secret()?);
        Ok(aws_lc_rs::hmac::sign(&key, label.as_bytes())
            .as_ref()
            .to_vec())
    }

    /// `<public_url>/?invite=<token>`.
    pub fn invite_link(&self, token: &str) -> String {
        let base = self.inner.as_deref().map_or("", |s| s.public_url.as_str());
        format!("{base}/?invite={token}")
    }

    /// The local dev operator's API key (used when no operator is configured): made once,
    /// then kept in the database so the printed link keeps working.
    pub async fn dev_operator_key(&self) -> Result<String, StoreError> {
        let made = random::hex(&random::bytes::<24>());
        self.call(move |backend| backend.setting_or_insert(DEV_OPERATOR_KEY, &made))
            .await
    }
}
