//! The REST API, shaped like Kestra's, under `/api/v1` and under Kestra's
//! tenant segment `/api/v1/{tenant}` (answered only for this instance's
//! tenant). Operational endpoints `/healthz` and `/readyz` sit at the root
//! without authentication; `/metrics` is served only by [`metrics_app`], on
//! a separate listener the Ingress does not route.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::FromRequest;
use axum::extract::{Path, Query, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Extension, Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::{AuthError, Principal, Role, Verifier};
use crate::engine::{Engine, EngineError, RerunError, WebhookRequest};
use crate::execution::{Execution, LogEntry, State as ExecState};
use crate::flow::{self, FlowError, Label, archive};
use crate::store::{ExecutionFilter, FlowRecord, MAX_LABEL_FILTERS, Repository, StoreError};

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
}

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
            "Executions created",
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

/// The JSON error every failing call answers: `{"message", "status", "code"}`
/// plus `details` for refused flows. Internal failures are logged, not echoed.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    NotFound(String),
    Conflict(String),
    BadRequest {
        code: &'static str,
        message: String,
        details: Vec<Value>,
    },
    PayloadTooLarge,
    Internal(String),
    Unavailable,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token for this tenant is required".to_owned(),
                Vec::new(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "your role does not allow this".to_owned(),
                Vec::new(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "notFound", m, Vec::new()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, Vec::new()),
            ApiError::BadRequest {
                code,
                message,
                details,
            } => (StatusCode::BAD_REQUEST, code, message, details),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payloadTooLarge",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                Vec::new(),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                    Vec::new(),
                )
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "not ready".to_owned(),
                Vec::new(),
            ),
        };
        let mut body = json!({"message": message, "status": status.as_u16(), "code": code});
        if !details.is_empty() {
            body["details"] = Value::Array(details);
        }
        (status, Json(body)).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl From<FlowError> for ApiError {
    fn from(err: FlowError) -> Self {
        let details = match &err {
            FlowError::Yaml {
                line,
                column,
                message,
            } => vec![json!({"line": line, "column": column, "message": message})],
            FlowError::Invalid { problems } => problems
                .iter()
                .map(|p| {
                    json!({"path": p.path, "task": p.task, "kind": p.kind.as_str(), "message": p.to_string()})
                })
                .collect(),
        };
        ApiError::BadRequest {
            code: "invalidFlow",
            message: err.to_string(),
            details,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::FlowNotFound { .. } | EngineError::ExecutionNotFound(_) => {
                ApiError::NotFound(err.to_string())
            }
            EngineError::FlowDisabled { .. }
            | EngineError::NotPaused(_)
            | EngineError::Busy(_)
            | EngineError::Rerun(RerunError::NotEnded(_) | RerunError::NotFailed(_)) => {
                ApiError::Conflict(err.to_string())
            }
            EngineError::Rerun(RerunError::NoTaskRun { .. }) => ApiError::NotFound(err.to_string()),
            EngineError::Inputs(e) => ApiError::BadRequest {
                code: "invalidInputs",
                message: e.to_string(),
                details: Vec::new(),
            },
            other => ApiError::Internal(other.to_string()),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    let api = Router::new()
        .route("/flows", post(create_flow))
        .route("/flows/search", get(search_flows))
        .route("/flows/export/by-query", get(export_flows))
        .route("/flows/import", post(import_flows))
        .route("/flows/{namespace}", get(list_namespace))
        .route(
            "/flows/{namespace}/{id}",
            get(get_flow).put(update_flow).delete(delete_flow),
        )
        .route("/flows/{namespace}/{id}/revisions", get(flow_revisions))
        .route("/executions/search", get(search_executions))
        .route("/executions/{namespace}/{flow_id}", post(create_execution))
        .route(
            "/executions/{id}",
            get(get_execution).delete(delete_execution),
        )
        .route("/executions/{id}/restart", post(restart_execution))
        .route("/executions/{id}/replay", post(replay_execution))
        .route("/executions/{id}/resume", post(resume_execution))
        .route(
            "/executions/{id}/kill",
            post(kill_execution).delete(kill_execution),
        )
        .route("/triggers/search", get(search_triggers))
        .route("/logs/{execution_id}", get(execution_logs))
        .route("/logs/{execution_id}/follow", get(follow_logs));
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
            any(webhook),
        )
        .route(
            "/api/v1/{tenant}/executions/webhook/{namespace}/{flow_id}/{key}",
            any(tenant_webhook),
        )
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
        .route("/metrics", get(metrics))
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

fn require(principal: &Principal, role: Role) -> ApiResult<()> {
    if principal.role >= role {
        Ok(())
    } else {
        Err(ApiError::Forbidden)
    }
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.engine.store().ping().await {
        Ok(()) => "ready".into_response(),
        Err(err) => {
            tracing::warn!(error = %err, "database not reachable");
            ApiError::Unavailable.into_response()
        }
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
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

async fn read_body(body: Body) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge)
}

fn body_text(bytes: &[u8]) -> ApiResult<&str> {
    std::str::from_utf8(bytes).map_err(|_| ApiError::BadRequest {
        code: "invalidBody",
        message: "the body must be UTF-8 text".into(),
        details: Vec::new(),
    })
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct FlowView {
    id: String,
    namespace: String,
    revision: i64,
    source: String,
    deleted: bool,
    updated: String,
}

impl From<FlowRecord> for FlowView {
    fn from(r: FlowRecord) -> Self {
        FlowView {
            id: r.id,
            namespace: r.namespace,
            revision: r.revision,
            source: r.source,
            deleted: r.deleted,
            updated: r.updated.to_string(),
        }
    }
}

/// The source as `principal` may read it: Viewers get the webhook keys
/// redacted (a key is enough to start the flow, which Viewers may not).
fn visible_source(source: String, principal: &Principal) -> String {
    if principal.role >= Role::Editor {
        source
    } else {
        flow::redact_webhook_keys(&source)
    }
}

fn flow_view(record: FlowRecord, principal: &Principal) -> FlowView {
    let mut view = FlowView::from(record);
    view.source = visible_source(view.source, principal);
    view
}

fn check_path(namespace: &str, id: Option<&str>) -> ApiResult<()> {
    let id_ok = id.is_none_or(flow::is_valid_flow_id);
    if flow::is_valid_namespace(namespace) && id_ok {
        Ok(())
    } else {
        Err(ApiError::NotFound("no such flow".into()))
    }
}

async fn create_flow(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    body: Body,
) -> ApiResult<Response> {
    require(&principal, Role::Editor)?;
    let bytes = read_body(body).await?;
    let source = body_text(&bytes)?;
    let parsed = flow::parse(source)?;
    let store = state.engine.store();
    if store
        .get_flow(&parsed.namespace, &parsed.id, None)
        .await?
        .is_some()
    {
        return Err(ApiError::Conflict(format!(
            "flow {}/{} already exists; update it with PUT",
            parsed.namespace, parsed.id
        )));
    }
    let record = store
        .save_flow(&parsed.namespace, &parsed.id, source)
        .await?;
    state.engine.flows_changed();
    Ok((StatusCode::OK, Json(FlowView::from(record))).into_response())
}

#[derive(Debug, Deserialize)]
struct FlowPath {
    namespace: String,
    id: String,
}

async fn update_flow(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<FlowPath>,
    body: Body,
) -> ApiResult<Json<FlowView>> {
    require(&principal, Role::Editor)?;
    check_path(&path.namespace, Some(&path.id))?;
    let bytes = read_body(body).await?;
    let source = body_text(&bytes)?;
    let parsed = flow::parse(source)?;
    if parsed.namespace != path.namespace || parsed.id != path.id {
        return Err(ApiError::BadRequest {
            code: "invalidFlow",
            message: "the flow's namespace and id must match the URL".into(),
            details: Vec::new(),
        });
    }
    let store = state.engine.store();
    if store
        .get_flow(&path.namespace, &path.id, None)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("no such flow".into()));
    }
    let record = store.save_flow(&path.namespace, &path.id, source).await?;
    state.engine.flows_changed();
    Ok(Json(record.into()))
}

#[derive(Debug, Deserialize)]
struct RevisionQuery {
    revision: Option<i64>,
}

async fn get_flow(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<FlowPath>,
    Query(query): Query<RevisionQuery>,
) -> ApiResult<Json<FlowView>> {
    require(&principal, Role::Viewer)?;
    check_path(&path.namespace, Some(&path.id))?;
    let record = state
        .engine
        .store()
        .get_flow(&path.namespace, &path.id, query.revision)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such flow".into()))?;
    Ok(Json(flow_view(record, &principal)))
}

async fn flow_revisions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<FlowPath>,
) -> ApiResult<Json<Vec<FlowView>>> {
    require(&principal, Role::Viewer)?;
    check_path(&path.namespace, Some(&path.id))?;
    let revisions = state
        .engine
        .store()
        .flow_revisions(&path.namespace, &path.id)
        .await?;
    if revisions.is_empty() {
        return Err(ApiError::NotFound("no such flow".into()));
    }
    Ok(Json(
        revisions
            .into_iter()
            .map(|r| flow_view(r, &principal))
            .collect(),
    ))
}

