//! The wake gate's metrics (no per-tenant labels) and its /healthz,
//! /readyz and /metrics router.

use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Counters of held requests and wakes asked for.
#[derive(Clone, Debug)]
pub struct GateMetrics {
    registry: Arc<Registry>,
    held: Counter,
    over_limit: Counter,
    wakes: Counter,
}

impl Default for GateMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("atoll_gate");
        let held = Counter::default();
        registry.register(
            "requests_held",
            "Requests held because their tenant was asleep or waking",
            held.clone(),
        );
        let over_limit = Counter::default();
        registry.register(
            "requests_over_hold_limit",
            "Held requests answered 503 (or the waking page) because the wake took longer than the hold limit",
            over_limit.clone(),
        );
        let wakes = Counter::default();
        registry.register(
            "wake_requests",
            "Wakes this replica asked the operator for",
            wakes.clone(),
        );
        Self {
            registry: Arc::new(registry),
            held,
            over_limit,
            wakes,
        }
    }
}

impl GateMetrics {
    /// A request is held.
    pub fn held(&self) {
        self.held.inc();
    }

    /// A held request ran out of time.
    pub fn hold_limit_exceeded(&self) {
        self.over_limit.inc();
    }

    /// A wake was asked for.
    pub fn wake_requested(&self) {
        self.wakes.inc();
    }

    fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// /healthz, /readyz (once `ready` says the caches are filled) and /metrics.
pub fn router(
    metrics: GateMetrics,
    ready: impl Fn() -> bool + Clone + Send + Sync + 'static,
) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ok = ready();
                async move {
                    if ok {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "the caches are filling")
                    }
                }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let body = metrics.encode();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response()
                }
            }),
        )
}
