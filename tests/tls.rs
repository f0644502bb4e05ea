//! HTTPS and WSS with a certificate made at test time: the web client with its security
//! headers and a signaling reply over TLS, a renewed certificate (files replaced on disk)
//! picked up by new connections without a restart while a broken replacement is ignored, and
//! a bad certificate refused at start with a clear message.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use consult_sfu::config::{Config, ConsultsConfig};
use consult_sfu::server::{Listeners, ServeOptions, Server, ServerError};
use futures_util::{SinkExt, StreamExt};
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::tungstenite::Message;

mod common;

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// A self-signed certificate for `localhost`: (cert DER, cert PEM, key PEM).
fn self_signed() -> (CertificateDer<'static>, String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let der = made.cert.der().clone();
    let cert_pem = pem("CERTIFICATE", &der);
    let key_pem = pem("PRIVATE KEY", &made.signing_key.serialize_der());
    (der, cert_pem, key_pem)
}

/// Replaces a file the way certbot and `cp` + `mv` do: a new file renamed over the old one.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn client(trusted: &[&CertificateDer<'static>]) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in trusted {
        roots.add((*c).clone()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

async fn connect(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
) -> std::io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tls.connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
}

/// The certificate the server presented on this connection.
fn presented(stream: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    stream.get_ref().1.peer_certificates().unwrap()[0].clone()
}

fn config(dir: &Path, cert: &Path, key: &Path) -> Config {
    Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        tls_cert: Some(cert.to_path_buf()),
        tls_key: Some(key.to_path_buf()),
        consults: ConsultsConfig {
            db_path: dir.join("consults.sqlite"),
            ..ConsultsConfig::default()
        },
        ..Config::default()
    }
}

fn write_pair(dir: &Path, cert: &str, key: &str) -> (PathBuf, PathBuf) {
    let (c, k) = (dir.join("fullchain.pem"), dir.join("privkey.pem"));
    std::fs::write(&c, cert).unwrap();
    std::fs::write(&k, key).unwrap();
    (c, k)
}

#[tokio::test]
async fn https_and_wss_with_a_renewed_certificate_picked_up_without_a_restart() {
    let dir = common::temp_dir("tls");
    let (der1, cert1, key1) = self_signed();
    let (der2, cert2, key2) = self_signed();
    let (cert_path, key_path) = write_pair(&dir, &cert1, &key1);
    let server = common::serve(&config(&dir, &cert_path, &key_path)).await;
    let addr = server.http;
    let tls = client(&[&der1, &der2]);

    // The web client over HTTPS, with its security headers.
    let mut s = connect(&tls, addr).await.unwrap();
    assert_eq!(presented(&s), der1);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8_lossy(&raw).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text:.200}");
    for header in [
        "content-security-policy: default-src 'self'",
        "referrer-policy: no-referrer",
        "x-content-type-options: nosniff",
        "strict-transport-security: max-age=31536000",
    ] {
        assert!(text.contains(header), "{header} missing: {text:.600}");
    }

    // Signaling over WSS: a malformed message gets its error reply.
    let s = connect(&tls, addr).await.unwrap();
    let (mut ws, _) =
        tokio_tungstenite::client_async(format!("wss://localhost:{}/ws", addr.port()), s)
            .await
            .unwrap();
    ws.send(Message::Text("not json".into())).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("a reply over WSS")
        .unwrap()
        .unwrap();
    assert!(reply.to_string().contains("bad_json"), "{reply}");

    // Plain HTTP on the TLS port gets no page.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut raw)).await;
    assert!(!String::from_utf8_lossy(&raw).contains("200 OK"));

    // A broken replacement (a key that is not PEM) is refused and the old certificate stays.
    replace(&key_path, "not a key\n");
    tokio::time::sleep(consult_sfu::tls::RELOAD_CHECK_EVERY + Duration::from_secs(1)).await;
    for _ in 0..2 {
        let s = connect(&tls, addr).await.unwrap();
        assert_eq!(presented(&s), der1, "the old certificate is kept");
    }

    // The renewal: both files replaced. New connections get it within the check interval.
    let renewed_at = Instant::now();
    replace(&cert_path, &cert2);
    replace(&key_path, &key2);
    let seen_after = loop {
        let s = connect(&tls, addr).await.unwrap();
        if presented(&s) == der2 {
            break renewed_at.elapsed();
        }
        assert!(
            renewed_at.elapsed() < consult_sfu::tls::RELOAD_CHECK_EVERY * 2,
            "the renewed certificate is not served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    println!("renewed certificate served {seen_after:?} after the files were replaced");
    // The WebSocket opened before the renewal still carries messages (by now the reply may
    // be the 10 s join timeout instead of bad_json: either came over the old connection).
    ws.send(Message::Text("still not json".into()))
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("the old connection still works")
        .unwrap()
        .unwrap();
    let reply = reply.to_string();
    assert!(
        reply.contains("bad_json") || reply.contains("join_timeout"),
        "{reply}"
    );
    // A client trusting only the old certificate now fails: it really is the new one.
    assert!(connect(&client(&[&der1]), addr).await.is_err());

    drop(ws);
    server.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_bad_certificate_is_a_clear_error_at_start() {
    let dir = common::temp_dir("tls-bad");
    let (_, cert1, key1) = self_signed();
    let (_, _, other_key) = self_signed();
    let missing = dir.join("missing.pem");
    // (cert, key, what the message must say)
    let cases = [
        (
            "-----BEGIN CERTIFICATE-----\nnot base64!\n",
            key1.as_str(),
            "tls_cert",
        ),
        ("", key1.as_str(), "no PEM certificate"),
        (cert1.as_str(), "garbage", "no PEM private key"),
        (cert1.as_str(), other_key.as_str(), "tls_key"),
    ];
    for (i, (cert, key, want)) in cases.into_iter().enumerate() {
        let (c, k) = write_pair(&dir, cert, key);
        let config = config(&dir, &c, &k);
        let listeners = Listeners::bind(&config).await.unwrap();
        let options = ServeOptions::from_config(&config, &listeners);
        let err = match Server::start(listeners, options).await {
            Err(e @ ServerError::Tls(_)) => e.to_string(),
            Err(e) => panic!("case {i}: not a TLS error: {e}"),
            Ok(_) => panic!("case {i}: started with a bad certificate"),
        };
        assert!(err.contains(want), "case {i}: {err}");
        assert!(
            err.contains(&c.display().to_string()) || err.contains(&k.display().to_string()),
            "case {i} names the file: {err}"
        );
    }

    // The binary: --check-config and a start both exit 2 naming the file.
    let (c, k) = write_pair(&dir, &cert1, &key1);
    let run = |cert: &Path, extra: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_consult-sfu"))
            .args(["--http-addr", "127.0.0.1:0", "--udp-addr", "127.0.0.1:0"])
            .arg("--db-path")
            .arg(dir.join("c.sqlite"))
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(&k)
            .args(extra)
            .env_remove("CONSULT_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    assert_eq!(
        run(&c, &["--check-config"]).0,
        Some(0),
        "a good pair passes"
    );
    for extra in [&["--check-config"][..], &[]] {
        let (code, stderr) = run(&missing, extra);
        assert_eq!(code, Some(2), "{extra:?}: {stderr}");
        assert!(
            stderr.contains("tls_cert")
                && stderr.contains("missing.pem")
                && stderr.contains("cannot read"),
            "{stderr}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_consult-sfu"))
        .args(["--check-config", "--tls-cert"])
        .arg(&c)
        .env_remove("CONSULT_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("set both or neither"), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}
