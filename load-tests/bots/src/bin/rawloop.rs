//! `rawloop`: the "raw limit" baseline for the SFU. A minimal receive -> SRTP decrypt ->
//! re-encrypt -> send loop with no SFU logic: one str0m `Rtc` per participant (DTLS, SRTP,
//! RTCP feedback as str0m does it), and every RTP packet of a publisher written unchanged
//! (same sequence number, timestamp and payload) to every other participant of its room.
//! No layer selection beyond one fixed simulcast rid (`--forward-rid`, default `f`), no
//! sequence rewriting, no keyframe-request routing, no bandwidth adaptation.
//!
//! It speaks the signaling subset `synth` needs: `join`, `offer`, `answer`, `candidate` (and
//! `leave`); server offers add one sendonly m-line per remote track. `GET /metrics` serves
//! the same RTP counters as the SFU so synth's cross-check works.
//!
//! ```sh
//! rawloop --http-addr 127.0.0.1:0 --udp-addr 127.0.0.1:0   # prints RAWLOOP_READY http=.. udp=..
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use str0m::change::SdpPendingOffer;
use str0m::format::Codec;
use str0m::media::{Direction, MediaKind, Mid, Pt, Rid};
use str0m::net::{Protocol, Receive};
use str0m::rtp::{RtpPacket, RtpWrite, Ssrc};
use str0m::{Candidate, Event, Input, Output, Rtc};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

#[path = "rawloop/peers.rs"]
mod peers;

#[derive(Default)]
struct Counters {
    packets_in: AtomicU64,
    bytes_in: AtomicU64,
    packets_out: AtomicU64,
    bytes_out: AtomicU64,
    participants: AtomicU64,
    udp_unrouted: AtomicU64,
}

impl Counters {
    fn render(&self) -> String {
        format!(
            "consult_rtp_packets_in_total {}\nconsult_rtp_bytes_in_total {}\nconsult_rtp_packets_out_total {}\nconsult_rtp_bytes_out_total {}\nconsult_participants {}\nconsult_udp_recv_dropped_total {}\n",
            self.packets_in.load(Relaxed),
            self.bytes_in.load(Relaxed),
            self.packets_out.load(Relaxed),
            self.bytes_out.load(Relaxed),
            self.participants.load(Relaxed),
            self.udp_unrouted.load(Relaxed),
        )
    }
}

/// From a signaling connection to the media loop.
enum Cmd {
    Join {
        conn: u64,
        room: String,
        out: mpsc::UnboundedSender<Value>,
    },
    Offer(u64, String),
    Answer(u64, String),
    Candidate(u64, String),
    Leave(u64),
}

struct Sub {
    publisher: u64,
    kind: MediaKind,
    mid: Mid,
    open: bool,
    /// This subscriber's payload type for the codec, learned on first packet.
    pt: Option<Pt>,
}

struct Peer {
    conn: u64,
    room: String,
    out: mpsc::UnboundedSender<Value>,
    rtc: Option<Rtc>,
    next_timeout: Instant,
    pending: Option<SdpPendingOffer>,
    /// Publisher tracks this peer must still be offered: (publisher, kind).
    todo: Vec<(u64, MediaKind)>,
    subs: Vec<Sub>,
    /// Own published mids.
    published: Vec<(Mid, MediaKind)>,
    /// Incoming SSRC -> (kind, rid).
    ssrcs: HashMap<Ssrc, (MediaKind, Option<Rid>)>,
}

struct Media {
    socket: Arc<UdpSocket>,
    local: SocketAddr,
    peers: Vec<Peer>,
    by_addr: HashMap<SocketAddr, u64>,
    counters: Arc<Counters>,
    forward_rid: Rid,
}

impl Media {
    fn index(&self, conn: u64) -> Option<usize> {
        self.peers.iter().position(|p| p.conn == conn)
    }

    fn on_datagram(&mut self, data: &[u8], source: SocketAddr) {
        let now = Instant::now();
        let Ok(contents) = data.try_into() else {
            return;
        };
        let input = Input::Receive(
            now,
            Receive {
                proto: Protocol::Udp,
                source,
                destination: self.local,
                contents,
            },
        );
        let i = match self.by_addr.get(&source).and_then(|c| self.index(*c)) {
            Some(i) => i,
            None => {
                let found = self
                    .peers
                    .iter()
                    .position(|p| p.rtc.as_ref().is_some_and(|r| r.accepts(&input)));
                match found {
                    Some(i) => {
                        self.by_addr.insert(source, self.peers[i].conn);
                        i
                    }
                    None => {
                        self.counters.udp_unrouted.fetch_add(1, Relaxed);
                        return;
                    }
                }
            }
        };
        if let Some(rtc) = self.peers[i].rtc.as_mut() {
            let _ = rtc.handle_input(input);
        }
        self.drive(i);
    }

