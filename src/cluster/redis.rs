//! A small Redis client: a few TCP connections, one command at a time on each, reconnect on
//! the next command after any failure. Cluster traffic is a heartbeat a second and a lookup per
//! join, so there is nothing to pipeline; but joins come in bursts, and the heartbeat must not
//! wait behind them (see `POOL`).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

use super::resp::{self, Reply, RespError};

/// A command that takes longer (waiting for the connection, connecting, the round trip: all of
/// it) means Redis or the path to it is in trouble: joins must not hang on it, and a heartbeat
/// must give up well within the node's TTL (2 s) so the next one can try.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);
/// Connections for lookups. Joins come in bursts (a clinic's morning, the rejoins after a node
/// restart), and every command's timeout counts its wait for a connection: with one connection
/// a burst of 30 joins on a slow machine (CI) queued past `COMMAND_TIMEOUT`, the lookups timed
/// out in batches, the heartbeat queued behind them failed too, and the node dropped out of the
/// directory while its consults ran (rooms split across nodes).
const POOL: usize = 4;
/// Far more than any reply the directory sends; a server that sends more is not one to trust.
const MAX_REPLY: usize = 2 << 20;

#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("cannot reach redis at {addr}: {cause}")]
    Connect { addr: String, cause: std::io::Error },
    #[error("redis at {addr}: {cause}")]
    Io { addr: String, cause: std::io::Error },
    #[error("redis at {addr} did not answer within {COMMAND_TIMEOUT:?}")]
    Timeout { addr: String },
    #[error("redis at {addr} closed the connection")]
    Closed { addr: String },
    #[error("redis at {addr} sent a reply over {MAX_REPLY} bytes")]
    TooLarge { addr: String },
    #[error(transparent)]
    Protocol(#[from] RespError),
    /// The command was refused (`-ERR ...`, `-NOAUTH ...`); the connection is fine.
    #[error("redis refused {command}: {message}")]
    Refused { command: String, message: String },
    #[error("redis {command}: unexpected reply {reply:?}")]
    Unexpected { command: String, reply: Reply },
}

/// Where Redis is: `redis://[:password@]host[:port][/db]`.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    pub host: String,
    pub port: u16,
    pub password: Option<String>,
    pub db: u32,
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self}")
    }
}

/// Without the password: safe for logs and `--check-config`.
impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let auth = if self.password.is_some() { ":***@" } else { "" };
        write!(f, "redis://{auth}{}:{}/{}", self.host, self.port, self.db)
    }
}

impl std::str::FromStr for RedisUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("redis://")
            .ok_or("must start with redis:// (TLS to Redis is not supported: keep it on a private network)")?;
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let password = match auth {
            None => None,
            Some(a) => {
                let p = a.split_once(':').map(|(_, p)| p).unwrap_or(a);
                (!p.is_empty()).then(|| p.to_string())
            }
        };
        let (hostport, db) = match rest.split_once('/') {
            Some((h, "")) => (h, 0),
            Some((h, d)) => (
                h,
                d.parse()
                    .map_err(|_| format!("database {d:?} is not a number"))?,
            ),
            None => (rest, 0),
        };
        let (host, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse()
                    .map_err(|_| format!("port {p:?} is not a number"))?,
            ),
            _ => (hostport, 6379),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err("no host".into());
        }
        Ok(RedisUrl {
            host: host.to_string(),
            port,
            password,
            db,
        })
    }
}

pub struct Redis {
    url: RedisUrl,
    addr_text: String,
    /// The heartbeat's own connection: a node's liveness never waits behind lookups.
    heartbeat: Mutex<Option<Conn>>,
    pool: [Mutex<Option<Conn>>; POOL],
    /// Where the next lookup starts looking for a free connection.
    next: AtomicUsize,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Redis {
    /// Connects once, so a wrong address or password is reported at start.
    pub async fn connect(url: RedisUrl) -> Result<Self, RedisError> {
        let addr_text = format!("{}:{}", url.host, url.port);
        let redis = Redis {
            url,
            addr_text,
            heartbeat: Mutex::new(None),
            pool: std::array::from_fn(|_| Mutex::new(None)),
            next: AtomicUsize::new(0),
        };
        redis.command(&[b"PING"]).await?;
        Ok(redis)
    }

    pub fn url(&self) -> &RedisUrl {
        &self.url
    }

    /// Runs one command; a `-ERR` reply is `Refused`. After a connection failure the next
    /// command reconnects.
    pub async fn command(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        self.timed(async {
            let start = self.next.fetch_add(1, Ordering::Relaxed);
            let free = (0..POOL)
                .map(|k| &self.pool[(start + k) % POOL])
                .find_map(|m| m.try_lock().ok());
            let slot = match free {
                Some(slot) => slot,
                None => self.pool[start % POOL].lock().await,
            };
            self.command_on(slot, args).await
        })
        .await
    }

    /// `command` on the heartbeat's own connection.
    pub async fn heartbeat_command(&self, args: &[&[u8]]) -> Result<Reply, RedisError> {
        self.timed(async { self.command_on(self.heartbeat.lock().await, args).await })
            .await
    }

    async fn timed(
        &self,
        command: impl std::future::Future<Output = Result<Reply, RedisError>>,
    ) -> Result<Reply, RedisError> {
        match tokio::time::timeout(COMMAND_TIMEOUT, command).await {
            Ok(r) => r,
            Err(_) => Err(RedisError::Timeout {
                addr: self.addr_text.clone(),
            }),
        }
    }

    async fn command_on(
        &self,
        mut slot: tokio::sync::MutexGuard<'_, Option<Conn>>,
        args: &[&[u8]],
    ) -> Result<Reply, RedisError> {
        // Out of the slot while in use: if this future is dropped mid-reply (a timeout, a
        // cancelled task), the half-read connection goes with it instead of confusing the next
        // command.
        let mut conn = match slot.take() {
            Some(c) => c,
            None => self.open().await?,
        };
        let result = self.roundtrip(&mut conn, args).await;
        match result {
            Ok(Reply::Error(message)) => {
                *slot = Some(conn);
                Err(RedisError::Refused {
                    command: command_name(args),
                    message,
                })
            }
            Ok(reply) => {
                *slot = Some(conn);
                Ok(reply)
            }
            Err(e) => Err(e),
        }
    }

    async fn open(&self) -> Result<Conn, RedisError> {
        let stream =
            TcpStream::connect(&self.addr_text)
                .await
                .map_err(|cause| RedisError::Connect {
                    addr: self.addr_text.clone(),
                    cause,
                })?;
        let _ = stream.set_nodelay(true);
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(4096),
        };
        if let Some(p) = &self.url.password {
            self.expect_ok(&mut conn, &[b"AUTH", p.as_bytes()]).await?;
        }
        if self.url.db != 0 {
            let db = self.url.db.to_string();
            self.expect_ok(&mut conn, &[b"SELECT", db.as_bytes()])
                .await?;
        }
        Ok(conn)
    }

