//! Wiring: the HTTP listener, the UDP media socket, the rooms. `run` serves until `shutdown`
//! resolves; tests start it on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::room::MediaPlane;
use crate::udp;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot bind HTTP {addr}: {source}")]
    BindHttp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot bind UDP {addr}: {source}")]
    BindUdp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
}

/// Requested UDP socket buffer size (the kernel caps it at net.core.rmem_max / wmem_max).
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Bound sockets, ready to serve.
pub struct Listeners {
    pub http: TcpListener,
    pub udp: UdpSocket,
}

impl Listeners {
    pub async fn bind(config: &Config) -> Result<Self, ServerError> {
        let http = TcpListener::bind(config.http_addr)
            .await
            .map_err(|source| ServerError::BindHttp {
                addr: config.http_addr,
                source,
            })?;
        let udp =
            UdpSocket::bind(config.udp_addr)
                .await
                .map_err(|source| ServerError::BindUdp {
                    addr: config.udp_addr,
                    source,
                })?;
        // Every peer shares this socket: the kernel default (~200 KiB) overflows in bursts
        // (keyframes of many publishers at once) and drops media before we ever see it.
        let sock = socket2::SockRef::from(&udp);
        for result in [
            sock.set_recv_buffer_size(UDP_BUFFER_BYTES),
            sock.set_send_buffer_size(UDP_BUFFER_BYTES),
        ] {
            if let Err(e) = result {
                tracing::warn!("cannot size the UDP socket buffers: {e}");
            }
        }
        Ok(Self { http, udp })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("invariant: a bound listener has an address")
    }

    pub fn udp_addr(&self) -> SocketAddr {
        self.udp
            .local_addr()
            .expect("invariant: a bound socket has an address")
    }
}

pub struct ServeOptions {
    pub web_root: PathBuf,
    pub candidate_addr: SocketAddr,
    pub max_participants: usize,
    pub video_layers: Vec<signaling::VideoLayerConfig>,
    pub initial_estimate_bps: u64,
}

impl ServeOptions {
    pub fn from_config(config: &Config, listeners: &Listeners) -> Self {
        let udp = listeners.udp_addr();
        Self {
            web_root: config.web_root.clone(),
            candidate_addr: SocketAddr::new(config.candidate_ip(udp), udp.port()),
            max_participants: config.max_participants,
            video_layers: config.video_layers.clone(),
            initial_estimate_bps: config.initial_estimate_bps,
        }
    }
}

pub async fn run(
    listeners: Listeners,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    // Idempotent; str0m is built without a default provider (no `default-features`).
    str0m::crypto::from_feature_flags().install_process_default();
    let socket = Arc::new(listeners.udp);
    let (demux_tx, demux_rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::new());
    let plane = Arc::new(MediaPlane {
        socket: socket.clone(),
        candidate_addr: options.candidate_addr,
        demux: demux_tx,
        max_participants: options.max_participants,
        metrics: metrics.clone(),
        video_layers: options.video_layers,
        initial_estimate_bps: options.initial_estimate_bps,
    });
    let registry = Registry::new(plane);
    let udp_task = tokio::spawn(udp::receive_loop(socket, demux_rx, metrics.clone()));
    let app = crate::http::router(registry.clone(), metrics, options.web_root);
    tracing::info!(candidate = %options.candidate_addr, "media plane ready");
    let result = axum::serve(listeners.http, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(ServerError::Http);
    registry.close_all();
    drop(registry);
    udp_task.abort();
    result
}
