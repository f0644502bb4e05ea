//! Datagrams in and out of a room's bots, and what each bot measured.

use super::*;

impl RoomRun {
    /// `arrived`: when the kernel received it (str0m gets the time it is handled).
    pub(super) fn on_datagram(
        &mut self,
        i: usize,
        q: usize,
        data: &[u8],
        source: SocketAddr,
        arrived: Instant,
    ) {
        let Some(pc) = self.bots[i].pcs[q].as_mut() else {
            return;
        };
        pc.arrived = Some(arrived);
        pc.receive(data, source, Instant::now());
        self.drive(i, q);
    }

    /// Polls peer connection `q` of bot `i` until it waits for time.
    pub(crate) fn drive(&mut self, i: usize, q: usize) {
        let shared = &*self.shared;
        let hist = &mut self.hist;
        let b = &mut self.bots[i];
        let Some(pc) = b.pcs[q].as_mut() else { return };
        let (publisher, rx, started_at) = (&mut b.publisher, &mut b.rx, b.started_at);
        let recovery = &mut b.recovery;
        let mut now_connected = false;
        let arrived = pc.arrived.take();
        pc.drive(shared, |ev| match ev {
            PcEvent::Connected if q == PUB => now_connected = true,
            PcEvent::Connected => {}
            PcEvent::KeyframeRequest(mid, rid) => {
                shared.keyframe_requests.fetch_add(1, Relaxed);
                publisher.keyframe_request(mid, rid);
            }
            PcEvent::Rtp(kind, p) => {
                let arrived = arrived.unwrap_or(p.timestamp);
                let sender = rx.on_rtp(kind, p, started_at, arrived, shared, hist);
                recovery.on_media(p.timestamp, sender);
            }
        });
        if now_connected && !b.connected {
            b.connected = true;
            let now = Instant::now();
            // Counted once per bot: a rejoin's connection is timed by the recovery.
            if !b.ever_connected {
                b.ever_connected = true;
                shared.connected.fetch_add(1, Relaxed);
                if let Some(s) = b.started_at {
                    shared
                        .connect_ms
                        .lock()
                        .expect("invariant: no thread panics while holding a Shared lock")
                        .push((now - s).as_secs_f64() * 1e3);
                }
            }
            b.publisher.start(now);
        }
    }

    pub(super) fn send_media(&mut self, i: usize, now: Instant) {
        let b = &mut self.bots[i];
        if !b.connected || b.state != State::Active {
            return;
        }
        // One packet at a time, each transmitted before the next is stamped (`Publisher::send`).
        loop {
            let b = &mut self.bots[i];
            let Some(pc) = b.pcs[PUB].as_mut() else {
                return;
            };
            if !b.publisher.send(&mut pc.rtc, &self.shared, now) {
                return;
            }
            self.drive(i, PUB);
        }
    }

    pub(super) async fn leave_all(&mut self) {
        for k in 0..self.bots.len() {
            if self.bots[k].sink.is_some() {
                match self.cfg.target {
                    Target::Ours => ours::leave(&mut self.bots[k]).await,
                    Target::Janus => janus::leave(&mut self.bots[k]).await,
                }
            }
            let b = &mut self.bots[k];
            if let Some(mut s) = b.sink.take() {
                let _ = s.close().await;
            }
            for pc in b.pcs.iter_mut().flatten() {
                pc.rtc.disconnect();
            }
            b.pcs = [None, None];
        }
    }

    /// Moves this room's latency samples into the shared totals.
    pub(super) fn flush(&mut self) {
        for (k, h) in self.hist.iter_mut().enumerate() {
            if h.count() == 0 {
                continue;
            }
            self.shared.hist.lock().unwrap().merge(h);
            self.shared.hist_interval.lock().unwrap().merge(h);
            // Flushed once a second: up to a second of samples from before the flag was set
            // lands here, at least a second after the last bot connected.
            if self.shared.steady.load(Relaxed) {
                self.shared.hist_steady.lock().unwrap().merge(h);
            }
            let by_kind = if k == 0 {
                &self.shared.hist_audio
            } else {
                &self.shared.hist_video
            };
            by_kind.lock().unwrap().merge(h);
            h.clear();
        }
    }

    pub(super) fn summaries(&self) -> Vec<BotSummary> {
        let ids: Vec<u32> = self.bots.iter().map(|b| b.sender).collect();
        self.bots
            .iter()
            .map(|b| {
                b.rx.finish(&self.shared);
                BotSummary {
                    sender: b.sender,
                    room: self.room,
                    role: b.role,
                    joined: b.joined_at.is_some(),
                    connected: b.ever_connected,
                    peers: ids.iter().copied().filter(|x| *x != b.sender).collect(),
                    from: b.rx.from.clone(),
                    room_name: self.name.clone(),
                    node: b.node.clone(),
                    recovery: b.recovery.clone(),
                }
            })
            .collect()
    }
}

/// Polls every peer connection's socket (starting at bot `start`, for fairness) for one
/// datagram: (bot, peer connection, length, source).
pub(super) fn poll_recv_any(
    cx: &mut std::task::Context<'_>,
    bots: &[Bot],
    buf: &mut [u8],
    start: usize,
) -> Poll<(usize, usize, usize, SocketAddr, Instant)> {
    let n = bots.len();
    for k in 0..n {
        let i = (start + k) % n;
        for (q, pc) in bots[i].pcs.iter().enumerate() {
            let Some(pc) = pc.as_ref() else { continue };
            // Until a read succeeds or readiness is pending again (which registers the waker).
            while let Poll::Ready(Ok(())) = pc.socket.poll_recv_ready(cx) {
                match crate::rxtime::try_recv(&pc.socket, buf) {
                    Ok((len, addr, at)) => return Poll::Ready((i, q, len, addr, at)),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    Err(_) => break,
                }
            }
        }
    }
    Poll::Pending
}
