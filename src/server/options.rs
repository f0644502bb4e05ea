//! What the server is started with: the bound sockets (`Listeners`) and the options taken
//! from the config (`ServeOptions`, `ClusterOptions`).

use std::net::SocketAddr;
use std::path::PathBuf;

use tokio::net::{TcpListener, UdpSocket};

use super::ServerError;
use crate::config::{Config, OperatorConfig};
use crate::consult::StoreOptions;

/// Requested UDP socket buffer size (the kernel caps it at net.core.rmem_max / wmem_max).
const UDP_BUFFER_BYTES: usize = 4 << 20;

/// Bound sockets, ready to serve.
pub struct Listeners {
    pub http: TcpListener,
    pub udp: UdpSocket,
    /// ICE-TCP, when configured.
    pub tcp: Option<TcpListener>,
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
        let tcp = match config.ice_tcp_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::BindIceTcp { addr, source })?,
            ),
            None => None,
        };
        Ok(Self { http, udp, tcp })
    }

    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp.as_ref().map(|t| {
            t.local_addr()
                .expect("invariant: a bound listener has an address")
        })
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
    /// Our passive ICE-TCP candidate, when ICE-TCP is on.
    pub tcp_candidate_addr: Option<SocketAddr>,
    pub max_participants: usize,
    pub video_layers: Vec<signaling::VideoLayerConfig>,
    pub initial_estimate_bps: u64,
    pub store: StoreOptions,
    /// Empty: a local dev operator (`DEV_CLINIC`) with a key kept in the store.
    pub operators: Vec<OperatorConfig>,
    /// Join by room name without an invite (media load tests only).
    pub allow_open_join: bool,
    /// WebSocket connection limits and the join timeout (`signaling/PROTOCOL.md`).
    pub connection_limits: signaling::Limits,
    /// Pages besides our own that may open `/ws`.
    pub allowed_origins: crate::web_security::AllowedOrigins,
    /// How long a TCP connection may stall in HTTP before or between requests.
    pub http_timeouts: crate::http::HttpTimeouts,
    /// HTTPS/WSS on the HTTP listener: `tls_cert` and `tls_key` (both or neither, checked
    /// by `Server::start`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// TURN (with per-participant credentials) and other ICE servers for `joined`.
    pub ice: crate::turn::IceConfig,
    /// How long a drain lets running consults go on.
    pub drain_timeout: std::time::Duration,
    pub reconnect_grace: std::time::Duration,
    /// When new joins get `server_busy` (participant cap, event-loop lag, CPU).
    pub admission: crate::admission::Thresholds,
    /// Several nodes sharing a Redis directory; None: a single node.
    pub cluster: Option<ClusterOptions>,
}

/// This node's place in a cluster (`crate::cluster`).
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    pub redis_url: crate::cluster::RedisUrl,
    pub node_id: String,
    /// `http(s)://host:port` as clients reach this node.
    pub advertise_url: String,
}

impl ServeOptions {
    pub fn from_config(config: &Config, listeners: &Listeners) -> Self {
        let udp = listeners.udp_addr();
        Self {
            web_root: config.web_root.clone(),
            candidate_addr: SocketAddr::new(config.candidate_ip(udp), udp.port()),
            tcp_candidate_addr: listeners
                .tcp_addr()
                .map(|t| SocketAddr::new(config.candidate_ip(udp), t.port())),
            max_participants: config.max_participants,
            video_layers: config.video_layers.clone(),
            initial_estimate_bps: config.initial_estimate_bps,
            store: StoreOptions {
                db_path: config.consults.db_path.clone(),
                database_url: config.consults.database_url.clone(),
                token_secret: config
                    .consults
                    .token_secret
                    .as_ref()
                    .map(|s| s.expose().to_string()),
                public_url: config.public_url(listeners.http_addr()),
            },
            operators: config.operators.clone(),
            allow_open_join: config.consults.allow_open_join,
            allowed_origins: crate::web_security::AllowedOrigins::new(
                config.allowed_origins.clone(),
            ),
            connection_limits: signaling::Limits {
                max_connections: config.max_connections,
                max_connections_per_ip: config.max_connections_per_ip,
                ..signaling::Limits::default()
            },
            http_timeouts: crate::http::HttpTimeouts::default(),
            tls_cert: config.tls_cert.clone(),
            tls_key: config.tls_key.clone(),
            ice: crate::turn::IceConfig::from_config(config),
            drain_timeout: config.drain_timeout,
            reconnect_grace: config.reconnect_grace,
            admission: crate::admission::Thresholds {
                max_participants: config.max_node_participants,
                max_lag: config.admission_max_lag,
                max_cpu: config.admission_max_cpu,
            },
            cluster: config
                .cluster
                .redis_url
                .clone()
                .map(|redis_url| ClusterOptions {
                    redis_url,
                    node_id: config.cluster.node_id.clone().unwrap_or_else(|| {
                        crate::cluster::default_node_id(listeners.http_addr().port())
                    }),
                    advertise_url: config
                        .cluster
                        .advertise_url
                        .clone()
                        .unwrap_or_else(|| config.public_url(listeners.http_addr())),
                }),
        }
    }
}