    fn timeouts(&mut self) -> Instant {
        let now = Instant::now();
        for i in 0..self.peers.len() {
            if self.peers[i].next_timeout <= now {
                if let Some(rtc) = self.peers[i].rtc.as_mut() {
                    let _ = rtc.handle_input(Input::Timeout(now));
                }
                self.drive(i);
            }
        }
        self.peers
            .iter()
            .map(|p| p.next_timeout)
            .min()
            .unwrap_or(now + Duration::from_millis(100))
            .min(now + Duration::from_millis(100))
    }

    fn drive(&mut self, i: usize) {
        let mut packets = Vec::new();
        {
            let p = &mut self.peers[i];
            let Some(rtc) = p.rtc.as_mut() else { return };
            loop {
                if !rtc.is_alive() {
                    p.next_timeout = Instant::now() + Duration::from_secs(3600);
                    break;
                }
                match rtc.poll_output() {
                    Ok(Output::Timeout(t)) => {
                        p.next_timeout = t;
                        break;
                    }
                    Ok(Output::Transmit(t)) => {
                        let _ = self.socket.try_send_to(&t.contents, t.destination);
                    }
                    Ok(Output::Event(Event::RtpPacket(pkt))) => packets.push(pkt),
                    Ok(Output::Event(_)) => {}
                    Err(_) => {
                        rtc.disconnect();
                        break;
                    }
                }
            }
        }
        for pkt in packets {
            self.forward(i, pkt);
        }
    }

    /// Writes the packet unchanged to every other peer of the room that has it negotiated.
    fn forward(&mut self, i: usize, pkt: RtpPacket) {
        let from = self.peers[i].conn;
        let ssrc = pkt.header.ssrc;
        let info = match self.peers[i].ssrcs.get(&ssrc) {
            Some(x) => Some(*x),
            None => {
                let rtc = self.peers[i]
                    .rtc
                    .as_mut()
                    .expect("a peer that sends RTP has an Rtc");
                let found = rtc
                    .direct_api()
                    .stream_rx(&ssrc)
                    .map(|s| (s.mid(), s.rid()));
                let info = found.and_then(|(mid, rid)| rtc.media(mid).map(|m| (m.kind(), rid)));
                if let Some(x) = info {
                    self.peers[i].ssrcs.insert(ssrc, x);
                }
                info
            }
        };
        let Some((kind, rid)) = info else { return };
        self.counters.packets_in.fetch_add(1, Relaxed);
        self.counters
            .bytes_in
            .fetch_add(pkt.payload.len() as u64, Relaxed);
        if kind == MediaKind::Video && rid.is_some_and(|r| r != self.forward_rid) {
            return;
        }
        let room = self.peers[i].room.clone();
        for j in 0..self.peers.len() {
            if j == i || self.peers[j].room != room {
                continue;
            }
            let q = &mut self.peers[j];
            let Some(rtc) = q.rtc.as_mut() else { continue };
            let Some(sub) = q
                .subs
                .iter_mut()
                .find(|s| s.publisher == from && s.kind == kind && s.open)
            else {
                continue;
            };
            let pt = match sub.pt {
                Some(pt) => pt,
                None => {
                    let codec = if kind == MediaKind::Audio {
                        Codec::Opus
                    } else {
                        Codec::Vp8
                    };
                    let Some(p) = rtc.codec_config().find(|c| c.spec().codec == codec) else {
                        continue;
                    };
                    sub.pt = Some(p.pt());
                    p.pt()
                }
            };
            let mut api = rtc.direct_api();
            let Some(stream) = api.stream_tx_by_mid(sub.mid, None) else {
                continue;
            };
            stream.write_rtp(
                RtpWrite::new(
                    pt,
                    pkt.seq_no,
                    pkt.header.timestamp,
                    pkt.timestamp,
                    pkt.payload.clone(),
                )
                .marker(pkt.header.marker)
                .nackable(kind == MediaKind::Video),
            );
            self.counters.packets_out.fetch_add(1, Relaxed);
            self.counters
                .bytes_out
                .fetch_add(pkt.payload.len() as u64, Relaxed);
            self.drive(j);
        }
    }
}

