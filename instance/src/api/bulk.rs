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
use super::query::Query;
use super::query_filters::execution_selection;
use super::{ApiError, ApiResult, AppState, read_body};
use crate::engine::{EngineError, Replay, SYSTEM_LABEL_PREFIX};
use crate::execution::{Execution, State as ExecState};
use crate::flow::Label;

/// Most executions one bulk call acts on (ids given, or selected by a query).
pub const MAX_BULK: usize = 1000;

/// Kestra's `BulkResponse`: how many executions (or triggers) were acted on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BulkResponse {
    pub count: u64,
}

/// Kestra's `BulkErrorResponse`: why the bulk action was refused, by id;
/// with `status` and `code` as every error answer here has them.
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

/// What a bulk action answers: done (200, [`BulkResponse`]) or refused
/// before anything was done (400, [`BulkErrorResponse`]).
#[derive(Debug)]
pub enum BulkAnswer {
    Done(BulkResponse),
    Refused(BulkErrorResponse),
}

impl IntoResponse for BulkAnswer {
    fn into_response(self) -> Response {
        match self {
            BulkAnswer::Done(done) => Json(done).into_response(),
            BulkAnswer::Refused(refused) => {
                (StatusCode::BAD_REQUEST, Json(refused)).into_response()
            }
        }
    }
}

impl aide::OperationOutput for BulkAnswer {
    type Inner = BulkResponse;

    fn operation_response(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) -> Option<aide::openapi::Response> {
        Json::<BulkResponse>::operation_response(ctx, operation)
    }

    fn inferred_responses(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, aide::openapi::Response)> {
        Json::<BulkResponse>::inferred_responses(ctx, operation)
    }
}

/// A JSON request body read into `T`; a 400 saying `expected` otherwise.
/// (held to `T`'s published schema: [`super::body`]).
pub(super) async fn json_body<T>(body: Body, expected: &str) -> ApiResult<T>
where
    T: DeserializeOwned + schemars::JsonSchema + 'static,
{
    let bytes = read_body(body).await?;
    super::body::parse(&bytes, expected)
}

/// The bulk actions on executions.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Restart,
    /// From the start; on the flow's latest revision when `latest`.
    Replay {
        latest: bool,
    },
    Kill,
    Resume,
    Delete,
    /// Labels set on ended executions (over theirs, system labels kept).
    Labels(Vec<Label>),
    Pause,
    /// Kestra's change-status: the final state set by hand.
    ChangeStatus(ExecState),
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Restart => "restart",
            Action::Replay { .. } => "replay",
            Action::Labels(_) => "labels",
            Action::Kill => "kill",
            Action::Resume => "resume",
            Action::Delete => "delete",
            Action::Pause => "pause",
            Action::ChangeStatus(_) => "change-status",
        }
    }

    /// Why `execution` cannot take this action, if it cannot.
    fn refusal(&self, execution: &Execution) -> Option<&'static str> {
        let state = execution.state.current;
        match self {
            Action::Restart => (!matches!(state, ExecState::Failed | ExecState::Killed))
                .then_some("execution not in state FAILED or KILLED"),
            Action::Replay { .. } => (!state.is_terminal()).then_some("execution has not ended"),
            Action::Labels(_) => (!state.is_terminal()).then_some("execution is not terminated"),
            Action::Kill => state.is_terminal().then_some("execution already finished"),
            Action::Resume => {
                (state != ExecState::Paused).then_some("execution not in state PAUSED")
            }
            Action::Delete => {
                (!state.is_terminal()).then_some("execution has not ended; kill it first")
            }
            Action::Pause => {
                (state != ExecState::Running).then_some("execution not in state RUNNING")
            }
            Action::ChangeStatus(_) => (!state.is_terminal()).then_some("execution has not ended"),
        }
    }
}

/// Checks every id, then applies the action to all (or to none).
async fn bulk(state: &AppState, action: Action, ids: Vec<String>) -> ApiResult<BulkAnswer> {
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
        return Ok(BulkAnswer::Refused(BulkErrorResponse {
            message: format!("invalid bulk {}", action.name()),
            status: StatusCode::BAD_REQUEST.as_u16(),
            code: "invalidBulk".to_owned(),
            invalids,
        }));
    }
    let mut count = 0;
    for execution in &selected {
        if apply(state, &action, execution).await? {
            count += 1;
        }
    }
    Ok(BulkAnswer::Done(BulkResponse { count }))
}

/// A bulk action by its name (`restart`, `kill`, `replay`, `delete`,
/// `resume`) on the listed executions, for the web UI's forms: the same
/// checks and effects as the `/by-ids` routes. `None` for another name.
pub(crate) async fn bulk_by_name(
    state: &AppState,
    name: &str,
    ids: Vec<String>,
) -> Option<ApiResult<BulkAnswer>> {
    let action = match name {
        "restart" => Action::Restart,
        "kill" => Action::Kill,
        "replay" => Action::Replay { latest: false },
        "delete" => Action::Delete,
        "resume" => Action::Resume,
        _ => return None,
    };
    Some(bulk(state, action, ids).await)
}

