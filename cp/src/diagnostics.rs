//! The diagnostics server: `/healthy` (the process is up), `/ready` (the store answers) and
//! Prometheus `/metrics`.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use atoll_store::SharedStore;

use crate::metrics::Metrics;

#[derive(Clone)]
pub struct DiagnosticsState {
    pub store: SharedStore,
    pub metrics: Metrics,
}

pub fn router(state: Arc<DiagnosticsState>) -> Router {
    Router::new()
        .route("/healthy", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn ready(State(state): State<Arc<DiagnosticsState>>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, "ready\n".to_string()),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store not ready: {e}\n"),
        ),
    }
}

async fn metrics(State(state): State<Arc<DiagnosticsState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