async fn media_loop(
    socket: Arc<UdpSocket>,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    counters: Arc<Counters>,
    forward_rid: Rid,
) {
    let local = socket.local_addr().expect("bound");
    let mut m = Media {
        socket: socket.clone(),
        local,
        peers: Vec::new(),
        by_addr: HashMap::new(),
        counters,
        forward_rid,
    };
    let mut buf = vec![0u8; 2048];
    loop {
        let deadline = m.timeouts();
        tokio::select! {
            biased;
            cmd = cmds.recv() => match cmd {
                Some(c) => m.handle(c),
                None => return,
            },
            r = socket.recv_from(&mut buf) => {
                if let Ok((n, src)) = r {
                    m.on_datagram(&buf[..n], src);
                    for _ in 0..64 {
                        match socket.try_recv_from(&mut buf) {
                            Ok((n, src)) => m.on_datagram(&buf[..n], src),
                            Err(_) => break,
                        }
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}

async fn connection(
    stream: TcpStream,
    conn: u64,
    cmds: mpsc::UnboundedSender<Cmd>,
    counters: Arc<Counters>,
) {
    let mut peek = [0u8; 64];
    let n = stream.peek(&mut peek).await.unwrap_or(0);
    let head = String::from_utf8_lossy(&peek[..n]).to_string();
    if head.starts_with("GET /metrics") || head.starts_with("GET /healthz") {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = stream;
        let mut req = vec![0u8; 4096];
        let _ = stream.read(&mut req).await;
        let body = if head.starts_with("GET /metrics") {
            counters.render()
        } else {
            "ok\n".into()
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(resp.as_bytes()).await;
        return;
    }
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else {
        return;
    };
    let (mut sink, mut source) = ws.split();
    let (out_tx, mut out_rx) = mpsc::unbounded_channel::<Value>();
    let writer = tokio::spawn(async move {
        while let Some(v) = out_rx.recv().await {
            if sink
                .send(Message::Text(v.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
        let _ = sink.close().await;
    });
    let mut joined = false;
    while let Some(Ok(msg)) = source.next().await {
        let Message::Text(t) = msg else { continue };
        let Ok(v) = serde_json::from_str::<Value>(&t) else {
            continue;
        };
        let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
        let cmd = match v["type"].as_str().unwrap_or("") {
            "join" if !joined => {
                joined = true;
                Cmd::Join {
                    conn,
                    room: s("room"),
                    out: out_tx.clone(),
                }
            }
            "offer" => Cmd::Offer(conn, s("sdp")),
            "answer" => Cmd::Answer(conn, s("sdp")),
            "candidate" => Cmd::Candidate(conn, s("candidate")),
            "leave" => break,
            _ => continue,
        };
        if cmds.send(cmd).is_err() {
            break;
        }
    }
    if joined {
        let _ = cmds.send(Cmd::Leave(conn));
    }
    drop(out_tx);
    writer.abort();
}

fn main() -> Result<()> {
    let mut http: SocketAddr = "127.0.0.1:0".parse()?;
    let mut udp: SocketAddr = "127.0.0.1:0".parse()?;
    let mut rid = "f".to_string();
    let mut rcvbuf: usize = 4 << 20;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--http-addr" => http = value()?.parse()?,
            "--udp-addr" => udp = value()?.parse()?,
            "--forward-rid" => rid = value()?,
            "--rcvbuf" => rcvbuf = value()?.parse()?,
            "--help" | "-h" => {
                println!("usage: rawloop [--http-addr 127.0.0.1:0] [--udp-addr 127.0.0.1:0] [--forward-rid q|h|f] [--rcvbuf BYTES (4 MiB; 0 keeps the kernel default)]");
                return Ok(());
            }
            _ => bail!("unknown flag {flag}"),
        }
    }
    str0m::crypto::from_feature_flags().install_process_default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = TcpListener::bind(http).await?;
        let std_socket = std::net::UdpSocket::bind(udp)?;
        std_socket.set_nonblocking(true)?;
        if rcvbuf > 0 {
            set_rcvbuf(&std_socket, rcvbuf);
        }
        let socket = Arc::new(UdpSocket::from_std(std_socket)?);
        println!(
            "RAWLOOP_READY http={} udp={}",
            listener.local_addr()?,
            socket.local_addr()?
        );
        let counters = Arc::new(Counters::default());
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(media_loop(
            socket,
            rx,
            counters.clone(),
            Rid::from(rid.as_str()),
        ));
        let mut next = 1u64;
        loop {
            tokio::select! {
                r = listener.accept() => {
                    let (stream, _) = r?;
                    tokio::spawn(connection(stream, next, tx.clone(), counters.clone()));
                    next += 1;
                }
                _ = tokio::signal::ctrl_c() => break,
            }
        }
        Ok(())
    })
}

/// A larger receive buffer: the loop decrypts and re-encrypts inline between reads, so short
/// stalls must not overflow the kernel's default of about 208 KiB (capped by rmem_max).
fn set_rcvbuf(socket: &std::net::UdpSocket, bytes: usize) {
    use std::os::fd::AsRawFd;
    let v = bytes as libc::c_int;
    // SAFETY: a valid socket fd and a pointer to a c_int of the size passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            &v as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        eprintln!(
            "rawloop: SO_RCVBUF {bytes}: {}",
            std::io::Error::last_os_error()
        );
    }
}