/// Applies the action to one checked execution: false when it changed
/// meanwhile so that the action no longer applies (another caller won).
async fn apply(state: &AppState, action: &Action, execution: &Execution) -> ApiResult<bool> {
    let id = execution.id.as_str();
    let done = match action {
        Action::Restart => state.engine.restart(id).await.map(|_| true),
        Action::Replay { latest } => {
            let revision = if *latest {
                state
                    .engine
                    .flows()
                    .get(&execution.namespace, &execution.flow_id, None)
                    .await?
                    .filter(|r| !r.deleted)
                    .map(|r| r.revision)
            } else {
                None
            };
            let replay = Replay {
                revision,
                ..Replay::default()
            };
            let replayed = state.engine.replay_with(id, replay).await.map(|_| true);
            if replayed.is_ok() {
                state.metrics.executions_started.inc();
            }
            replayed
        }
        Action::Kill => state.engine.kill(id).await,
        Action::Resume => state.engine.resume(id, &Map::new()).await.map(|_| true),
        Action::Delete => return Ok(state.engine.delete_execution(id).await? == Some(true)),
        Action::Pause => state.engine.pause(id).await,
        Action::ChangeStatus(to) => state.engine.change_state(id, *to).await.map(|_| true),
        Action::Labels(labels) => state
            .engine
            .set_labels(id, labels.clone())
            .await
            .map(|_| true),
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
        ) -> ApiResult<BulkAnswer> {
            let ids: Vec<String> = json_body(body, IDS).await?;
            bulk(&state, $action, ids).await
        }

        #[doc = concat!("`", stringify!($by_query), "`: the action on the executions the filters select.")]
        pub(super) async fn $by_query(
            State(state): State<AppState>,
            RawQuery(raw): RawQuery,
            Editor(_): Editor,
        ) -> ApiResult<BulkAnswer> {
            let ids = selected_ids(&state, raw).await?;
            bulk(&state, $action, ids).await
        }
    )*};
}

bulk_handlers!(
    (restart_by_ids, restart_by_query, Action::Restart),
    (kill_by_ids, kill_by_query, Action::Kill),
    (resume_by_ids, resume_by_query, Action::Resume),
    (delete_by_ids, delete_by_query, Action::Delete),
    (pause_by_ids, pause_by_query, Action::Pause),
);

/// Kestra's `newStatus` of a bulk change-status.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct NewStatusQuery {
    /// The state the ended executions take.
    #[schemars(extend("enum" = ["SUCCESS", "WARNING", "FAILED", "KILLED"]))]
    new_status: String,
}

fn settable(query: &NewStatusQuery) -> ApiResult<Action> {
    super::execution_actions::settable_state(&query.new_status, "newStatus")
        .map(Action::ChangeStatus)
}

/// Sets the state of the ended executions of a JSON list of ids.
pub(super) async fn change_status_by_ids(
    State(state): State<AppState>,
    Query(query): Query<NewStatusQuery>,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<BulkAnswer> {
    let action = settable(&query)?;
    let ids: Vec<String> = json_body(body, IDS).await?;
    bulk(&state, action, ids).await
}

/// Sets the state of the ended executions the filters select.
pub(super) async fn change_status_by_query(
    State(state): State<AppState>,
    Query(query): Query<NewStatusQuery>,
    RawQuery(raw): RawQuery,
    Editor(_): Editor,
) -> ApiResult<BulkAnswer> {
    let action = settable(&query)?;
    let ids = selected_ids(&state, raw).await?;
    bulk(&state, action, ids).await
}

/// `latestRevision` of the bulk replay.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReplayOptions {
    /// Replay on the flow's latest revision instead of each execution's.
    #[serde(default)]
    latest_revision: bool,
}

