//! The one UDP port: a receive loop that routes datagrams to room tasks. Sending is done by
//! the rooms themselves on the shared socket (`try_send_to` needs no lock).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

use crate::demux::Demux;
use crate::ids::ParticipantId;
use crate::metrics::Metrics;

/// A datagram for one participant's `Rtc`.
#[derive(Debug)]
pub struct Datagram {
    pub participant: ParticipantId,
    pub source: SocketAddr,
    pub data: Bytes,
    pub at: Instant,
    pub transport: Transport,
}

/// How a datagram arrived, and so how the answer goes back.
#[derive(Debug)]
pub enum Transport {
    /// The shared UDP socket.
    Udp,
    /// An ICE-TCP connection accepted on `local`; `writer` sends RFC 4571 frames to it.
    Tcp {
        local: SocketAddr,
        writer: crate::tcp::TcpWriter,
    },
}

/// Where a participant's datagrams go.
#[derive(Debug, Clone)]
pub struct Route {
    pub participant: ParticipantId,
    pub inbox: mpsc::Sender<Datagram>,
}

#[derive(Debug)]
pub enum DemuxCommand {
    Register {
        ufrag: String,
        route: Route,
    },
    Unregister {
        ufrag: String,
    },
    /// SRTP with this SSRC from an unknown address goes to the participant with this ufrag
    /// (its client's NAT may have rebound; see `demux`).
    RegisterSsrc {
        ufrag: String,
        ssrc: u32,
    },
}

/// Room inbox size: about 0.5 s of a busy room's media. Beyond that the room is overloaded and
/// dropping here is the same as the NIC dropping.
pub const DATAGRAM_QUEUE: usize = 4096;

const MAX_DATAGRAM: usize = 2048;
const RECV_CHUNK: usize = 64 * 1024;

/// Runs until `commands` closes (server shutdown).
pub async fn receive_loop(
    socket: Arc<UdpSocket>,
    mut commands: mpsc::UnboundedReceiver<DemuxCommand>,
    metrics: Arc<Metrics>,
    tcp_routes: Option<crate::tcp::TcpRoutes>,
) {
    let tcp_routes = |f: &dyn Fn(&mut std::collections::HashMap<String, Route>)| {
        if let Some(m) = &tcp_routes {
            f(&mut m.lock().unwrap_or_else(|e| e.into_inner()));
        }
    };
    let mut demux: Demux<Route> = Demux::new();
    // Datagrams are split off one large buffer, so there is one allocation per ~30 packets
    // rather than one per packet.
    let mut buf = BytesMut::with_capacity(RECV_CHUNK);
    loop {
        if buf.capacity() - buf.len() < MAX_DATAGRAM {
            buf = BytesMut::with_capacity(RECV_CHUNK);
        }
        tokio::select! {
            biased;
            command = commands.recv() => match command {
                Some(DemuxCommand::Register { ufrag, route }) => {
                    tcp_routes(&|m| {
                        m.insert(ufrag.clone(), route.clone());
                    });
                    demux.register(ufrag, route);
                }
                Some(DemuxCommand::Unregister { ufrag }) => {
                    tcp_routes(&|m| {
                        m.remove(&ufrag);
                    });
                    demux.unregister(&ufrag);
                }
                Some(DemuxCommand::RegisterSsrc { ufrag, ssrc }) => demux.register_ssrc(&ufrag, ssrc),
                None => return,
            },
            received = socket.recv_buf_from(&mut buf) => {
                let (n, source) = match received {
                    Ok(r) => r,
                    Err(e) => {
                        // ICMP port unreachable from a gone peer shows up here on Linux.
                        tracing::debug!("udp receive: {e}");
                        buf.clear();
                        continue;
                    }
                };
                let data = buf.split_to(n).freeze();
                let Some(route) = demux.route(source, &data) else {
                    metrics.udp_recv_dropped.inc();
                    continue;
                };
                let datagram = Datagram {
                    participant: route.participant,
                    source,
                    data,
                    at: Instant::now(),
                    transport: Transport::Udp,
                };
                if route.inbox.try_send(datagram).is_err() {
                    metrics.udp_recv_dropped.inc();
                }
            }
        }
    }
}
