//! Peers joining and leaving the raw loop: commands from the signaling tasks, and each new
//! peer's negotiation.

use super::*;
use serde_json::json;
use str0m::change::{SdpAnswer, SdpOffer};

impl Media {
    pub(super) fn handle(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Join { conn, room, out } => {
                let others: Vec<Value> = self
                    .peers
                    .iter()
                    .filter(|p| p.room == room)
                    .map(|p| json!({"participant_id": format!("p{}", p.conn), "name": "bot", "role": "clinic", "audio_muted": false, "video_muted": false}))
                    .collect();
                let _ = out.send(json!({"v":1,"type":"joined","participant_id":format!("p{conn}"),"room":room,"participants":others,
                    "video_layers":[{"rid":"q","scale_resolution_down_by":4.0,"max_bitrate":150000,"max_framerate":15.0},
                                    {"rid":"h","scale_resolution_down_by":2.0,"max_bitrate":400000,"max_framerate":30.0},
                                    {"rid":"f","scale_resolution_down_by":1.0,"max_bitrate":1200000,"max_framerate":30.0}]}));
                self.peers.push(Peer {
                    conn,
                    room,
                    out,
                    rtc: None,
                    next_timeout: Instant::now() + Duration::from_secs(3600),
                    pending: None,
                    todo: Vec::new(),
                    subs: Vec::new(),
                    published: Vec::new(),
                    ssrcs: HashMap::new(),
                });
                self.counters.participants.fetch_add(1, Relaxed);
            }
            Cmd::Offer(conn, sdp) => {
                let Some(i) = self.index(conn) else { return };
                if self.peers[i].rtc.is_some() {
                    return;
                }
                let mut rtc = Rtc::builder()
                    .set_rtp_mode(true)
                    .clear_codecs()
                    .enable_opus(true, false)
                    .enable_vp8(true)
                    .build(Instant::now());
                rtc.add_local_candidate(
                    Candidate::host(self.local, "udp").expect("host candidate"),
                );
                let mut mids: Vec<Mid> = Vec::new();
                let answer = SdpOffer::from_sdp_string(&sdp)
                    .map_err(|e| e.to_string())
                    .and_then(|o| {
                        mids = o
                            .media_lines
                            .iter()
                            .filter(|m| !m.disabled)
                            .map(|m| m.mid())
                            .collect();
                        rtc.sdp_api().accept_offer(o).map_err(|e| e.to_string())
                    });
                let p = &mut self.peers[i];
                match answer {
                    Ok(a) => {
                        let _ = p
                            .out
                            .send(json!({"v":1,"type":"answer","sdp":a.to_sdp_string()}));
                    }
                    Err(e) => {
                        let _ = p
                            .out
                            .send(json!({"v":1,"type":"error","code":"bad_sdp","message":e}));
                        return;
                    }
                }
                p.published = mids
                    .into_iter()
                    .filter_map(|mid| {
                        rtc.media(mid)
                            .filter(|m| m.direction().is_receiving())
                            .map(|m| (mid, m.kind()))
                    })
                    .collect();
                p.rtc = Some(rtc);
                // Everyone else in the room gets this peer's tracks; this peer gets theirs.
                let room = p.room.clone();
                let mine: Vec<(u64, MediaKind)> =
                    p.published.iter().map(|(_, k)| (conn, *k)).collect();
                let mut theirs = Vec::new();
                for q in &mut self.peers {
                    if q.room == room && q.conn != conn && q.rtc.is_some() {
                        q.todo.extend(mine.iter().copied());
                        theirs.extend(q.published.iter().map(|(_, k)| (q.conn, *k)));
                    }
                }
                self.peers[i].todo.extend(theirs);
                self.drive(i);
                self.negotiate_all();
            }
            Cmd::Answer(conn, sdp) => {
                let Some(i) = self.index(conn) else { return };
                let p = &mut self.peers[i];
                let (Some(rtc), Some(pending)) = (p.rtc.as_mut(), p.pending.take()) else {
                    return;
                };
                match SdpAnswer::from_sdp_string(&sdp) {
                    Ok(a) => {
                        if rtc.sdp_api().accept_answer(pending, a).is_ok() {
                            for s in &mut p.subs {
                                s.open = true;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = p.out.send(
                            json!({"v":1,"type":"error","code":"bad_sdp","message":e.to_string()}),
                        );
                    }
                }
                self.drive(i);
                self.negotiate_all();
            }
            Cmd::Candidate(conn, c) => {
                let Some(i) = self.index(conn) else { return };
                let c = c.trim();
                let c = c.strip_prefix("a=").unwrap_or(c);
                if c.is_empty() {
                    return;
                }
                if let (Some(rtc), Ok(cand)) =
                    (self.peers[i].rtc.as_mut(), Candidate::from_sdp_string(c))
                {
                    rtc.add_remote_candidate(cand);
                }
                self.drive(i);
            }
            Cmd::Leave(conn) => {
                let Some(i) = self.index(conn) else { return };
                let p = self.peers.remove(i);
                self.by_addr.retain(|_, c| *c != conn);
                self.counters.participants.fetch_sub(1, Relaxed);
                for q in &mut self.peers {
                    q.todo.retain(|(publisher, _)| *publisher != conn);
                    // Stop forwarding; the m-lines stay (no renegotiation needed for a baseline).
                    q.subs.retain(|s| s.publisher != conn);
                }
                drop(p);
            }
        }
    }

    pub(super) fn negotiate_all(&mut self) {
        for p in &mut self.peers {
            if p.pending.is_some() || p.todo.is_empty() {
                continue;
            }
            let Some(rtc) = p.rtc.as_mut() else { continue };
            let mut api = rtc.sdp_api();
            let mut added = Vec::new();
            for (publisher, kind) in p.todo.drain(..) {
                let mid = api.add_media(
                    kind,
                    Direction::SendOnly,
                    Some(format!("p{publisher}")),
                    None,
                    None,
                );
                added.push(Sub {
                    publisher,
                    kind,
                    mid,
                    open: false,
                    pt: None,
                });
            }
            if let Some((offer, pending)) = api.apply() {
                p.pending = Some(pending);
                p.subs.extend(added);
                let _ = p
                    .out
                    .send(json!({"v":1,"type":"offer","sdp":offer.to_sdp_string()}));
            }
        }
    }
}
