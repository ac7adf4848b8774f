//! The REST API, shaped like Kestra's, under `/api/v1` and under Kestra's
//! tenant segment `/api/v1/{tenant}` (answered only for this instance's
//! tenant). Operational endpoints `/healthz` and `/readyz` sit at the root
//! without authentication; `/metrics` and the activity report `/activity`
//! are served only by [`metrics_app`], on a separate listener the Ingress
//! does not route.
//!
//! One file per resource (`flows`, `transfer` for import and export,
//! `executions`, `logs`, `triggers` with the webhooks, `metrics`); the
//! caller's role and the path segments are checked by the extractors in
//! `extract`, and handlers reach data only through the engine.

mod activity;
pub mod attempts;
mod authn;
mod body;
mod bulk;
mod error;
mod execution_actions;
mod execution_discovery;
mod executions;
mod extract;
mod files;
mod flow_tools;
mod flows;
mod flows_bulk;
mod inputs;
mod kestra_shape;
mod kv;
mod kv_search;
mod logs;
mod metrics;
mod namespace_files;
mod namespace_files_ops;
pub mod openapi;
mod query;
mod query_filters;
mod transfer;
mod trigger_actions;
mod triggers;
mod unimplemented;

use std::sync::Arc;

use aide::axum::ApiRouter;
use aide::axum::routing::{delete, delete_with, get, get_with, post, post_with, put_with};
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get as get_plain;
use axum::{Json, Router};

pub use activity::Activity;
pub use authn::authenticate_page;
pub use error::ApiError;
use error::ApiResult;
pub use extract::{Editor, ExecutionId, FlowKey, Viewer};
pub use metrics::{Metrics, StateLabel, StatusLabel};
use openapi::{Routes, describe};
pub use unimplemented::{TABLE as UNIMPLEMENTED, Unimplemented};
// What the web UI (`crate::ui`) reuses of the API.
pub(crate) use bulk::{BulkAnswer, bulk_by_name};
pub(crate) use flows::visible_source;
pub(crate) use inputs::{form_pairs, parse_labels};

use crate::auth::Verifier;
use crate::engine::Engine;
use crate::flow;

/// Largest request body accepted (flows are at most this big too).
pub const MAX_BODY_BYTES: usize = flow::MAX_SOURCE_BYTES;

/// A search's answer: one page of `results` and how many there are in all.
#[derive(Debug, serde::Serialize, schemars::JsonSchema)]
#[schemars(rename = "PageOf{T}")]
pub struct Page<T> {
    pub results: Vec<T>,
    pub total: u64,
}

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
    /// Browser sign-in and sessions; `None` without authentication or
    /// without a public URL (then only bearer tokens are taken).
    pub sessions: Option<Arc<crate::session::Sessions>>,
    /// When the instance started and last served a user (`/activity`).
    pub activity: Arc<Activity>,
}

