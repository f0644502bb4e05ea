//! The consult workflow over a real WebSocket against the real server on port 0: invite tokens
//! at join (forged, expired, wrong consult, withdrawn, after the end), the lobby, and every
//! role's permissions; the audit trail written along the way, read back through the API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use consult_sfu::config::{Config, ConsultsConfig, OperatorConfig, Secret};
use consult_sfu::consult::token::{self, Claims};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use signaling::Role;
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

const KEY: &str = "key-of-the-test-clinic";
const SECRET: &str = "a-test-secret-of-at-least-32-characters";

mod common;

struct TestServer {
    http: SocketAddr,
    dir: PathBuf,
    run: common::Running,
}

async fn start(name: &str) -> TestServer {
    let dir = common::temp_dir(&format!("ws-{name}"));
    let config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        consults: ConsultsConfig {
            db_path: dir.join("consults.sqlite"),
            token_secret: Some(Secret::new(SECRET)),
            ..ConsultsConfig::default()
        },
        operators: vec![OperatorConfig {
            clinic: "Tram y te Xa A".into(),
            key: Secret::new(KEY),
        }],
        ..Config::default()
    };
    let run = common::serve(&config).await;
    TestServer {
        http: run.http,
        dir,
        run,
    }
}

impl TestServer {
    async fn stop(self) {
        self.run.stop().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// One API call; the body as JSON. `Connection: close` keeps the reading simple.
    async fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut s = TcpStream::connect(self.http).await.unwrap();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
             Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).await.unwrap();
        let (head, body) = raw.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let body = if head.to_ascii_lowercase().contains("chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        (status, serde_json::from_str(&body).unwrap_or(Value::Null))
    }

    /// Creates a consult; returns its id and each invite's token by name.
    async fn create(&self, participants: Value) -> (String, Vec<(String, String)>) {
        let (status, v) = self
            .api(
                "POST",
                "/api/v1/consults",
                Some(json!({"title": "Tái khám tim mạch", "participants": participants})),
            )
            .await;
        assert_eq!(status, 201, "{v}");
        let id = v["consult"]["id"].as_str().unwrap().to_string();
        let tokens = v["invites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                let link = i["link"].as_str().unwrap();
                let token = link.split_once("?invite=").unwrap().1;
                (i["name"].as_str().unwrap().to_string(), token.to_string())
            })
            .collect();
        (id, tokens)
    }

    async fn connect(&self) -> Ws {
        let url = format!("ws://{}/ws", self.http);
        tokio_tungstenite::connect_async(url).await.unwrap().0
    }

    /// Connects and joins with `token`; returns the socket and the first reply.
    async fn join(&self, token: &str) -> (Ws, Value) {
        let mut ws = self.connect().await;
        send(&mut ws, json!({"v":1,"type":"join","invite":token})).await;
        let first = next(&mut ws).await;
        (ws, first)
    }
}

fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            break;
        }
        out.push_str(&after[..n]);
        rest = &after[n + 2..];
    }
    out
}

fn token_for<'a>(tokens: &'a [(String, String)], name: &str) -> &'a str {
    &tokens.iter().find(|(n, _)| n == name).unwrap().1
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next message, skipping periodic ones (quality, speaker) that depend on timing.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("a message within 5 s")
            .expect("the socket is open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        if !matches!(
            v["type"].as_str(),
            Some("connection_quality" | "active_speaker")
        ) {
            return v;
        }
    }
}

/// Skips messages until one of type `kind`.
async fn until(ws: &mut Ws, kind: &str) -> Value {
    loop {
        let v = next(ws).await;
        if v["type"] == kind {
            return v;
        }
    }
}

async fn expect_error(ws: &mut Ws, code: &str) -> Value {
    let v = until(ws, "error").await;
    assert_eq!(v["code"], code, "{v}");
    assert!(!v["message"].as_str().unwrap().is_empty());
    v
}

/// The server closes the socket (after `closed`, or after an error for a refused join).
async fn expect_socket_closed(ws: &mut Ws) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(_))) => continue,
            Err(_) => break,
        }
    }
    panic!("the server did not close the socket");
}

