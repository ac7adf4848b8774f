//! `/executions`: start, read, follow, search and delete executions (what is done
//! to them after they start is in `execution_actions`).

use std::convert::Infallible;
use std::time::Duration;

use super::query::Query;
use axum::Json;
use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::{Editor, ExecutionId, FlowKey, Viewer};
use super::inputs::{FileSink, form_pairs, parse_labels, request_inputs_with_files};
use super::kestra_shape::KestraExecution;
use super::query_filters::apply_filters;
use super::{ApiError, ApiResult, AppState};
use crate::engine::{Engine, EngineError};
use crate::execution::{Execution, State as ExecState};
use crate::storage::StoragePath;
use crate::store::{ExecutionFilter, MAX_LABEL_FILTERS};

/// How long `wait=true` waits before answering with the running execution.
const WAIT_LIMIT: Duration = Duration::from_secs(60);

pub(super) fn no_such_execution() -> ApiError {
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
    /// Answer once the execution has ended (or after a minute).
    #[serde(default)]
    wait: bool,
}

/// `labels=key:value` of a query string, repeated or comma-separated.
pub(super) fn query_labels(raw: Option<&str>) -> ApiResult<Vec<crate::flow::Label>> {
    let mut labels = Vec::new();
    for (name, value) in form_pairs(raw.unwrap_or_default().as_bytes()).unwrap_or_default() {
        if name == "labels" {
            labels.extend(parse_labels(Some(&value))?);
        }
    }
    Ok(labels)
}

/// Starts an execution. File parts of a multipart body (FILE inputs) are
/// stored in the execution's storage first, under the id it will have;
/// they are removed again when it does not start.
pub(super) async fn create_execution(
    State(state): State<AppState>,
    Query(query): Query<RunQuery>,
    RawQuery(raw): RawQuery,
    Editor(_): Editor,
    key: FlowKey,
    request: Request,
) -> ApiResult<Json<KestraExecution>> {
    let labels = query_labels(raw.as_deref())?;
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
        return Ok(Json(KestraExecution::of(&execution)));
    }
    let execution = ended_or_current(&state, execution).await?;
    Ok(Json(KestraExecution::of(&execution)))
}

pub(super) async fn get_execution(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<KestraExecution>> {
    let execution = state
        .engine
        .execution(&id)
        .await?
        .ok_or_else(no_such_execution)?;
    Ok(Json(KestraExecution::of(&execution)))
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

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ExecutionSearch {
    namespace: Option<String>,
    flow_id: Option<String>,
    /// Comma-separated states.
    #[schemars(regex(
        pattern = r"^((CREATED|QUEUED|RUNNING|PAUSED|RETRYING|SUCCESS|WARNING|FAILED|KILLING|KILLED|CANCELLED|RETRIED)(,(CREATED|QUEUED|RUNNING|PAUSED|RETRYING|SUCCESS|WARNING|FAILED|KILLING|KILLED|CANCELLED|RETRIED))*)?(?!\n)$"
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
/// read from the raw query), states, the page, and Kestra's
/// `filters[field][OPERATION]` parameters (see `query_filters`).
pub(super) fn execution_filter(
    query: ExecutionSearch,
    raw: Option<String>,
) -> ApiResult<ExecutionFilter> {
    let labels = query_labels(raw.as_deref())?;
    let mut states = Vec::new();
    for name in query.state.as_deref().unwrap_or_default().split(',') {
        if !name.is_empty() {
            states.push(ExecState::parse(name).ok_or_else(|| invalid_query("unknown state"))?);
        }
    }
    let size = query.size.unwrap_or(25).clamp(1, 500);
    let page = query.page.unwrap_or(1).max(1);
    let mut filter = ExecutionFilter {
        namespace: query.namespace,
        flow_id: query.flow_id,
        states,
        labels,
        limit: size,
        offset: (page - 1).saturating_mul(size),
        ..ExecutionFilter::default()
    };
    apply_filters(raw.as_deref(), &mut filter)?;
    if filter.labels.len() > MAX_LABEL_FILTERS {
        return Err(invalid_query(format!(
            "at most {MAX_LABEL_FILTERS} labels can be searched at once"
        )));
    }
    Ok(filter)
}

/// A page of executions (Kestra's `PagedResults`).
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct ExecutionPage {
    results: Vec<KestraExecution>,
    total: u64,
}

/// `/executions/search` and `/executions?namespace=&flowId=`: executions
/// newest first, one page.
pub(super) async fn search_executions(
    State(state): State<AppState>,
    Query(query): Query<ExecutionSearch>,
    RawQuery(raw): RawQuery,
    Viewer(_): Viewer,
) -> ApiResult<Json<ExecutionPage>> {
    let filter = execution_filter(query, raw)?;
    let (results, total) = state.engine.search_executions(&filter).await?;
    Ok(Json(ExecutionPage {
        results: KestraExecution::all(&results),
        total,
    }))
}

/// How often a follower looks for a change of the execution.
const FOLLOW_POLL: Duration = Duration::from_millis(200);
/// Longest a follow stream stays open.
const FOLLOW_LIMIT: Duration = Duration::from_secs(3600);

/// `/executions/{id}/follow`: server-sent events, the execution each time
/// it changes, until it has ended (or after an hour).
pub(super) async fn follow_execution(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Response> {
    let first = state
        .engine
        .execution(&id)
        .await?
        .ok_or_else(no_such_execution)?;
    let deadline = tokio::time::Instant::now() + FOLLOW_LIMIT;
    let start = (
        state.engine.clone(),
        id,
        Some(first),
        None::<Execution>,
        false,
    );
    let stream = futures::stream::unfold(start, move |(engine, id, next, last, done)| async move {
        if done {
            return None;
        }
        let mut next = next;
        while next.is_none() {
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(FOLLOW_POLL).await;
            next = match engine.execution(&id).await {
                Ok(Some(e)) if Some(&e) != last.as_ref() => Some(e),
                Ok(Some(_)) => None,
                _ => return None,
            };
        }
        let execution = next?;
        let ended = execution.state.current.is_terminal();
        let event = Event::default()
            .json_data(KestraExecution::of(&execution))
            .unwrap_or_default();
        Some((
            Ok::<Event, Infallible>(event),
            (engine, id, None, Some(execution), ended),
        ))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