async fn delete_flow(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<FlowPath>,
) -> ApiResult<StatusCode> {
    require(&principal, Role::Editor)?;
    check_path(&path.namespace, Some(&path.id))?;
    if state
        .engine
        .store()
        .delete_flow(&path.namespace, &path.id)
        .await?
    {
        state.engine.flows_changed();
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such flow".into()))
    }
}

#[derive(Debug, Deserialize)]
struct NamespacePath {
    namespace: String,
}

async fn list_namespace(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<NamespacePath>,
) -> ApiResult<Json<Vec<FlowView>>> {
    require(&principal, Role::Viewer)?;
    check_path(&path.namespace, None)?;
    let flows = state
        .engine
        .store()
        .list_flows(Some(&path.namespace))
        .await?;
    Ok(Json(
        flows
            .into_iter()
            .map(|f| flow_view(f, &principal))
            .collect(),
    ))
}

#[derive(Debug, Deserialize)]
struct FlowSearch {
    namespace: Option<String>,
}

async fn search_flows(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<FlowSearch>,
) -> ApiResult<Json<Value>> {
    require(&principal, Role::Viewer)?;
    if let Some(ns) = &query.namespace {
        check_path(ns, None)?;
    }
    let flows = state
        .engine
        .store()
        .list_flows(query.namespace.as_deref())
        .await?;
    let total = flows.len();
    let results: Vec<FlowView> = flows
        .into_iter()
        .map(|f| flow_view(f, &principal))
        .collect();
    Ok(Json(json!({"results": results, "total": total})))
}

