//! Janus VideoRoom through the Janus API over its WebSocket transport (subprotocol
//! `janus-protocol`), for the baseline: per bot one session with two handles on the
//! `janus.plugin.videoroom` plugin, like janus.js does for a multistream VideoRoom client:
//!
//! - a publisher handle: the room's first bot `create`s the room, every bot `join`s as a
//!   publisher, then `publish`es with str0m's offer (Opus + VP8 with rids q/h/f, listed lowest
//!   first, hence `rid_order: "lmh"`); Janus answers.
//! - one subscriber handle (Janus 1.x multistream): `join` as a subscriber with the feeds known
//!   at that time, later `subscribe` for each feed that starts publishing; Janus offers, a
//!   second str0m `Rtc` answers with `start`. One peer connection for all feeds is what a
//!   Janus 1.x client does and costs Janus one ICE/DTLS transport per bot instead of one per
//!   feed.
//!
//! Descriptions carry their candidates (`trickle: false`); ICE is Janus's full ICE (libnice)
//! against str0m's host candidate on 127.0.0.1. The session is kept alive every 20 s.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

use crate::media::Pc;
use crate::room::{Bot, Joined, RoomRun, State, Ws, PUB, SUB};

const PLUGIN: &str = "janus.plugin.videoroom";
/// Janus drops a session after `session_timeout` (60 s by default) without a request.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// The room's bitrate cap (REMB to publishers): far above what a bot sends, so it never binds.
const ROOM_BITRATE: u64 = 10_000_000;
/// VideoRoom error code: the room already exists.
const ROOM_EXISTS: i64 = 427;

/// One bot's Janus state.
pub(crate) struct JanusBot {
    session: u64,
    pub_handle: u64,
    sub_handle: u64,
    room: u64,
    /// Our publisher id in the room, and the private id that ties our subscriber to it.
    id: u64,
    private_id: u64,
    /// Feeds seen (other publishers) and those not yet asked for.
    known: HashSet<u64>,
    pending: Vec<u64>,
    sub_joined: bool,
    /// A subscriber request is out and its offer not answered yet: Janus renegotiates one
    /// change at a time.
    sub_busy: bool,
    next_keepalive: Instant,
    next_tx: u64,
}

impl JanusBot {
    fn tx(&mut self) -> String {
        self.next_tx += 1;
        format!("b{}", self.next_tx)
    }

    fn message(&mut self, handle: u64, body: Value, jsep: Option<Value>) -> Value {
        let mut m = json!({"janus":"message","session_id":self.session,"handle_id":handle,
            "transaction":self.tx(),"body":body});
        if let Some(j) = jsep {
            m["jsep"] = j;
        }
        m
    }

    /// Adds publishers from a `joined` or `event` list (all but ourselves), once each.
    fn add_feeds(&mut self, list: &Value) {
        for p in list.as_array().into_iter().flatten() {
            let Some(id) = p["id"].as_u64() else { continue };
            if id != self.id && self.known.insert(id) {
                self.pending.push(id);
            }
        }
    }
}

/// Sends one Janus request and waits for its reply (skipping `ack`s and anything else);
/// a Janus or plugin error becomes `Err`.
async fn call(ws: &mut Ws, n: &mut u64, mut req: Value) -> Result<Value, String> {
    *n += 1;
    let tx = format!("j{n}");
    req["transaction"] = json!(tx);
    ws.send(Message::Text(req.to_string().into()))
        .await
        .map_err(|e| format!("send: {e}"))?;
    loop {
        let m = ws
            .next()
            .await
            .ok_or("Janus closed the socket")?
            .map_err(|e| format!("ws: {e}"))?;
        let Message::Text(t) = m else { continue };
        let v: Value = serde_json::from_str(&t).map_err(|e| format!("bad json: {e}"))?;
        if v["transaction"].as_str() != Some(tx.as_str()) || v["janus"] == "ack" {
            continue;
        }
        if v["janus"] == "error" {
            return Err(format!("{}: {}", req["janus"], v["error"]));
        }
        return Ok(v);
    }
}

