//! ICE-TCP: a client that can only use TCP (a str0m client with one active TCP candidate, as
//! Chromium offers when UDP is blocked) connects to the server's passive TCP candidate, gets
//! through ICE and DTLS over RFC 4571 framing, and its media reaches the server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use consult_sfu::config::{Config, ConsultsConfig};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::SdpAnswer;
use str0m::media::{Direction, MediaKind};
use str0m::net::{Protocol, Receive, TcpType};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

mod common;

/// Chromium's active TCP candidates carry the discard port; the real one is ephemeral.
const ACTIVE_PLACEHOLDER: &str = "127.0.0.1:9";

#[tokio::test]
async fn a_tcp_only_client_connects_over_ice_tcp() {
    let dir = common::temp_dir("icetcp");
    let config = Config {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        udp_addr: "127.0.0.1:0".parse().unwrap(),
        ice_tcp_addr: Some("127.0.0.1:0".parse().unwrap()),
        consults: ConsultsConfig {
            db_path: dir.join("consults.sqlite"),
            allow_open_join: true,
            ..ConsultsConfig::default()
        },
        ..Config::default()
    };
    let server = common::serve(&config).await;
    let http = server.http;
    let tcp_addr = server.tcp.expect("ICE-TCP is on");

    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
        .await
        .unwrap();
    let send = |v: Value| Message::Text(v.to_string().into());
    ws.send(send(
        json!({"v":1,"type":"join","room":"tcp-only","name":"Phòng khám","role":"clinic"}),
    ))
    .await
    .unwrap();

    // A client whose only candidate is an active TCP one.
    let mut rtc = Rtc::new(Instant::now());
    let placeholder: SocketAddr = ACTIVE_PLACEHOLDER.parse().unwrap();
    let local = Candidate::builder()
        .tcp()
        .host(placeholder)
        .tcptype(TcpType::Active)
        .build()
        .unwrap();
    rtc.add_local_candidate(local);
    let mut api = rtc.sdp_api();
    let audio = api.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None);
    let (offer, pending) = api.apply().unwrap();

    let answer = loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let v: Value = serde_json::from_str(&text).unwrap();
        match v["type"].as_str() {
            Some("joined") => {
                ws.send(send(
                    json!({"v":1,"type":"offer","sdp":offer.to_sdp_string()}),
                ))
                .await
                .unwrap();
            }
            Some("answer") => break v["sdp"].as_str().unwrap().to_string(),
            _ => {}
        }
    };
    let tcp_line = answer
        .lines()
        .find(|l| l.contains(" tcp ") && l.contains("tcptype passive"))
        .unwrap_or_else(|| panic!("the answer offers a passive TCP candidate:\n{answer}"));
    assert!(
        tcp_line.contains(&format!(" {} ", tcp_addr.port())),
        "{tcp_line}"
    );
    rtc.sdp_api()
        .accept_answer(pending, SdpAnswer::from_sdp_string(&answer).unwrap())
        .unwrap();

    // The client's IO: one TCP connection to the passive candidate, RFC 4571 frames.
    let stream = TcpStream::connect(tcp_addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let (in_tx, mut in_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(256);
    tokio::spawn(async move {
        while let Ok(len) = rd.read_u16().await {
            let mut buf = vec![0; len as usize];
            if rd.read_exact(&mut buf).await.is_err() || in_tx.send(buf).await.is_err() {
                break;
            }
        }
    });

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut connected_at = None;
    let mut sent_rtp = 0u32;
    let mut done_at: Option<Instant> = None;
    while Instant::now() < deadline {
        let timeout = loop {
            match rtc.poll_output().unwrap() {
                Output::Timeout(t) => break t,
                Output::Transmit(t) => {
                    assert_eq!(t.proto, Protocol::Tcp, "a TCP-only client sends over TCP");
                    let mut framed = (t.contents.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&t.contents);
                    wr.write_all(&framed).await.unwrap();
                }
                Output::Event(Event::Connected) => connected_at = Some(Instant::now()),
                Output::Event(_) => {}
            }
        };
        if connected_at.is_some() && sent_rtp < 50 {
            // A few Opus-sized packets, so the server has media from this client.
            let writer = rtc.writer(audio).unwrap();
            let pt = writer.payload_params().next().unwrap().pt();
            let now = Instant::now();
            writer
                .write(
                    pt,
                    now,
                    str0m::media::MediaTime::from_90khz(0),
                    vec![0xf8; 60],
                )
                .unwrap();
            sent_rtp += 1;
        }
        if sent_rtp >= 50
            && done_at.get_or_insert_with(Instant::now).elapsed() > Duration::from_millis(500)
        {
            break;
        }
        // One packet per 20 ms, as an Opus sender does; str0m packetizes on its timeouts.
        let wait = timeout
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(20));
        tokio::select! {
            Some(packet) = in_rx.recv() => {
                let input = Input::Receive(
                    Instant::now(),
                    Receive {
                        proto: Protocol::Tcp,
                        source: tcp_addr,
                        destination: placeholder,
                        contents: packet.as_slice().try_into().unwrap(),
                    },
                );
                rtc.handle_input(input).unwrap();
            }
            _ = tokio::time::sleep(wait) => {
                rtc.handle_input(Input::Timeout(Instant::now())).unwrap();
            }
        }
    }
    assert!(connected_at.is_some(), "ICE and DTLS over TCP within 15 s");
    assert_eq!(sent_rtp, 50);

    // Then a flood far above any audio budget (1,500 packets of 1,000 bytes at once, about
    // 12 Mbit): the server drops the excess on arrival and counts it.
    let pt = rtc
        .writer(audio)
        .unwrap()
        .payload_params()
        .next()
        .unwrap()
        .pt();
    for k in 0..1500u32 {
        let now = Instant::now();
        rtc.writer(audio)
            .unwrap()
            .write(
                pt,
                now,
                str0m::media::MediaTime::from_90khz(u64::from(k) * 1800),
                vec![0xf8; 1000],
            )
            .unwrap();
        rtc.handle_input(Input::Timeout(now)).unwrap();
        loop {
            match rtc.poll_output().unwrap() {
                Output::Transmit(t) => {
                    let mut framed = (t.contents.len() as u16).to_be_bytes().to_vec();
                    framed.extend_from_slice(&t.contents);
                    wr.write_all(&framed).await.unwrap();
                }
                Output::Event(_) => {}
                Output::Timeout(_) => break,
            }
        }
    }

    // The server counted the client's RTP (it arrived over TCP).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = {
        let mut s = TcpStream::connect(http).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    };
    let rtp_in = metrics
        .lines()
        .find_map(|l| l.strip_prefix("consult_rtp_packets_in_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        rtp_in >= 40.0,
        "the server received the client's RTP over TCP: {rtp_in}\n{metrics}"
    );
    let over_budget = metrics
        .lines()
        .find_map(|l| l.strip_prefix("consult_rtp_over_budget_dropped_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        (1000.0..1500.0).contains(&over_budget),
        "most of the flood is dropped on arrival, the first second's budget is not: {over_budget}"
    );

    server.stop().await;
    let _ = std::fs::remove_dir_all(&dir);
}
