//! Graceful drain over real sockets: `POST /api/v1/admin/drain` makes `/readyz` fail and
//! refuses new consults while joins to running ones still work; the process exits once the
//! running consults end, or at `drain_timeout` (telling those left `closed{server_restart}`);
//! a SIGTERM during a drain still stops at once.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use consult_sfu::config::{Config, ConsultsConfig, OperatorConfig, Secret};
use futures_util::SinkExt;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::{expect_within, send};

const KEY: &str = "drain-test-operator-key-0123";

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

fn config(name: &str, drain_timeout: Duration) -> Config {
    let dir = common::temp_dir(name);
    Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        drain_timeout,
        operators: vec![OperatorConfig {
            clinic: "Bac Ha clinic".into(),
            key: Secret::new(KEY),
        }],
        consults: ConsultsConfig {
            db_path: dir.join("consults.sqlite"),
            allow_open_join: true,
            ..ConsultsConfig::default()
        },
        ..Config::default()
    }
}

/// One HTTP/1.0 request: (status, body).
async fn http(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!("{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: 0\r\n{headers}\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, body.to_string())
}

async fn drain(addr: SocketAddr) -> Value {
    let (status, body) = http(
        addr,
        "POST",
        "/api/v1/admin/drain",
        &format!("Authorization: Bearer {KEY}\r\n"),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    serde_json::from_str(&body).unwrap()
}

async fn connect(addr: SocketAddr) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap()
        .0
}

async fn join(addr: SocketAddr, room: &str, name: &str, role: &str) -> Ws {
    let mut ws = connect(addr).await;
    send(
        &mut ws,
        json!({"v":1,"type":"join","room":room,"name":name,"role":role}),
    )
    .await;
    ws
}

#[tokio::test]
async fn a_drain_refuses_new_consults_and_exits_when_the_running_ones_end() {
    let cfg = config("drain-ends", Duration::from_secs(30));
    let server = common::serve(&cfg).await;
    let addr = server.http;
    let mut clinic = join(addr, "running", "Bac Ha", "clinic").await;
    expect_within(&mut clinic, "joined", Duration::from_secs(5)).await;
    assert_eq!(
        http(addr, "GET", "/readyz", "").await,
        (200, "ready\n".into())
    );

    // Only with an operator key, and only from this machine (not relayed by the TLS proxy).
    let path = "/api/v1/admin/drain";
    assert_eq!(http(addr, "POST", path, "").await.0, 401);
    let relayed = format!("Authorization: Bearer {KEY}\r\nX-Forwarded-For: 203.0.113.9\r\n");
    assert_eq!(http(addr, "POST", path, &relayed).await.0, 403);
    assert_eq!(
        http(addr, "GET", "/readyz", "").await.0,
        200,
        "not draining yet"
    );

    let reply = drain(addr).await;
    assert_eq!(reply["draining"], true);
    assert_eq!(reply["already_draining"], false);
    assert_eq!(reply["consults_running"], 1);
    assert_eq!(reply["drain_timeout_secs"], 30);
    assert_eq!(drain(addr).await["already_draining"], true);
    assert_eq!(
        http(addr, "GET", "/readyz", "").await,
        (503, "draining\n".into())
    );
    assert_eq!(
        http(addr, "GET", "/healthz", "").await.0,
        200,
        "still alive"
    );

    // A new consult is refused; the running one still takes joins.
    let mut elsewhere = join(addr, "new-consult", "Dr Lan", "specialist").await;
    let refused = expect_within(&mut elsewhere, "error", Duration::from_secs(5)).await;
    assert_eq!(refused["code"], "server_restarting", "{refused}");
    let mut doctor = join(addr, "running", "Dr Lan", "specialist").await;
    expect_within(&mut doctor, "joined", Duration::from_secs(5)).await;

    // The consult goes on past the request; when both leave, the process exits.
    tokio::time::sleep(Duration::from_millis(500)).await;
    for ws in [&mut clinic, &mut doctor] {
        ws.send(Message::Text(
            json!({"v":1,"type":"leave"}).to_string().into(),
        ))
        .await
        .unwrap();
    }
    let left = Instant::now();
    assert!(
        server.exits_within(Duration::from_secs(10)).await,
        "the drained server exits"
    );
    println!(
        "drain: exited {:?} after the last consult ended",
        left.elapsed()
    );
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the port is closed"
    );
    common::remove_db_dir(&cfg);
}

#[tokio::test]
async fn at_drain_timeout_those_left_are_told_to_rejoin_and_the_process_exits() {
    let timeout = Duration::from_secs(2);
    let cfg = config("drain-timeout", timeout);
    let server = common::serve(&cfg).await;
    let addr = server.http;
    let mut clinic = join(addr, "long-consult", "Bac Ha", "clinic").await;
    expect_within(&mut clinic, "joined", Duration::from_secs(5)).await;

    let requested = Instant::now();
    drain(addr).await;
    let closed = expect_within(&mut clinic, "closed", Duration::from_secs(10)).await;
    let told_after = requested.elapsed();
    assert_eq!(closed["reason"], "server_restart", "{closed}");
    assert!(
        told_after >= timeout && told_after < timeout + Duration::from_secs(2),
        "told at {told_after:?}, drain_timeout {timeout:?}"
    );
    drop(clinic);
    assert!(server.exits_within(Duration::from_secs(10)).await);
    println!(
        "drain_timeout {timeout:?}: told closed{{server_restart}} after {told_after:?}, exited after {:?}",
        requested.elapsed()
    );
    common::remove_db_dir(&cfg);
}

#[tokio::test]
async fn sigterm_during_a_drain_still_stops_at_once() {
    let cfg = config("drain-term", Duration::from_secs(600));
    let server = common::serve(&cfg).await;
    let addr = server.http;
    let mut clinic = join(addr, "consult", "Bac Ha", "clinic").await;
    expect_within(&mut clinic, "joined", Duration::from_secs(5)).await;
    drain(addr).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // `stop` is what SIGTERM does in main: the fast restart of issue 7.
    let t0 = Instant::now();
    let stopping = tokio::spawn(server.stop());
    let closed = expect_within(&mut clinic, "closed", Duration::from_secs(5)).await;
    assert_eq!(closed["reason"], "server_restart", "{closed}");
    drop(clinic);
    stopping.await.unwrap();
    println!("SIGTERM during a drain: stopped after {:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(5));
    common::remove_db_dir(&cfg);
}

/// The binary: SIGUSR1 starts the same drain; with no consult running it exits at once, 0.
#[tokio::test]
async fn sigusr1_drains_the_real_process() {
    use std::io::BufRead;
    let dir = common::temp_dir("drain-usr1");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_consult-sfu"))
        .args(["--http-addr", "127.0.0.1:0", "--udp-addr", "127.0.0.1:0"])
        .arg("--db-path")
        .arg(dir.join("c.sqlite"))
        .env_remove("CONSULT_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufReader::new(stdout).lines();
    let line = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("CONSULT_READY"))
        .expect("the ready line");
    // Keep reading: the server prints more after the ready line (the operator link), and a
    // closed pipe would make that print fail.
    std::thread::spawn(move || lines.for_each(drop));
    let addr: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("http="))
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(http(addr, "GET", "/readyz", "").await.0, 200);
    let t0 = Instant::now();
    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-USR1", &pid])
        .status()
        .unwrap()
        .success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "still running");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status.code(), Some(0));
    println!(
        "SIGUSR1 with no consult running: exited after {:?}",
        t0.elapsed()
    );
    let _ = std::fs::remove_dir_all(dir);
}
