//! The real server on port 0 for integration tests: bind, start, serve until `stop`.

#![allow(dead_code)] // each test crate uses a different part

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use consult_sfu::config::{Config, ConsultsConfig};
use consult_sfu::consult::Consults;
use consult_sfu::server::{Listeners, ServeOptions, Server};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

/// A fresh folder under the system temp dir, unique per test and process.
pub fn temp_dir(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!("consult-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Removes the folder holding `config`'s database (made by `temp_dir`).
#[allow(dead_code)] // not every test binary that includes `common` uses it
pub fn remove_db_dir(config: &Config) {
    if let Some(dir) = config.consults.db_path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A running server.
pub struct Running {
    pub http: SocketAddr,
    /// The ICE-TCP listener, when the config turns it on.
    pub tcp: Option<SocketAddr>,
    pub consults: Consults,
    pub dev_link: Option<String>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

/// Port 0 everywhere, join by room name (open join), and a fresh store in a temp folder
/// (`remove_db_dir` removes it).
pub fn open_join_config(name: &str) -> Config {
    Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        consults: ConsultsConfig {
            db_path: temp_dir(name).join("consults.sqlite"),
            allow_open_join: true,
            ..ConsultsConfig::default()
        },
        ..Config::default()
    }
}

/// Binds what `config` asks for (use port 0) and serves it in a task.
pub async fn serve(config: &Config) -> Running {
    serve_with(config, |_| {}).await
}

/// As `serve`, with options no config file sets (timeouts shortened for a test).
pub async fn serve_with(config: &Config, tune: impl FnOnce(&mut ServeOptions)) -> Running {
    str0m::crypto::from_feature_flags().install_process_default();
    let listeners = Listeners::bind(config).await.unwrap();
    let http = listeners.http_addr();
    let tcp = listeners.tcp_addr();
    let mut options = ServeOptions::from_config(config, &listeners);
    tune(&mut options);
    let server = Server::start(listeners, options).await.unwrap();
    let consults = server.consults().clone();
    let dev_link = server.dev_operator_link();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        server
            .serve(async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
    });
    Running {
        http,
        tcp,
        consults,
        dev_link,
        stop: Some(stop),
        task,
    }
}

impl Running {
    /// Waits (at most `within`) for the server to stop by itself (a drain), without asking
    /// it to; true if it did.
    pub async fn exits_within(mut self, within: Duration) -> bool {
        // Held, not dropped: a dropped sender is the stop signal.
        let _keep = self.stop.take();
        match tokio::time::timeout(within, &mut self.task).await {
            Ok(result) => {
                result.unwrap();
                true
            }
            Err(_) => false,
        }
    }

    /// Shuts the server down and waits (10 s at most) for it to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("the server stops on shutdown")
            .unwrap();
    }
}

/// `GET path` over a fresh connection (`Connection: close`): the whole response, head and body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The value of an unlabelled metric in the server's `/metrics`, if it is there.
pub async fn metric(addr: SocketAddr, name: &str) -> Option<f64> {
    http_get(addr, "/metrics")
        .await
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Sends one signaling message.
pub async fn send<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut WebSocketStream<S>, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next signaling message of type `kind` within 5 s, skipping others.
pub async fn expect<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    kind: &str,
) -> Value {
    expect_within(ws, kind, Duration::from_secs(5)).await
}

/// The next signaling message of type `kind` within `within`, skipping others; every message
/// must carry the protocol version.
pub async fn expect_within<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    kind: &str,
    within: Duration,
) -> Value {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {kind}"))
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            assert_eq!(v["v"], 1, "every message has v=1: {v}");
            if v["type"] == kind {
                return v;
            }
        }
    }
}

/// The next `error` must carry `code`, and a message for people.
pub async fn expect_error<S: AsyncRead + AsyncWrite + Unpin>(
    ws: &mut WebSocketStream<S>,
    code: &str,
) -> Value {
    let v = expect(ws, "error").await;
    assert_eq!(v["code"], code, "{v}");
    assert!(!v["message"].as_str().unwrap().is_empty(), "{v}");
    v
}