/// The routes under `/api/v1` that need a token. Handlers join with
/// `.route(path, get(handler))`: `get`, `post`… are aide's, so the route
/// is in the OpenAPI document (see `openapi`); `*_with` variants describe
/// what aide cannot read from the types (`openapi::describe`).
pub fn api_routes() -> Routes {
    let routes = Routes::new()
        .route(
            "/flows",
            post_with(flows::create_flow, describe::flow_source),
        )
        .route("/flows/search", get(flows::search_flows))
        .route(
            "/flows/delete/by-ids",
            delete_with(
                flows_bulk::delete_by_ids,
                describe::json_body::<Vec<flows_bulk::IdWithNamespace>>,
            ),
        )
        .route(
            "/flows/export/by-query",
            get_with(transfer::export_flows, describe::tar_download),
        )
        .route(
            "/flows/import",
            post_with(transfer::import_flows, describe::import),
        )
        .route(
            "/flows/validate",
            post_with(flow_tools::validate_flows, describe::flow_sources),
        )
        .route(
            "/flows/validate/task",
            post_with(flow_tools::validate_task, describe::plugin_object),
        )
        .route(
            "/flows/validate/trigger",
            post_with(flow_tools::validate_trigger, describe::plugin_object),
        )
        .route(
            "/flows/graph",
            post_with(flow_tools::graph_from_source, describe::flow_source),
        )
        .route(
            "/flows/distinct-namespaces",
            get(flow_tools::distinct_namespaces),
        )
        .route(
            "/flows/{namespace}/{id}/graph",
            get(flow_tools::stored_graph),
        )
        .route(
            "/flows/{namespace}/{id}/tasks/{task_id}",
            get(flow_tools::flow_task),
        )
        .route("/flows/{namespace}", get(flows::list_namespace))
        .route(
            "/flows/{namespace}/{id}",
            get(flows::get_flow)
                .put_with(flows::update_flow, describe::flow_source)
                .delete_with(flows::delete_flow, describe::no_content),
        )
        .route(
            "/flows/{namespace}/{id}/revisions",
            get(flows::flow_revisions),
        )
        .route(
            "/executions/search",
            get_with(executions::search_executions, describe::label_filter),
        )
        .route(
            "/executions/{namespace}/{flow_id}",
            // File parts are limited one by one (inputs::MAX_FILE_BYTES).
            post_with(executions::create_execution, |t| {
                describe::label_filter(describe::inputs(t))
            })
            .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/executions/{id}/file",
            get_with(files::download, describe::download),
        )
        .route("/executions/{id}/file/metas", get(files::metas))
        .route(
            "/namespaces/{namespace}/files/directory",
            get(namespace_files::list_directory)
                .post_with(namespace_files::create_directory, describe::ok_empty),
        )
        .route(
            "/namespaces/{namespace}/files",
            get_with(namespace_files::download, describe::download)
                .post_with(namespace_files::upload, describe::upload)
                .put_with(namespace_files_ops::move_entry, describe::ok_empty)
                .delete_with(namespace_files::delete, describe::no_content)
                .layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/namespaces/{namespace}/files/stats",
            get(namespace_files_ops::stats),
        )
        .route(
            "/namespaces/{namespace}/files/revisions",
            get(namespace_files_ops::revisions),
        )
        .route(
            "/namespaces/{namespace}/files/search",
            get(namespace_files_ops::search),
        )
        .route(
            "/namespaces/{namespace}/files/export",
            get_with(namespace_files_ops::export, describe::download),
        )
        .route(
            "/executions/{id}",
            get(executions::get_execution)
                .delete_with(executions::delete_execution, describe::no_content),
        )
        .route(
            "/executions",
            get_with(executions::search_executions, describe::label_filter),
        )
        .route(
            "/executions/{id}/follow",
            get_with(executions::follow_execution, describe::event_stream),
        )
        .route(
            "/executions/latest",
            post_with(
                execution_discovery::latest_executions,
                describe::json_body::<Vec<execution_discovery::FlowFilter>>,
            ),
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
        .route("/triggers/search", get(trigger_actions::search))
        .route(
            "/triggers/set-disabled",
            put_with(
                trigger_actions::set_disabled,
                describe::json_body::<trigger_actions::SetDisabled>,
            ),
        )
        .route(
            "/triggers/set-disabled/by-triggers",
            post_with(
                trigger_actions::set_disabled_by_triggers,
                describe::json_body::<trigger_actions::SetDisabledMany>,
            ),
        )
        .route(
            "/triggers/set-disabled/by-query",
            post(trigger_actions::set_disabled_by_query),
        )
        .route(
            "/triggers/unlock/by-triggers",
            post_with(
                trigger_actions::unlock_by_triggers,
                describe::json_body::<Vec<trigger_actions::TriggerRef>>,
            ),
        )
        .route(
            "/triggers/unlock/by-query",
            post(trigger_actions::unlock_by_query),
        )
        .route(
            "/triggers/delete/by-triggers",
            delete_with(
                trigger_actions::delete_by_triggers,
                describe::json_body::<Vec<trigger_actions::TriggerRef>>,
            ),
        )
        .route(
            "/triggers/delete/by-query",
            delete(trigger_actions::delete_by_query),
        )
        .route(
            "/triggers/backfill/create",
            put_with(
                trigger_actions::create_backfill,
                describe::json_body::<trigger_actions::CreateBackfill>,
            ),
        )
        .route(
            "/triggers/backfill/pause",
            put_with(
                trigger_actions::pause_backfill,
                describe::json_body::<trigger_actions::TriggerRef>,
            ),
        )
        .route(
            "/triggers/backfill/unpause",
            put_with(
                trigger_actions::unpause_backfill,
                describe::json_body::<trigger_actions::TriggerRef>,
            ),
        )
        .route(
            "/triggers/backfill/delete",
            post_with(
                trigger_actions::delete_backfill,
                describe::json_body::<trigger_actions::TriggerRef>,
            ),
        )
        .route(
            "/triggers/backfill/pause/by-triggers",
            post_with(
                trigger_actions::pause_backfill_by_triggers,
                describe::json_body::<Vec<trigger_actions::TriggerRef>>,
            ),
        )
        .route(
            "/triggers/backfill/pause/by-query",
            post(trigger_actions::pause_backfill_by_query),
        )
        .route(
            "/triggers/backfill/unpause/by-triggers",
            post_with(
                trigger_actions::unpause_backfill_by_triggers,
                describe::json_body::<Vec<trigger_actions::TriggerRef>>,
            ),
        )
        .route(
            "/triggers/backfill/unpause/by-query",
            post(trigger_actions::unpause_backfill_by_query),
        )
        .route(
            "/triggers/backfill/delete/by-triggers",
            post_with(
                trigger_actions::delete_backfill_by_triggers,
                describe::json_body::<Vec<trigger_actions::TriggerRef>>,
            ),
        )
        .route(
            "/triggers/backfill/delete/by-query",
            post(trigger_actions::delete_backfill_by_query),
        )
        .route(
            "/triggers/{namespace}/{flow_id}",
            get(trigger_actions::search_for_flow),
        )
        .route(
            "/triggers/{namespace}/{flow_id}/{trigger_id}",
            delete_with(trigger_actions::delete, describe::no_content),
        )
        .route(
            "/triggers/{namespace}/{flow_id}/{trigger_id}/unlock",
            post(trigger_actions::unlock),
        )
        .route(
            "/triggers/{namespace}/{flow_id}/{trigger_id}/restart",
            post(trigger_actions::restart),
        )
        .route(
            "/logs/{execution_id}",
            get_with(logs::execution_logs, describe::log_page),
        )
        .route(
            "/logs/{execution_id}/follow",
            get_with(logs::follow_logs, describe::event_stream),
        )
        .route(
            "/logs/{execution_id}/download",
            get_with(logs::download_logs, describe::text_download),
        )
        .route("/kv", get(kv_search::search))
        .route(
            "/namespaces/{namespace}/kv",
            get(kv::list).delete_with(
                kv::delete_bulk,
                describe::optional_json_body::<kv::DeleteBulkRequest>,
            ),
        )
        .route("/namespaces/{namespace}/kv/inheritance", get(kv::inherited))
        .route(
            "/namespaces/{namespace}/kv/{key}",
            get(kv::get)
                .put_with(kv::put, describe::kv_value)
                .delete(kv::delete),
        );
    let routes = bulk::routes(routes);
    let routes = execution_action_routes(routes, "/executions/{id}");
    execution_action_routes(routes, "/executions/{id}/actions")
}

/// What is done to a started execution, under `base`: Kestra 1.x's
/// `/executions/{id}` and 2.x's `/executions/{id}/actions`.
fn execution_action_routes(routes: Routes, base: &str) -> Routes {
    use execution_actions as a;
    routes
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
            post_with(a::kill_execution, describe::kill)
                .delete_with(a::kill_execution, describe::kill),
        )
        .route(
            &format!("{base}/labels"),
            post_with(a::set_labels, describe::json_body::<Vec<a::LabelBody>>),
        )
        .route(&format!("{base}/change-status"), post(a::change_status))
        .route(
            &format!("{base}/eval"),
            post_with(a::eval_expression, describe::expression),
        )
}

