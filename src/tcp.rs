//! ICE-TCP (RFC 6544, passive side) for clients whose networks block UDP: one TCP port next to
//! the UDP one. A connection carries RFC 4571 frames (a 2-byte length, then one STUN, DTLS,
//! RTP or RTCP packet). Its first frame must be a STUN request naming a participant's ufrag;
//! from then on every frame goes to that participant's room, which answers through the
//! connection's writer. This is the fallback path: it copies each packet once, UDP does not.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use crate::demux::stun_local_ufrag;
use crate::metrics::Metrics;
use crate::udp::{Datagram, Route, Transport};

/// Ufrag -> route, kept by the UDP loop as rooms register participants; a TCP connection looks
/// it up once, at its first frame.
pub type TcpRoutes = Arc<Mutex<HashMap<String, Route>>>;

/// Largest frame accepted: media packets are under 1500 bytes; DTLS handshake records a few KB.
const MAX_FRAME: usize = 8 * 1024;
/// A connection that names no participant this fast is dropped.
const FIRST_FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames queued towards one client before the room's writes are dropped (as on a full NIC).
const WRITE_QUEUE: usize = 512;

/// The sending side of a connection, as a room holds it.
pub type TcpWriter = mpsc::Sender<Bytes>;

/// One packet framed for RFC 4571.
pub fn frame(packet: &[u8]) -> Option<Bytes> {
    let len = u16::try_from(packet.len()).ok()?;
    let mut b = BytesMut::with_capacity(packet.len() + 2);
    b.put_u16(len);
    b.put_slice(packet);
    Some(b.freeze())
}

pub async fn accept_loop(listener: TcpListener, routes: TcpRoutes, metrics: Arc<Metrics>) {
    let local = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("ICE-TCP listener has no address: {e}");
            return;
        }
    };
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!("ICE-TCP accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(stream, peer, local, routes.clone(), metrics.clone()));
    }
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    routes: TcpRoutes,
    metrics: Arc<Metrics>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
    let writer = tokio::spawn(async move {
        while let Some(b) = rx.recv().await {
            if wr.write_all(&b).await.is_err() {
                break;
            }
        }
    });
    let mut route: Option<Route> = None;
    let mut buf = vec![0u8; MAX_FRAME];
    loop {
        let read = async {
            let len = rd.read_u16().await? as usize;
            if len == 0 || len > MAX_FRAME {
                return Err(std::io::Error::other(format!("frame of {len} bytes")));
            }
            rd.read_exact(&mut buf[..len]).await?;
            Ok::<usize, std::io::Error>(len)
        };
        let len = if route.is_none() {
            match tokio::time::timeout(FIRST_FRAME_TIMEOUT, read).await {
                Ok(r) => r,
                Err(_) => break,
            }
        } else {
            read.await
        };
        let Ok(len) = len else { break };
        let packet = &buf[..len];
        if route.is_none() {
            let found = stun_local_ufrag(packet).and_then(|ufrag| {
                let map = routes.lock().unwrap_or_else(|e| e.into_inner());
                map.get(ufrag).cloned()
            });
            let Some(r) = found else {
                metrics.udp_recv_dropped.inc();
                break; // not ICE for one of ours: close
            };
            tracing::debug!(%peer, participant = %r.participant, "ICE-TCP connection");
            route = Some(r);
        }
        let Some(r) = &route else { break };
        let datagram = Datagram {
            participant: r.participant,
            source: peer,
            data: Bytes::copy_from_slice(packet),
            at: Instant::now(),
            transport: Transport::Tcp {
                local,
                writer: tx.clone(),
            },
        };
        if r.inbox.try_send(datagram).is_err() {
            metrics.udp_recv_dropped.inc();
        }
    }
    drop(tx);
    let _ = writer.await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_a_big_endian_length() {
        assert_eq!(frame(&[1, 2, 3]).unwrap().as_ref(), &[0, 3, 1, 2, 3]);
        assert_eq!(frame(&[]).unwrap().as_ref(), &[0, 0]);
        assert!(frame(&vec![0; 70_000]).is_none());
    }
}
