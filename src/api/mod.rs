//! The operator API (`/api/v1`, JSON): clinic operators create consults, get one signed
//! invite link per participant, end consults, read the audit trail and the summary.
//! Documented in `docs/API.md`.

mod admin;
mod error;
mod extract;
mod handlers;
pub mod model;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{any, get, post};
use axum::Router;

use crate::config::Secret;
use crate::consult::Consults;
use crate::registry::Registry;

pub use error::ApiError;

/// Largest request body.
pub const BODY_LIMIT: usize = 64 * 1024;

/// An authenticated clinic operator: the consults it creates belong to its clinic.
#[derive(Debug, Clone)]
pub struct Operator {
    pub clinic: String,
    pub key: Secret,
}

#[derive(Clone)]
pub struct ApiState {
    pub consults: Consults,
    pub registry: Registry,
    pub operators: Arc<[Operator]>,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/consults", get(handlers::list).post(handlers::create))
        .route("/consults/{id}", get(handlers::get))
        .route("/consults/{id}/end", post(handlers::end))
        .route("/consults/{id}/audit", get(handlers::audit))
        .route("/consults/{id}/summary", get(handlers::summary))
        .route("/admin/drain", post(admin::drain))
        .route("/admin/cluster", get(admin::cluster))
        // Explicit, because a nested router's fallback would lose to the web client's
        // catch-all file route.
        .route("/{*rest}", any(no_such_endpoint))
        .fallback(no_such_endpoint)
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this endpoint does not take that method (see docs/API.md)",
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(state)
}

async fn no_such_endpoint() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}
