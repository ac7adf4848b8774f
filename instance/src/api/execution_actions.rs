//! What is done to an execution once started, under Kestra 1.x's paths
//! (`/executions/{id}/restart`) and 2.x's (`/executions/{id}/actions/restart`):
//! restart, replay (with new inputs too), resume, kill, labels on an ended
//! execution, and its state changed by hand.

use super::query::Query;
use axum::Json;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::executions::no_such_execution;
use super::extract::{Editor, ExecutionId};
use super::inputs::request_inputs;
use super::kestra_shape::KestraExecution;
use super::{ApiError, ApiResult, AppState, read_body};
use crate::engine::{Replay, SETTABLE_STATES, SYSTEM_LABEL_PREFIX};
use crate::execution::State as ExecState;
use crate::flow::Label;

/// Most labels one execution may be given at once.
const MAX_LABELS: usize = 100;
/// Longest label key or value.
const MAX_LABEL_LEN: usize = 1024;

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct RestartQuery {
    /// Kestra restarts on another revision of the flow; Atoll does not
    /// (refused, so not in the document).
    #[schemars(skip)]
    revision: Option<i64>,
}

/// Runs a FAILED or KILLED execution again from its failed task runs.
pub(super) async fn restart_execution(
    State(state): State<AppState>,
    Query(query): Query<RestartQuery>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<KestraExecution>> {
    if query.revision.is_some() {
        return Err(ApiError::bad_request(
            "invalidQuery",
            "restart on another revision (`revision`) is not supported; replay with `revision` instead",
        ));
    }
    Ok(Json(KestraExecution::of(&state.engine.restart(&id).await?)))
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReplayQuery {
    /// Replay from this task run on; from the start when absent.
    #[schemars(regex(pattern = r"^[A-Za-z0-9-]{0,64}(?!\n)$"))]
    task_run_id: Option<String>,
    /// The flow revision to replay with; the execution's when absent.
    #[schemars(range(min = 1))]
    revision: Option<i64>,
    /// Kestra's debugging breakpoints: not supported, only empty.
    #[schemars(regex(pattern = r"^(?!\n)$"))]
    breakpoints: Option<String>,
}

impl ReplayQuery {
    fn replay(self) -> ApiResult<Replay> {
        if self.breakpoints.as_deref().is_some_and(|b| !b.is_empty()) {
            return Err(ApiError::bad_request(
                "invalidQuery",
                "breakpoints are not supported",
            ));
        }
        if self.revision.is_some_and(|r| r < 1) {
            return Err(ApiError::bad_request(
                "invalidQuery",
                "`revision` must be 1 or more",
            ));
        }
        let task_run_id = match self.task_run_id.filter(|t| !t.is_empty()) {
            Some(t) => Some(
                ExecutionId::parse(t)
                    .map_err(|_| {
                        ApiError::bad_request("invalidQuery", "`taskRunId` is not a task run id")
                    })?
                    .0,
            ),
            None => None,
        };
        Ok(Replay {
            task_run_id,
            revision: self.revision,
            inputs: None,
        })
    }
}

/// A new execution repeating an ended one: from `taskRunId` on, or from the
/// start without it, on `revision` when given.
pub(super) async fn replay_execution(
    State(state): State<AppState>,
    Query(query): Query<ReplayQuery>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<KestraExecution>> {
    let replayed = state.engine.replay_with(&id, query.replay()?).await?;
    state.metrics.executions_started.inc();
    Ok(Json(KestraExecution::of(&replayed)))
}

/// [`replay_execution`] with new inputs (a multipart or JSON body; an empty
/// one keeps the execution's inputs).
pub(super) async fn replay_with_inputs(
    State(state): State<AppState>,
    Query(query): Query<ReplayQuery>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
    request: Request,
) -> ApiResult<Json<KestraExecution>> {
    let mut replay = query.replay()?;
    replay.inputs = Some(request_inputs(request).await?);
    let replayed = state.engine.replay_with(&id, replay).await?;
    state.metrics.executions_started.inc();
    Ok(Json(KestraExecution::of(&replayed)))
}

/// Resumes a PAUSED execution, with optional `onResume` inputs.
pub(super) async fn resume_execution(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
    request: Request,
) -> ApiResult<Json<KestraExecution>> {
    let inputs = request_inputs(request).await?;
    Ok(Json(KestraExecution::of(
        &state.engine.resume(&id, &inputs).await?,
    )))
}

/// Asks for a running execution to be killed: 202 with the execution as
/// it is (Kestra 2's clients read it; 1's ignore the body).
pub(super) async fn kill_execution(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<(StatusCode, Json<KestraExecution>)> {
    let requested = state.engine.kill(&id).await?;
    let execution = state
        .engine
        .execution(&id)
        .await?
        .ok_or_else(no_such_execution)?;
    if !requested {
        return Err(ApiError::Conflict("the execution has already ended".into()));
    }
    Ok((StatusCode::ACCEPTED, Json(KestraExecution::of(&execution))))
}

/// Pauses a RUNNING execution (Kestra's `pause` action): no task run
/// starts any more and it is PAUSED; `resume` goes on. 409 when it does
/// not run.
pub(super) async fn pause_execution(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<KestraExecution>> {
    let requested = state.engine.pause(&id).await?;
    let execution = state
        .engine
        .execution(&id)
        .await?
        .ok_or_else(no_such_execution)?;
    if !requested {
        return Err(ApiError::Conflict(format!(
            "only a RUNNING execution can be paused; this one is {}",
            execution.state.current.as_str()
        )));
    }
    Ok(Json(KestraExecution::of(&execution)))
}

/// A label as Kestra's clients send it.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct LabelBody {
    /// Not blank, and not the system's (`system.`).
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^(?!system\.)[\s\S]*\S")
    )]
    key: String,
    #[schemars(length(min = 1, max = 1024))]
    value: String,
}

fn invalid_labels(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalidLabels", message)
}

/// The labels of a body: a JSON list of `{"key", "value"}`.
fn body_labels(bytes: &[u8]) -> ApiResult<Vec<Label>> {
    let labels: Vec<LabelBody> =
        super::body::parse(bytes, "a JSON list of {\"key\", \"value\"} labels").map_err(
            |e| match e {
                ApiError::BadRequest { message, .. } => invalid_labels(message),
                other => other,
            },
        )?;
    if labels.len() > MAX_LABELS {
        return Err(invalid_labels(format!("at most {MAX_LABELS} labels")));
    }
    labels
        .into_iter()
        .map(|LabelBody { key, value }| {
            if key.trim().is_empty() || value.is_empty() {
                return Err(invalid_labels("a label's key and value must not be empty"));
            }
            if key.len() > MAX_LABEL_LEN || value.len() > MAX_LABEL_LEN {
                return Err(invalid_labels(format!(
                    "a label's key and value are at most {MAX_LABEL_LEN} bytes"
                )));
            }
            if key.starts_with(SYSTEM_LABEL_PREFIX) {
                return Err(invalid_labels(format!(
                    "label `{key}`: keys starting with `{SYSTEM_LABEL_PREFIX}` are the system's"
                )));
            }
            Ok(Label { key, value })
        })
        .collect()
}

/// Sets the labels of an ended execution (they replace its own labels;
/// the system's stay). 409 while it runs.
pub(super) async fn set_labels(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
    body: Body,
) -> ApiResult<Json<KestraExecution>> {
    let labels = body_labels(&read_body(body).await?)?;
    Ok(Json(KestraExecution::of(
        &state.engine.set_labels(&id, labels).await?,
    )))
}

/// Longest expression evaluated.
const MAX_EXPRESSION_BYTES: usize = 64 * 1024;

/// What an expression rendered to, or why it did not (Kestra's
/// `EvalResult`).
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct EvalResult {
    #[serde(skip_serializing_if = "Option::is_none")]
    result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// Renders the expression in the body (text) against the execution, as
/// its tasks see it; 200 with `result`, or with `error` when it does not
/// render.
pub(super) async fn eval_expression(
    State(state): State<AppState>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
    body: Body,
) -> ApiResult<Json<EvalResult>> {
    let bytes = read_body(body).await?;
    if bytes.len() > MAX_EXPRESSION_BYTES {
        return Err(ApiError::TooLarge(format!(
            "the expression is longer than {} KiB",
            MAX_EXPRESSION_BYTES / 1024
        )));
    }
    let expression = std::str::from_utf8(&bytes)
        .map_err(|_| ApiError::bad_request("invalidBody", "the expression must be UTF-8 text"))?;
    let rendered = state.engine.eval_expression(&id, expression).await?;
    Ok(Json(match rendered {
        Ok(result) => EvalResult {
            result: Some(result),
            error: None,
        },
        Err(error) => EvalResult {
            result: None,
            error: Some(error),
        },
    }))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct StatusQuery {
    /// SUCCESS, WARNING, FAILED or KILLED.
    #[schemars(regex(pattern = r"^(SUCCESS|WARNING|FAILED|KILLED)(?!\n)$"))]
    status: String,
}

/// The state an ended execution may be given by hand, read from the query
/// parameter `param` (`status`, or `newStatus` of the bulk form).
pub(super) fn settable_state(text: &str, param: &str) -> ApiResult<ExecState> {
    ExecState::parse(text)
        .filter(|s| SETTABLE_STATES.contains(s))
        .ok_or_else(|| {
            let names: Vec<&str> = SETTABLE_STATES.iter().map(|s| s.as_str()).collect();
            ApiError::bad_request(
                "invalidQuery",
                format!("`{param}` must be one of {}", names.join(", ")),
            )
        })
}

/// Sets the final state of an ended execution by hand.
pub(super) async fn change_status(
    State(state): State<AppState>,
    Query(query): Query<StatusQuery>,
    Editor(_): Editor,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<KestraExecution>> {
    let status = settable_state(&query.status, "status")?;
    Ok(Json(KestraExecution::of(
        &state.engine.change_state(&id, status).await?,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_a_list_of_key_value_objects() {
        let labels = body_labels(br#"[{"key":"a","value":"1"}]"#).expect("labels");
        assert_eq!(labels[0].key, "a");
        for bad in [
            &br#"{"a":"1"}"#[..],
            br#"[{"key":"","value":"1"}]"#,
            br#"[{"key":"system.x","value":"1"}]"#,
        ] {
            assert!(
                body_labels(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
