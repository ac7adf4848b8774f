//! The Prometheus metrics the API keeps, and `/metrics` (served only on the
//! metrics listener, see [`super::metrics_app`]).

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

use super::{ApiError, AppState};

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

/// Prometheus metrics. Labels are bounded: HTTP status classes and execution states.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<StatusLabel, Counter>,
    /// Executions started through the API only (see its help text).
    pub executions_started: Counter,
    pub executions_finished: Family<StateLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("atoll");
        let http_requests = Family::<StatusLabel, Counter>::default();
        registry.register(
            "http_requests",
            "API requests by status class",
            http_requests.clone(),
        );
        let executions_started = Counter::default();
        registry.register(
            "executions_started",
            "Executions started through the API (runs, replays and webhooks; \
             not schedules, flow triggers, subflows or restarts)",
            executions_started.clone(),
        );
        let executions_finished = Family::<StateLabel, Counter>::default();
        registry.register(
            "executions_finished",
            "Executions finished by this process, by final state",
            executions_finished.clone(),
        );
        Metrics {
            registry,
            http_requests,
            executions_started,
            executions_finished,
        }
    }
}

pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &state.metrics.registry)
    {
        return ApiError::Internal(err.to_string()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
