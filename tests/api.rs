//! The operator API over real HTTP against the real server on port 0, with its SQLite store
//! in a temp folder; restarts on the same file keep the audit trail and the token secret.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use consult_sfu::config::{Config, ConsultsConfig, OperatorConfig, Secret};
use consult_sfu::consult::{Consults, InviteError, ParticipationRecord};
use serde_json::{json, Value};
use signaling::Role;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY_A: &str = "key-of-clinic-a-0001";
const KEY_B: &str = "key-of-clinic-b-0002";

mod common;

struct TestServer {
    http: SocketAddr,
    consults: Consults,
    dev_link: Option<String>,
    run: common::Running,
}

fn temp_dir(name: &str) -> PathBuf {
    common::temp_dir(&format!("api-{name}"))
}

fn operators() -> Vec<OperatorConfig> {
    vec![
        OperatorConfig {
            clinic: "Tram y te Xa A".into(),
            key: Secret::new(KEY_A),
        },
        OperatorConfig {
            clinic: "Tram y te Xa B".into(),
            key: Secret::new(KEY_B),
        },
    ]
}

async fn start(dir: &Path, operators: Vec<OperatorConfig>) -> TestServer {
    let config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        consults: ConsultsConfig {
            // A folder that does not exist yet: the server creates it.
            db_path: dir.join("store").join("consults.sqlite"),
            ..ConsultsConfig::default()
        },
        operators,
        ..Config::default()
    };
    let run = common::serve(&config).await;
    TestServer {
        http: run.http,
        consults: run.consults.clone(),
        dev_link: run.dev_link.clone(),
        run,
    }
}

impl TestServer {
    async fn stop(self) {
        self.run.stop().await;
    }