/// Triggers with their next run time and last execution (Kestra's
/// `/triggers/search`).
async fn search_triggers(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<FlowSearch>,
) -> ApiResult<Json<Value>> {
    require(&principal, Role::Viewer)?;
    if let Some(ns) = &query.namespace {
        check_path(ns, None)?;
    }
    let triggers = state.engine.triggers(query.namespace.as_deref()).await?;
    let total = triggers.len();
    Ok(Json(json!({"results": triggers, "total": total})))
}

/// Largest import accepted (an archive of many flows).
const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
struct ExportQuery {
    namespace: String,
}

/// The namespace's flows (and those below it) as a tar archive of
/// `<namespace>/<id>.yml` files holding each flow's source as saved (with
/// the webhook keys redacted for Viewers).
async fn export_flows(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ExportQuery>,
) -> ApiResult<Response> {
    require(&principal, Role::Viewer)?;
    check_path(&query.namespace, None)?;
    let flows = state
        .engine
        .store()
        .list_flows(Some(&query.namespace))
        .await?;
    let files: Vec<archive::ArchiveFile> = flows
        .into_iter()
        .map(|f| archive::ArchiveFile {
            path: format!("{}/{}.yml", f.namespace, f.id),
            text: visible_source(f.source, &principal),
        })
        .collect();
    let tar = archive::write_tar(&files, jiff::Timestamp::now().as_second());
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.tar\"", query.namespace),
            ),
        ],
        tar,
    )
        .into_response())
}

