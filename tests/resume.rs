//! Reconnect and resume over real WebSockets: a socket that drops without `leave` keeps the
//! participant's place for the grace period (the others see it reconnecting, not a leave and a
//! join), `join.resume` brings it back as the same participant, never twice; after the grace
//! period it has left and a resume is refused with `resume_failed`.

use std::time::Duration;

use consult_sfu::config::{Config, ConsultsConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

mod common;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

fn config(name: &str, grace: Duration) -> Config {
    Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        reconnect_grace: grace,
        consults: ConsultsConfig {
            db_path: common::temp_dir(name).join("consults.sqlite"),
            allow_open_join: true,
            ..ConsultsConfig::default()
        },
        ..Config::default()
    }
}

async fn connect(running: &common::Running) -> Ws {
    tokio_tungstenite::connect_async(format!("ws://{}/ws", running.http))
        .await
        .unwrap()
        .0
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// Next message of type `kind`, skipping others.
async fn expect(ws: &mut Ws, kind: &str) -> Value {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == kind {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for {kind}: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .unwrap_or_else(|_| panic!("no {kind} within 10 s"))
}

async fn join(running: &common::Running, name: &str, role: &str) -> (Ws, Value) {
    let mut ws = connect(running).await;
    send(
        &mut ws,
        json!({"v":1,"type":"join","room":"resume-room","name":name,"role":role}),
    )
    .await;
    let joined = expect(&mut ws, "joined").await;
    (ws, joined)
}

/// Drops the TCP connection without a close frame or `leave`, as a lost link does.
fn lose(ws: Ws) {
    drop(ws);
}

#[tokio::test]
async fn a_dropped_socket_resumes_as_the_same_participant() {
    let cfg = config("resume", Duration::from_secs(30));
    let running = common::serve(&cfg).await;
    let (mut clinic, _) = join(&running, "Clinic", "clinic").await;
    let (patient, joined) = join(&running, "Patient", "patient").await;
    let id = joined["participant_id"].as_str().unwrap().to_string();
    let token = joined["resume_token"].as_str().unwrap().to_string();
    assert_eq!(
        expect(&mut clinic, "participant_joined").await["participant"]["participant_id"],
        id.as_str()
    );

    lose(patient);
    let r = expect(&mut clinic, "participant_reconnecting").await;
    assert_eq!(
        (r["participant_id"].as_str(), r["reconnecting"].as_bool()),
        (Some(id.as_str()), Some(true))
    );

    // A forged token is refused and changes nothing.
    let mut bad = connect(&running).await;
    let forged = format!("x{token}");
    send(&mut bad, json!({"v":1,"type":"join","room":"resume-room","name":"Patient","role":"patient","resume":forged})).await;
    assert_eq!(expect(&mut bad, "error").await["code"], "resume_failed");

    let mut back = connect(&running).await;
    send(&mut back, json!({"v":1,"type":"join","room":"resume-room","name":"Patient","role":"patient","resume":token})).await;
    let again = expect(&mut back, "joined").await;
    assert_eq!(again["participant_id"], id.as_str(), "same participant");
    assert_eq!(again["resumed"], true);
    assert_eq!(
        again["participants"].as_array().unwrap().len(),
        1,
        "the clinic only"
    );
    assert!(again["resume_token"].is_string());
    let r = expect(&mut clinic, "participant_reconnecting").await;
    assert_eq!(r["reconnecting"], false);

    // Signaling works on the new socket: a mute reaches the clinic, from the same id.
    send(
        &mut back,
        json!({"v":1,"type":"mute","kind":"audio","muted":true}),
    )
    .await;
    let m = expect(&mut clinic, "mute_changed").await;
    assert_eq!(m["participant_id"], id.as_str());

    // An explicit leave is a leave at once, not a reconnect.
    send(&mut back, json!({"v":1,"type":"leave"})).await;
    assert_eq!(
        expect(&mut clinic, "participant_left").await["participant_id"],
        id.as_str()
    );
    running.stop().await;
    common::remove_db_dir(&cfg);
}

#[tokio::test]
async fn after_the_grace_period_the_participant_has_left_and_cannot_resume() {
    let cfg = config("resume-grace", Duration::from_secs(1));
    let running = common::serve(&cfg).await;
    let (mut clinic, _) = join(&running, "Clinic", "clinic").await;
    let (patient, joined) = join(&running, "Patient", "patient").await;
    let id = joined["participant_id"].as_str().unwrap().to_string();
    let token = joined["resume_token"].as_str().unwrap().to_string();

    let lost_at = std::time::Instant::now();
    lose(patient);
    assert_eq!(
        expect(&mut clinic, "participant_reconnecting").await["reconnecting"],
        true
    );
    assert_eq!(
        expect(&mut clinic, "participant_left").await["participant_id"],
        id.as_str()
    );
    let after = lost_at.elapsed();
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&after),
        "left {after:?} after the drop (grace 1 s)"
    );

    let mut back = connect(&running).await;
    send(&mut back, json!({"v":1,"type":"join","room":"resume-room","name":"Patient","role":"patient","resume":token})).await;
    assert_eq!(expect(&mut back, "error").await["code"], "resume_failed");
    // The same socket can join afresh: a new participant.
    send(
        &mut back,
        json!({"v":1,"type":"join","room":"resume-room","name":"Patient","role":"patient"}),
    )
    .await;
    let fresh = expect(&mut back, "joined").await;
    assert_ne!(fresh["participant_id"], id.as_str());
    running.stop().await;
    common::remove_db_dir(&cfg);
}
