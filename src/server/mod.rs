//! Wiring: the HTTP listener, the UDP media socket, the consult store, the rooms. `run`
//! serves until `shutdown` resolves; tests start it on port 0. `Server::start` then `serve`
//! is the same in two steps, for callers that need the store or the dev operator link
//! in between.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::api::{ApiState, Operator};
use crate::config::Secret;
use crate::consult::{Consults, StoreError};
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::room::MediaPlane;
use crate::udp;

mod options;
pub use options::{ClusterOptions, Listeners, ServeOptions};

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
    #[error("cannot bind ICE-TCP {addr}: {source}")]
    BindIceTcp {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("HTTP server: {0}")]
    Http(std::io::Error),
    /// Not a `source`: the message already carries the whole cause, once.
    #[error("consult store: {0}")]
    Store(StoreError),
    #[error("TLS: {0}")]
    Tls(crate::tls::TlsError),
    #[error("resume tokens: {0}")]
    Resume(crate::resume::ResumeError),
    #[error("cluster: {0}")]
    Cluster(crate::cluster::ClusterError),
}

impl From<StoreError> for ServerError {
    fn from(e: StoreError) -> Self {
        ServerError::Store(e)
    }
}

/// The operator used when none is configured, for trying the server out on one machine.
pub const DEV_CLINIC: &str = "Local clinic";

/// Sockets bound and the consult store open: ready to serve.
pub struct Server {
    listeners: Listeners,
    cluster: Option<Arc<crate::cluster::Cluster>>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    drain: Arc<crate::drain::Drain>,
    options: ServeOptions,
    consults: Consults,
    operators: Vec<Operator>,
    dev_operator: bool,
}

impl Server {
    pub async fn start(listeners: Listeners, options: ServeOptions) -> Result<Self, ServerError> {
        let files = crate::tls::files(options.tls_cert.as_deref(), options.tls_key.as_deref())
            .map_err(ServerError::Tls)?;
        let tls = match files {
            Some(files) => Some(crate::tls::acceptor(files).map_err(ServerError::Tls)?),
            None => None,
        };
        let consults = Consults::open(options.store.clone()).await?;
        let cluster = match &options.cluster {
            None => None,
            Some(c) => {
                let cluster = crate::cluster::Cluster::connect(
                    c.redis_url.clone(),
                    c.node_id.clone(),
                    &c.advertise_url,
                    options.candidate_addr.to_string(),
                )
                .await
                .map_err(ServerError::Cluster)?;
                tracing::info!(
                    node = cluster.node_id(),
                    redis = %cluster.redis_url(),
                    url = cluster.url(),
                    "cluster node: consults are placed through the shared directory"
                );
                Some(cluster)
            }
        };
        let dev_operator = options.operators.is_empty();
        let operators = if dev_operator {
            let key = consults.dev_operator_key().await?;
            vec![Operator {
                clinic: DEV_CLINIC.into(),
                key: Secret::new(key),
            }]
        } else {
            options
                .operators
                .iter()
                .map(|o| Operator {
                    clinic: o.clinic.clone(),
                    key: o.key.clone(),
                })
                .collect()
        };
        if options.allow_open_join {
            tracing::warn!(
                "OPEN JOIN IS ON: anyone who can reach this server can enter any room by its \
                 name, without an invite. Only for media load tests; never on a server with \
                 real consults."
            );
        }
        tracing::info!(
            db = %options.store.describe(),
            operators = operators.len(),
            "consult store open"
        );
        Ok(Server {
            listeners,
            cluster,
            tls,
            drain: Arc::new(crate::drain::Drain::new(options.drain_timeout)),
            options,
            consults,
            operators,
            dev_operator,
        })
    }

    pub fn consults(&self) -> &Consults {
        &self.consults
    }

    /// Starts a graceful drain when requested (SIGUSR1 in `main`; the admin API uses it too).
    pub fn drain_handle(&self) -> Arc<crate::drain::Drain> {
        self.drain.clone()
    }

    /// `<public_url>/operator.html#key=<key>`, when the local dev operator is in use (no
    /// operator configured). The key is in the fragment, which browsers never send.
    pub fn dev_operator_link(&self) -> Option<String> {
        let op = self.operators.first().filter(|_| self.dev_operator)?;
        Some(format!(
            "{}/operator.html#key={}",
            self.options.store.public_url,
            op.key.expose()
        ))
    }

    pub async fn serve(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        serve(self, shutdown).await
    }
}

/// How long shutdown waits for connections to close after the signal (the whole shutdown
/// must fit in 5 s, with the store flush after it).
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// How long shutdown waits for queued audit and participation writes.
const STORE_FLUSH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

