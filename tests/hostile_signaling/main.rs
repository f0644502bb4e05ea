//! Hostile input against the real server on port 0: every bad message gets its typed error (or
//! the documented close), the same connection goes on where the protocol keeps it open, and a
//! healthy clinic and specialist in the same consult never notice. Then the connection-level
//! attacks: a stalled or trickled HTTP upgrade, idle sockets beyond the per-address limit,
//! sockets that never join, too many connections in total.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use consult_sfu::config::Config;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, MediaKind};
use str0m::Rtc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

#[path = "../common/mod.rs"]
mod common;

use common::{expect, expect_error, send};

type Ws = WebSocketStream<TcpStream>;

/// Shortened so the test runs in seconds; the defaults (10 s each) take the same code paths.
const JOIN_TIMEOUT: Duration = Duration::from_secs(3);
const HTTP_IDLE: Duration = Duration::from_secs(2);
const PER_IP: usize = 6;
/// How late a timeout may fire on a loaded 2-core CI machine.
const SLACK: Duration = Duration::from_secs(3);
const ROOM: &str = "consult-hostile";

struct TestServer {
    http: SocketAddr,
    config: Config,
    running: common::Running,
}

async fn start(name: &str, max_connections: usize, per_ip: usize) -> TestServer {
    let config = Config {
        max_connections,
        max_connections_per_ip: per_ip,
        ..common::open_join_config(&format!("hostile-{name}"))
    };
    let running = common::serve_with(&config, |options| {
        options.connection_limits.join_timeout = JOIN_TIMEOUT;
        options.http_timeouts.idle = HTTP_IDLE;
    })
    .await;
    TestServer {
        http: running.http,
        config,
        running,
    }
}

impl TestServer {
    /// A WebSocket as the client `client`: the test is the server's local reverse proxy
    /// (connections from loopback) and names the client in `X-Forwarded-For`, as a proxy
    /// does. None: a local client, counted in the total only.
    async fn try_connect_as(
        &self,
        client: Option<&str>,
    ) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
        let mut request = format!("ws://{}/ws", self.http).into_client_request()?;
        if let Some(client) = client {
            request
                .headers_mut()
                .insert("x-forwarded-for", client.parse().unwrap());
        }
        let tcp = TcpStream::connect(self.http).await.unwrap();
        tokio_tungstenite::client_async(request, tcp)
            .await
            .map(|(ws, _)| ws)
    }

    async fn connect(&self) -> Ws {
        self.try_connect_as(None).await.unwrap()
    }

    /// A raw WebSocket upgrade request as `client`; returns the status, the head and the
    /// JSON body.
    async fn raw_upgrade(&self, client: &str) -> (u16, String, Value) {
        let mut s = TcpStream::connect(self.http).await.unwrap();
        let req = format!(
            "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             X-Forwarded-For: {client}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = String::from_utf8_lossy(&raw).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
                    let body = serde_json::from_str(body).unwrap_or(Value::Null);
                    return (status, head.to_string(), body);
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, s.read(&mut buf))
                .await
                .expect("a response to the upgrade")
                .unwrap();
            assert!(n > 0, "closed before a whole response: {text:?}");
            raw.extend_from_slice(&buf[..n]);
        }
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

/// An `error` with `code` arrives, after any number of other errors.
async fn expect_error_among(ws: &mut Ws, code: &str) -> Value {
    loop {
        let v = expect(ws, "error").await;
        if v["code"] == code {
            return v;
        }
    }
}

/// The server closes the socket: a close frame (its code returned), an error or the end.
async fn expect_end(ws: &mut Ws) -> Option<u16> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next())
            .await
            .expect("the server closes the socket")
        {
            Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
            Some(Ok(_)) => continue,
            Some(Err(_)) | None => return None,
        }
    }
}

fn join(name: &str, role: &str) -> Value {
    json!({"v":1,"type":"join","room":ROOM,"name":name,"role":role})
}

/// An offer made by str0m: `media` send-only audio/video sections, and the data channel.
fn client_offer(media: &[MediaKind], channel: bool) -> (Rtc, SdpOffer, SdpPendingOffer) {
    let mut rtc = Rtc::new(Instant::now());
    let mut api = rtc.sdp_api();
    for kind in media {
        api.add_media(*kind, Direction::SendOnly, None, None, None);
    }
    if channel {
        api.add_channel("consult".into());
    }
    let (offer, pending) = api.apply().unwrap();
    (rtc, offer, pending)
}

fn offer_message(offer: &SdpOffer) -> Value {
    json!({"v":1,"type":"offer","sdp":offer.to_sdp_string()})
}

/// A participant that negotiated and is in the room throughout, reading only when checked.
struct Healthy {
    ws: Ws,
    rtc: Rtc,
    id: Value,
    muted: bool,
}

impl Healthy {
    /// Joins, offers audio and video, accepts the answer.
    async fn join(server: &TestServer, name: &str, role: &str) -> Self {
        let mut ws = server.connect().await;
        send(&mut ws, join(name, role)).await;
        let id = expect(&mut ws, "joined").await["participant_id"].clone();
        let (mut rtc, offer, pending) = client_offer(&[MediaKind::Audio, MediaKind::Video], false);
        send(&mut ws, offer_message(&offer)).await;
        let answer = expect(&mut ws, "answer").await;
        let answer = SdpAnswer::from_sdp_string(answer["sdp"].as_str().unwrap()).unwrap();
        rtc.sdp_api().accept_answer(pending, answer).unwrap();
        Healthy {
            ws,
            rtc,
            id,
            muted: false,
        }
    }

    /// Answers the server's next offer, which must announce `tracks` tracks.
    async fn answer_next_offer(&mut self, tracks: usize) {
        let offer = expect(&mut self.ws, "offer").await;
        let offer = SdpOffer::from_sdp_string(offer["sdp"].as_str().unwrap()).unwrap();
        let answer = self.rtc.sdp_api().accept_offer(offer).unwrap();
        send(
            &mut self.ws,
            json!({"v":1,"type":"answer","sdp":answer.to_sdp_string()}),
        )
        .await;
        for _ in 0..tracks {
            expect(&mut self.ws, "track_published").await;
        }
    }
}

/// The clinic mutes or unmutes; the specialist hears of it: the room still relays signaling.
async fn room_still_works(clinic: &mut Healthy, doctor: &mut Healthy, case: &str) {
    clinic.muted = !clinic.muted;
    send(
        &mut clinic.ws,
        json!({"v":1,"type":"mute","kind":"audio","muted":clinic.muted}),
    )
    .await;
    loop {
        let seen = expect(&mut doctor.ws, "mute_changed").await;
        if seen["participant_id"] == clinic.id && seen["kind"] == "audio" {
            assert_eq!(seen["muted"], clinic.muted, "after {case}: {seen}");
            return;
        }
    }
}

/// Where a case starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    /// A fresh connection that has not joined.
    Fresh,
    /// Joined to the healthy pair's consult as a patient, without an offer yet.
    Joined,
}

enum Input {
    Text(String),
    Binary(Vec<u8>),
    /// This many frames at once, far over the burst of 200.
    Flood(usize),
    /// A valid SDP offer with this many audio sections.
    OfferWithTracks(usize),
}

enum Outcome {
    /// The next error has this code, and the connection goes on.
    Error(&'static str),
    /// An error with this code comes among others (a flood gets many), the connection goes on.
    ErrorAmong(&'static str),
    /// The server closes the connection (documented for frames over 256 KiB).
    Closed,
}

mod cases;
mod connections;