/// Flow sources from an import body: a tar archive (its .yml/.yaml files),
/// or YAML text with one or several flows; either may come as the file of
/// a multipart form (Kestra's `fileUpload`).
async fn import_sources(request: Request) -> ApiResult<Vec<(String, String)>> {
    let invalid = |message: String| ApiError::BadRequest {
        code: "invalidImport",
        message,
        details: Vec::new(),
    };
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let mut uploads: Vec<(String, Vec<u8>)> = Vec::new();
    if is_multipart {
        let mut multipart = axum::extract::Multipart::from_request(request, &())
            .await
            .map_err(|_| invalid("the multipart body is not valid".into()))?;
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|_| invalid("the multipart body is not valid".into()))?
        {
            let name = field
                .file_name()
                .or(field.name())
                .unwrap_or("upload")
                .to_owned();
            let bytes = field
                .bytes()
                .await
                .map_err(|_| invalid("a multipart field could not be read".into()))?;
            uploads.push((name, bytes.to_vec()));
        }
    } else {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_IMPORT_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        uploads.push(("body".into(), bytes.to_vec()));
    }
    let mut sources = Vec::new();
    for (name, bytes) in uploads {
        let is_tar = bytes.get(257..262) == Some(b"ustar");
        if is_tar {
            let files = archive::read_tar(&bytes).map_err(|e| invalid(e.to_string()))?;
            for file in files.into_iter().filter(|f| archive::is_flow_file(&f.path)) {
                for (i, doc) in archive::split_documents(&file.text).into_iter().enumerate() {
                    sources.push((format!("{}#{i}", file.path), doc));
                }
            }
        } else {
            let text = String::from_utf8(bytes).map_err(|_| {
                invalid(format!("`{name}` is neither a tar archive nor UTF-8 YAML"))
            })?;
            for (i, doc) in archive::split_documents(&text).into_iter().enumerate() {
                sources.push((format!("{name}#{i}"), doc));
            }
        }
    }
    Ok(sources)
}

/// Imports flows: every one is checked first and nothing is stored unless
/// all are valid; each then becomes the flow's next revision (unchanged
/// flows keep theirs).
async fn import_flows(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    request: Request,
) -> ApiResult<Json<Value>> {
    require(&principal, Role::Editor)?;
    let sources = import_sources(request).await?;
    if sources.is_empty() {
        return Err(ApiError::BadRequest {
            code: "invalidImport",
            message: "no flow found in the upload".into(),
            details: Vec::new(),
        });
    }
    let mut parsed = Vec::new();
    let mut details = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (file, source) in &sources {
        match flow::parse(source) {
            Ok(flow) => {
                if !seen.insert((flow.namespace.clone(), flow.id.clone())) {
                    details.push(json!({"file": file, "message": format!("flow {}/{} appears twice", flow.namespace, flow.id)}));
                }
                parsed.push((flow, source));
            }
            Err(err) => details.push(json!({"file": file, "message": err.to_string()})),
        }
    }
    if !details.is_empty() {
        return Err(ApiError::BadRequest {
            code: "invalidFlow",
            message: format!(
                "{} of {} flows are not valid; nothing was imported",
                details.len(),
                sources.len()
            ),
            details,
        });
    }
    let store = state.engine.store();
    let mut imported = Vec::new();
    for (flow, source) in parsed {
        let record = store.save_flow(&flow.namespace, &flow.id, source).await?;
        imported.push(
            json!({"namespace": record.namespace, "id": record.id, "revision": record.revision}),
        );
    }
    state.engine.flows_changed();
    let total = imported.len();
    Ok(Json(json!({"imported": imported, "total": total})))
}