pub async fn run(
    listeners: Listeners,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    Server::start(listeners, options)
        .await?
        .serve(shutdown)
        .await
}

async fn serve(
    server: Server,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let Server {
        listeners,
        cluster,
        options,
        consults,
        operators,
        tls,
        drain,
        ..
    } = server;
    // Idempotent; str0m is built without a default provider (no `default-features`).
    str0m::crypto::from_feature_flags().install_process_default();
    let socket = Arc::new(listeners.udp);
    let (demux_tx, demux_rx) = mpsc::unbounded_channel();
    let metrics = Arc::new(Metrics::new());
    let plane = Arc::new(MediaPlane {
        socket: socket.clone(),
        candidate_addr: options.candidate_addr,
        tcp_candidate_addr: options.tcp_candidate_addr,
        demux: demux_tx,
        max_participants: options.max_participants,
        metrics: metrics.clone(),
        video_layers: options.video_layers,
        initial_estimate_bps: options.initial_estimate_bps,
        reconnect_grace: options.reconnect_grace,
        resume_keys: resume_keys(cluster.is_some(), &consults)?,
    });
    let admission = Arc::new(crate::admission::monitor::Gate::new(
        options.admission,
        metrics.clone(),
    ));
    let admission_task = tokio::spawn(crate::admission::monitor::run(admission.clone()));
    let registry = Registry::new(
        plane,
        consults.clone(),
        options.allow_open_join,
        drain.clone(),
        options.ice,
        admission,
        cluster.clone(),
    );
    let heartbeat_task = cluster.clone().map(|c| {
        tokio::spawn(heartbeat(
            c,
            registry.clone(),
            metrics.clone(),
            options.allowed_origins.clone(),
            options.admission.max_participants,
        ))
    });
    let tcp_routes = listeners
        .tcp
        .as_ref()
        .map(|_| crate::tcp::TcpRoutes::default());
    let tcp_task = listeners.tcp.map(|listener| {
        let routes = tcp_routes
            .clone()
            .expect("invariant: made when a listener exists");
        tokio::spawn(crate::tcp::accept_loop(listener, routes, metrics.clone()))
    });
    let udp_task = tokio::spawn(udp::receive_loop(
        socket,
        demux_rx,
        metrics.clone(),
        tcp_routes,
    ));
    let api = ApiState {
        consults: consults.clone(),
        registry: registry.clone(),
        operators: operators.into(),
    };
    let app = crate::http::router(
        registry.clone(),
        metrics,
        options.web_root,
        api,
        &options.connection_limits,
        options.allowed_origins.clone(),
    );
    let app = if tls.is_some() {
        app.layer(axum::middleware::from_fn(crate::web_security::hsts))
    } else {
        app
    };
    tracing::info!(candidate = %options.candidate_addr, "media plane ready");
    // On the signal, rooms tell every participant to rejoin shortly and let them go, which
    // ends their WebSocket connections; axum then stops once the remaining requests finish.
    // A client that keeps its socket open anyway does not hold the exit past the grace.
    // A drain ends in the same shutdown, once its consults have ended or its time is up.
    let drained = wait_for_drain(registry.clone(), drain);
    let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
    let heartbeat_abort = heartbeat_task.as_ref().map(|t| t.abort_handle());
    let on_signal = {
        let registry = registry.clone();
        async move {
            tokio::select! {
                _ = shutdown => {},
                _ = drained => {},
            }
            tracing::info!("shutting down: telling participants to rejoin");
            registry.restart();
            if let Some(h) = &heartbeat_abort {
                // A heartbeat after the leave would put this node back for a TTL.
                h.abort();
            }
            if let Some(c) = registry.cluster() {
                // Out of the directory now, so the participants told to rejoin are placed
                // on the other nodes instead of waiting out our TTL.
                if let Err(e) = c.leave().await {
                    tracing::warn!("leaving the cluster directory: {e}");
                }
            }
            let _ = signalled_tx.send(());
        }
    };
    // The guarded listener drops connections that stall in HTTP; `Peer` gives each request
    // its connection (the client address the signaling limits count by).
    let serving = axum::serve(
        crate::http::GuardedListener::new(listeners.http, options.http_timeouts, tls),
        app.into_make_service_with_connect_info::<crate::http::Peer>(),
    )
    .with_graceful_shutdown(on_signal);
    // Upgraded WebSocket connections are not axum's in-flight requests: it returns at once.
    // Wait (bounded) for the rooms to empty, i.e. for every client to have read `closed`.
    let result = serving.await.map_err(ServerError::Http);
    if signalled.await.is_ok() {
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        while registry.room_count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        if registry.room_count() > 0 {
            tracing::warn!(
                "participants still connected after {SHUTDOWN_GRACE:?}; stopping anyway"
            );
        }
    }
    registry.close_all();
    drop(registry);
    udp_task.abort();
    admission_task.abort();
    if let Some(t) = heartbeat_task {
        t.abort();
    }
    if let Some(t) = tcp_task {
        t.abort();
    }
    // Audit rows queued by the last requests and rooms are written before returning.
    match tokio::time::timeout(STORE_FLUSH_TIMEOUT, consults.flush()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!("consult store at shutdown: {e}"),
        Err(_) => tracing::error!("consult store still busy after {STORE_FLUSH_TIMEOUT:?}"),
    }
    result
}

