//! The store thread: owns the one SQLite connection and runs jobs sent over a channel, in
//! order. Async callers await a oneshot reply; fire-and-forget jobs log their errors.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use super::migrations::MigrationError;
use super::{db, random, Consults};

/// Settings-table key of the generated token secret (hex).
const SECRET_KEY: &str = "token_secret";
/// Settings-table key of the local dev operator's API key.
const DEV_OPERATOR_KEY: &str = "dev_operator_key";

#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub db_path: PathBuf,
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
    #[error("cannot start the consult store thread: {0}")]
    Thread(std::io::Error),
    #[error("the consult store has stopped")]
    Closed,
    #[error("consults are disabled on this server")]
    Disabled,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

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
            token_secret,
            public_url,
        } = options;
        std::thread::Builder::new()
            .name("consult-store".into())
            .spawn(move || {
                let mut conn = match open(&db_path, token_secret) {
                    Ok((conn, secret)) => {
                        let _ = ready.send(Ok(secret));
                        conn
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                // Ends when every handle is dropped, after running what they sent.
                while let Ok(job) = queue.recv() {
                    // A bug in one job must not take the audit trail down with it.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
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
    configured_secret: Option<String>,
) -> Result<(Connection, Vec<u8>), StoreError> {
    let conn = db::open(path)?;
    let secret = match configured_secret {
        Some(s) => s.into_bytes(),
        // Kept in the database so invite links survive restarts.
        None => {
            let hex =
                db::setting_or_insert(&conn, SECRET_KEY, || random::hex(&random::bytes::<32>()))?;
            hex.into_bytes()
        }
    };
    Ok((conn, secret))
}

impl Consults {
    fn shared(&self) -> Result<&Shared, StoreError> {
        self.inner.as_deref().ok_or(StoreError::Disabled)
    }

    /// Runs `f` on the store thread and waits for its result.
    pub(super) async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, replied) = oneshot::channel();
        self.shared()?
            .jobs
            .send(Box::new(move |conn| {
                let _ = reply.send(f(conn));
            }))
            .map_err(|_| StoreError::Closed)?;
        Ok(replied.await.map_err(|_| StoreError::Closed)??)
    }

    /// Queues `f` without waiting (the channel is unbounded, so this never blocks).
    pub(super) fn fire(
        &self,
        what: &'static str,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<()> + Send + 'static,
    ) {
        let Some(shared) = self.inner.as_deref() else {
            return;
        };
        let job: Job = Box::new(move |conn| {
            if let Err(e) = f(conn) {
                tracing::error!("consult store: writing {what} failed: {e}");
            }
        });
        if shared.jobs.send(job).is_err() {
            tracing::error!("consult store stopped: {what} lost");
        }
    }

    /// The secret invite tokens are signed with.
    pub(super) fn secret(&self) -> Result<&[u8], StoreError> {
        Ok(&self.shared()?.secret)
    }

    /// `<public_url>/?invite=<token>`.
    pub fn invite_link(&self, token: &str) -> String {
        let base = self.inner.as_deref().map_or("", |s| s.public_url.as_str());
        format!("{base}/?invite={token}")
    }

    /// The local dev operator's API key (used when no operator is configured): made once,
    /// then kept in the database so the printed link keeps working.
    pub async fn dev_operator_key(&self) -> Result<String, StoreError> {
        self.call(|conn| {
            db::setting_or_insert(conn, DEV_OPERATOR_KEY, || {
                random::hex(&random::bytes::<24>())
            })
        })
        .await
    }
}
