//! HTTP routes: the web client's files, `/ws` signaling, the operator API under `/api/v1`,
//! `/metrics`, `/healthz` (alive), `/readyz` (takes new consults). And the HTTP-phase
//! deadlines of every TCP connection ([`GuardedListener`]), so a client that stalls before or
//! between requests is dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path as UrlPath, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::serve::IncomingStream;
use axum::Router;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};

use crate::metrics::Metrics;
use crate::registry::Registry;

/// The app. Serve it with [`GuardedListener`] and
/// `into_make_service_with_connect_info::<Peer>()`: every request needs its [`Peer`].
pub fn router(
    registry: Registry,
    metrics: Arc<Metrics>,
    web_root: PathBuf,
    api: crate::api::ApiState,
    limits: &signaling::Limits,
    allowed_origins: crate::web_security::AllowedOrigins,
) -> Router {
    let web_root = Arc::new(web_root);
    let files = Router::new()
        .route("/", get(index))
        .route("/{*path}", get(static_file))
        .with_state(web_root);
    Router::new()
        .route("/ws", get(signaling::ws_handler::<Registry>))
        .with_state(signaling::Endpoint::new(registry.clone(), limits))
        .route("/status", get(status))
        .route("/readyz", get(readyz))
        .with_state(registry)
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
        .route("/healthz", get(|| async { "ok\n" }))
        .nest("/api/v1", crate::api::router(api))
        .merge(files)
        .layer(middleware::from_fn_with_state(
            allowed_origins.clone(),
            crate::web_security::check_origin,
        ))
        .layer(middleware::from_fn_with_state(
            allowed_origins,
            crate::web_security::headers,
        ))
        .layer(middleware::from_fn(request_deadlines))
}

/// HTTP-phase timeouts of one TCP connection. axum 0.8's `serve` gives hyper no timer, so
/// hyper's own `header_read_timeout` is off and a client that sends half a request would hold
/// its socket forever; [`GuardedStream`] enforces these instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpTimeouts {
    /// From accept, and from each response, until the next request's headers are in (a
    /// stalled or half-sent request, an idle keep-alive connection). Also the longest a
    /// response write may make no progress (a client that stopped reading).
    pub idle: Duration,
    /// From a request's headers to its response: reading the body and the handler.
    pub request: Duration,
}

impl Default for HttpTimeouts {
    fn default() -> Self {
        HttpTimeouts {
            // A browser sends its request (and the WebSocket upgrade) right after connecting;
            // 10 s is generous on a 2G link yet bounds how long a stalled socket lives.
            idle: Duration::from_secs(10),
            // API bodies are small JSON (images go over the data channel, not HTTP).
            request: Duration::from_secs(30),
        }
    }
}

/// A TCP listener whose connections time out while in HTTP (not once upgraded to a
/// WebSocket: the signaling endpoint has its own join timeout), with TLS when configured
/// (the handshake falls under the same deadline).
pub struct GuardedListener {
    inner: TcpListener,
    timeouts: HttpTimeouts,
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl GuardedListener {
    pub fn new(
        inner: TcpListener,
        timeouts: HttpTimeouts,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        GuardedListener {
            inner,
            timeouts,
            tls,
        }
    }
}

impl axum::serve::Listener for GuardedListener {
    type Io = GuardedStream<crate::tls::MaybeTls<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop: it retries, and backs off on EMFILE.
        let (stream, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let now = Instant::now();
        let deadline = Deadline::new(now);
        deadline.set(now + self.timeouts.idle);
        let stream = crate::tls::MaybeTls::new(stream, self.tls.as_ref());
        (GuardedStream::new(stream, deadline, self.timeouts), addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// What a request knows of its TCP connection (`ConnectInfo<Peer>`).
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    deadline: Deadline,
    timeouts: HttpTimeouts,
}

impl Connected<IncomingStream<'_, GuardedListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, GuardedListener>) -> Self {
        Peer {
            addr: *stream.remote_addr(),
            deadline: stream.io().deadline.clone(),
            timeouts: stream.io().timeouts,
        }
    }
}

/// Moves the connection's deadline through a request: the request timeout while it is
/// handled, none once it became a WebSocket, the idle timeout after any other response. Also
/// hands the signaling endpoint the client's address, which it counts connections by.
async fn request_deadlines(
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    peer.deadline.set(Instant::now() + peer.timeouts.request);
    request
        .extensions_mut()
        .insert(signaling::ClientIp(peer.addr.ip()));
    let response = next.run(request).await;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        peer.deadline.disarm();
    } else {
        peer.deadline.set(Instant::now() + peer.timeouts.idle);
    }
    response
}

