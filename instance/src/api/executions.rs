//! `/executions`: start, read, search, restart, replay, resume, kill and
//! delete executions.

use std::time::Duration;

use axum::Json;
use axum::extract::{Query, RawQuery, Request, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::Deserialize;

use super::extract::{Editor, ExecutionId, FlowKey, Viewer};
use super::inputs::{
    FileSink, form_pairs, parse_labels, request_inputs, request_inputs_with_files,
};
use super::{ApiError, ApiResult, AppState, Page};
use crate::engine::{Engine, EngineError};
use crate::execution::{Execution, State as ExecState};
use crate::storage::StoragePath;
use crate::store::{ExecutionFilter, MAX_LABEL_FILTERS};

/// How long `wait=true` waits before answering with the running execution.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

fn no_such_execution() -> ApiError {
    ApiError::NotFound("no such execution".into())
}

/// The execution once it has ended, or as it is after [`WAIT_LIMIT`].
pub(super) async fn ended_or_current(
    state: &AppState,
    execution: Execution,
) -> ApiResult<Execution> {
    match state.engine.wait(&execution.id, WAIT_LIMIT).await {
        Ok(done) => Ok(done),
        Err(EngineError::Timeout(_)) => Ok(state
            .engine
            .execution(&execution.id)
            .await?
            .unwrap_or(execution)),
        Err(err) => Err(err.into()),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct RunQuery {
    #[serde(default)]
    wait: bool,
    /// `key:value` labels, comma-separated.
    #[schemars(regex(pattern = r"^([^,:]*:[^,]*)?(,([^,:]*:[^,]*)?)*$"))]
    labels: Option<String>,
}

/// Starts an execution. File parts of a multipart body (FILE inputs) are
/// stored in the execution's storage first, under the id it will have;
/// they are removed again when it does not start.
pub(super) async fn create_execution(
    State(state): State<AppState>,
    Query(query): Query<RunQuery>,
    Editor(_): Editor,
    key: FlowKey,
    request: Request,
) -> ApiResult<Json<Execution>> {
    let labels = parse_labels(query.labels.as_deref())?;
    let id = Engine::new_execution_id();
    let mut files = FileSink {
        storage: state.engine.storage(),
        execution: StoragePath::execution(&key.namespace, &key.id, &id)?,
        stored: Vec::new(),
    };
    let started = match request_inputs_with_files(request, Some(&mut files)).await {
        Ok(inputs) => state
            .engine
            .start_execution_with_id(&key.namespace, &key.id, id, &inputs, labels, None)
            .await
            .map_err(ApiError::from),
        Err(err) => Err(err),
    };
    let execution = match started {
        Ok(execution) => execution,
        Err(err) => {
            if !files.stored.is_empty()
                && let Err(e) = files.storage.delete_prefix(&files.execution).await
            {
                tracing::warn!(error = %e, "removing the files of an execution that did not start failed");
            }
            return Err(err);
        }
    };
    state.metrics.executions_started.inc();
    if !query.wait {
        return Ok(Json(execution));
    }
    Ok(Json(ended_or_current(&state, execution).await?))
}

pub(super) async fn get_execution(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<Execution>> {
    let execution = state
        .engine
        .execution(&id)
        .await?
        .ok_or_else(no_such_execution)?;
    Ok(Json(execution))
}

/// Deletes an ended execution and its logs.
pub(super) async fn delete_execution(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<StatusCode> {
    match state.engine.delete_execution(&id).await? {
        Some(true) => Ok(StatusCode::NO_CONTENT),
        Some(false) => Err(ApiError::Conflict(
            "the execution has not ended; kill it first".into(),
        )),
        None => Err(no_such_execution()),
    }
}

/// Runs a FAILED or KILLED execution again from its failed task runs.
pub(super) async fn restart_execution(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<Execution>> {
    Ok(Json(state.engine.restart(&id).await?))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReplayQuery {
    task_run_id: String,
}

/// A new execution repeating an ended one from `taskRunId` on.
pub(super) async fn replay_execution(
    State(state): State<AppState>,
    Query(query): Query<ReplayQuery>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<Execution>> {
    let ExecutionId(task_run_id) = ExecutionId::parse(query.task_run_id)?;
    let replayed = state.engine.replay(&id, &task_run_id).await?;
    state.metrics.executions_started.inc();
    Ok(Json(replayed))
}

/// Resumes a PAUSED execution, with optional `onResume` inputs.
pub(super) async fn resume_execution(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
    request: Request,
) -> ApiResult<Json<Execution>> {
    let inputs = request_inputs(request).await?;
    Ok(Json(state.engine.resume(&id, &inputs).await?))
}

pub(super) async fn kill_execution(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<StatusCode> {
    if state.engine.kill(&id).await? {
        return Ok(StatusCode::ACCEPTED);
    }
    match state.engine.execution(&id).await? {
        Some(_) => Err(ApiError::Conflict("the execution has already ended".into())),
        None => Err(no_such_execution()),
    }
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExecutionSearch {
    namespace: Option<String>,
    flow_id: Option<String>,
    /// Comma-separated states.
    #[schemars(regex(
        pattern = r"^((CREATED|QUEUED|RUNNING|PAUSED|RETRYING|SUCCESS|WARNING|FAILED|KILLING|KILLED|CANCELLED|RETRIED)(,(CREATED|QUEUED|RUNNING|PAUSED|RETRYING|SUCCESS|WARNING|FAILED|KILLING|KILLED|CANCELLED|RETRIED))*)?$"
    ))]
    state: Option<String>,
    #[schemars(range(max = u32::MAX))]
    page: Option<u32>,
    #[schemars(range(max = u32::MAX))]
    size: Option<u32>,
}

fn invalid_query(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalidQuery", message)
}

/// The filter of a search: `labels=key:value` (repeated or comma-separated,
/// read from the raw query), states, and the page.
fn execution_filter(query: ExecutionSearch, raw: Option<String>) -> ApiResult<ExecutionFilter> {
    let mut labels = Vec::new();
    for (name, value) in form_pairs(raw.unwrap_or_default().as_bytes()).unwrap_or_default() {
        if name == "labels" {
            labels.extend(parse_labels(Some(&value))?);
        }
    }
    if labels.len() > MAX_LABEL_FILTERS {
        return Err(invalid_query(format!(
            "at most {MAX_LABEL_FILTERS} labels can be searched at once"
        )));
    }
    let mut states = Vec::new();
    for name in query.state.as_deref().unwrap_or_default().split(',') {
        if !name.is_empty() {
            states.push(ExecState::parse(name).ok_or_else(|| invalid_query("unknown state"))?);
        }
    }
    let size = query.size.unwrap_or(25).clamp(1, 500);
    let page = query.page.unwrap_or(1).max(1);
    Ok(ExecutionFilter {
        namespace: query.namespace,
        flow_id: query.flow_id,
        states,
        labels,
        limit: size,
        offset: (page - 1).saturating_mul(size),
    })
}

pub(super) async fn search_executions(
    State(state): State<AppState>,
    Query(query): Query<ExecutionSearch>,
    RawQuery(raw): RawQuery,
    Viewer(_): Viewer,
) -> ApiResult<Json<Page<Execution>>> {
    let filter = execution_filter(query, raw)?;
    let (results, total) = state.engine.search_executions(&filter).await?;
    Ok(Json(Page { results, total }))
}
