//! What the browser is told about the web client: a Content-Security-Policy with no external
//! origin (the client works offline and must not load or leak anything elsewhere), no framing,
//! and no referrer (an invite link in the address bar carries a token). And which pages may
//! open the signaling WebSocket: the server's own, plus a configured allow-list.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

/// Inline `style` attributes are allowed (a few layout tweaks in the pages); scripts only from
/// our own files. `connect-src 'self'` covers the same-origin WebSocket (CSP 3).
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' blob: data:; media-src 'self' blob:; connect-src 'self'; \
     frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'";

const HEADERS: [(&str, &str); 5] = [
    ("content-security-policy", CSP),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    (
        "permissions-policy",
        "camera=(self), microphone=(self), display-capture=(self), geolocation=()",
    ),
];

pub async fn headers(State(allowed): State<AllowedOrigins>, req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    // In a cluster the client may be sent to another node's signaling (`redirect`): the
    // page may connect there too, and only there.
    let peers = allowed.cluster_csp();
    for (name, value) in HEADERS {
        if name == "content-security-policy" && !peers.is_empty() {
            let csp = CSP.replace("connect-src 'self'", &format!("connect-src 'self' {peers}"));
            if let Ok(v) = HeaderValue::from_str(&csp) {
                h.entry(name).or_insert(v);
                continue;
            }
        }
        h.entry(name).or_insert(HeaderValue::from_static(value));
    }
    res
}

/// With the server's own TLS: browsers that came once over HTTPS never try plain HTTP to this
/// name again for a year (an invite link typed as `http://` cannot be downgraded).
pub async fn hsts(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .entry("strict-transport-security")
        .or_insert(HeaderValue::from_static("max-age=31536000"));
    res
}

/// Origins (scheme://host[:port]) allowed to open `/ws` besides the server's own: the
/// configured ones, and in a cluster the other nodes' (kept current by the heartbeat), whose
/// pages redirect their clients here.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins {
    pub configured: Arc<Vec<String>>,
    pub cluster: Arc<std::sync::RwLock<ClusterOrigins>>,
}

/// The cluster's nodes as the browser sees them: page origins (`http://host:port`) and
/// signaling origins for the CSP (`ws://host:port`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterOrigins {
    pub pages: Vec<String>,
    pub sockets: Vec<String>,
}

impl ClusterOrigins {
    /// From the nodes' signaling URLs (`ws://host:port/ws`); others are skipped.
    pub fn from_urls<'a>(urls: impl IntoIterator<Item = &'a str>) -> Self {
        let mut o = ClusterOrigins::default();
        for url in urls {
            let (page_scheme, rest) = match url.split_once("://") {
                Some(("ws", r)) => ("http", r),
                Some(("wss", r)) => ("https", r),
                _ => continue,
            };
            let authority = rest.split('/').next().unwrap_or_default();
            // host[:port] only: no user info, wildcard or anything a CSP source list would
            // read as a second source or a directive.
            let allowed = |c: char| c.is_ascii_alphanumeric() || ".-:[]".contains(c);
            if authority.is_empty() || !authority.chars().all(allowed) {
                continue;
            }
            let scheme = if page_scheme == "https" { "wss" } else { "ws" };
            o.pages.push(format!("{page_scheme}://{authority}"));
            o.sockets.push(format!("{scheme}://{authority}"));
        }
        o
    }
}

impl AllowedOrigins {
    pub fn new(configured: Vec<String>) -> Self {
        AllowedOrigins {
            configured: Arc::new(configured),
            cluster: Arc::default(),
        }
    }

    pub fn set_cluster(&self, origins: ClusterOrigins) {
        let mut c = self.cluster.write().unwrap_or_else(|e| e.into_inner());
        if *c != origins {
            *c = origins;
        }
    }

    fn cluster_csp(&self) -> String {
        let c = self.cluster.read().unwrap_or_else(|e| e.into_inner());
        c.sockets.join(" ")
    }

    fn allows(&self, headers: &HeaderMap) -> bool {
        if origin_allowed(headers, &self.configured) {
            return true;
        }
        let c = self.cluster.read().unwrap_or_else(|e| e.into_inner());
        origin_allowed(headers, &c.pages)
    }
}

/// Whether a WebSocket upgrade with these headers may proceed. No `Origin`: not a browser
/// (bots, native apps), which the invite token authenticates anyway. A browser page from
/// elsewhere could otherwise drive a consult with the visitor's own invite.
pub fn origin_allowed(headers: &HeaderMap, allowed: &[String]) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(origin)) {
        return true;
    }
    let authority = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"));
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    matches!((authority, host), (Some(a), Some(h)) if a.eq_ignore_ascii_case(h))
}

pub async fn check_origin(
    State(allowed): State<AllowedOrigins>,
    req: Request,
    next: Next,
) -> Response {
    if req.uri().path() == "/ws" && !allowed.allows(req.headers()) {
        let body = axum::Json(serde_json::json!({"error": {
            "code": "forbidden_origin",
            "message": "this page may not open the consult's signaling; use the server's own web client",
        }}));
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_become_page_and_socket_origins() {
        let o = ClusterOrigins::from_urls([
            "ws://127.0.0.1:8081/ws",
            "wss://n2.consult.vn/ws",
            "http://not-a-socket/ws",
            "ws://bad host/ws",
            "ws://x;script-src *",
            "ws://*.evil.example/ws",
            "ws://user@n3/ws",
        ]);
        assert_eq!(o.pages, ["http://127.0.0.1:8081", "https://n2.consult.vn"]);
        assert_eq!(o.sockets, ["ws://127.0.0.1:8081", "wss://n2.consult.vn"]);
        let allowed = AllowedOrigins::new(vec![]);
        allowed.set_cluster(o);
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8082"));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:8081"),
        );
        assert!(allowed.allows(&h));
        h.insert(
            header::ORIGIN,
            HeaderValue::from_static("http://127.0.0.1:9"),
        );
        assert!(!allowed.allows(&h));
        assert_eq!(
            allowed.cluster_csp(),
            "ws://127.0.0.1:8081 wss://n2.consult.vn"
        );
    }

    #[test]
    fn same_host_listed_or_no_origin_may_connect() {
        let h = |origin: Option<&str>, host: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::HOST, HeaderValue::from_str(host).unwrap());
            if let Some(o) = origin {
                m.insert(header::ORIGIN, HeaderValue::from_str(o).unwrap());
            }
            m
        };
        let allowed = vec!["https://portal.benhvien.vn".to_string()];
        let cases = [
            (None, "consult.local:8080", true),
            (
                Some("http://consult.local:8080"),
                "consult.local:8080",
                true,
            ),
            (Some("https://CONSULT.local"), "consult.local", true),
            (Some("https://portal.benhvien.vn"), "consult.local", true),
            (Some("https://evil.example"), "consult.local", false),
            (
                Some("http://consult.local:9999"),
                "consult.local:8080",
                false,
            ),
            (Some("null"), "consult.local", false),
            (
                Some("http://consult.local.evil.example"),
                "consult.local",
                false,
            ),
        ];
        for (origin, host, want) in cases {
            assert_eq!(
                origin_allowed(&h(origin, host), &allowed),
                want,
                "{origin:?} on {host}"
            );
        }
    }
}
