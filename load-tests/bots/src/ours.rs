//! Our signaling (`signaling/PROTOCOL.md`): join, one offer with what the bot publishes, then
//! answer every server offer on the same peer connection; `publish_layers` (dynacast).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use str0m::change::{SdpAnswer, SdpOffer};
use tokio_tungstenite::tungstenite::Message;

use crate::cluster::{canonical_node, redirect_target, rotation, RedirectChain};
use crate::media::Pc;
use crate::room::{Bot, Joined, RoomRun, Shared, Ws, PUB};

/// How one bot joins: the nodes it may start on, where it starts, what it sends.
pub(crate) struct JoinSpec {
    /// Every node's `ws://host:port/ws`, in `--server` order.
    pub nodes: Arc<[String]>,
    /// The bot's global index: it starts on node `first % nodes.len()` ([`rotation`]).
    pub first: usize,
    /// The `join` message, sent again as it is after every redirect.
    pub msg: String,
    /// `--rejoin`: a connection that fails (a node that died, or one a redirect pointed to
    /// that died) is retried from the node list until the deadline instead of failing the bot.
    pub retry: bool,
}

/// Why one attempt to join failed.
enum Step {
    /// The connection failed or closed: worth another try with `--rejoin`.
    Again(String),
    /// The server refused the join, or the redirects looped: another try would do the same.
    Fatal(String),
}

/// Pause between join attempts with `--rejoin`: a dead node is still registered for up to its
/// 3 s TTL, so the live nodes redirect to it for that long; a few attempts per second are
/// enough to be placed soon after.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// Connects (trying the nodes in rotation from the bot's own), joins, follows `redirect`s (at
/// most [`crate::cluster::MAX_REDIRECTS`]) and waits for `joined` (retrying `unknown_room`
/// until `deadline`).
pub(crate) async fn join(
    spec: JoinSpec,
    shared: Arc<Shared>,
    deadline: Instant,
) -> Result<Box<Joined>, String> {
    let mut last: Option<String> = None;
    let fut = async {
        loop {
            match attempt(&spec, &shared).await {
                Ok(j) => return Ok(j),
                Err(Step::Again(e)) if spec.retry => {
                    last = Some(e);
                    tokio::time::sleep(RETRY_DELAY).await;
                }
                Err(Step::Again(e) | Step::Fatal(e)) => return Err(e),
            }
        }
    };
    let res = tokio::time::timeout_at(deadline.into(), fut).await;
    res.unwrap_or_else(|_| {
        Err(match last {
            Some(e) => format!("join timed out (last attempt: {e})"),
            None => "join timed out".into(),
        })
    })
}

/// The first node of the rotation that accepts a WebSocket: (socket, its URL).
async fn connect_any(spec: &JoinSpec, shared: &Shared) -> Result<(Ws, String), String> {
    let mut errors = Vec::new();
    for i in rotation(spec.nodes.len(), spec.first) {
        let url = &spec.nodes[i];
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok((ws, _)) => return Ok((ws, url.clone())),
            Err(e) => {
                shared.connect_failures.fetch_add(1, Relaxed);
                errors.push(format!("connect {url}: {e}"));
            }
        }
    }
    Err(errors.join("; "))
}

async fn send_text(ws: &mut Ws, msg: &str) -> Result<(), Step> {
    ws.send(Message::Text(msg.to_string().into()))
        .await
        .map_err(|e| Step::Again(format!("send join: {e}")))
}