    /// One HTTP/1.1 request; returns the status, the headers (lowercase names) and the body
    /// as JSON (`Value::Null` when it is not JSON).
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        body: Option<&str>,
    ) -> (u16, String, Value) {
        let mut s = TcpStream::connect(self.http).await.unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(k) = key {
            req.push_str(&format!("Authorization: Bearer {k}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        if let Some(b) = body {
            // A peer that refuses a large body may close before reading it all.
            let _ = s.write_all(b.as_bytes()).await;
        }
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw).await;
        let text = String::from_utf8(raw).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").expect("a full response");
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let head = head.to_ascii_lowercase();
        let body = if head.contains("transfer-encoding: chunked") {
            dechunk(body)
        } else {
            body.to_string()
        };
        (
            status,
            head,
            serde_json::from_str(&body).unwrap_or(Value::Null),
        )
    }

    async fn json(&self, method: &str, path: &str, key: &str, body: Option<Value>) -> (u16, Value) {
        let body = body.map(|b| b.to_string());
        let (status, _, v) = self.call(method, path, Some(key), body.as_deref()).await;
        (status, v)
    }

    async fn create(&self, key: &str, body: Value) -> Value {
        let (status, v) = self.json("POST", "/api/v1/consults", key, Some(body)).await;
        assert_eq!(status, 201, "{v}");
        v
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

fn token_of(link: &str) -> &str {
    link.split_once("?invite=").expect("link has ?invite=").1
}

fn assert_error(status: u16, v: &Value, want_status: u16, code: &str) {
    assert_eq!(status, want_status, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        !v["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .is_empty(),
        "{v}"
    );
}

fn consult_body() -> Value {
    json!({
        "title": "Follow-up: diabetes",
        "scheduled_at": "2026-03-01T09:30:00+07:00",
        "participants": [
            {"name": "Dr Lan", "role": "specialist"},
            {"name": "Nguyen Van An", "role": "patient"}
        ]
    })
}

#[tokio::test]
async fn create_list_get_end() {
    let dir = temp_dir("crud");
    let server = start(&dir, operators()).await;
    let base = format!("http://localhost:{}", server.http.port());

    let created = server.create(KEY_A, consult_body()).await;
    let consult = &created["consult"];
    let id = consult["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("c-") && id.len() == 12, "{id}");
    assert_eq!(consult["clinic"], "Tram y te Xa A");
    assert_eq!(consult["title"], "Follow-up: diabetes");
    assert_eq!(consult["scheduled_at"], "2026-03-01T02:30:00Z");
    assert_eq!(consult["status"], "open");
    assert_eq!(consult["ended_at"], Value::Null);

    let invites = created["invites"].as_array().unwrap();
    let who: Vec<(&str, &str, bool)> = invites
        .iter()
        .map(|i| {
            (
                i["name"].as_str().unwrap(),
                i["role"].as_str().unwrap(),
                i["lobby"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        who,
        [
            ("Tram y te Xa A", "clinic", false),
            ("Dr Lan", "specialist", false),
            ("Nguyen Van An", "patient", true),
        ],
        "the operator's own clinic invite is added first"
    );
    for i in invites {
        let link = i["link"].as_str().unwrap();
        assert!(link.starts_with(&format!("{base}/?invite=")), "{link}");
        let invite = server.consults.verify_invite(token_of(link)).await.unwrap();
        assert_eq!(invite.consult_id, id);
        assert_eq!(invite.name, i["name"].as_str().unwrap());
        assert_eq!(invite.token_id, i["token_id"].as_str().unwrap());
        assert_eq!(invite.title, "Follow-up: diabetes");
    }
    let patient = server
        .consults
        .verify_invite(token_of(invites[2]["link"].as_str().unwrap()))
        .await
        .unwrap();
    assert_eq!((patient.role, patient.lobby), (Role::Patient, true));

    // A second consult, listed first (newest first); clinic B sees neither.
    let second = server
        .create(
            KEY_A,
            json!({"title": "Second", "participants": [{"name": "Dr Minh", "role": "specialist"}]}),
        )
        .await;
    let second_id = second["consult"]["id"].as_str().unwrap().to_string();
    let (status, list) = server.json("GET", "/api/v1/consults", KEY_A, None).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = list["consults"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second_id.as_str(), id.as_str()]);
    let (status, list_b) = server.json("GET", "/api/v1/consults", KEY_B, None).await;
    assert_eq!(status, 200);
    assert_eq!(list_b["consults"], json!([]));
    let (status, limited) = server
        .json("GET", "/api/v1/consults?limit=1", KEY_A, None)
        .await;
    assert_eq!(
        (status, limited["consults"].as_array().unwrap().len()),
        (200, 1)
    );

    // Fetched again: the same links.
    let (status, got) = server
        .json("GET", &format!("/api/v1/consults/{id}"), KEY_A, None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(got["invites"], created["invites"]);
    assert_eq!(got["consult"], created["consult"]);

    // A removed participant's invite is withdrawn.
    server
        .consults
        .revoke(invites[2]["token_id"].as_str().unwrap());
    server.consults.flush().await.unwrap();
    assert_eq!(
        server
            .consults
            .verify_invite(token_of(invites[2]["link"].as_str().unwrap()))
            .await,
        Err(InviteError::Revoked)
    );

    // The room reports who was there.
    let t0 = SystemTime::now() - Duration::from_secs(600);
    server.consults.record_participation(ParticipationRecord {
        consult_id: id.clone(),
        name: "Dr Lan".into(),
        role: Role::Specialist,
        joined_at: t0,
        left_at: t0 + Duration::from_secs(300),
        median_receive_bps: Some(850_000),
        low_layer_share: 0.25,
        paused_share: 0.0,
        loss_percent: 0.5,
    });

    let (status, ended) = server
        .json("POST", &format!("/api/v1/consults/{id}/end"), KEY_A, None)
        .await;
    assert_eq!(status, 200, "{ended}");
    assert_eq!(ended["consult"]["status"], "ended");
    assert!(ended["consult"]["ended_at"].is_string());
    let (status, again) = server
        .json("POST", &format!("/api/v1/consults/{id}/end"), KEY_A, None)
        .await;
    assert_error(status, &again, 409, "already_ended");
    assert_eq!(
        server
            .consults
            .verify_invite(token_of(invites[1]["link"].as_str().unwrap()))
            .await,
        Err(InviteError::Ended)
    );

    let (status, audit) = server
        .json("GET", &format!("/api/v1/consults/{id}/audit"), KEY_A, None)
        .await;
    assert_eq!(status, 200);
    let events = audit["events"].as_array().unwrap();
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["created", "invited", "invited", "invited", "ended"]
    );
    assert_eq!(events[0]["actor"], "Tram y te Xa A");
    assert_eq!(events[0]["actor_role"], "clinic");
    assert_eq!(events[2]["subject"], "Dr Lan");
    assert_eq!(events[2]["detail"], "specialist");
    let at = events[0]["at"].as_str().unwrap();
    assert!(at.len() == 20 && at.ends_with('Z'), "{at}");

    let (status, summary) = server
        .json(
            "GET",
            &format!("/api/v1/consults/{id}/summary"),
            KEY_A,
            None,
        )
        .await;
    assert_eq!(status, 200, "{summary}");
    assert_eq!(summary["consult"]["status"], "ended");
    assert_eq!(summary["duration_s"], 300);
    assert_eq!(summary["participants"][0]["name"], "Dr Lan");
    assert_eq!(summary["participants"][0]["seconds"], 300);
    assert_eq!(summary["participants"][0]["median_receive_kbps"], 850.0);
    let (status, empty) = server
        .json(
            "GET",
            &format!("/api/v1/consults/{second_id}/summary"),
            KEY_A,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(empty["duration_s"], Value::Null);
    assert_eq!(empty["participants"], json!([]));

    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn bad_input_gets_clear_errors() {
    let dir = temp_dir("bad");
    let server = start(&dir, operators()).await;
    let created = server.create(KEY_A, consult_body()).await;
    let id = created["consult"]["id"].as_str().unwrap().to_string();
    let body = consult_body().to_string();

    // Authentication.
    let (status, head, v) = server.call("GET", "/api/v1/consults", None, None).await;
    assert_error(status, &v, 401, "unauthorized");
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (status, _, v) = server
        .call(
            "POST",
            "/api/v1/consults",
            Some("wrong-key-wrong-key"),
            Some(&body),
        )
        .await;
    assert_error(status, &v, 401, "unauthorized");
    let (status, _, v) = server
        .call(
            "GET",
            "/api/v1/consults",
            Some(&KEY_A[..KEY_A.len() - 1]),
            None,
        )
        .await;
    assert_error(status, &v, 401, "unauthorized");
    let (status, _, v) = server
        .call("POST", "/api/v1/consults", None, Some("{not json"))
        .await;
    assert_error(status, &v, 401, "unauthorized");

    // Bodies.
    let too_many: Vec<Value> = (0..9)
        .map(|i| json!({"name": format!("P{i}"), "role": "patient"}))
        .collect();
    let cases: Vec<(String, u16, &str, &str)> = vec![
        ("{not json".into(), 400, "malformed_json", "not valid JSON"),
        ("".into(), 400, "malformed_json", "not valid JSON"),
        (
            json!({"participants": [{"name": "A", "role": "patient"}]}).to_string(),
            400,
            "invalid_request",
            "missing field `title`",
        ),
        (
            json!({"title": "t", "participants": too_many}).to_string(),
            400,
            "invalid_request",
            "participants: list 1 to 8",
        ),
        (
            json!({"title": "t", "participants": [{"name": "A", "role": "doctor"}]}).to_string(),
            400,
            "invalid_request",
            "unknown variant `doctor`",
        ),
        (
            json!({"title": "t", "participant": []}).to_string(),
            400,
            "invalid_request",
            "unknown field `participant`",
        ),
        (
            json!({"title": "", "participants": [{"name": "A", "role": "patient"}]}).to_string(),
            400,
            "invalid_request",
            "title: must be 1 to 200",
        ),
        (
            json!({"title": "t", "expires_in_hours": 500, "participants": [{"name": "A", "role": "patient"}]}).to_string(),
            400,
            "invalid_request",
            "expires_in_hours",
        ),
        (
            json!({"title": "x".repeat(70_000), "participants": []}).to_string(),
            413,
            "payload_too_large",
            "65536",
        ),
    ];
    for (body, want_status, code, message) in cases {
        let (status, _, v) = server
            .call("POST", "/api/v1/consults", Some(KEY_A), Some(&body))
            .await;
        assert_error(status, &v, want_status, code);
        let got = v["error"]["message"].as_str().unwrap();
        assert!(got.contains(message), "{got:?} should mention {message:?}");
    }

    // Another clinic's consult does not exist for it.
    for (method, path) in [
        ("GET", format!("/api/v1/consults/{id}")),
        ("POST", format!("/api/v1/consults/{id}/end")),
        ("GET", format!("/api/v1/consults/{id}/audit")),
        ("GET", format!("/api/v1/consults/{id}/summary")),
        ("GET", "/api/v1/consults/c-doesnotexi".to_string()),
    ] {
        let (status, v) = server.json(method, &path, KEY_B, None).await;
        assert_error(status, &v, 404, "not_found");
    }
    let (status, v) = server
        .json("GET", "/api/v1/consults/c-doesnotexi", KEY_A, None)
        .await;
    assert_error(status, &v, 404, "not_found");

    // Paths and methods the API does not have.
    let (status, v) = server.json("GET", "/api/v1/nothing", KEY_A, None).await;
    assert_error(status, &v, 404, "not_found");
    let (status, v) = server.json("DELETE", "/api/v1/consults", KEY_A, None).await;
    assert_error(status, &v, 405, "method_not_allowed");
    let (status, v) = server
        .json("GET", "/api/v1/consults?limit=0", KEY_A, None)
        .await;
    assert_error(status, &v, 400, "invalid_request");

    // The consult is untouched by all that.
    let (status, v) = server
        .json("GET", &format!("/api/v1/consults/{id}"), KEY_A, None)
        .await;
    assert_eq!(
        (status, v["consult"]["status"].as_str()),
        (200, Some("open"))
    );

    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn audit_trail_and_secret_survive_a_restart() {
    let dir = temp_dir("restart");
    let server = start(&dir, operators()).await;
    let created = server.create(KEY_A, consult_body()).await;
    let id = created["consult"]["id"].as_str().unwrap().to_string();
    let link = created["invites"][1]["link"].as_str().unwrap().to_string();
    let (status, ended) = server
        .json("POST", &format!("/api/v1/consults/{id}/end"), KEY_A, None)
        .await;
    assert_eq!(status, 200, "{ended}");
    let open = server
        .create(
            KEY_A,
            json!({"title": "Open one", "participants": [{"name": "Dr Lan", "role": "specialist"}]}),
        )
        .await;
    let open_link = open["invites"][1]["link"].as_str().unwrap().to_string();
    // Stopping drops the test's handle too, so the first store's thread ends.
    server.stop().await;

    let server = start(&dir, operators()).await;
    let (status, audit) = server
        .json("GET", &format!("/api/v1/consults/{id}/audit"), KEY_A, None)
        .await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["created", "invited", "invited", "invited", "ended"]
    );

    // A link minted before the restart still verifies (the generated secret was kept).
    let invite = server
        .consults
        .verify_invite(token_of(&open_link))
        .await
        .expect("the secret survives the restart");
    assert_eq!(invite.name, "Dr Lan");
    assert_eq!(
        server.consults.verify_invite(token_of(&link)).await,
        Err(InviteError::Ended)
    );
    let (status, got) = server
        .json(
            "GET",
            &format!(
                "/api/v1/consults/{}",
                open["consult"]["id"].as_str().unwrap()
            ),
            KEY_A,
            None,
        )
        .await;
    assert_eq!(status, 200);
    // The port is new (port 0), the token is the same.
    let again = got["invites"][1]["link"].as_str().unwrap();
    assert_eq!(
        token_of(again),
        token_of(&open_link),
        "same token after restart"
    );

    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn without_operators_a_dev_operator_is_kept_across_restarts() {
    let dir = temp_dir("dev");
    let server = start(&dir, Vec::new()).await;
    let link = server.dev_link.clone().expect("a dev operator link");
    let base = format!("http://localhost:{}/operator.html#key=", server.http.port());
    let key = link.strip_prefix(&base).expect("link format").to_string();
    assert!(key.len() >= 32, "{key}");
    let created = server
        .create(
            &key,
            json!({"title": "Try-out", "participants": [{"name": "Dr Lan", "role": "specialist"}]}),
        )
        .await;
    assert_eq!(created["consult"]["clinic"], "Local clinic");
    server.stop().await;

    let server = start(&dir, Vec::new()).await;
    let again = server.dev_link.clone().unwrap();
    assert_eq!(
        again.split_once("#key=").unwrap().1,
        key,
        "same key after restart"
    );
    let (status, list) = server.json("GET", "/api/v1/consults", &key, None).await;
    assert_eq!(
        (status, list["consults"].as_array().unwrap().len()),
        (200, 1)
    );
    server.stop().await;

    let server = start(&dir, operators()).await;
    assert_eq!(
        server.dev_link, None,
        "no dev operator once operators are configured"
    );
    let (status, _, v) = server
        .call("GET", "/api/v1/consults", Some(&key), None)
        .await;
    assert_error(status, &v, 401, "unauthorized");
    server.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}
