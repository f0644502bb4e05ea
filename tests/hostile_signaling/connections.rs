//! Connection-level attacks: stalled and trickled upgrades, idle sockets, too many connections.

use super::*;

/// Half an upgrade request, then nothing; and one trickled a byte at a time (slowloris): both
/// are dropped once the HTTP idle timeout has passed since connecting.
pub(super) async fn stalled_handshakes_are_dropped(server: &TestServer) {
    let half = b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n";
    let stalled = async {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(server.http).await.unwrap();
        s.write_all(half).await.unwrap();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(HTTP_IDLE + SLACK, s.read(&mut buf))
            .await
            .expect("a stalled handshake is dropped")
            .unwrap_or(0);
        assert_eq!(n, 0, "no response to half a request");
        t0.elapsed()
    };
    let trickled = async {
        let t0 = Instant::now();
        let mut s = TcpStream::connect(server.http).await.unwrap();
        for byte in half.iter().cycle() {
            if s.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(
                t0.elapsed() < HTTP_IDLE + SLACK,
                "a trickled handshake is dropped"
            );
        }
        t0.elapsed()
    };
    let (stalled, trickled) = tokio::join!(stalled, trickled);
    for (what, lived) in [("stalled", stalled), ("trickled", trickled)] {
        println!("{what} handshake lived {lived:?} (HTTP idle timeout {HTTP_IDLE:?})");
        assert!(
            lived >= HTTP_IDLE - Duration::from_millis(100),
            "{what}: {lived:?}"
        );
    }
}

/// Sockets that upgrade and never join: beyond the per-address limit they are refused with
/// HTTP 503 `server_busy` (other addresses still get in); the held ones get `join_timeout` and
/// close code 1008, and their slots are free again.
pub(super) async fn idle_sockets_are_limited_and_time_out(server: &TestServer) {
    const HOG: &str = "198.51.100.7";
    let t0 = Instant::now();
    let mut idle = Vec::new();
    for _ in 0..PER_IP {
        idle.push(server.try_connect_as(Some(HOG)).await.unwrap());
    }
    // An IPv4 address with a port, as some proxies write it, is the same client.
    let (status, head, body) = server.raw_upgrade(&format!("{HOG}:40123")).await;
    assert_eq!(status, 503, "{head}");
    assert_eq!(body["error"]["code"], "server_busy", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("address"));
    assert!(
        head.to_ascii_lowercase().contains("retry-after: 5"),
        "{head}"
    );

    // Another address is not affected.
    let mut other = server.try_connect_as(Some("198.51.100.8")).await.unwrap();
    send(&mut other, join("Other", "patient")).await;
    expect(&mut other, "joined").await;
    send(&mut other, json!({"v":1,"type":"leave"})).await;

    for ws in &mut idle {
        expect_error(ws, "join_timeout").await;
        assert_eq!(expect_end(ws).await, Some(1008));
    }
    let lived = t0.elapsed();
    println!("idle sockets closed after {lived:?} (join timeout {JOIN_TIMEOUT:?})");
    assert!(
        lived >= JOIN_TIMEOUT && lived < JOIN_TIMEOUT + SLACK,
        "{lived:?}"
    );
    drop(idle);

    // The slots are free again (the server drops its side right after the close).
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        match server.try_connect_as(Some(HOG)).await {
            Ok(_) => break,
            Err(e) => assert!(Instant::now() < deadline, "slot not freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn connections_beyond_the_total_are_refused() {
    let server = start("total", 3, 50).await;
    let mut held = Vec::new();
    for client in [Some("203.0.113.1"), Some("203.0.113.2"), None] {
        held.push(server.try_connect_as(client).await.unwrap());
    }
    let (status, _, body) = server.raw_upgrade("203.0.113.3").await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "server_busy", "{body}");
    // Plain HTTP is not a WebSocket and is not counted.
    assert!(server.get("/healthz").await.ends_with("ok\n"));

    // A connection that leaves frees its slot.
    let mut first = held.remove(0);
    first.close(None).await.unwrap();
    expect_end(&mut first).await;
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut ws = loop {
        match server.try_connect_as(Some("203.0.113.3")).await {
            Ok(ws) => break ws,
            Err(e) => assert!(Instant::now() < deadline, "slot not freed: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    send(&mut ws, join("Clinic", "clinic")).await;
    expect(&mut ws, "joined").await;
    server.stop().await;
}