#[derive(Debug, Deserialize)]
struct ExecutionPath {
    namespace: String,
    flow_id: String,
}

#[derive(Debug, Deserialize)]
struct RunQuery {
    #[serde(default)]
    wait: bool,
    /// `key:value` labels, comma-separated.
    labels: Option<String>,
}

/// Inputs arrive as a JSON object or as a URL-encoded form (values are
/// strings, as Kestra's API receives them).
fn parse_inputs(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let invalid = |message: &str| ApiError::BadRequest {
        code: "invalidInputs",
        message: message.into(),
        details: Vec::new(),
    };
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs: Vec<(String, String)> =
            serde_urlencoded_pairs(bytes).ok_or_else(|| invalid("the form body is not valid"))?;
        return Ok(pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect());
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid("inputs must be a JSON object")),
    }
}

fn serde_urlencoded_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let url = reqwest::Url::parse(&format!("http://form.invalid/?{text}")).ok()?;
    Some(url.query_pairs().into_owned().collect())
}

fn parse_labels(text: Option<&str>) -> ApiResult<Vec<Label>> {
    let mut labels = Vec::new();
    for item in text
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (key, value) = item.split_once(':').ok_or_else(|| ApiError::BadRequest {
            code: "invalidLabels",
            message: "labels are written key:value".into(),
            details: Vec::new(),
        })?;
        labels.push(Label {
            key: key.into(),
            value: value.into(),
        });
    }
    Ok(labels)
}

/// How long `wait=true` waits before answering with the running execution.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// Kestra's clients send inputs as multipart/form-data text fields.
async fn multipart_inputs(request: Request) -> ApiResult<Map<String, Value>> {
    let invalid = |message: &str| ApiError::BadRequest {
        code: "invalidInputs",
        message: message.into(),
        details: Vec::new(),
    };
    let mut multipart = axum::extract::Multipart::from_request(request, &())
        .await
        .map_err(|_| invalid("the multipart body is not valid"))?;
    let mut inputs = Map::new();
    let mut total = 0usize;
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|_| invalid("the multipart body is not valid"))?
    {
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        if field.file_name().is_some() {
            return Err(invalid("file inputs are not supported"));
        }
        let value = field
            .text()
            .await
            .map_err(|_| invalid("a multipart field is not valid text"))?;
        total += value.len();
        if total > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        inputs.insert(name, Value::String(value));
    }
    Ok(inputs)
}

/// Inputs from a JSON object, a URL-encoded form or multipart/form-data.
async fn request_inputs(request: Request) -> ApiResult<Map<String, Value>> {
    let is_multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if is_multipart {
        multipart_inputs(request).await
    } else {
        let headers = request.headers().clone();
        let bytes = read_body(request.into_body()).await?;
        parse_inputs(&headers, &bytes)
    }
}

