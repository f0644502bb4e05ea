//! Admission control over a real WebSocket: at the node's participant cap a join gets
//! `server_busy` with `retry_after_ms` and is counted; the joined participants are untouched;
//! once one leaves, a join is admitted again.

use std::time::{Duration, Instant};

use consult_sfu::config::{Config, ConsultsConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod common;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn join(http: std::net::SocketAddr, name: &str, role: &str) -> (Ws, Value) {
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .unwrap();
    let msg = json!({"v":1,"type":"join","room":"cap-test","name":name,"role":role});
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, ws.next())
            .await
            .expect("an answer to join")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(t) = m {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "joined" || v["type"] == "error" {
                return (ws, v);
            }
        }
    }
}

#[tokio::test]
async fn joins_over_the_node_cap_get_server_busy_with_a_retry_hint() {
    let dir = common::temp_dir("admission");
    let config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        max_node_participants: Some(2),
        consults: ConsultsConfig {
            db_path: dir.join("consults.sqlite"),
            allow_open_join: true,
            ..ConsultsConfig::default()
        },
        ..Config::default()
    };
    let server = common::serve(&config).await;

    let (_clinic, v) = join(server.http, "Clinic", "clinic").await;
    assert_eq!(v["type"], "joined", "{v}");
    let (mut specialist, v) = join(server.http, "Dr A", "specialist").await;
    assert_eq!(v["type"], "joined", "{v}");

    let (_refused, v) = join(server.http, "Patient", "patient").await;
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["code"], "server_busy", "{v}");
    assert_eq!(v["retry_after_ms"], 15_000, "{v}");
    assert!(v["message"].as_str().unwrap().contains("busy"), "{v}");

    let text = common::http_get(server.http, "/metrics").await;
    assert!(
        text.contains("consult_joins_refused_total{reason=\"participant_cap\"} 1"),
        "{text}"
    );
    assert!(text.contains("consult_tokio_tasks "), "{text}");
    assert!(text.contains("consult_event_loop_lag_seconds "), "{text}");
    assert!(text.contains("consult_admission_busy 0"), "{text}");

    // Other errors keep their old shape (no retry hint).
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http))
        .await
        .unwrap();
    ws.send(Message::Text("{".into())).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else {
        panic!("an error reply")
    };
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["code"], "bad_json");
    assert!(v.get("retry_after_ms").is_none(), "{v}");

    // A place frees: the next join is admitted.
    specialist
        .send(Message::Text(
            json!({"v":1,"type":"leave"}).to_string().into(),
        ))
        .await
        .unwrap();
    drop(specialist);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_ws, v) = join(server.http, "Patient", "patient").await;
        if v["type"] == "joined" {
            break;
        }
        assert_eq!(v["code"], "server_busy", "{v}");
        assert!(Instant::now() < deadline, "still refused after the leave");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
