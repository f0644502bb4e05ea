//! Node administration. `POST /api/v1/admin/drain` starts a graceful drain (`crate::drain`)
//! before a rolling upgrade: any operator key, but only from this machine (a Kubernetes
//! `preStop` hook, systemd, an ops shell), so a clinic's operator elsewhere cannot take the
//! node out of service. `GET /api/v1/admin/cluster` lists the cluster's nodes and their load:
//! any operator key, from anywhere (it names no consult and changes nothing).

use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde_json::{json, Value};

use super::error::ApiError;
use super::{ApiState, Operator};
use crate::http::Peer;

/// Whether a request comes from this machine itself: a loopback peer that is not the local
/// TLS proxy relaying someone else (which adds `X-Forwarded-For`).
pub fn from_this_machine(peer: &Peer, headers: &HeaderMap) -> bool {
    peer.addr.ip().is_loopback() && !headers.contains_key("x-forwarded-for")
}

pub async fn drain(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    operator: Operator,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    if !from_this_machine(&peer, &headers) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "drain is only accepted from the server's own machine (127.0.0.1)",
        ));
    }
    let drain = state.registry.drain();
    let first = drain.request();
    let running = state.registry.room_count();
    if first {
        tracing::info!(clinic = %operator.clinic, consults = running, "drain requested");
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "draining": true,
            "already_draining": !first,
            "consults_running": running,
            "drain_timeout_secs": drain.timeout().as_secs(),
        })),
    ))
}

/// The nodes of the cluster as the directory sees them (any operator key, from anywhere: it
/// names no consult). On a single node: `{"cluster": false}`.
pub async fn cluster(
    State(state): State<ApiState>,
    _operator: Operator,
) -> Result<Json<Value>, ApiError> {
    let Some(cluster) = state.registry.cluster() else {
        return Ok(Json(json!({ "cluster": false })));
    };
    let nodes = cluster.nodes().await.map_err(|e| {
        tracing::warn!("cluster listing: {e}");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "directory_unavailable",
            "the cluster directory (Redis) cannot be reached",
        )
    })?;
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|n| {
            json!({
                "node_id": n.id,
                "url": n.url,
                "media": n.media,
                "consults": n.rooms,
                "participants": n.participants,
                "bitrate_bps": n.bitrate_bps,
                "cpu": n.cpu,
                "accepting": n.accepting,
            })
        })
        .collect();
    Ok(Json(json!({
        "cluster": true,
        "this_node": cluster.node_id(),
        "nodes": nodes,
    })))
}