/// Runs a FAILED or KILLED execution again from its failed task runs.
async fn restart_execution(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<IdPath>,
) -> ApiResult<Json<Execution>> {
    require(&principal, Role::Editor)?;
    check_id(&path.id)?;
    Ok(Json(state.engine.restart(&path.id).await?))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReplayQuery {
    task_run_id: String,
}

/// A new execution repeating an ended one from `taskRunId` on.
async fn replay_execution(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<IdPath>,
    Query(query): Query<ReplayQuery>,
) -> ApiResult<Json<Execution>> {
    require(&principal, Role::Editor)?;
    check_id(&path.id)?;
    check_id(&query.task_run_id)?;
    let replayed = state.engine.replay(&path.id, &query.task_run_id).await?;
    state.metrics.executions_started.inc();
    Ok(Json(replayed))
}

/// Deletes an ended execution and its logs.
async fn delete_execution(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<IdPath>,
) -> ApiResult<StatusCode> {
    require(&principal, Role::Editor)?;
    check_id(&path.id)?;
    match state.engine.store().delete_execution(&path.id).await? {
        Some(true) => Ok(StatusCode::NO_CONTENT),
        Some(false) => Err(ApiError::Conflict(
            "the execution has not ended; kill it first".into(),
        )),
        None => Err(ApiError::NotFound("no such execution".into())),
    }
}

/// Resumes a PAUSED execution, with optional `onResume` inputs.
async fn resume_execution(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<IdPath>,
    request: Request,
) -> ApiResult<Json<Execution>> {
    require(&principal, Role::Editor)?;
    check_id(&path.id)?;
    let inputs = request_inputs(request).await?;
    Ok(Json(state.engine.resume(&path.id, &inputs).await?))
}

async fn create_execution(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<ExecutionPath>,
    Query(query): Query<RunQuery>,
    request: Request,
) -> ApiResult<Json<Execution>> {
    require(&principal, Role::Editor)?;
    check_path(&path.namespace, Some(&path.flow_id))?;
    let inputs = request_inputs(request).await?;
    let labels = parse_labels(query.labels.as_deref())?;
    let execution = state
        .engine
        .start_execution(&path.namespace, &path.flow_id, &inputs, labels, None)
        .await?;
    state.metrics.executions_started.inc();
    if !query.wait {
        return Ok(Json(execution));
    }
    match state.engine.wait(&execution.id, WAIT_LIMIT).await {
        Ok(done) => Ok(Json(done)),
        Err(EngineError::Timeout(_)) => Ok(Json(
            state
                .engine
                .store()
                .get_execution(&execution.id)
                .await?
                .unwrap_or(execution),
        )),
        Err(err) => Err(err.into()),
    }
}

#[derive(Debug, Deserialize)]
struct WebhookPath {
    namespace: String,
    flow_id: String,
    key: String,
}

#[derive(Debug, Deserialize)]
struct TenantWebhookPath {
    tenant: String,
    namespace: String,
    flow_id: String,
    key: String,
}

async fn tenant_webhook(
    State(state): State<AppState>,
    Path(path): Path<TenantWebhookPath>,
    request: Request,
) -> ApiResult<Response> {
    if path.tenant != state.tenant {
        return Err(ApiError::NotFound("no such endpoint".into()));
    }
    let path = WebhookPath {
        namespace: path.namespace,
        flow_id: path.flow_id,
        key: path.key,
    };
    webhook(State(state), Path(path), request).await
}

/// Starts an execution from a webhook call (GET, POST, PUT…). A wrong key,
/// an unknown or disabled flow and a disabled trigger all answer the same 404.
async fn webhook(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
    request: Request,
) -> ApiResult<Response> {
    let not_found = || ApiError::NotFound("no such webhook".into());
    if check_path(&path.namespace, Some(&path.flow_id)).is_err() || path.key.len() > 256 {
        return Err(not_found());
    }
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let bytes = read_body(request.into_body()).await?;
    let parameters = serde_urlencoded_pairs(query.as_bytes()).unwrap_or_default();
    let request = WebhookRequest::new(
        &bytes,
        headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
        parameters,
    );
    let started = state
        .engine
        .webhook(&path.namespace, &path.flow_id, &path.key, request)
        .await?
        .ok_or_else(not_found)?;
    state.metrics.executions_started.inc();
    let execution = started.execution;
    if !started.trigger.wait {
        return Ok(Json(execution).into_response());
    }
    let done = match state.engine.wait(&execution.id, WAIT_LIMIT).await {
        Ok(done) => done,
        Err(EngineError::Timeout(_)) => state
            .engine
            .store()
            .get_execution(&execution.id)
            .await?
            .unwrap_or(execution),
        Err(err) => return Err(err.into()),
    };
    if started.trigger.return_outputs {
        let outputs = done.outputs.clone().unwrap_or_default();
        return Ok(Json(Value::Object(outputs)).into_response());
    }
    Ok(Json(done).into_response())
}

#[derive(Debug, Deserialize)]
struct IdPath {
    id: String,
}

fn check_id(id: &str) -> ApiResult<()> {
    if !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        Ok(())
    } else {
        Err(ApiError::NotFound("no such execution".into()))
    }
}