/// Routes with their full path and no token: the webhooks, where the key
/// in the path is the secret (see `engine::webhook`). Kestra calls them
/// with GET, POST or PUT.
pub fn public_routes() -> ApiRouter<AppState> {
    let webhook = || {
        get_with(triggers::webhook, describe::webhook)
            .post_with(triggers::webhook, describe::webhook)
            .put_with(triggers::webhook, describe::webhook)
    };
    ApiRouter::new()
        .api_route(
            "/api/v1/executions/webhook/{namespace}/{flow_id}/{key}",
            webhook(),
        )
        .api_route(
            "/api/v1/{tenant}/executions/webhook/{namespace}/{flow_id}/{key}",
            webhook(),
        )
        .api_route(
            "/api/v1/executions/webhook/{namespace}/{flow_id}/{key}/{*path}",
            webhook(),
        )
        .api_route(
            "/api/v1/{tenant}/executions/webhook/{namespace}/{flow_id}/{key}/{*path}",
            webhook(),
        )
}

/// The OpenAPI document of [`api_routes`] and [`public_routes`].
pub fn openapi_document() -> serde_json::Value {
    openapi::document(api_routes().into_router(), public_routes())
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let document = Arc::new(openapi_document());
    let api: Router<AppState> = api_routes()
        .into_router()
        .merge(unimplemented::routes())
        .into();
    let tenant_api = api
        .clone()
        .layer(middleware::from_fn_with_state(state.clone(), tenant_guard));
    let tenant_document = document.clone();
    Router::new()
        .nest("/api/v1", api)
        .nest("/api/v1/{tenant}", tenant_api)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            authn::authenticate,
        ))
        .layer(middleware::from_fn(harden_api_response))
        // The web UI: the API's authentication, but a browser without a
        // session is sent to sign in.
        .merge(crate::ui::routes().layer(middleware::from_fn_with_state(
            state.clone(),
            authenticate_page,
        )))
        .merge(Router::from(public_routes()))
        .merge(crate::session::routes())
        // The document describes routes and holds nothing of the tenant:
        // served without a token, so tools can read it before they have one.
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || async move { Json(document.as_ref().clone()) }),
        )
        .route(
            "/api/v1/{tenant}/openapi.json",
            axum::routing::get(
                move |State(state): State<AppState>, Path(tenant): Path<String>| async move {
                    if tenant == state.tenant {
                        Json(tenant_document.as_ref().clone()).into_response()
                    } else {
                        ApiError::NotFound("no such endpoint".into()).into_response()
                    }
                },
            ),
        )
        // Task pods' file transfer: the attempt's token is the credential.
        // Not in the document: only task pods call them.
        .merge(attempts::routes())
        .route("/healthz", get_plain(|| async { "ok" }))
        .route("/readyz", get_plain(readyz))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_requests,
        ))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            activity::record_request,
        ))
        .with_state(state)
}

/// The metrics listener's application: `/metrics`, the activity report
/// (`/activity`, see `activity`) and `/healthz` only, for a port the
/// Ingress does not route (`ATOLL_METRICS_LISTEN`).
pub fn metrics_app(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get_plain(metrics::metrics))
        .route(
            atoll_crds::contract::ACTIVITY_PATH,
            get_plain(activity::activity),
        )
        .route("/healthz", get_plain(|| async { "ok" }))
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .with_state(state)
}

/// What the API answers is data, never a page: a browser that opens a
/// download or a log (with the session cookie, which the API accepts too)
/// must not sniff it into HTML nor run any script it holds, so every API
/// answer carries `X-Content-Type-Options: nosniff` and a sandboxing
/// Content-Security-Policy (which JSON clients ignore).
async fn harden_api_response(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    headers
        .entry(header::CONTENT_SECURITY_POLICY)
        .or_insert(header::HeaderValue::from_static(
            "sandbox; default-src 'none'; frame-ancestors 'none'",
        ));
    response
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
