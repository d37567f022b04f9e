//! HTTP (axum): `/ready`, `/v1/identity`, `/metrics`, the bootstrap API and `/v1/nodes`.
//! The same router serves the root-only admin unix socket the local CLI uses.

use crate::cluster::Action;
use crate::clusterd::{ClusterNode, ErrorBody};
use crate::metrics::Metrics;
use crate::state::StateRx;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use std::sync::Arc;

/// Bootstrap bodies are a few hundred bytes; anything much larger is refused before parsing.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct HttpState {
    pub state: StateRx,
    pub metrics: Arc<Metrics>,
    pub cluster: Arc<ClusterNode>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/v1/identity", get(identity))
        .route("/metrics", get(metrics))
        .route("/v1/bootstrap", get(bootstrap_status))
        .route("/v1/bootstrap/create_cluster", post(create_cluster))
        .route("/v1/bootstrap/join_cluster", post(join_cluster))
        .route("/v1/nodes", get(nodes))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

async fn ready(State(s): State<HttpState>) -> impl IntoResponse {
    let published = s.state.borrow().clone();
    if published.ready() {
        (StatusCode::OK, "ready\n".to_string())
    } else {
        let why = published
            .not_ready
            .clone()
            .unwrap_or_else(|| "starting".into());
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        )
    }
}

async fn identity(State(s): State<HttpState>) -> impl IntoResponse {
    Json(s.state.borrow().view())
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn bootstrap_status(State(s): State<HttpState>) -> impl IntoResponse {
    let status = s.cluster.status().await;
    let record = s.cluster.record();
    Json(serde_json::json!({
        "state": status.state,
        "error": status.error,
        "cluster": record.map(|r| serde_json::json!({"name": r.name, "family": r.family, "node_id": r.node_id})),
        "available_addrs": s.cluster.available_addrs(),
    }))
}

async fn create_cluster(State(s): State<HttpState>, body: Bytes) -> Response {
    bootstrap(&s, &body, Action::Create).await
}

async fn join_cluster(State(s): State<HttpState>, body: Bytes) -> Response {
    bootstrap(&s, &body, Action::Join).await
}

async fn bootstrap(s: &HttpState, body: &[u8], action: Action) -> Response {
    match s.cluster.bootstrap(body, action).await {
        Ok(status) => (StatusCode::OK, Json(status)).into_response(),
        Err(refused) => error(refused.http_status, refused.body),
    }
}

async fn nodes(State(s): State<HttpState>) -> Response {
    match s.cluster.members().await {
        Some((name, members)) => Json(serde_json::json!({"cluster_name": name, "nodes": members})).into_response(),
        None => error(
            409,
            ErrorBody::new("NotInCluster", None, "this node does not belong to a cluster yet; fix: POST /v1/bootstrap/create_cluster or join_cluster"),
        ),
    }
}

fn error(status: u16, body: ErrorBody) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (code, Json(body)).into_response()
}