async fn get_execution(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<IdPath>,
) -> ApiResult<Json<Execution>> {
    require(&principal, Role::Viewer)?;
    check_id(&path.id)?;
    let execution = state
        .engine
        .store()
        .get_execution(&path.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such execution".into()))?;
    Ok(Json(execution))
}

async fn kill_execution(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<IdPath>,
) -> ApiResult<StatusCode> {
    require(&principal, Role::Editor)?;
    check_id(&path.id)?;
    if state.engine.kill(&path.id).await? {
        return Ok(StatusCode::ACCEPTED);
    }
    match state.engine.store().get_execution(&path.id).await? {
        Some(_) => Err(ApiError::Conflict("the execution has already ended".into())),
        None => Err(ApiError::NotFound("no such execution".into())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionSearch {
    namespace: Option<String>,
    flow_id: Option<String>,
    /// Comma-separated states.
    state: Option<String>,
    page: Option<u32>,
    size: Option<u32>,
}

async fn search_executions(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ExecutionSearch>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<Value>> {
    require(&principal, Role::Viewer)?;
    // `labels=key:value`, repeated or comma-separated.
    let mut labels = Vec::new();
    let pairs = serde_urlencoded_pairs(raw.unwrap_or_default().as_bytes()).unwrap_or_default();
    for (name, value) in pairs {
        if name == "labels" {
            labels.extend(parse_labels(Some(&value))?);
        }
    }
    if labels.len() > MAX_LABEL_FILTERS {
        return Err(ApiError::BadRequest {
            code: "invalidQuery",
            message: format!("at most {MAX_LABEL_FILTERS} labels can be searched at once"),
            details: Vec::new(),
        });
    }
    let mut states = Vec::new();
    for name in query.state.as_deref().unwrap_or_default().split(',') {
        if name.is_empty() {
            continue;
        }
        states.push(ExecState::parse(name).ok_or_else(|| ApiError::BadRequest {
            code: "invalidQuery",
            message: "unknown state".into(),
            details: Vec::new(),
        })?);
    }
    let size = query.size.unwrap_or(25).clamp(1, 500);
    let page = query.page.unwrap_or(1).max(1);
    let filter = ExecutionFilter {
        namespace: query.namespace,
        flow_id: query.flow_id,
        states,
        labels,
        limit: size,
        offset: (page - 1).saturating_mul(size),
    };
    let store = state.engine.store();
    let results = store.search_executions(&filter).await?;
    let total = store.count_executions(&filter).await?;
    Ok(Json(json!({"results": results, "total": total})))
}

#[derive(Debug, Deserialize)]
struct LogsPath {
    execution_id: String,
}

#[derive(Debug, Deserialize)]
struct LogsQuery {
    /// Only lines after this position (`seq`): the next page's start.
    after: Option<i64>,
    /// Most lines in the page (at most [`LOG_PAGE_SIZE`]).
    size: Option<u32>,
}

/// Most log lines in one page of `/logs/{executionId}`.
const LOG_PAGE_SIZE: u32 = 1000;
/// Most bytes of log messages in one page (a page holds at least one line).
const LOG_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Longest message in a page (lines are stored at most this long).
const LOG_MESSAGE_BYTES: usize = 64 * 1024;
/// Lines read from the store at a time while filling a page.
const LOG_READ_BATCH: u32 = 100;

/// The execution's log lines, in order, a bounded page at a time: at most
/// `size` lines and [`LOG_PAGE_BYTES`] of messages. When more lines
/// follow, a `Link: <…?after=<seq>&size=<n>>; rel="next"` header gives the
/// next page.
async fn execution_logs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<LogsPath>,
    Query(query): Query<LogsQuery>,
    axum::extract::OriginalUri(uri): axum::extract::OriginalUri,
) -> ApiResult<Response> {
    require(&principal, Role::Viewer)?;
    check_id(&path.execution_id)?;
    let store = state.engine.store();
    if store.get_execution(&path.execution_id).await?.is_none() {
        return Err(ApiError::NotFound("no such execution".into()));
    }
    let size = query.size.unwrap_or(LOG_PAGE_SIZE).clamp(1, LOG_PAGE_SIZE);
    let mut after = query.after.unwrap_or(0).max(0);
    let mut page: Vec<LogEntry> = Vec::new();
    let mut bytes = 0usize;
    let mut more = false;
    'fill: while page.len() < size as usize {
        let want = LOG_READ_BATCH.min(size - page.len() as u32);
        let batch = store.logs(&path.execution_id, after, want).await?;
        let exhausted = batch.len() < want as usize;
        for mut entry in batch {
            truncate_message(&mut entry.message);
            let cost = entry.message.len();
            if !page.is_empty() && bytes + cost > LOG_PAGE_BYTES {
                more = true;
                break 'fill;
            }
            bytes += cost;
            after = entry.seq;
            page.push(entry);
        }
        if exhausted {
            break;
        }
    }
    if !more && page.len() == size as usize {
        more = !store.logs(&path.execution_id, after, 1).await?.is_empty();
    }
    let mut response = Json(page).into_response();
    if more {
        let next = format!("<{}?after={after}&size={size}>; rel=\"next\"", uri.path());
        if let Ok(value) = header::HeaderValue::from_str(&next) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

fn truncate_message(message: &mut String) {
    if message.len() > LOG_MESSAGE_BYTES {
        let mut cut = LOG_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
}

/// Server-sent events: every log line of the execution, then the stream
/// ends once the execution has finished and its logs are all sent.
async fn follow_logs(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(path): Path<LogsPath>,
) -> ApiResult<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>> {
    require(&principal, Role::Viewer)?;
    check_id(&path.execution_id)?;
    if state
        .engine
        .store()
        .get_execution(&path.execution_id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("no such execution".into()));
    }
    struct Follow {
        engine: Engine,
        id: String,
        after: i64,
        pending: std::collections::VecDeque<LogEntry>,
        done: bool,
    }
    let start = Follow {
        engine: state.engine.clone(),
        id: path.execution_id,
        after: 0,
        pending: Default::default(),
        done: false,
    };
    let stream = futures::stream::unfold(start, |mut f| async move {
        loop {
            if let Some(entry) = f.pending.pop_front() {
                let event = Event::default()
                    .id(entry.seq.to_string())
                    .json_data(&entry)
                    .unwrap_or_default();
                return Some((Ok(event), f));
            }
            if f.done {
                return None;
            }
            let store = f.engine.store();
            // Read the state before the logs: logs written before the end are then all seen.
            let finished = match store.get_execution(&f.id).await {
                Ok(Some(e)) => e.state.current.is_terminal(),
                _ => true,
            };
            match store.logs(&f.id, f.after, 500).await {
                Ok(batch) if !batch.is_empty() => {
                    f.after = batch.last().map_or(f.after, |l| l.seq);
                    f.pending.extend(batch);
                }
                Ok(_) if finished => f.done = true,
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(_) => f.done = true,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}
