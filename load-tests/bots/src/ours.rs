//! Our signaling (`signaling/PROTOCOL.md`): join, one offer with what the bot publishes, then
//! answer every server offer on the same peer connection; `publish_layers` (dynacast).

use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio_tungstenite::tungstenite::Message;

use crate::media::Pc;
use crate::room::{Bot, Joined, RoomRun, PUB};

/// Connects, joins and waits for `joined` (retrying `unknown_room` until `deadline`).
pub(crate) async fn join(
    url: String,
    room: String,
    name: String,
    role: &'static str,
    deadline: Instant,
) -> Result<Box<Joined>, String> {
    let fut = async {
        let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| format!("connect {url}: {e}"))?;
        let msg = json!({"v":1,"type":"join","room":room,"name":name,"role":role}).to_string();
        ws.send(Message::Text(msg.clone().into()))
            .await
            .map_err(|e| format!("send join: {e}"))?;
        loop {
            let m = ws
                .next()
                .await
                .ok_or("socket closed before joined")?
                .map_err(|e| format!("ws: {e}"))?;
            let Message::Text(t) = m else { continue };
            let v: Value = serde_json::from_str(&t).map_err(|e| format!("bad json: {e}"))?;
            match v["type"].as_str() {
                Some("joined") => {
                    return Ok(Box::new(Joined {
                        ws,
                        at: Instant::now(),
                        janus: None,
                    }))
                }
                Some("error") if v["code"] == "unknown_room" => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                    ws.send(Message::Text(msg.clone().into()))
                        .await
                        .map_err(|e| format!("send join: {e}"))?;
                }
                Some("error") => return Err(format!("join refused: {v}")),
                _ => {}
            }
        }
    };
    tokio::time::timeout_at(deadline.into(), fut)
        .await
        .unwrap_or_else(|_| Err("join timed out".into()))
}

pub(crate) async fn leave(b: &mut Bot) {
    b.send_json(json!({"v":1,"type":"leave"})).await;
}

/// Removes candidates from an SDP, as a browser's offer made before gathering has none: the
/// bot trickles its candidate instead.
fn strip_candidates(sdp: &str) -> String {
    sdp.split("\r\n")
        .filter(|l| !l.starts_with("a=candidate:") && *l != "a=end-of-candidates")
        .collect::<Vec<_>>()
        .join("\r\n")
}

impl RoomRun {
    /// After `joined`: the bot's only offer (what it publishes), then its candidate trickled.
    pub(crate) async fn ours_publish(&mut self, k: usize) -> Result<(), String> {
        let now = Instant::now();
        let b = &mut self.bots[k];
        let mut pc = Pc::new(b.sender, self.cfg.bind_ip, now)?;
        let mut api = pc.rtc.sdp_api();
        b.publisher.add_media(&mut api);
        let (offer, pending) = api.apply().ok_or("no offer")?;
        let audio = b.publisher.audio_mid.ok_or("no audio mid")?;
        let candidate = pc.candidate.to_sdp_string();
        b.pending = Some(pending);
        b.pcs[PUB] = Some(pc);
        let sdp = strip_candidates(&offer.to_sdp_string());
        if !b.send_json(json!({"v":1,"type":"offer","sdp":sdp})).await {
            return Err("send offer failed".into());
        }
        let cand = json!({"v":1,"type":"candidate","candidate":candidate,"sdp_mid":audio.to_string(),"sdp_m_line_index":0});
        b.send_json(cand).await;
        b.send_json(json!({"v":1,"type":"candidate","candidate":"","sdp_mid":audio.to_string(),"sdp_m_line_index":0}))
            .await;
        self.drive(k, PUB);
        Ok(())
    }

    pub(crate) async fn on_signal(&mut self, k: usize, v: Value) {
        let kind = v["type"].as_str().unwrap_or("");
        match kind {
            "answer" => {
                let b = &mut self.bots[k];
                let (Some(pc), Some(pending)) = (b.pcs[PUB].as_mut(), b.pending.take()) else {
                    return;
                };
                let res = SdpAnswer::from_sdp_string(v["sdp"].as_str().unwrap_or(""))
                    .map_err(|e| e.to_string())
                    .and_then(|a| {
                        pc.rtc
                            .sdp_api()
                            .accept_answer(pending, a)
                            .map_err(|e| e.to_string())
                    });
                if let Err(e) = res {
                    self.fail(k, format!("accept answer: {e}"));
                    return;
                }
                b.publisher.negotiated(&pc.rtc);
                self.drive(k, PUB);
            }
            "offer" => {
                self.shared.server_offers.fetch_add(1, Relaxed);
                let b = &mut self.bots[k];
                let Some(pc) = b.pcs[PUB].as_mut() else {
                    return;
                };
                let res = SdpOffer::from_sdp_string(v["sdp"].as_str().unwrap_or(""))
                    .map_err(|e| e.to_string())
                    .and_then(|o| pc.rtc.sdp_api().accept_offer(o).map_err(|e| e.to_string()));
                match res {
                    Ok(answer) => {
                        pc.renegotiated();
                        let sdp = answer.to_sdp_string();
                        b.send_json(json!({"v":1,"type":"answer","sdp":sdp})).await;
                        self.drive(k, PUB);
                    }
                    Err(e) => self.fail(k, format!("accept offer: {e}")),
                }
            }
            "publish_layers" if self.cfg.dynacast => {
                self.shared.publish_layers.fetch_add(1, Relaxed);
                let b = &mut self.bots[k];
                if v["mid"].as_str() != b.publisher.video_mid.map(|m| m.to_string()).as_deref() {
                    return;
                }
                let active: Vec<&str> = v["active"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
                    .unwrap_or_default();
                b.publisher.set_active(&active, Instant::now());
            }
            "layer_changed" => {
                self.shared.layer_changes.fetch_add(1, Relaxed);
            }
            "error" => {
                self.shared.signaling_errors.fetch_add(1, Relaxed);
                let b = &self.bots[k];
                self.shared.error(format!(
                    "room {} bot {}: server error {}",
                    self.name, b.sender, v
                ));
            }
            _ => {}
        }
    }
}
