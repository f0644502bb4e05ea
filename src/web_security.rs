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

pub async fn headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    for (name, value) in HEADERS {
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

/// Origins (scheme://host[:port]) allowed to open `/ws` besides the server's own.
#[derive(Debug, Clone, Default)]
pub struct AllowedOrigins(pub Arc<Vec<String>>);

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
    if req.uri().path() == "/ws" && !origin_allowed(req.headers(), &allowed.0) {
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
