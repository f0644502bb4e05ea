//! Three nodes sharing a real redis-server (started here on a free loopback port): consults
//! are spread over the nodes, racing joins for one consult on three nodes end on one node,
//! a resume token works from any node, a node that leaves hands its consults on, and a node
//! that loses Redis refuses new joins with a retry hint instead of splitting a consult.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use consult_sfu::config::{ClusterConfig, Config, ConsultsConfig, Secret};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

mod common;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// redis-server on a free port, killed when dropped.
struct RedisServer {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl RedisServer {
    /// On a free port. The port is found by binding port 0 and letting it go, so another test
    /// may take it first: then this redis-server exits at once (address in use) while the
    /// port answers for the other one. Checked, and tried again on a new port.
    async fn start(name: &str) -> Self {
        for _ in 0..5 {
            if let Some(server) = Self::try_start(name).await {
                return server;
            }
        }
        panic!("redis-server did not start on a free port in 5 tries");
    }

    async fn try_start(name: &str) -> Option<Self> {
        let dir = common::temp_dir(name);
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/test-all.sh installs it)");
        let mut server = RedisServer { child, port, dir };
        for _ in 0..100 {
            if server.child.try_wait().unwrap().is_some() {
                return None; // the port was taken: Drop removes the folder
            }
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(150)).await;
                return server.child.try_wait().unwrap().is_none().then_some(server);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not listen on {port} within 5 s");
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn node_config(name: &str, redis: &RedisServer, id: &str) -> Config {
    Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        consults: ConsultsConfig {
            // Inside the Redis server's folder, which is removed when the test ends.
            db_path: {
                static NEXT: std::sync::atomic::AtomicUsize =
                    std::sync::atomic::AtomicUsize::new(0);
                let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let dir = redis.dir.join(format!("{name}-{id}-{n}"));
                std::fs::create_dir_all(&dir).unwrap();
                dir.join("consults.sqlite")
            },
            allow_open_join: true,
            // Shared by every node, as in a real cluster: invites and resume tokens from one
            // node are read by the others.
            token_secret: Some(Secret::new("cluster test secret, 32 chars or more")),
            ..ConsultsConfig::default()
        },
        cluster: ClusterConfig {
            redis_url: Some(redis.url().parse().unwrap()),
            node_id: Some(id.into()),
            advertise_url: None,
        },
        ..Config::default()
    }
}

async fn nodes(name: &str, redis: &RedisServer, n: usize) -> Vec<common::Running> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.push(common::serve(&node_config(name, redis, &format!("n{i}"))).await);
    }
    // One heartbeat each, so every node is in the directory before the first placement.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    out
}

fn ws_url(node: &common::Running) -> String {
    format!("ws://localhost:{}/ws", node.http.port())
}

async fn send(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.unwrap();
}

