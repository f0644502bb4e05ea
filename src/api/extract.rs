//! Extractors whose failures are API errors: the operator from the bearer key, and JSON
//! bodies parsed whatever the content type (curl users forget it) with serde's message.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::{ApiState, Operator};

impl FromRequestParts<ApiState> for Operator {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let key = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .ok_or_else(ApiError::unauthorized)?;
        // Compared in constant time, against every operator, so the timing tells nothing
        // about how much of a guess was right.
        let mut found = None;
        for op in state.operators.iter() {
            let equal = aws_lc_rs::constant_time::verify_slices_are_equal(
                op.key.expose().as_bytes(),
                key.as_bytes(),
            )
            .is_ok();
            if equal && found.is_none() {
                found = Some(op.clone());
            }
        }
        found.ok_or_else(ApiError::unauthorized)
    }
}

/// A JSON request body of type `T`.
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    format!("the body must be at most {} bytes", super::BODY_LIMIT),
                )
            } else {
                ApiError::new(e.status(), "bad_body", e.body_text())
            }
        })?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Data => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    format!("the body does not have the expected fields: {e}"),
                ),
                Category::Syntax | Category::Eof | Category::Io => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "malformed_json",
                    format!("the body is not valid JSON: {e}"),
                ),
            }
        })
    }
}