/// Connects, creates a session with a publisher and a subscriber handle, creates the room if
/// `create` (its publisher limit), joins it as a publisher and waits for `joined`.
pub(crate) async fn join(
    url: String,
    room: u64,
    create: Option<usize>,
    display: String,
    deadline: Instant,
) -> Result<Box<Joined>, String> {
    let fut = async {
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| format!("url {url}: {e}"))?;
        req.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("janus-protocol"),
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(req)
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        let mut n = 0;
        let r = call(&mut ws, &mut n, json!({"janus":"create"})).await?;
        let session = r["data"]["id"].as_u64().ok_or("no session id")?;
        let attach = json!({"janus":"attach","session_id":session,"plugin":PLUGIN});
        let r = call(&mut ws, &mut n, attach.clone()).await?;
        let pub_handle = r["data"]["id"].as_u64().ok_or("no handle id")?;
        let r = call(&mut ws, &mut n, attach).await?;
        let sub_handle = r["data"]["id"].as_u64().ok_or("no handle id")?;
        let message = |body: Value| json!({"janus":"message","session_id":session,"handle_id":pub_handle,"body":body});
        if let Some(publishers) = create {
            let body = json!({"request":"create","room":room,"publishers":publishers,
                "videocodec":"vp8","audiocodec":"opus","bitrate":ROOM_BITRATE,
                "notify_joining":false,"record":false,"permanent":false});
            let r = call(&mut ws, &mut n, message(body)).await?;
            let data = &r["plugindata"]["data"];
            if data["videoroom"] != "created" && data["error_code"] != ROOM_EXISTS {
                return Err(format!("create room {room}: {data}"));
            }
        }
        let body = json!({"request":"join","ptype":"publisher","room":room,"display":display});
        let r = call(&mut ws, &mut n, message(body)).await?;
        let data = &r["plugindata"]["data"];
        if data["videoroom"] != "joined" {
            return Err(format!("join room {room}: {data}"));
        }
        let mut janus = JanusBot {
            session,
            pub_handle,
            sub_handle,
            room,
            id: data["id"].as_u64().ok_or("no publisher id")?,
            private_id: data["private_id"].as_u64().unwrap_or(0),
            known: HashSet::new(),
            pending: Vec::new(),
            sub_joined: false,
            sub_busy: false,
            next_keepalive: Instant::now() + KEEPALIVE,
            next_tx: 0,
        };
        janus.add_feeds(&data["publishers"]);
        Ok(Box::new(Joined {
            ws,
            at: Instant::now(),
            janus: Some(janus),
            node: url.clone(),
        }))
    };
    tokio::time::timeout_at(deadline.into(), fut)
        .await
        .unwrap_or_else(|_| Err("join timed out".into()))
}

/// Ends the session (Janus hangs up both peer connections and leaves the room).
pub(crate) async fn leave(b: &mut Bot) {
    let Some(j) = b.janus.as_mut() else { return };
    let m = json!({"janus":"destroy","session_id":j.session,"transaction":j.tx()});
    b.send_json(m).await;
}

impl RoomRun {
    /// After `joined`: publish (str0m offers), and subscribe to the feeds already there.
    pub(crate) async fn janus_publish(&mut self, k: usize) -> Result<(), String> {
        let now = Instant::now();
        let b = &mut self.bots[k];
        let mut pc = Pc::new(b.sender, self.cfg.bind_ip, now)?;
        let mut api = pc.rtc.sdp_api();
        b.publisher.add_media(&mut api);
        let (offer, pending) = api.apply().ok_or("no offer")?;
        b.pending = Some(pending);
        b.pcs[PUB] = Some(pc);
        let j = b.janus.as_mut().ok_or("no Janus session")?;
        let jsep = json!({"type":"offer","sdp":offer.to_sdp_string(),"trickle":false,
            "rid_order":"lmh"});
        let body = json!({"request":"publish","audiocodec":"opus","videocodec":"vp8"});
        let m = j.message(j.pub_handle, body, Some(jsep));
        if !b.send_json(m).await {
            return Err("send publish failed".into());
        }
        self.drive(k, PUB);
        self.janus_subscribe(k).await;
        Ok(())
    }

    /// Asks for the feeds not subscribed yet, unless a subscriber negotiation is under way.
    async fn janus_subscribe(&mut self, k: usize) {
        let b = &mut self.bots[k];
        let Some(j) = b.janus.as_mut() else { return };
        if j.sub_busy || j.pending.is_empty() {
            return;
        }
        let streams: Vec<Value> = j.pending.drain(..).map(|f| json!({"feed":f})).collect();
        let body = if j.sub_joined {
            json!({"request":"subscribe","streams":streams})
        } else {
            json!({"request":"join","ptype":"subscriber","room":j.room,
                "private_id":j.private_id,"streams":streams})
        };
        j.sub_joined = true;
        j.sub_busy = true;
        let m = j.message(j.sub_handle, body, None);
        b.send_json(m).await;
    }