    async fn expect_ok(&self, conn: &mut Conn, args: &[&[u8]]) -> Result<(), RedisError> {
        match self.roundtrip(conn, args).await? {
            Reply::Status(_) => Ok(()),
            Reply::Error(message) => Err(RedisError::Refused {
                command: command_name(args),
                message,
            }),
            reply => Err(RedisError::Unexpected {
                command: command_name(args),
                reply,
            }),
        }
    }

    async fn roundtrip(&self, conn: &mut Conn, args: &[&[u8]]) -> Result<Reply, RedisError> {
        let io = |cause| RedisError::Io {
            addr: self.addr_text.clone(),
            cause,
        };
        let mut out = Vec::with_capacity(64);
        resp::encode(args, &mut out);
        conn.stream.write_all(&out).await.map_err(io)?;
        conn.buf.clear();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some((reply, used)) = resp::parse(&conn.buf)? {
                if used != conn.buf.len() {
                    // One command, one reply: anything after it means we are out of step.
                    return Err(RedisError::Unexpected {
                        command: command_name(args),
                        reply,
                    });
                }
                return Ok(reply);
            }
            if conn.buf.len() > MAX_REPLY {
                return Err(RedisError::TooLarge {
                    addr: self.addr_text.clone(),
                });
            }
            let n = conn.stream.read(&mut chunk).await.map_err(io)?;
            if n == 0 {
                return Err(RedisError::Closed {
                    addr: self.addr_text.clone(),
                });
            }
            conn.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

fn command_name(args: &[&[u8]]) -> String {
    args.first()
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls_and_hides_the_password() {
        let cases: &[(&str, &str, Option<&str>)] = &[
            ("redis://127.0.0.1:7000", "redis://127.0.0.1:7000/0", None),
            ("redis://redis", "redis://redis:6379/0", None),
            (
                "redis://:s3cret@10.0.0.5:6380/2",
                "redis://:***@10.0.0.5:6380/2",
                Some("s3cret"),
            ),
            ("redis://user:pw@h/", "redis://:***@h:6379/0", Some("pw")),
            ("redis://[::1]:7001", "redis://::1:7001/0", None),
        ];
        for (input, shown, password) in cases {
            let url: RedisUrl = input.parse().unwrap();
            assert_eq!(url.to_string(), *shown, "{input}");
            assert_eq!(url.password.as_deref(), *password, "{input}");
        }
    }

    /// A fake Redis that answers every command with `+PONG` except `HOLD`, which it never
    /// answers (a lookup stuck behind a slow Redis).
    async fn holding_server() -> RedisUrl {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 512];
                    loop {
                        let Ok(n) = stream.read(&mut chunk).await else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Ok(Some((Reply::Array(args), used))) = resp::parse(&buf) {
                            buf.drain(..used);
                            if args.first().and_then(|a| a.as_str()) != Some("HOLD") {
                                stream.write_all(b"+PONG\r\n").await.unwrap();
                            }
                        }
                    }
                });
            }
        });
        format!("redis://127.0.0.1:{port}").parse().unwrap()
    }

    #[tokio::test]
    async fn lookups_stuck_on_every_connection_do_not_hold_up_the_heartbeat() {
        let redis = std::sync::Arc::new(Redis::connect(holding_server().await).await.unwrap());
        let mut stuck = Vec::new();
        for _ in 0..POOL {
            let r = redis.clone();
            stuck.push(tokio::spawn(async move { r.command(&[b"HOLD"]).await }));
        }
        // Every pooled connection now waits on a lookup (each took a free one).
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(matches!(
            redis.heartbeat_command(&[b"PING"]).await,
            Ok(Reply::Status(s)) if s == "PONG"
        ));
        // ...while every lookup was still stuck.
        assert!(stuck.iter().all(|s| !s.is_finished()));
        for s in stuck {
            assert!(matches!(s.await.unwrap(), Err(RedisError::Timeout { .. })));
        }
        // Connections lost to timeouts reopen on the next command.
        assert!(matches!(
            redis.command(&[b"PING"]).await,
            Ok(Reply::Status(_))
        ));
    }

    #[test]
    fn refuses_bad_urls() {
        for bad in [
            "http://x",
            "redis://",
            "redis://h:port",
            "redis://h:1/x",
            "rediss://h",
        ] {
            assert!(bad.parse::<RedisUrl>().is_err(), "{bad}");
        }
    }
}
