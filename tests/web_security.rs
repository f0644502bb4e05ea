//! The web client's security headers, and the WebSocket Origin check, against the real server.

use consult_sfu::config::{Config, ConsultsConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod common;

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut buf = vec![0; 16 * 1024];
    // The head is enough: for an accepted upgrade the server keeps the socket open.
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), s.read(&mut buf))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase()
}

#[tokio::test]
async fn pages_carry_security_headers_and_ws_checks_the_origin() {
    let dir = common::temp_dir("websec");
    let config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        web_root: concat!(env!("CARGO_MANIFEST_DIR"), "/web-client").into(),
        allowed_origins: vec!["https://portal.example".into()],
        consults: ConsultsConfig {
            db_path: dir.join("consults.sqlite"),
            ..ConsultsConfig::default()
        },
        ..Config::default()
    };
    let server = common::serve(&config).await;
    let http = server.http;

    let page = raw(
        http,
        &format!("GET / HTTP/1.1\r\nHost: {http}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert!(page.starts_with("http/1.1 200"), "{page}");
    for header in [
        "content-security-policy: default-src 'self'; script-src 'self'",
        "frame-ancestors 'none'",
        "referrer-policy: no-referrer",
        "x-content-type-options: nosniff",
        "x-frame-options: deny",
    ] {
        assert!(page.contains(header), "GET / lacks {header:?}:\n{page}");
    }

    let upgrade = |origin: Option<&str>| {
        let origin = origin.map_or(String::new(), |o| format!("Origin: {o}\r\n"));
        format!(
            "GET /ws HTTP/1.1\r\nHost: {http}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{origin}\r\n"
        )
    };
    let cases = [
        (None, "101"),
        (Some(format!("http://{http}")), "101"),
        (Some("https://portal.example".to_string()), "101"),
        (Some("https://evil.example".to_string()), "403"),
        (Some(format!("http://{http}.evil.example")), "403"),
    ];
    for (origin, want) in cases {
        let head = raw(http, &upgrade(origin.as_deref())).await;
        assert!(
            head.starts_with(&format!("http/1.1 {want}")),
            "Origin {origin:?}: want {want}, got:\n{head}"
        );
        if want == "403" {
            assert!(head.contains("forbidden_origin"), "{head}");
        }
    }

    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
