//! Bulk execution actions, as Kestra answers them: `/executions/{action}/by-ids`
//! (a JSON list of execution ids) and `/executions/{action}/by-query`
//! (the search's filters). Every selected execution is checked first; when
//! any cannot take the action, nothing is done and the answer is a 400
//! [`BulkErrorResponse`] naming each one and why. Otherwise the action is
//! applied to all of them and the answer is a [`BulkResponse`] with the count.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Map;

use super::extract::{Editor, ExecutionId};
use super::query_filters::execution_selection;
use super::{ApiError, ApiResult, AppState, read_body};
use crate::engine::EngineError;
use crate::execution::{Execution, State as ExecState};

/// Most executions one bulk call acts on (ids given, or selected by a query).
pub const MAX_BULK: usize = 1000;

/// Kestra's `BulkResponse`: how many executions (or triggers) were acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BulkResponse {
    pub count: u64,
}

/// Kestra's `BulkErrorResponse`: why the bulk action was refused, by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BulkErrorResponse {
    pub message: String,
    /// 400, as every error answer repeats its status.
    pub status: u16,
    /// `invalidBulk`, as every error answer names what went wrong.
    pub code: String,
    /// Each refused id and the reason.
    pub invalids: BTreeMap<String, String>,
}

impl IntoResponse for BulkErrorResponse {
    fn into_response(self) -> Response {
        (StatusCode::BAD_REQUEST, Json(self)).into_response()
    }
}

/// A JSON request body read into `T`; a 400 saying `expected` otherwise.
pub(super) async fn json_body<T: DeserializeOwned>(body: Body, expected: &str) -> ApiResult<T> {
    let bytes = read_body(body).await?;
    serde_json::from_slice(&bytes).map_err(|err| {
        ApiError::bad_request("invalidBody", format!("the body must be {expected}: {err}"))
    })
}

/// The bulk actions on executions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Restart,
    Replay,
    Kill,
    Resume,
    Delete,
}

impl Action {
    fn name(self) -> &'static str {
        match self {
            Action::Restart => "restart",
            Action::Replay => "replay",
            Action::Kill => "kill",
            Action::Resume => "resume",
            Action::Delete => "delete",
        }
    }

    /// Why `execution` cannot take this action, if it cannot.
    fn refusal(self, execution: &Execution) -> Option<&'static str> {
        let state = execution.state.current;
        match self {
            Action::Restart => (!matches!(state, ExecState::Failed | ExecState::Killed))
                .then_some("execution not in state FAILED or KILLED"),
            Action::Replay => (!state.is_terminal()).then_some("execution has not ended"),
            Action::Kill => state.is_terminal().then_some("execution already finished"),
            Action::Resume => {
                (state != ExecState::Paused).then_some("execution not in state PAUSED")
            }
            Action::Delete => {
                (!state.is_terminal()).then_some("execution has not ended; kill it first")
            }
        }
    }
}

/// Checks every id, then applies the action to all (or to none).
async fn bulk(state: &AppState, action: Action, ids: Vec<String>) -> ApiResult<Response> {
    if ids.len() > MAX_BULK {
        return Err(ApiError::bad_request(
            "tooManyExecutions",
            format!("at most {MAX_BULK} executions can be acted on at once"),
        ));
    }
    let mut invalids = BTreeMap::new();
    let mut selected = Vec::new();
    for id in ids {
        let Ok(ExecutionId(id)) = ExecutionId::parse(id.clone()) else {
            invalids.insert(id, "not an execution id".to_owned());
            continue;
        };
        match state.engine.execution(&id).await? {
            None => {
                invalids.insert(id, "execution not found".to_owned());
            }
            Some(execution) => match action.refusal(&execution) {
                Some(reason) => {
                    invalids.insert(id, reason.to_owned());
                }
                None => selected.push(execution),
            },
        }
    }
    if !invalids.is_empty() {
        return Ok(BulkErrorResponse {
            message: format!("invalid bulk {}", action.name()),
            status: StatusCode::BAD_REQUEST.as_u16(),
            code: "invalidBulk".to_owned(),
            invalids,
        }
        .into_response());
    }
    let mut count = 0;
    for execution in &selected {
        if apply(state, action, execution).await? {
            count += 1;
        }
    }
    Ok(Json(BulkResponse { count }).into_response())
}

/// Applies the action to one checked execution: false when it changed
/// meanwhile so that the action no longer applies (another caller won).
async fn apply(state: &AppState, action: Action, execution: &Execution) -> ApiResult<bool> {
    let id = execution.id.as_str();
    let done = match action {
        Action::Restart => state.engine.restart(id).await.map(|_| true),
        Action::Replay => {
            // From its first task run: the whole execution again.
            let Some(first) = execution.task_run_list.first() else {
                return Ok(false);
            };
            let replayed = state.engine.replay(id, &first.id).await.map(|_| true);
            if replayed.is_ok() {
                state.metrics.executions_started.inc();
            }
            replayed
        }
        Action::Kill => state.engine.kill(id).await,
        Action::Resume => state.engine.resume(id, &Map::new()).await.map(|_| true),
        Action::Delete => return Ok(state.engine.delete_execution(id).await? == Some(true)),
    };
    match done {
        Ok(done) => Ok(done),
        Err(EngineError::Store(err)) => Err(err.into()),
        Err(err) => {
            tracing::info!(execution = %id, action = action.name(), error = %err, "bulk action skipped an execution that changed");
            Ok(false)
        }
    }
}

/// The ids of the executions a query selects (at most [`MAX_BULK`]).
async fn selected_ids(state: &AppState, raw: Option<String>) -> ApiResult<Vec<String>> {
    let mut selection = execution_selection(raw.as_deref())?;
    selection.filter.limit = 500;
    let mut ids = Vec::new();
    loop {
        let (page, _) = state.engine.search_executions(&selection.filter).await?;
        let last = page.len() < selection.filter.limit as usize;
        ids.extend(
            page.iter()
                .filter(|e| selection.keeps(e))
                .map(|e| e.id.clone()),
        );
        if ids.len() > MAX_BULK {
            return Err(ApiError::bad_request(
                "tooManyExecutions",
                format!("the query selects more than {MAX_BULK} executions; narrow it"),
            ));
        }
        if last {
            return Ok(ids);
        }
        selection.filter.offset += selection.filter.limit;
    }
}

const IDS: &str = "a JSON list of execution ids";

macro_rules! bulk_handlers {
    ($(($by_ids:ident, $by_query:ident, $action:expr)),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($by_ids), "`: the action on a JSON list of execution ids.")]
        pub(super) async fn $by_ids(
            State(state): State<AppState>,
            Editor(_): Editor,
            body: Body,
        ) -> ApiResult<Response> {
            let ids: Vec<String> = json_body(body, IDS).await?;
            bulk(&state, $action, ids).await
        }

        #[doc = concat!("`", stringify!($by_query), "`: the action on the executions the filters select.")]
        pub(super) async fn $by_query(
            State(state): State<AppState>,
            RawQuery(raw): RawQuery,
            Editor(_): Editor,
        ) -> ApiResult<Response> {
            let ids = selected_ids(&state, raw).await?;
            bulk(&state, $action, ids).await
        }
    )*};
}

bulk_handlers!(
    (restart_by_ids, restart_by_query, Action::Restart),
    (replay_by_ids, replay_by_query, Action::Replay),
    (kill_by_ids, kill_by_query, Action::Kill),
    (resume_by_ids, resume_by_query, Action::Resume),
    (delete_by_ids, delete_by_query, Action::Delete),
);
