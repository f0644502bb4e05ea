//! Signaling over a real WebSocket against the real server on port 0: bad input gets errors and
//! the server and room go on; negotiation works with str0m as the client.

use std::time::{Duration, Instant};

use consult_sfu::config::Config;
use futures_util::SinkExt;
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

mod common;

use common::{expect, expect_error, send};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

struct TestServer {
    http: std::net::SocketAddr,
    config: Config,
    running: common::Running,
}

async fn start(max_participants: usize) -> TestServer {
    let config = Config {
        max_participants,
        ..common::open_join_config("signaling")
    };
    let running = common::serve(&config).await;
    TestServer {
        http: running.http,
        config,
        running,
    }
}

impl TestServer {
    async fn connect(&self) -> Ws {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", self.http))
            .await
            .unwrap();
        ws
    }

    async fn get(&self, path: &str) -> String {
        common::http_get(self.http, path).await
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        common::metric(self.http, name).await
    }

    async fn stop(self) {
        self.running.stop().await;
        common::remove_db_dir(&self.config);
    }
}

async fn send_raw(ws: &mut Ws, text: String) {
    ws.send(Message::Text(text.into())).await.unwrap();
}

fn join(room: &str, name: &str, role: &str) -> Value {
    json!({"v":1,"type":"join","room":room,"name":name,"role":role})
}

