//! The REST API, shaped like Kestra's, under `/api/v1` and under Kestra's
//! tenant segment `/api/v1/{tenant}` (answered only for this instance's
//! tenant). Operational endpoints `/healthz` and `/readyz` sit at the root
//! without authentication; `/metrics` is served only by [`metrics_app`], on
//! a separate listener the Ingress does not route.
//!
//! One file per resource (`flows`, `transfer` for import and export,
//! `executions`, `logs`, `triggers` with the webhooks, `metrics`); the
//! caller's role and the path segments are checked by the extractors in
//! `extract`, and handlers reach data only through the engine.

pub mod attempts;
mod error;
mod execution_actions;
mod execution_discovery;
mod executions;
mod extract;
mod files;
mod flows;
mod inputs;
mod kestra_shape;
mod kv;
mod logs;
mod metrics;
mod namespace_files;
mod query_filters;
mod transfer;
mod triggers;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};

pub use error::ApiError;
use error::ApiResult;
pub use extract::{Editor, ExecutionId, FlowKey, Viewer};
pub use metrics::{Metrics, StateLabel, StatusLabel};

use crate::auth::{AuthError, Principal, Role, Verifier};
use crate::engine::Engine;
use crate::flow;

/// Largest request body accepted (flows are at most this big too).
pub const MAX_BODY_BYTES: usize = flow::MAX_SOURCE_BYTES;

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    pub engine: Engine,
    pub tenant: String,
    /// `None`: authentication is off and every caller is an Admin.
    pub verifier: Option<Arc<dyn Verifier>>,
    pub metrics: Arc<Metrics>,
    /// Task-pod attempts open for file transfer (`attempts` routes).
    pub attempts: crate::runner::kubernetes::Attempts,
}

/// The routes under `/api/v1` that need a token.
fn api_routes() -> Router<AppState> {
    Router::new()
        .route("/flows", post(flows::create_flow))
        .route("/flows/search", get(flows::search_flows))
        .route("/flows/export/by-query", get(transfer::export_flows))
        .route("/flows/import", post(transfer::import_flows))
        .route("/flows/{namespace}", get(flows::list_namespace))
        .route(
            "/flows/{namespace}/{id}",
            get(flows::get_flow)
                .put(flows::update_flow)
                .delete(flows::delete_flow),
        )
        .route(
            "/flows/{namespace}/{id}/revisions",
            get(flows::flow_revisions),
        )
        .route("/executions/search", get(executions::search_executions))
        .route(
            "/executions/{namespace}/{flow_id}",
            // File parts are limited one by one (inputs::MAX_FILE_BYTES).
            post(executions::create_execution).layer(DefaultBodyLimit::disable()),
        )
        .route("/executions/{id}/file", get(files::download))
        .route("/executions/{id}/file/metas", get(files::metas))
        .route(
            "/namespaces/{namespace}/files/directory",
            get(namespace_files::list_directory),
        )
        .route(
            "/namespaces/{namespace}/files",
            get(namespace_files::download)
                .post(namespace_files::upload)
                .delete(namespace_files::delete)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/executions/{id}",
            get(executions::get_execution).delete(executions::delete_execution),
        )
        .route("/executions", get(executions::search_executions))
        .route("/executions/{id}/follow", get(executions::follow_execution))
        .route(
            "/executions/latest",
            post(execution_discovery::latest_executions),
        )
        .route(
            "/executions/namespaces",
            get(execution_discovery::executable_namespaces),
        )
        .route(
            "/executions/namespaces/{namespace}/flows",
            get(execution_discovery::executable_flows),
        )
        .route(
            "/executions/{namespace}/{flow_id}/validate",
            post(execution_discovery::validate_inputs),
        )
        .merge(execution_action_routes("/executions/{id}"))
        .merge(execution_action_routes("/executions/{id}/actions"))
        .route("/triggers/search", get(triggers::search_triggers))
        .route("/logs/{execution_id}", get(logs::execution_logs))
        .route("/logs/{execution_id}/follow", get(logs::follow_logs))
        .route("/logs/{execution_id}/download", get(logs::download_logs))
        .route("/namespaces/{namespace}/kv", get(kv::list))
        .route(
            "/namespaces/{namespace}/kv/{key}",
            get(kv::get).put(kv::put).delete(kv::delete),
        )
}