/// Resolves when a requested drain is over: every consult ended, or `drain_timeout` passed.
async fn wait_for_drain(registry: Registry, drain: Arc<crate::drain::Drain>) {
    use crate::drain::{progress, Progress, POLL};
    drain.requested().await;
    let since = drain.since().unwrap_or_else(tokio::time::Instant::now);
    tracing::info!(
        consults = registry.room_count(),
        timeout = ?drain.timeout(),
        "draining: new consults refused, waiting for the running ones to end"
    );
    loop {
        match progress(
            registry.room_count(),
            since,
            tokio::time::Instant::now(),
            drain.timeout(),
        ) {
            Progress::Waiting => tokio::time::sleep(POLL).await,
            Progress::Empty => {
                tracing::info!(after = ?since.elapsed(), "drained: every consult has ended");
                return;
            }
            Progress::TimedOut => {
                tracing::warn!(
                    consults = registry.room_count(),
                    "drain_timeout reached with consults still running; stopping"
                );
                return;
            }
        }
    }
}

/// Per process on a single node; in a cluster derived from the invite secret the nodes share,
/// so a client sent to any node with its token is recognised there and sent on to its node
/// (tokens still resume only on the process that issued them).
fn resume_keys(
    cluster: bool,
    consults: &Consults,
) -> Result<crate::resume::ResumeKeys, ServerError> {
    if !cluster {
        return crate::resume::ResumeKeys::random().map_err(ServerError::Resume);
    }
    let secret = consults
        .derived_key("consult resume tokens v1")
        .map_err(ServerError::Store)?;
    crate::resume::ResumeKeys::shared(&secret).map_err(ServerError::Resume)
}

/// Keeps this node and its consults in the directory, reports its load, and learns the other
/// nodes' origins (their pages may open our `/ws` after a redirect).
async fn heartbeat(
    cluster: Arc<crate::cluster::Cluster>,
    registry: Registry,
    metrics: Arc<Metrics>,
    origins: crate::web_security::AllowedOrigins,
    max_participants: Option<usize>,
) {
    let mut probe = crate::cluster::LoadProbe::new();
    let mut tick = tokio::time::interval(crate::cluster::HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut healthy = true;
    loop {
        tick.tick().await;
        if registry.is_restarting() {
            return;
        }
        let (bitrate_bps, cpu) = probe.sample(
            std::time::Instant::now(),
            metrics.rtp_bytes_out.get(),
            crate::admission::monitor::read_cpu_seconds(),
        );
        let participants = u64::try_from(metrics.participants.get()).unwrap_or(0);
        let load = crate::cluster::NodeLoad {
            participants,
            bitrate_bps,
            cpu,
            accepting: crate::cluster::accepting(
                registry.is_draining(),
                metrics.admission_busy.get() != 0,
                participants,
                max_participants,
            ),
        };
        let result = match cluster.heartbeat(&load, &registry.room_ids()).await {
            Ok(lost) => {
                for room in lost {
                    tracing::warn!(
                        room,
                        "this consult now runs on another node (this one was out of the \
                         directory for a while): its participants rejoin there"
                    );
                    registry.hand_over(&room);
                }
                cluster.nodes().await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(nodes) => {
                if !healthy {
                    tracing::info!("cluster directory reachable again");
                    healthy = true;
                }
                origins.set_cluster(crate::web_security::ClusterOrigins::from_urls(
                    nodes.iter().map(|n| n.url.as_str()),
                ));
            }
            Err(e) => {
                // Logged once per outage; joins meanwhile get server_busy (Registry::route).
                if healthy {
                    tracing::warn!("cluster heartbeat failed: {e}");
                    healthy = false;
                }
            }
        }
    }
}