    /// Keeps every Janus session alive; returns when the next keepalive is due.
    pub(crate) async fn janus_keepalives(&mut self, now: Instant) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        for b in &mut self.bots {
            if b.state != State::Active {
                continue;
            }
            let Some(j) = b.janus.as_mut() else { continue };
            if j.next_keepalive <= now {
                j.next_keepalive = now + KEEPALIVE;
                let m = json!({"janus":"keepalive","session_id":j.session,"transaction":j.tx()});
                b.send_json(m).await;
            }
            let due = b.janus.as_ref().map(|j| j.next_keepalive);
            next = next.into_iter().chain(due).min();
        }
        next
    }

    pub(crate) async fn on_janus(&mut self, k: usize, v: Value) {
        let Some(j) = self.bots[k].janus.as_mut() else {
            return;
        };
        let sender = v["sender"].as_u64();
        match v["janus"].as_str().unwrap_or("") {
            "event" => {
                let data = &v["plugindata"]["data"];
                let to_sub = sender == Some(j.sub_handle);
                if !data["error_code"].is_null() {
                    if to_sub {
                        j.sub_busy = false;
                    }
                    self.janus_error(k, format!("plugin error: {data}"));
                    return;
                }
                if to_sub {
                    if v["jsep"]["type"] == "offer" {
                        let sdp = v["jsep"]["sdp"].as_str().unwrap_or("").to_string();
                        self.janus_answer_subscriber(k, &sdp).await;
                    }
                } else {
                    j.add_feeds(&data["publishers"]);
                    if v["jsep"]["type"] == "answer" {
                        let sdp = v["jsep"]["sdp"].as_str().unwrap_or("");
                        self.janus_accept_answer(k, sdp);
                    }
                }
                self.janus_subscribe(k).await;
            }
            "hangup" => {
                let reason = v["reason"].to_string();
                self.janus_error(k, format!("hangup of handle {sender:?}: {reason}"));
            }
            "timeout" | "error" => self.janus_error(k, format!("{v}")),
            // ack, success (keepalives), webrtcup, media, slowlink, detached.
            _ => {}
        }
    }

    fn janus_error(&mut self, k: usize, e: String) {
        self.shared.signaling_errors.fetch_add(1, Relaxed);
        let b = &self.bots[k];
        self.shared
            .error(format!("room {} bot {}: Janus {e}", self.name, b.sender));
    }

    fn janus_accept_answer(&mut self, k: usize, sdp: &str) {
        let b = &mut self.bots[k];
        let (Some(pc), Some(pending)) = (b.pcs[PUB].as_mut(), b.pending.take()) else {
            return;
        };
        let res = SdpAnswer::from_sdp_string(sdp)
            .map_err(|e| e.to_string())
            .and_then(|a| {
                pc.rtc
                    .sdp_api()
                    .accept_answer(pending, a)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = res {
            self.fail(k, format!("accept Janus answer: {e}"));
            return;
        }
        b.publisher.negotiated(&pc.rtc);
        self.drive(k, PUB);
    }

    /// Janus's subscriber offer (first one or after `subscribe`): answer it with `start`.
    async fn janus_answer_subscriber(&mut self, k: usize, sdp: &str) {
        self.shared.server_offers.fetch_add(1, Relaxed);
        let b = &mut self.bots[k];
        if b.pcs[SUB].is_none() {
            match Pc::new(b.sender, self.cfg.bind_ip, Instant::now()) {
                Ok(pc) => b.pcs[SUB] = Some(pc),
                Err(e) => return self.fail(k, format!("subscriber socket: {e}")),
            }
        }
        let pc = b.pcs[SUB].as_mut().expect("just set");
        let res = SdpOffer::from_sdp_string(sdp)
            .map_err(|e| e.to_string())
            .and_then(|o| pc.rtc.sdp_api().accept_offer(o).map_err(|e| e.to_string()));
        let answer = match res {
            Ok(a) => a,
            Err(e) => return self.fail(k, format!("accept Janus offer: {e}")),
        };
        pc.renegotiated();
        let Some(j) = b.janus.as_mut() else { return };
        j.sub_busy = false;
        let jsep = json!({"type":"answer","sdp":answer.to_sdp_string(),"trickle":false});
        let m = j.message(j.sub_handle, json!({"request":"start"}), Some(jsep));
        b.send_json(m).await;
        self.drive(k, SUB);
    }
}