/// `POST /executions/replay/by-ids`: new executions repeating the listed
/// ended ones from the start.
pub(super) async fn replay_by_ids(
    State(state): State<AppState>,
    Query(options): Query<ReplayOptions>,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<BulkAnswer> {
    let ids: Vec<String> = json_body(body, IDS).await?;
    let latest = options.latest_revision;
    bulk(&state, Action::Replay { latest }, ids).await
}

/// `POST /executions/replay/by-query`: replays the selected executions.
pub(super) async fn replay_by_query(
    State(state): State<AppState>,
    Query(options): Query<ReplayOptions>,
    RawQuery(raw): RawQuery,
    Editor(_): Editor,
) -> ApiResult<BulkAnswer> {
    let ids = selected_ids(&state, raw).await?;
    let latest = options.latest_revision;
    bulk(&state, Action::Replay { latest }, ids).await
}

/// A label of Kestra's bodies.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
pub(super) struct LabelBody {
    /// Not the system's (`system.`).
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^(?!system\.)"))]
    key: String,
    #[schemars(length(max = 1024))]
    value: String,
}

/// Most labels set at once, and their longest key or value.
const MAX_LABELS: usize = 100;
const MAX_LABEL_LEN: usize = 1024;

fn checked_labels(labels: Vec<LabelBody>) -> ApiResult<Vec<Label>> {
    if labels.len() > MAX_LABELS {
        return Err(ApiError::bad_request(
            "invalidLabels",
            format!("at most {MAX_LABELS} labels can be set at once"),
        ));
    }
    labels
        .into_iter()
        .map(|l| {
            if l.key.is_empty() || l.key.len() > MAX_LABEL_LEN || l.value.len() > MAX_LABEL_LEN {
                return Err(ApiError::bad_request(
                    "invalidLabels",
                    format!(
                        "label keys are 1 to {MAX_LABEL_LEN} bytes, values at most {MAX_LABEL_LEN}"
                    ),
                ));
            }
            if l.key.starts_with(SYSTEM_LABEL_PREFIX) {
                return Err(ApiError::bad_request(
                    "invalidLabels",
                    format!(
                        "label {:?}: {SYSTEM_LABEL_PREFIX}… labels are the system's",
                        l.key
                    ),
                ));
            }
            Ok(Label {
                key: l.key,
                value: l.value,
            })
        })
        .collect()
}

/// `POST /executions/labels/by-ids` body (Kestra's `SetLabelsByIdsRequest`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LabelsByIds {
    executions_id: Vec<String>,
    execution_labels: Vec<LabelBody>,
}

/// Sets labels on the listed ended executions.
pub(super) async fn labels_by_ids(
    State(state): State<AppState>,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<BulkAnswer> {
    let request: LabelsByIds = json_body(
        body,
        "{\"executionsId\": [ids], \"executionLabels\": [{\"key\", \"value\"}]}",
    )
    .await?;
    let labels = checked_labels(request.execution_labels)?;
    bulk(&state, Action::Labels(labels), request.executions_id).await
}

/// Sets labels (the body, a JSON list) on the selected ended executions.
pub(super) async fn labels_by_query(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<BulkAnswer> {
    let labels: Vec<LabelBody> =
        json_body(body, "a JSON list of labels ({\"key\", \"value\"})").await?;
    let labels = checked_labels(labels)?;
    let ids = selected_ids(&state, raw).await?;
    bulk(&state, Action::Labels(labels), ids).await
}

/// The bulk actions on executions, by ids and by query (joined to
/// `api_routes`).
pub(super) fn routes(routes: super::openapi::Routes) -> super::openapi::Routes {
    use super::openapi::describe;
    use aide::axum::routing::{delete_with, post_with};
    routes
        .route(
            "/executions/restart/by-ids",
            post_with(restart_by_ids, describe::bulk_by_ids),
        )
        .route(
            "/executions/restart/by-query",
            post_with(restart_by_query, describe::bulk_by_query),
        )
        .route(
            "/executions/replay/by-ids",
            post_with(replay_by_ids, describe::bulk_by_ids),
        )
        .route(
            "/executions/replay/by-query",
            post_with(replay_by_query, describe::bulk_by_query),
        )
        .route(
            "/executions/kill/by-ids",
            delete_with(kill_by_ids, describe::bulk_by_ids),
        )
        .route(
            "/executions/kill/by-query",
            delete_with(kill_by_query, describe::bulk_by_query),
        )
        .route(
            "/executions/resume/by-ids",
            post_with(resume_by_ids, describe::bulk_by_ids),
        )
        .route(
            "/executions/resume/by-query",
            post_with(resume_by_query, describe::bulk_by_query),
        )
        .route(
            "/executions/by-ids",
            delete_with(delete_by_ids, describe::bulk_by_ids),
        )
        .route(
            "/executions/by-query",
            delete_with(delete_by_query, describe::bulk_by_query),
        )
        .route(
            "/executions/pause/by-ids",
            post_with(pause_by_ids, describe::bulk_by_ids),
        )
        .route(
            "/executions/pause/by-query",
            post_with(pause_by_query, describe::bulk_by_query),
        )
        .route(
            "/executions/change-status/by-ids",
            post_with(change_status_by_ids, describe::bulk_by_ids),
        )
        .route(
            "/executions/change-status/by-query",
            post_with(change_status_by_query, describe::bulk_by_query),
        )
        .route(
            "/executions/labels/by-ids",
            post_with(labels_by_ids, describe::json_body::<LabelsByIds>),
        )
        .route(
            "/executions/labels/by-query",
            post_with(labels_by_query, describe::json_body::<Vec<LabelBody>>),
        )
}
