//! HTTP (axum): `/ready`, `/v1/identity`, `/metrics`.

use crate::metrics::Metrics;
use crate::state::StateRx;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use std::sync::Arc;

#[derive(Clone)]
pub struct HttpState {
    pub state: StateRx,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/ready", get(ready))
        .route("/v1/identity", get(identity))
        .route("/metrics", get(metrics))
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