/// A connection's current deadline, shared by its stream and its requests. Stored as
/// milliseconds since the connection was accepted, so it fits one atomic (the stream checks
/// it on every read and write, also after the upgrade).
#[derive(Debug, Clone)]
struct Deadline {
    inner: Arc<DeadlineInner>,
}

#[derive(Debug)]
struct DeadlineInner {
    base: Instant,
    at_ms: AtomicU64,
}

/// `at_ms` of a disarmed deadline; `fetch_max` keeps it disarmed.
const DISARMED: u64 = u64::MAX;

impl Deadline {
    fn new(base: Instant) -> Self {
        Deadline {
            inner: Arc::new(DeadlineInner {
                base,
                at_ms: AtomicU64::new(DISARMED),
            }),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        let ms = at.saturating_duration_since(self.inner.base).as_millis();
        u64::try_from(ms).unwrap_or(DISARMED - 1).min(DISARMED - 1)
    }

    fn set(&self, at: Instant) {
        self.inner.at_ms.store(self.ms(at), Ordering::Relaxed);
    }

    /// Moves an armed deadline later (never earlier); a disarmed one stays disarmed.
    fn extend_to(&self, at: Instant) {
        self.inner.at_ms.fetch_max(self.ms(at), Ordering::Relaxed);
    }

    fn disarm(&self) {
        self.inner.at_ms.store(DISARMED, Ordering::Relaxed);
    }

    fn get(&self) -> Option<Instant> {
        match self.inner.at_ms.load(Ordering::Relaxed) {
            DISARMED => None,
            ms => Some(self.inner.base + Duration::from_millis(ms)),
        }
    }
}

/// A stream that fails its reads and writes with `TimedOut` once its [`Deadline`] passes,
/// which makes hyper drop the connection. Write progress moves the deadline to at least
/// `idle` from now: a slow download is not idle, a client that stopped reading is.
pub struct GuardedStream<T> {
    inner: T,
    deadline: Deadline,
    timeouts: HttpTimeouts,
    /// Wakes the task when the deadline passes, so a stalled peer is noticed without any IO.
    timer: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<T> GuardedStream<T> {
    fn new(inner: T, deadline: Deadline, timeouts: HttpTimeouts) -> Self {
        GuardedStream {
            inner,
            deadline,
            timeouts,
            timer: None,
        }
    }

    /// Ready with an error once the deadline has passed; otherwise pending, with the task
    /// woken at the deadline.
    fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let Some(at) = self.deadline.get() else {
            self.timer = None;
            return Poll::Pending;
        };
        match &mut self.timer {
            Some((armed, sleep)) if *armed != at => {
                sleep.as_mut().reset(at);
                *armed = at;
            }
            Some(_) => {}
            None => self.timer = Some((at, Box::pin(tokio::time::sleep_until(at)))),
        }
        let (_, sleep) = self
            .timer
            .as_mut()
            .expect("invariant: the timer was set just above");
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "HTTP connection idle past its deadline",
        ))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for GuardedStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(err) = this.poll_expired(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for GuardedStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(err) = this.poll_expired(cx) {
            return Poll::Ready(Err(err));
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write(cx, data))?;
        if written > 0 {
            this.deadline.extend_to(Instant::now() + this.timeouts.idle);
        }
        Poll::Ready(Ok(written))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Poll::Ready(err) = this.poll_expired(cx) {
            return Poll::Ready(Err(err));
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Poll::Ready(err) = this.poll_expired(cx) {
            return Poll::Ready(Err(err));
        }
        let written = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if written > 0 {
            this.deadline.extend_to(Instant::now() + this.timeouts.idle);
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Closing is always allowed, also past the deadline.
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
}

/// Readiness for a load balancer or Kubernetes: 503 once shutdown has begun, since joins are
/// refused from then on (the listener closes soon after, which probes also read as not
/// ready). `/healthz` is about liveness only and stays 200 while the process runs.
async fn readyz(State(registry): State<Registry>) -> Response {
    readiness(registry.is_restarting(), registry.is_draining()).into_response()
}

/// Draining (no new consults, running ones go on) is not ready either: the load balancer
/// sends new consults elsewhere.
fn readiness(shutting_down: bool, draining: bool) -> (StatusCode, &'static str) {
    if shutting_down {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
    } else if draining {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

async fn status(State(registry): State<Registry>) -> impl IntoResponse {
    axum::Json(serde_json::json!({ "rooms": registry.snapshot().await }))
}

async fn index(State(root): State<Arc<PathBuf>>) -> Response {
    serve(&root, "index.html").await
}

async fn static_file(State(root): State<Arc<PathBuf>>, UrlPath(path): UrlPath<String>) -> Response {
    serve(&root, &path).await
}

/// Only plain relative paths inside the web root: no `..`, no absolute paths, no dotfiles.
pub fn safe_relative(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(s) if !s.to_string_lossy().starts_with('.') => out.push(s),
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        _ => "application/octet-stream",
    }
}

async fn serve(root: &Path, path: &str) -> Response {
    let Some(relative) = safe_relative(path) else {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    };
    // The client's own tooling lives beside it; only the app itself is served.
    let private = ["tests", "node_modules", "package.json", "package-lock.json"];
    if private.iter().any(|p| relative.starts_with(p)) {
        return (StatusCode::NOT_FOUND, "not found\n").into_response();
    }
    let full = root.join(&relative);
    match tokio::fs::read(&full).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, content_type(&full)),
                // Clinics may sit behind caching proxies; a new release must show at once.
                (header::CACHE_CONTROL, "no-cache"),
            ],
            bytes,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn deadline_moves_as_documented() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        enum Op {
            Set(u64),
            Extend(u64),
            Disarm,
        }
        use Op::*;
        // (operation, deadline after it, in ms from t0)
        let steps = [
            (Set(100), Some(100)),
            (Extend(50), Some(100)),
            (Extend(300), Some(300)),
            (Set(200), Some(200)),
            (Disarm, None),
            (Extend(900), None),
            (Set(400), Some(400)),
        ];
        let deadline = Deadline::new(t0);
        assert_eq!(deadline.get(), None, "a new deadline is disarmed");
        for (i, (op, want)) in steps.into_iter().enumerate() {
            match op {
                Set(ms) => deadline.set(at(ms)),
                Extend(ms) => deadline.extend_to(at(ms)),
                Disarm => deadline.disarm(),
            }
            assert_eq!(deadline.get(), want.map(at), "step {i}");
        }
    }

    fn guarded(
        deadline_in: Option<Duration>,
    ) -> (
        GuardedStream<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
        Deadline,
    ) {
        let (ours, theirs) = tokio::io::duplex(1024);
        let now = Instant::now();
        let deadline = Deadline::new(now);
        if let Some(d) = deadline_in {
            deadline.set(now + d);
        }
        let timeouts = HttpTimeouts {
            idle: Duration::from_secs(5),
            request: Duration::from_secs(5),
        };
        (
            GuardedStream::new(ours, deadline.clone(), timeouts),
            theirs,
            deadline,
        )
    }

    #[tokio::test]
    async fn a_silent_peer_is_cut_off_at_the_deadline() {
        let (mut stream, _peer, _) = guarded(Some(Duration::from_millis(100)));
        let t0 = std::time::Instant::now();
        let mut buf = [0u8; 8];
        let err = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
            .await
            .expect("the deadline wakes the reader")
            .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(
            t0.elapsed() >= Duration::from_millis(90),
            "{:?}",
            t0.elapsed()
        );
        // Writing is refused too, once past the deadline; closing is not.
        assert!(stream.write_all(b"x").await.is_err());
        stream.shutdown().await.unwrap();
    }

    #[tokio::test]
    async fn a_disarmed_stream_waits_and_writes_extend_the_deadline() {
        let (mut stream, mut peer, deadline) = guarded(None);
        let mut buf = [0u8; 8];
        assert!(
            tokio::time::timeout(Duration::from_millis(200), stream.read(&mut buf))
                .await
                .is_err(),
            "no deadline: the read just waits"
        );
        peer.write_all(b"hi").await.unwrap();
        assert_eq!(stream.read(&mut buf).await.unwrap(), 2);

        // Armed, a write pushes the deadline to `idle` (5 s) from now.
        deadline.set(Instant::now() + Duration::from_millis(100));
        stream.write_all(b"response").await.unwrap();
        let left = deadline.get().unwrap() - Instant::now();
        assert!(left > Duration::from_secs(4), "{left:?}");
    }

    #[test]
    fn readiness_ends_with_shutdown() {
        assert_eq!(readiness(false, false), (StatusCode::OK, "ready\n"));
        assert_eq!(
            readiness(false, true),
            (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
        );
        for draining in [false, true] {
            assert_eq!(
                readiness(true, draining),
                (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
            );
        }
    }

    #[test]
    fn only_safe_paths_are_served() {
        let cases = [
            ("index.html", Some("index.html")),
            ("js/main.js", Some("js/main.js")),
            ("../Cargo.toml", None),
            ("js/../../etc/passwd", None),
            ("/etc/passwd", None),
            (".git/config", None),
            ("", None),
        ];
        for (input, want) in cases {
            assert_eq!(safe_relative(input), want.map(PathBuf::from), "{input}");
        }
    }
}