/// The next `joined`, `redirect` or `error`.
async fn answer(ws: &mut Ws) -> Value {
    let wait = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if ["joined", "redirect", "error"].contains(&v["type"].as_str().unwrap()) {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for an answer to join: {other:?}"),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), wait)
        .await
        .expect("an answer to join within 10 s")
}

/// Joins at `url`, following redirects. Returns the socket, `joined`, and the node's URL.
async fn join_following(mut url: String, join: Value) -> (Ws, Value, String, usize) {
    for hops in 0..5 {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .unwrap();
        send(&mut ws, join.clone()).await;
        let v = answer(&mut ws).await;
        match v["type"].as_str() {
            Some("joined") => return (ws, v, url, hops),
            Some("redirect") => {
                // The server closes the socket after a redirect.
                let closed = tokio::time::timeout(Duration::from_secs(5), async {
                    while let Some(Ok(m)) = ws.next().await {
                        if matches!(m, Message::Close(_)) {
                            break;
                        }
                    }
                })
                .await;
                assert!(closed.is_ok(), "the socket closes after a redirect");
                url = v["url"].as_str().unwrap().to_string();
            }
            _ => panic!("join refused: {v}"),
        }
    }
    panic!("more than 5 redirects");
}

fn open_join(room: &str, name: &str) -> Value {
    json!({"v":1,"type":"join","room":room,"name":name,"role":"specialist"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consults_spread_over_the_nodes_and_racing_joins_meet_on_one() {
    let redis = RedisServer::start("cluster-redis").await;
    let nodes = nodes("cluster-spread", &redis, 3).await;
    let urls: Vec<String> = nodes.iter().map(ws_url).collect();

    // 30 consults, each started at node 1: placement, not the entry node, decides.
    let mut per_node: BTreeMap<String, usize> = BTreeMap::new();
    let mut keep = Vec::new();
    for i in 0..30 {
        let (ws, _, at, _) =
            join_following(urls[0].clone(), open_join(&format!("spread-{i}"), "a")).await;
        *per_node.entry(at).or_default() += 1;
        keep.push(ws);
    }
    println!("# 30 consults started at one node: per node {per_node:?}");
    // The admin view agrees once every node has sent a heartbeat with its consults.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let key = nodes[0]
        .dev_link
        .as_deref()
        .unwrap()
        .split("#key=")
        .nth(1)
        .unwrap();
    let listing = get_text(
        &format!("http://{}/api/v1/admin/cluster", nodes[0].http),
        Some(key),
    )
    .await;
    let body: Value = serde_json::from_str(listing.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    let listed: BTreeMap<String, usize> = body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["url"].as_str().unwrap().to_string(),
                n["consults"].as_u64().unwrap() as usize,
            )
        })
        .collect();
    assert_eq!(listed, per_node, "{body}");
    assert_eq!(body["this_node"], "n1");
    for n in body["nodes"].as_array().unwrap() {
        let media = n["media"].as_str().unwrap();
        assert!(
            media.starts_with("127.0.0.1:"),
            "each node's media address: {n}"
        );
    }
    assert_eq!(per_node.len(), 3, "every node holds consults: {per_node:?}");
    assert!(
        per_node.values().all(|&n| (8..=12).contains(&n)),
        "balanced within 10 +- 2: {per_node:?}"
    );

    // Racing: each consult's three participants join at the same moment on three nodes.
    for i in 0..10 {
        let room = format!("race-{i}");
        let joins = (0..3).map(|k| {
            let url = urls[k].clone();
            let join = open_join(&room, &format!("p{k}"));
            tokio::spawn(async move { join_following(url, join).await })
        });
        let mut at = Vec::new();
        for j in joins {
            let (ws, joined, url, _) = j.await.unwrap();
            assert_eq!(joined["room"], room.as_str());
            at.push(url);
            keep.push(ws);
        }
        assert!(
            at.iter().all(|u| *u == at[0]),
            "{room} split over nodes: {at:?}"
        );
    }
    drop(keep);
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resume_from_any_node_and_consults_move_when_their_node_leaves() {
    let redis = RedisServer::start("cluster-redis-2").await;
    let mut nodes = nodes("cluster-resume", &redis, 3).await;
    let urls: Vec<String> = nodes.iter().map(ws_url).collect();

    let (ws, joined, home, _) =
        join_following(urls[0].clone(), open_join("resume-room", "a")).await;
    let token = joined["resume_token"].as_str().unwrap().to_string();
    let participant = joined["participant_id"].clone();
    drop(ws); // lost, not left: the place is kept for the grace period
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Every node knows the token (shared key) and sends it to the consult's node.
    for entry in &urls {
        let mut resume = open_join("resume-room", "a");
        resume["resume"] = json!(token);
        let (ws, again, at, hops) = join_following(entry.clone(), resume).await;
        assert_eq!(at, home, "resumed on the consult's node");
        assert_eq!(again["participant_id"], participant, "the same participant");
        assert_eq!(again["resumed"], true);
        assert_eq!(hops, usize::from(*entry != home));
        drop(ws);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The consult's node shuts down: it leaves the directory at once, so the consult starts
    // again on another node at the next join (no waiting for the TTL).
    let (_ws_b, _, at_b, _) = join_following(urls[0].clone(), open_join("resume-room", "b")).await;
    assert_eq!(at_b, home);
    let index = urls.iter().position(|u| *u == home).unwrap();
    let leaving = nodes.remove(index);
    let started = std::time::Instant::now();
    leaving.stop().await;
    let entry = nodes[0].http.port();
    let entry = format!("ws://localhost:{entry}/ws");
    let (_ws_c, _, at_c, _) = join_following(entry, open_join("resume-room", "c")).await;
    assert_ne!(at_c, home, "placed on a live node");
    println!(
        "# consult placed again {:.2} s after its node began shutting down",
        started.elapsed().as_secs_f64()
    );
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_redis_new_joins_wait_and_running_consults_go_on() {
    let redis = RedisServer::start("cluster-redis-3").await;
    let nodes = nodes("cluster-noredis", &redis, 1).await;
    let url = ws_url(&nodes[0]);
    let (mut running, _, _, _) = join_following(url.clone(), open_join("before", "a")).await;
    drop(redis);
    tokio::time::sleep(Duration::from_millis(300)).await;

    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
        .await
        .unwrap();
    send(&mut ws, open_join("after", "b")).await;
    let v = answer(&mut ws).await;
    assert_eq!(v["code"], "server_busy", "{v}");
    assert!(v["retry_after_ms"].as_u64().unwrap() >= 1000, "{v}");

    // The running consult still answers (its mute comes back as `mute_changed`).
    send(
        &mut running,
        json!({"v":1,"type":"mute","kind":"audio","muted":true}),
    )
    .await;
    let echoed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(m)) = running.next().await {
            if let Message::Text(t) = m {
                if serde_json::from_str::<Value>(&t).unwrap()["type"] == "mute_changed" {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert_eq!(
        echoed,
        Ok(true),
        "the running consult answers without Redis"
    );

    let metrics = get_text(&format!("http://{}/metrics", nodes[0].http), None).await;
    assert!(
        metrics.contains("consult_joins_refused_total{reason=\"directory\"} 1"),
        "{metrics}"
    );
    for n in nodes {
        n.stop().await;
    }
}

/// A GET over a plain TCP socket (no HTTP client crate in the tests): the whole response.
async fn get_text(url: &str, key: Option<&str>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let auth = key
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let mut s = TcpStream::connect(host).await.unwrap();
    s.write_all(
        format!("GET /{path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// One raw Redis command (RESP), for a test that plays another node.
async fn redis_command(redis: &RedisServer, args: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut out = format!("*{}\r\n", args.len());
    for a in args {
        out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    let mut s = TcpStream::connect(("127.0.0.1", redis.port)).await.unwrap();
    s.write_all(out.as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 512];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consult_placed_elsewhere_meanwhile_is_handed_over() {
    let redis = RedisServer::start("cluster-redis-4").await;
    let nodes = nodes("cluster-handover", &redis, 2).await;
    let urls: Vec<String> = nodes.iter().map(ws_url).collect();
    let (mut ws, _, home, _) = join_following(urls[0].clone(), open_join("split-room", "a")).await;
    let other = if home == urls[0] { "n2" } else { "n1" };
    // As if this node had been out of the directory and a join elsewhere placed the consult
    // on the other node: the next heartbeat finds it and hands the consult over.
    let reply = redis_command(&redis, &["SET", "consult:room:split-room", other]).await;
    assert!(reply.starts_with("+OK"), "{reply}");
    let told = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(Ok(m)) = ws.next().await {
            if let Message::Text(t) = m {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["type"] == "closed" {
                    return v;
                }
            }
        }
        Value::Null
    })
    .await
    .expect("told within 3 s");
    assert_eq!(told["reason"], "server_restart", "{told}");
    // Joining again now goes to the node that holds the consult.
    let (_ws, _, at, hops) = join_following(home.clone(), open_join("split-room", "a")).await;
    assert_ne!(at, home);
    assert_eq!(hops, 1);
    let handovers = get_text(
        &format!(
            "http://{}/metrics",
            nodes[urls.iter().position(|u| *u == home).unwrap()].http
        ),
        None,
    )
    .await;
    assert!(
        handovers.contains("consult_cluster_handovers_total 1"),
        "{handovers}"
    );
    for n in nodes {
        n.stop().await;
    }
}
