//! HTTP routes: the web client's files, `/ws` signaling, the operator API under `/api/v1`,
//! `/metrics`, `/healthz`.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Path as UrlPath, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::metrics::Metrics;
use crate::registry::Registry;

pub fn router(
    registry: Registry,
    metrics: Arc<Metrics>,
    web_root: PathBuf,
    api: crate::api::ApiState,
) -> Router {
    let web_root = Arc::new(web_root);
    let files = Router::new()
        .route("/", get(index))
        .route("/{*path}", get(static_file))
        .with_state(web_root);
    Router::new()
        .route("/ws", get(signaling::ws_handler::<Registry>))
        .route("/status", get(status))
        .with_state(registry)
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
        .route("/healthz", get(|| async { "ok\n" }))
        .nest("/api/v1", crate::api::router(api))
        .merge(files)
}

async fn render_metrics(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics.render(),
    )
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
