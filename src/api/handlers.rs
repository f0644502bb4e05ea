//! One function per endpoint: authenticate, validate, call the store, shape the JSON.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::JsonBody;
use super::model::{AuditJson, ConsultJson, CreateConsult, InviteJson, ListQuery, SummaryJson};
use super::{ApiState, Operator};
use crate::consult::{summary, EndOutcome, IssuedInvite};

type ApiResult = Result<Json<Value>, ApiError>;

const DEFAULT_LIST_LIMIT: u32 = 100;
const MAX_LIST_LIMIT: u32 = 1000;

fn invites_json(state: &ApiState, invites: &[IssuedInvite]) -> Vec<InviteJson> {
    invites
        .iter()
        .map(|i| InviteJson::new(i, state.consults.invite_link(&i.token)))
        .collect()
}

/// A consult id from the path; one that cannot exist is simply not found.
fn consult_id(path: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    path.map(|Path(id)| id).map_err(|_| ApiError::not_found())
}

pub async fn create(
    State(state): State<ApiState>,
    operator: Operator,
    JsonBody(request): JsonBody<CreateConsult>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let new = request.validate(&operator.clinic)?;
    let now = crate::consult::now_unix();
    let (consult, invites) = state.consults.create(new, now).await?;
    tracing::info!(consult = %consult.id, clinic = %consult.clinic, invites = invites.len(), "consult created");
    Ok((
        StatusCode::CREATED,
        Json(json!({
            "consult": ConsultJson::from(&consult),
            "invites": invites_json(&state, &invites),
        })),
    ))
}

pub async fn list(
    State(state): State<ApiState>,
    operator: Operator,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> ApiResult {
    let Query(query) = query.map_err(|e| ApiError::invalid("query", e.body_text()))?;
    let limit = query.limit.unwrap_or(DEFAULT_LIST_LIMIT);
    if !(1..=MAX_LIST_LIMIT).contains(&limit) {
        return Err(ApiError::invalid(
            "limit",
            format!("must be 1 to {MAX_LIST_LIMIT}, got {limit}"),
        ));
    }
    let consults = state.consults.list(&operator.clinic, limit).await?;
    let consults: Vec<ConsultJson> = consults.iter().map(ConsultJson::from).collect();
    Ok(Json(json!({ "consults": consults })))
}

pub async fn get(
    State(state): State<ApiState>,
    operator: Operator,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = consult_id(id)?;
    let (consult, invites) = state
        .consults
        .get(&operator.clinic, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(Json(json!({
        "consult": ConsultJson::from(&consult),
        "invites": invites_json(&state, &invites),
    })))
}

pub async fn end(
    State(state): State<ApiState>,
    operator: Operator,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = consult_id(id)?;
    let now = crate::consult::now_unix();
    match state
        .consults
        .end_by_operator(&operator.clinic, &id, now)
        .await?
    {
        EndOutcome::Ended(consult) => {
            // Whoever is still in the consult is told and disconnected.
            state.registry.end_consult(&consult.id);
            tracing::info!(consult = %consult.id, "consult ended through the API");
            Ok(Json(json!({ "consult": ConsultJson::from(&consult) })))
        }
        EndOutcome::AlreadyEnded => Err(ApiError::new(
            StatusCode::CONFLICT,
            "already_ended",
            "this consult has already ended",
        )),
        EndOutcome::NotFound => Err(ApiError::not_found()),
    }
}

pub async fn audit(
    State(state): State<ApiState>,
    operator: Operator,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = consult_id(id)?;
    let (_, events) = state
        .consults
        .audit_trail(&operator.clinic, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let events: Vec<AuditJson> = events.into_iter().map(AuditJson::from).collect();
    Ok(Json(json!({ "events": events })))
}

pub async fn summary(
    State(state): State<ApiState>,
    operator: Operator,
    id: Result<Path<String>, PathRejection>,
) -> ApiResult {
    let id = consult_id(id)?;
    let (consult, rows) = state
        .consults
        .participation(&operator.clinic, &id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let summary = summary::summarize(&consult, &rows);
    Ok(Json(json!(SummaryJson::new(&consult, summary))))
}