#[tokio::test]
async fn invites_are_checked_at_join() {
    let server = start("tokens").await;
    let (id, tokens) = server
        .create(json!([{"name": "Chị Hoa", "role": "patient"}]))
        .await;
    let (other_id, _) = server
        .create(json!([{"name": "Anh Nam", "role": "patient"}]))
        .await;
    let good = token_for(&tokens, "Chị Hoa").to_string();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = token::verify(&good, SECRET.as_bytes(), now).unwrap();

    // Forged: the payload edited (a clinic role) with the signature kept.
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_claims = Claims {
        role: Role::Clinic,
        ..claims.clone()
    };
    let resigned_elsewhere = token::sign(&forged_claims, b"another-secret-of-32-characters!!");
    parts[1] = resigned_elsewhere.split('.').nth(1).unwrap();
    let forged = parts.join(".");
    let expired = token::sign(
        &Claims {
            iat: now - 7200,
            exp: now - 3600,
            ..claims.clone()
        },
        SECRET.as_bytes(),
    );
    // Signed with our secret, but for another consult than the one its token id belongs to.
    let wrong_consult = token::sign(
        &Claims {
            cid: other_id.clone(),
            ..claims.clone()
        },
        SECRET.as_bytes(),
    );
    let unknown_consult = token::sign(
        &Claims {
            cid: "c-doesnotexist".into(),
            ..claims.clone()
        },
        SECRET.as_bytes(),
    );
    for (what, token) in [
        ("forged", forged.as_str()),
        ("garbage", "not-a-token"),
        ("expired", expired.as_str()),
        ("wrong consult", wrong_consult.as_str()),
        ("unknown consult", unknown_consult.as_str()),
    ] {
        let (mut ws, reply) = server.join(token).await;
        assert_eq!(reply["type"], "error", "{what}: {reply}");
        assert_eq!(reply["code"], "unauthorized", "{what}: {reply}");
        // The connection stays usable: a good invite still joins on it.
        send(&mut ws, json!({"v":1,"type":"join","invite":good})).await;
        let v = next(&mut ws).await;
        assert_eq!(v["type"], "lobby", "{what}: {v}");
        drop(ws);
    }
    assert!(
        expired.len() > 20,
        "the expired token is a real token, refused for its expiry"
    );

    // Open join is refused on a server without it.
    let mut ws = server.connect().await;
    send(
        &mut ws,
        json!({"v":1,"type":"join","room":"consult-42","name":"X","role":"clinic"}),
    )
    .await;
    let v = next(&mut ws).await;
    assert_eq!(v["code"], "unauthorized", "{v}");

    // After the end, the same invite gets consult_ended.
    let (status, _) = server
        .api("POST", &format!("/api/v1/consults/{id}/end"), None)
        .await;
    assert_eq!(status, 200);
    let (_, reply) = server.join(&good).await;
    assert_eq!(reply["code"], "consult_ended", "{reply}");
    server.stop().await;
}

/// A client offer publishing one audio track, made by str0m.
fn audio_offer() -> String {
    let mut rtc = Rtc::new(Instant::now());
    let mut api = rtc.sdp_api();
    api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, _pending) = api.apply().unwrap();
    offer.to_sdp_string()
}

