//! The real server on port 0 for integration tests: bind, start, serve until `stop`.

#![allow(dead_code)] // each test crate uses a different part

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use consult_sfu::config::Config;
use consult_sfu::consult::Consults;
use consult_sfu::server::{Listeners, ServeOptions, Server};

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

/// Binds what `config` asks for (use port 0) and serves it in a task.
pub async fn serve(config: &Config) -> Running {
    str0m::crypto::from_feature_flags().install_process_default();
    let listeners = Listeners::bind(config).await.unwrap();
    let http = listeners.http_addr();
    let tcp = listeners.tcp_addr();
    let options = ServeOptions::from_config(config, &listeners);
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