async fn attempt(spec: &JoinSpec, shared: &Shared) -> Result<Box<Joined>, Step> {
    let (mut ws, url) = connect_any(spec, shared).await.map_err(Step::Again)?;
    let mut chain = RedirectChain::new(&url);
    send_text(&mut ws, &spec.msg).await?;
    loop {
        let m = match ws.next().await {
            None => return Err(Step::Again("socket closed before joined".into())),
            Some(Err(e)) => return Err(Step::Again(format!("ws: {e}"))),
            Some(Ok(m)) => m,
        };
        let Message::Text(t) = m else { continue };
        let v: Value =
            serde_json::from_str(&t).map_err(|e| Step::Fatal(format!("bad json: {e}")))?;
        match v["type"].as_str() {
            Some("joined") => {
                return Ok(Box::new(Joined {
                    ws,
                    at: Instant::now(),
                    janus: None,
                    node: canonical_node(chain.current()),
                }))
            }
            Some("redirect") => {
                // The consult lives on another node; this socket is closed by the server,
                // the same join goes to the node it names.
                let target = redirect_target(&v).map_err(Step::Fatal)?;
                chain.follow(&target).map_err(Step::Fatal)?;
                shared.redirects.fetch_add(1, Relaxed);
                drop(ws);
                ws = match tokio_tungstenite::connect_async(target.as_str()).await {
                    Ok((ws, _)) => ws,
                    Err(e) => {
                        shared.connect_failures.fetch_add(1, Relaxed);
                        return Err(Step::Again(format!("redirected to {target}: {e}")));
                    }
                };
                send_text(&mut ws, &spec.msg).await?;
            }
            Some("error") if v["code"] == "unknown_room" => {
                tokio::time::sleep(Duration::from_millis(250)).await;
                send_text(&mut ws, &spec.msg).await?;
            }
            Some("error") => return Err(Step::Fatal(format!("join refused: {v}"))),
            _ => {}
        }
    }
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

#[cfg(test)]
mod tests {
    //! `join` against fake nodes on loopback: each answers the n-th connection's `join` with
    //! the n-th scripted reply (the last one repeats), like the SFU's redirect does.

    use super::*;
    use tokio::net::TcpListener;

    async fn bind() -> (TcpListener, String) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("ws://{}/ws", l.local_addr().unwrap());
        (l, url)
    }

    fn serve(l: TcpListener, replies: Vec<Value>) {
        tokio::spawn(async move {
            let mut n = 0;
            loop {
                let (tcp, _) = l.accept().await.unwrap();
                let reply = replies[n.min(replies.len() - 1)].clone();
                n += 1;
                tokio::spawn(async move {
                    let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
                    let Some(Ok(Message::Text(t))) = ws.next().await else {
                        return;
                    };
                    let join: Value = serde_json::from_str(&t).unwrap();
                    assert_eq!(join["type"], "join");
                    assert_eq!(join["invite"], "tok");
                    ws.send(Message::Text(reply.to_string().into()))
                        .await
                        .unwrap();
                    if reply["type"] == "redirect" {
                        let _ = ws.close(None).await;
                    } else {
                        // Keep the socket open while the client looks at it.
                        tokio::time::sleep(Duration::from_secs(5)).await;
                    }
                });
            }
        });
    }

    fn joined() -> Value {
        json!({"v":1,"type":"joined","participant_id":"p1"})
    }

    fn redirect(url: &str) -> Value {
        json!({"v":1,"type":"redirect","url":url})
    }

    fn spec(nodes: &[&str], first: usize, retry: bool) -> JoinSpec {
        JoinSpec {
            nodes: nodes.iter().map(|s| s.to_string()).collect(),
            first,
            msg: json!({"v":1,"type":"join","invite":"tok"}).to_string(),
            retry,
        }
    }

    async fn run(spec: JoinSpec) -> (Result<Box<Joined>, String>, Arc<Shared>) {
        let shared = Arc::new(Shared::default());
        let deadline = Instant::now() + Duration::from_secs(5);
        (join(spec, shared.clone(), deadline).await, shared)
    }

    #[tokio::test]
    async fn a_redirect_is_followed_to_the_node_that_joins() {
        let (la, a) = bind().await;
        let (lb, b) = bind().await;
        serve(la, vec![redirect(&b)]);
        serve(lb, vec![joined()]);
        let (res, shared) = run(spec(&[&a, &b], 0, false)).await;
        assert_eq!(res.unwrap().node, b);
        assert_eq!(shared.redirects.load(Relaxed), 1);
    }

    #[tokio::test]
    async fn a_redirect_loop_fails_after_five_hops_even_with_rejoin() {
        let (la, a) = bind().await;
        serve(la, vec![redirect(&a)]);
        let (res, shared) = run(spec(&[&a], 0, true)).await;
        let e = res.err().unwrap();
        assert!(e.contains("more than 5 redirects"), "{e}");
        assert_eq!(shared.redirects.load(Relaxed), 5);
    }

    #[tokio::test]
    async fn a_dead_node_is_skipped_and_bots_start_on_their_own_node() {
        let (dead, d) = bind().await;
        drop(dead);
        let (lb, b) = bind().await;
        let (lc, c) = bind().await;
        serve(lb, vec![joined()]);
        serve(lc, vec![joined()]);
        let (res, shared) = run(spec(&[&d, &b, &c], 0, false)).await;
        assert_eq!(res.unwrap().node, b);
        assert_eq!(shared.connect_failures.load(Relaxed), 1);
        let (res, _) = run(spec(&[&d, &b, &c], 2, false)).await;
        assert_eq!(res.unwrap().node, c);
    }

    #[tokio::test]
    async fn a_redirect_to_a_dead_node_is_retried_only_with_rejoin() {
        let (dead, d) = bind().await;
        drop(dead);
        let (la, a) = bind().await;
        // The dead node is still registered for the first two joins, then the consult is
        // placed on this node.
        serve(la, vec![redirect(&d), joined()]);
        let (res, _) = run(spec(&[&a], 0, false)).await;
        let e = res.err().unwrap();
        assert!(e.starts_with(&format!("redirected to {d}")), "{e}");
        let (la, a) = bind().await;
        serve(la, vec![redirect(&d), redirect(&d), joined()]);
        let (res, shared) = run(spec(&[&a], 0, true)).await;
        assert_eq!(res.unwrap().node, a);
        assert_eq!(shared.connect_failures.load(Relaxed), 2);
    }

    #[tokio::test]
    async fn a_refused_join_fails_at_once() {
        let (la, a) = bind().await;
        serve(
            la,
            vec![json!({"v":1,"type":"error","code":"unauthorized"})],
        );
        let (res, _) = run(spec(&[&a], 0, true)).await;
        assert!(res.err().unwrap().starts_with("join refused"));
    }
}