/// What is done to a started execution, under `base`: Kestra 1.x's
/// `/executions/{id}` and 2.x's `/executions/{id}/actions`.
fn execution_action_routes(base: &str) -> Router<AppState> {
    use execution_actions as a;
    Router::new()
        .route(&format!("{base}/restart"), post(a::restart_execution))
        .route(&format!("{base}/replay"), post(a::replay_execution))
        .route(
            &format!("{base}/replay-with-inputs"),
            post(a::replay_with_inputs),
        )
        .route(&format!("{base}/resume"), post(a::resume_execution))
        .route(&format!("{base}/pause"), post(a::pause_execution))
        .route(
            &format!("{base}/kill"),
            post(a::kill_execution).delete(a::kill_execution),
        )
        .route(&format!("{base}/labels"), post(a::set_labels))
        .route(&format!("{base}/change-status"), post(a::change_status))
        .route(&format!("{base}/eval"), post(a::eval_expression))
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let api = api_routes();
    let tenant_api = api
        .clone()
        .layer(middleware::from_fn_with_state(state.clone(), tenant_guard));
    Router::new()
        .nest("/api/v1", api)
        .nest("/api/v1/{tenant}", tenant_api)
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        // Webhooks take no bearer token: the key in the path is the secret
        // (see `engine::webhook`).
        .route(
            "/api/v1/executions/webhook/{namespace}/{flow_id}/{key}",
            any(triggers::webhook),
        )
        .route(
            "/api/v1/executions/webhook/{namespace}/{flow_id}/{key}/{*path}",
            any(triggers::webhook),
        )
        .route(
            "/api/v1/{tenant}/executions/webhook/{namespace}/{flow_id}/{key}",
            any(triggers::webhook),
        )
        .route(
            "/api/v1/{tenant}/executions/webhook/{namespace}/{flow_id}/{key}/{*path}",
            any(triggers::webhook),
        )
        // Task pods' file transfer: the attempt's token is the credential.
        .merge(attempts::routes())
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .with_state(state)
}

/// The metrics listener's application: `/metrics` and `/healthz` only, for
/// a port the Ingress does not route (`ATOLL_METRICS_LISTEN`).
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

async fn count_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let class = format!("{}xx", response.status().as_u16() / 100);
    state
        .metrics
        .http_requests
        .get_or_create(&StatusLabel { status: class })
        .inc();
    response
}

/// Kestra's tenant path segment must name this instance's tenant; any other
/// answers 404 as an unknown path would.
async fn tenant_guard(
    State(state): State<AppState>,
    Path(params): Path<std::collections::HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    match params.get("tenant") {
        Some(tenant) if *tenant == state.tenant => next.run(request).await,
        _ => ApiError::NotFound("no such endpoint".into()).into_response(),
    }
}

/// Verifies the bearer token once and leaves the caller in the request for
/// the role extractors ([`Viewer`], [`Editor`]).
async fn authenticate(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let principal = match &state.verifier {
        None => Principal {
            subject: "local".into(),
            role: Role::Admin,
        },
        Some(verifier) => {
            let token = request
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            let Some(token) = token else {
                return ApiError::Unauthorized.into_response();
            };
            match verifier.verify(token).await {
                Ok(principal) => principal,
                Err(AuthError::KeysUnavailable) => {
                    tracing::warn!("no identity keys yet; refusing the token");
                    return ApiError::Unauthorized.into_response();
                }
                Err(err) => {
                    tracing::debug!(reason = %err, "token refused");
                    return ApiError::Unauthorized.into_response();
                }
            }
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.engine.ping().await {
        Ok(()) => "ready".into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "database not reachable");
            ApiError::Unavailable.into_response()
        }
    }
}

/// The request body, at most [`MAX_BODY_BYTES`].
async fn read_body(body: Body) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)
}

fn body_text(bytes: &[u8]) -> ApiResult<&str> {
    std::str::from_utf8(bytes)
        .map_err(|_| ApiError::bad_request("invalidBody", "the body must be UTF-8 text"))
}

fn is_multipart(request: &Request) -> bool {
    request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"))
}