/// A client offer with one audio and one video track, made by str0m.
fn client_offer() -> (Rtc, SdpOffer, str0m::change::SdpPendingOffer) {
    let mut rtc = Rtc::new(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    api.add_media(MediaKind::Video, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();
    (rtc, offer, pending)
}

#[tokio::test]
async fn bad_input_gets_errors_and_the_server_goes_on() {
    let server = start(8).await;
    let mut ws = server.connect().await;

    send_raw(&mut ws, "{not json".into()).await;
    expect_error(&mut ws, "bad_json").await;
    send_raw(&mut ws, r#"{"type":"leave"}"#.into()).await;
    expect_error(&mut ws, "unsupported_version").await;
    send_raw(&mut ws, r#"{"v":1,"type":"teleport"}"#.into()).await;
    expect_error(&mut ws, "unknown_type").await;
    send_raw(
        &mut ws,
        format!(r#"{{"v":1,"type":"offer","sdp":"{}"}}"#, "x".repeat(70_000)),
    )
    .await;
    expect_error(&mut ws, "too_large").await;
    ws.send(Message::Binary(vec![1, 2, 3].into()))
        .await
        .unwrap();
    expect_error(&mut ws, "invalid_message").await;
    send(&mut ws, json!({"v":1,"type":"offer","sdp":"v=0"})).await;
    expect_error(&mut ws, "wrong_state").await;
    send(&mut ws, join("Not A Room!", "x", "clinic")).await;
    expect_error(&mut ws, "invalid_message").await;
    send(&mut ws, join("consult-1", "Chị Hoa", "patient")).await;
    expect_error(&mut ws, "unknown_room").await;

    // The same connection can still join properly.
    send(&mut ws, join("consult-1", "Phòng khám Bắc Hà", "clinic")).await;
    let joined = expect(&mut ws, "joined").await;
    assert_eq!(joined["room"], "consult-1");
    assert_eq!(joined["participants"], json!([]));

    send(&mut ws, join("consult-1", "again", "clinic")).await;
    expect_error(&mut ws, "wrong_state").await;
    send(&mut ws, json!({"v":1,"type":"answer","sdp":"v=0"})).await;
    expect_error(&mut ws, "wrong_state").await;
    send(
        &mut ws,
        json!({"v":1,"type":"offer","sdp":"this is not sdp"}),
    )
    .await;
    expect_error(&mut ws, "bad_sdp").await;
    send(
        &mut ws,
        json!({"v":1,"type":"candidate","candidate":"candidate:garbage"}),
    )
    .await;
    expect_error(&mut ws, "bad_candidate").await;

    // The room is intact: a patient can join now and is seen.
    let mut patient = server.connect().await;
    send(&mut patient, join("consult-1", "Chị Hoa", "patient")).await;
    let joined = expect(&mut patient, "joined").await;
    assert_eq!(joined["participants"][0]["name"], "Phòng khám Bắc Hà");
    assert_eq!(joined["participants"][0]["role"], "clinic");
    let seen = expect(&mut ws, "participant_joined").await;
    assert_eq!(seen["participant"]["name"], "Chị Hoa");

    assert!(
        server
            .metric("consult_signaling_errors_total{code=\"bad_json\"}")
            .await
            >= Some(1.0)
    );
    assert_eq!(server.metric("consult_participants").await, Some(2.0));
    assert!(server.get("/healthz").await.ends_with("ok\n"));
    server.stop().await;
}

#[tokio::test]
async fn negotiation_mute_leave_and_cleanup() {
    let server = start(2).await;
    let mut clinic = server.connect().await;
    send(&mut clinic, join("consult-7", "Clinic", "clinic")).await;
    let clinic_id = expect(&mut clinic, "joined").await["participant_id"].clone();

    let (mut clinic_rtc, offer, pending) = client_offer();
    send(
        &mut clinic,
        json!({"v":1,"type":"offer","sdp":offer.to_sdp_string()}),
    )
    .await;
    let answer = expect(&mut clinic, "answer").await;
    let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap()).unwrap();
    clinic_rtc.sdp_api().accept_answer(pending, answer).unwrap();

    send(
        &mut clinic,
        json!({"v":1,"type":"offer","sdp":offer.to_sdp_string()}),
    )
    .await;
    expect_error(&mut clinic, "wrong_state").await;

    let mut doctor = server.connect().await;
    send(&mut doctor, join("consult-7", "Dr Lan", "specialist")).await;
    expect(&mut doctor, "joined").await;
    let (mut doctor_rtc, offer, pending) = client_offer();
    send(
        &mut doctor,
        json!({"v":1,"type":"offer","sdp":offer.to_sdp_string()}),
    )
    .await;
    let answer = expect(&mut doctor, "answer").await;
    let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap()).unwrap();
    doctor_rtc.sdp_api().accept_answer(pending, answer).unwrap();

    // The server offers the clinic's two tracks to the doctor, and names them.
    let offer = expect(&mut doctor, "offer").await;
    let offer = SdpOffer::from_sdp_string(offer["sdp"].as_str().unwrap()).unwrap();
    let mut published = Vec::new();
    for _ in 0..2 {
        let t = expect(&mut doctor, "track_published").await;
        assert_eq!(t["participant_id"], clinic_id);
        published.push(t["kind"].as_str().unwrap().to_string());
    }
    published.sort();
    assert_eq!(published, ["audio", "video"]);
    let answer = doctor_rtc.sdp_api().accept_offer(offer).unwrap();
    send(
        &mut doctor,
        json!({"v":1,"type":"answer","sdp":answer.to_sdp_string()}),
    )
    .await;

    // And the doctor's tracks to the clinic.
    let offer = expect(&mut clinic, "offer").await;
    let offer = SdpOffer::from_sdp_string(offer["sdp"].as_str().unwrap()).unwrap();
    let answer = clinic_rtc.sdp_api().accept_offer(offer).unwrap();
    send(
        &mut clinic,
        json!({"v":1,"type":"answer","sdp":answer.to_sdp_string()}),
    )
    .await;
    assert_eq!(server.metric("consult_tracks").await, Some(4.0));

    // Operators see rooms, roles and numbers, never names.
    let status = server.get("/status").await;
    let body = status.split("\r\n\r\n").nth(1).unwrap();
    let status: Value = serde_json::from_str(body).unwrap();
    let room = &status["rooms"][0];
    assert_eq!(room["room"], "consult-7");
    assert_eq!(room["participants"].as_array().unwrap().len(), 2);
    assert_eq!(
        room["participants"][0]["subscriptions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert!(!body.contains("Dr Lan"), "{body}");

    // A third participant does not fit in a room of 2.
    let mut late = server.connect().await;
    send(&mut late, join("consult-7", "Late", "patient")).await;
    expect_error(&mut late, "room_full").await;

    send(
        &mut doctor,
        json!({"v":1,"type":"mute","kind":"audio","muted":true}),
    )
    .await;
    let muted = expect(&mut clinic, "mute_changed").await;
    assert_eq!(
        (muted["kind"].as_str(), muted["muted"].as_bool()),
        (Some("audio"), Some(true))
    );

    // The doctor leaves: the clinic loses its tracks and is told.
    send(&mut doctor, json!({"v":1,"type":"leave"})).await;
    let gone = expect(&mut clinic, "track_unpublished").await;
    assert_ne!(gone["participant_id"], clinic_id);
    let left = expect(&mut clinic, "participant_left").await;
    let offer = expect(&mut clinic, "offer").await;
    let offer = SdpOffer::from_sdp_string(offer["sdp"].as_str().unwrap()).unwrap();
    assert_ne!(left["participant_id"], clinic_id);
    let answer = clinic_rtc.sdp_api().accept_offer(offer).unwrap();
    send(
        &mut clinic,
        json!({"v":1,"type":"answer","sdp":answer.to_sdp_string()}),
    )
    .await;

    // `leave` ends the participation at once (a socket closed without it keeps the place
    // for the reconnect grace period: tests/resume.rs): the room goes, the gauges return to 0.
    send(&mut clinic, json!({"v":1,"type":"leave"})).await;
    drop(clinic);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let p = server.metric("consult_participants").await;
        let r = server.metric("consult_rooms").await;
        let t = server.metric("consult_tracks").await;
        if (p, r, t) == (Some(0.0), Some(0.0), Some(0.0)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "participants {p:?} rooms {r:?} tracks {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.stop().await;
}
