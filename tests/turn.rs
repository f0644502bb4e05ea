//! The TURN credentials the server hands out, against Debian's coturn with
//! `use-auth-secret`: an allocation with them succeeds, one with a wrong credential or an
//! expired username is refused. Needs `turnserver` and `turnutils_uclient` (package coturn;
//! scripts/test-all.sh installs it). Loopback only.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

mod common;

const SECRET: &str = "north-clinic-turn-secret";

struct Coturn(Child);

impl Drop for Coturn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    // UDP and TCP on the same number: coturn listens on both.
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// What `turnutils_uclient` says of an allocation with these credentials (stdout+stderr).
fn allocate(port: u16, user: &str, password: &str) -> String {
    let out = Command::new("turnutils_uclient")
        .args([
            "-u",
            user,
            "-w",
            password,
            "-n",
            "0",
            "-m",
            "1",
            "-e",
            "127.0.0.1",
        ])
        .args(["-p", &port.to_string(), "-r", "9", "127.0.0.1"])
        .output()
        .expect("turnutils_uclient (package coturn) runs");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn coturn_accepts_the_credentials_we_hand_out() {
    let dir = common::temp_dir("turn");
    let port = free_port();
    let log = std::fs::File::create(dir.join("coturn.log")).unwrap();
    let _coturn = Coturn(
        Command::new("turnserver")
            .args(["-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1"])
            .arg(format!("--listening-port={port}"))
            .args([
                "--alt-listening-port=0",
                "--no-tls",
                "--no-dtls",
                "--no-cli",
            ])
            .args(["--use-auth-secret", "--realm=consult", "--simple-log"])
            .arg(format!("--static-auth-secret={SECRET}"))
            .arg(format!("--pidfile={}", dir.join("pid").display()))
            .arg(format!("--db={}", dir.join("turndb").display()))
            .args(["--log-file=stdout"])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("turnserver (package coturn) runs"),
    );
    let ready = std::time::Instant::now();
    while !std::fs::read_to_string(dir.join("coturn.log"))
        .unwrap_or_default()
        .contains("Total General servers")
    {
        assert!(
            ready.elapsed() < Duration::from_secs(10),
            "coturn did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let refused = "Cannot complete Allocation";
    let (user, credential) = consult_sfu::turn::credentials(
        SECRET.as_bytes(),
        "p7",
        SystemTime::now(),
        Duration::from_secs(600),
    );
    let ok = allocate(port, &user, &credential);
    // After the allocation the tool binds a channel to a peer (refused for loopback: 403),
    // a step it only takes once allocated.
    assert!(!ok.contains(refused) && ok.contains("channel bind"), "{ok}");

    let wrong = allocate(port, &user, "eG1tZzZMQmZHVURYRktITTNVa0lzeVd3WWJZPQ==");
    assert!(wrong.contains(refused), "a wrong credential: {wrong}");

    // Expired: coturn refuses a username whose time has passed, however well signed.
    let (old_user, old_credential) = consult_sfu::turn::credentials(
        SECRET.as_bytes(),
        "p7",
        SystemTime::now() - Duration::from_secs(3600),
        Duration::from_secs(600),
    );
    let expired = allocate(port, &old_user, &old_credential);
    assert!(expired.contains(refused), "expired: {expired}");
    let _ = std::fs::remove_dir_all(dir);
}

/// `joined` over a real WebSocket carries the configured servers, TURN with credentials made
/// for this participant, which check out against the secret.
#[tokio::test]
async fn joined_carries_turn_credentials_for_this_participant() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;

    let dir = common::temp_dir("turn-joined");
    let urls = vec![
        "turn:turn.example:3478?transport=udp".to_string(),
        "turns:turn.example:443?transport=tcp".to_string(),
    ];
    let config = consult_sfu::config::Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        turn: consult_sfu::config::TurnConfig {
            secret: Some(consult_sfu::config::Secret::new(SECRET)),
            urls: urls.clone(),
            credential_ttl: Duration::from_secs(3600),
        },
        ice_servers: vec!["stun:stun.example:3478".into()],
        consults: consult_sfu::config::ConsultsConfig {
            db_path: dir.join("consults.sqlite"),
            allow_open_join: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let server = common::serve(&config).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.http))
        .await
        .unwrap();
    let join = r#"{"v":1,"type":"join","room":"r","name":"Bac Ha","role":"clinic"}"#;
    ws.send(Message::Text(join.into())).await.unwrap();
    let before = SystemTime::now();
    let joined: serde_json::Value = loop {
        let msg = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&msg.to_string()).unwrap();
        if v["type"] == "joined" {
            break v;
        }
    };
    let ice = &joined["ice_servers"];
    let id = joined["participant_id"].as_str().unwrap();
    assert_eq!(ice[0]["urls"], serde_json::json!(urls));
    let user = ice[0]["username"].as_str().unwrap();
    let (expiry, who) = user.split_once(':').unwrap();
    assert_eq!(who, id);
    let expiry: u64 = expiry.parse().unwrap();
    let now = before
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        (now + 3590..=now + 3610).contains(&expiry),
        "{expiry} vs {now}"
    );
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(expiry - 3600);
    let (_, want) =
        consult_sfu::turn::credentials(SECRET.as_bytes(), id, at, Duration::from_secs(3600));
    assert_eq!(ice[0]["credential"], want.as_str());
    assert_eq!(
        ice[1],
        serde_json::json!({"urls": ["stun:stun.example:3478"]})
    );
    drop(ws);
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