#[tokio::test]
async fn lobby_and_role_permissions_are_enforced_by_the_server() {
    let server = start("roles").await;
    let (id, tokens) = server
        .create(json!([
            {"name": "Phòng khám Bắc Hà", "role": "clinic"},
            {"name": "Dr Lan", "role": "specialist"},
            {"name": "Chị Hoa", "role": "patient"},
            {"name": "Anh Nam", "role": "patient"},
            {"name": "SV Minh", "role": "observer"}
        ]))
        .await;

    let (mut clinic, v) = server.join(token_for(&tokens, "Phòng khám Bắc Hà")).await;
    assert_eq!(v["type"], "joined", "{v}");
    assert_eq!(v["title"], "Tái khám tim mạch");
    assert_eq!(v["you"]["role"], "clinic");
    let lobby = until(&mut clinic, "lobby_changed").await;
    assert_eq!(lobby["waiting"], json!([]));

    // The patient waits; the operator sees it.
    let (mut patient, v) = server.join(token_for(&tokens, "Chị Hoa")).await;
    assert_eq!(v["type"], "lobby", "{v}");
    assert_eq!(v["name"], "Chị Hoa");
    let patient_id = v["participant_id"].as_str().unwrap().to_string();
    let lobby = until(&mut clinic, "lobby_changed").await;
    assert_eq!(lobby["waiting"][0]["participant_id"], patient_id.as_str());
    // Waiting: nothing but leaving is possible.
    send(&mut patient, json!({"v":1,"type":"offer","sdp":"v=0"})).await;
    expect_error(&mut patient, "wrong_state").await;

    // The specialist joins straight in and sees the lobby too; the specialist admits.
    let (mut doctor, v) = server.join(token_for(&tokens, "Dr Lan")).await;
    assert_eq!(v["type"], "joined", "{v}");
    let doctor_id = v["participant_id"].as_str().unwrap().to_string();
    let lobby = until(&mut doctor, "lobby_changed").await;
    assert_eq!(lobby["waiting"][0]["participant_id"], patient_id.as_str());
    send(
        &mut doctor,
        json!({"v":1,"type":"admit","participant_id":"p999"}),
    )
    .await;
    expect_error(&mut doctor, "unknown_participant").await;
    send(
        &mut doctor,
        json!({"v":1,"type":"admit","participant_id":patient_id}),
    )
    .await;
    let v = until(&mut patient, "joined").await;
    assert_eq!(v["you"]["name"], "Chị Hoa");
    let lobby = until(&mut clinic, "lobby_changed").await;
    assert_eq!(lobby["waiting"], json!([]));

    // What a patient may not do.
    for message in [
        json!({"v":1,"type":"admit","participant_id":doctor_id}),
        json!({"v":1,"type":"deny","participant_id":doctor_id}),
        json!({"v":1,"type":"remove","participant_id":doctor_id}),
        json!({"v":1,"type":"mute_participant","participant_id":doctor_id}),
        json!({"v":1,"type":"end_consult"}),
        json!({"v":1,"type":"share","active":true}),
    ] {
        send(&mut patient, message.clone()).await;
        let v = expect_error(&mut patient, "forbidden").await;
        assert!(v["message"].as_str().unwrap().len() > 5, "{message}: {v}");
    }
    // What a specialist may not do.
    for message in [
        json!({"v":1,"type":"remove","participant_id":patient_id}),
        json!({"v":1,"type":"mute_participant","participant_id":patient_id}),
        json!({"v":1,"type":"end_consult"}),
    ] {
        send(&mut doctor, message.clone()).await;
        expect_error(&mut doctor, "forbidden").await;
    }

    // An observer joins, receives, and may publish nothing.
    let (mut observer, v) = server.join(token_for(&tokens, "SV Minh")).await;
    assert_eq!(v["type"], "joined", "{v}");
    send(
        &mut observer,
        json!({"v":1,"type":"offer","sdp":audio_offer()}),
    )
    .await;
    assert_eq!(until(&mut observer, "answer").await["type"], "answer");
    expect_error(&mut observer, "forbidden").await;
    send(
        &mut observer,
        json!({"v":1,"type":"admit","participant_id":patient_id}),
    )
    .await;
    expect_error(&mut observer, "forbidden").await;

    // The operator mutes the patient: everyone is told who did it.
    send(
        &mut clinic,
        json!({"v":1,"type":"mute_participant","participant_id":patient_id}),
    )
    .await;
    for ws in [&mut patient, &mut doctor] {
        let v = until(ws, "mute_changed").await;
        assert_eq!(v["participant_id"], patient_id.as_str());
        assert_eq!(v["muted"], true);
        assert!(v["by"].as_str().unwrap().starts_with('p'), "{v}");
    }

    // A second patient knocks and is turned away.
    let (mut second, v) = server.join(token_for(&tokens, "Anh Nam")).await;
    assert_eq!(v["type"], "lobby", "{v}");
    let second_id = v["participant_id"].as_str().unwrap().to_string();
    until(&mut clinic, "lobby_changed").await;
    send(
        &mut clinic,
        json!({"v":1,"type":"deny","participant_id":second_id}),
    )
    .await;
    let v = until(&mut second, "closed").await;
    assert_eq!(v["reason"], "denied");
    expect_socket_closed(&mut second).await;

    // The operator removes the patient: gone for everyone, and the invite is withdrawn.
    send(
        &mut clinic,
        json!({"v":1,"type":"remove","participant_id":patient_id}),
    )
    .await;
    let v = until(&mut patient, "closed").await;
    assert_eq!(v["reason"], "removed");
    expect_socket_closed(&mut patient).await;
    let v = until(&mut doctor, "participant_left").await;
    assert_eq!(v["participant_id"], patient_id.as_str());
    // The store applies the withdrawal on its own thread; give it a moment.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, reply) = server.join(token_for(&tokens, "Chị Hoa")).await;
        if reply["code"] == "unauthorized" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "removed invite still joins: {reply}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The operator ends the consult: everyone is closed, and nobody gets back in.
    send(&mut clinic, json!({"v":1,"type":"end_consult"})).await;
    for ws in [&mut doctor, &mut observer, &mut clinic] {
        let v = until(ws, "closed").await;
        assert_eq!(v["reason"], "consult_ended");
    }
    let (_, reply) = server.join(token_for(&tokens, "Dr Lan")).await;
    assert_eq!(reply["code"], "consult_ended", "{reply}");

    // Everything above is in the audit trail, in order.
    let deadline = Instant::now() + Duration::from_secs(5);
    let actions = loop {
        let (status, v) = server
            .api("GET", &format!("/api/v1/consults/{id}/audit"), None)
            .await;
        assert_eq!(status, 200, "{v}");
        let actions: Vec<String> = v["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["action"].as_str().unwrap().to_string())
            .collect();
        if actions.last().map(String::as_str) == Some("ended") || Instant::now() > deadline {
            break actions;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let want = [
        "created", "invited", "joined", "waiting", "joined", "admitted", "joined", "joined",
        "muted", "waiting", "denied", "removed", "ended",
    ];
    let mut rest = actions.iter();
    for w in want {
        assert!(
            rest.any(|a| a == w),
            "audit trail lacks {w:?} in order: {actions:?}"
        );
    }

    // The summary names who took part, written when they left or at the end.
    let (status, v) = server
        .api("GET", &format!("/api/v1/consults/{id}/summary"), None)
        .await;
    assert_eq!(status, 200, "{v}");
    let names: Vec<&str> = v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    for name in ["Phòng khám Bắc Hà", "Dr Lan", "Chị Hoa", "SV Minh"] {
        assert!(names.contains(&name), "summary lacks {name}: {v}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_consult_cannot_reach_into_another() {
    let server = start("isolation").await;
    let (_, a) = server
        .create(json!([{"name": "Op A", "role": "clinic"}]))
        .await;
    let (_, b) = server
        .create(json!([
            {"name": "Op B", "role": "clinic"},
            {"name": "Bệnh nhân B", "role": "patient", "lobby": true}
        ]))
        .await;
    let (mut op_a, v) = server.join(token_for(&a, "Op A")).await;
    assert_eq!(v["type"], "joined", "{v}");
    let (mut op_b, v) = server.join(token_for(&b, "Op B")).await;
    assert_eq!(v["type"], "joined", "{v}");
    let op_b_id = v["participant_id"].as_str().unwrap().to_string();
    let (mut patient_b, v) = server.join(token_for(&b, "Bệnh nhân B")).await;
    assert_eq!(v["type"], "lobby", "{v}");
    let patient_b_id = v["participant_id"].as_str().unwrap().to_string();

    // Consult A's operator names consult B's people: nobody by that id in A.
    for message in [
        json!({"v":1,"type":"admit","participant_id":patient_b_id}),
        json!({"v":1,"type":"deny","participant_id":patient_b_id}),
        json!({"v":1,"type":"remove","participant_id":op_b_id}),
        json!({"v":1,"type":"mute_participant","participant_id":op_b_id}),
    ] {
        send(&mut op_a, message.clone()).await;
        expect_error(&mut op_a, "unknown_participant").await;
    }
    // And A's lobby never showed B's patient, while B's operator sees them and can still admit.
    let lobby = until(&mut op_b, "lobby_changed").await;
    let lobby = if lobby["waiting"] == json!([]) {
        until(&mut op_b, "lobby_changed").await
    } else {
        lobby
    };
    assert_eq!(lobby["waiting"][0]["participant_id"], patient_b_id.as_str());
    send(
        &mut op_b,
        json!({"v":1,"type":"admit","participant_id":patient_b_id}),
    )
    .await;
    let v = until(&mut patient_b, "joined").await;
    let names: Vec<&str> = v["participants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Op B"], "only consult B's people: {v}");
    server.stop().await;
}
