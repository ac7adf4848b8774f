//! Kestra's trigger API besides the webhooks: search (all, or one flow's),
//! disable/enable, unlock, restart, delete (forget the state), and a
//! schedule's backfill (create, pause, unpause, delete), each for one
//! trigger and in bulk (`/by-triggers` with a JSON list, `/by-query` with
//! the search's filters). Bulk calls answer Kestra's `BulkResponse`.

use super::query::Path;
use super::query::Query;
use axum::Json;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::bulk::{BulkResponse, json_body};
use super::extract::{Editor, FlowKey, Viewer};
use super::query_filters::{TriggerSelection, trigger_selection};
use super::{ApiError, ApiResult, AppState};
use crate::engine::{Backfill, BackfillLabel, TriggerActionError, TriggerDetail};
use crate::store::TriggerKey;

impl From<TriggerActionError> for ApiError {
    fn from(err: TriggerActionError) -> Self {
        match err {
            TriggerActionError::NotFound(_) => ApiError::NotFound(err.to_string()),
            TriggerActionError::Invalid(m) => ApiError::bad_request("invalidTrigger", m),
            TriggerActionError::Conflict(m) => ApiError::Conflict(m),
            TriggerActionError::Engine(e) => e.into(),
        }
    }
}

/// Kestra's paged results of a trigger search.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct PagedTriggers {
    pub results: Vec<TriggerDetail>,
    pub total: u64,
}

/// Paging of a search (`page` from 1).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(super) struct Paging {
    page: Option<u32>,
    size: Option<u32>,
}

fn page_of(mut all: Vec<TriggerDetail>, paging: &Paging) -> PagedTriggers {
    let size = paging.size.unwrap_or(100).clamp(1, 1000) as usize;
    let page = paging.page.unwrap_or(1).max(1) as usize;
    let total = all.len() as u64;
    let start = (page - 1).saturating_mul(size).min(all.len());
    let end = start.saturating_add(size).min(all.len());
    all.truncate(end);
    PagedTriggers {
        results: all.split_off(start),
        total,
    }
}

fn checked_namespace(selection: &TriggerSelection) -> ApiResult<Option<&str>> {
    let namespace = selection
        .namespace_prefix
        .as_deref()
        .or(selection.namespace.as_deref());
    if let Some(ns) = namespace
        && !crate::flow::is_valid_namespace(ns)
    {
        return Err(ApiError::bad_request(
            "invalidFilter",
            format!("{ns:?} is not a namespace name"),
        ));
    }
    Ok(namespace)
}

async fn selected(state: &AppState, selection: &TriggerSelection) -> ApiResult<Vec<TriggerDetail>> {
    let namespace = checked_namespace(selection)?;
    Ok(state
        .engine
        .trigger_details(namespace, |n, f, t| selection.keeps(n, f, t))
        .await?)
}

/// `GET /triggers/search`: triggers with their context, paged.
pub(super) async fn search(
    State(state): State<AppState>,
    Query(paging): Query<Paging>,
    RawQuery(raw): RawQuery,
    Viewer(_): Viewer,
) -> ApiResult<Json<PagedTriggers>> {
    let selection = trigger_selection(raw.as_deref())?;
    Ok(Json(page_of(selected(&state, &selection).await?, &paging)))
}

/// `GET /triggers/{namespace}/{flowId}`: the triggers of one flow.
pub(super) async fn search_for_flow(
    State(state): State<AppState>,
    Query(paging): Query<Paging>,
    RawQuery(raw): RawQuery,
    Viewer(_): Viewer,
    key: FlowKey,
) -> ApiResult<Json<PagedTriggers>> {
    let mut selection = trigger_selection(raw.as_deref())?;
    selection.namespace = Some(key.namespace);
    selection.namespace_prefix = None;
    selection.flow_id = Some(key.id);
    Ok(Json(page_of(selected(&state, &selection).await?, &paging)))
}

/// One trigger, as Kestra's bodies name it (extra fields are ignored).
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct TriggerRef {
    pub namespace: String,
    pub flow_id: String,
    pub trigger_id: String,
}

/// Longest trigger id accepted.
const MAX_TRIGGER_ID: usize = 256;

impl TriggerRef {
    fn key(self) -> ApiResult<TriggerKey> {
        let valid_id = !self.trigger_id.is_empty() && self.trigger_id.len() <= MAX_TRIGGER_ID;
        match FlowKey::parse(self.namespace, self.flow_id) {
            Some(flow) if valid_id => Ok(TriggerKey {
                namespace: flow.namespace,
                flow_id: flow.id,
                trigger_id: self.trigger_id,
            }),
            _ => Err(ApiError::NotFound("no such trigger".into())),
        }
    }
}

/// `{namespace}/{flowId}/{triggerId}` of a trigger route.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct TriggerPath {
    namespace: String,
    flow_id: String,
    trigger_id: String,
}

impl TriggerPath {
    fn key(self) -> ApiResult<TriggerKey> {
        TriggerRef {
            namespace: self.namespace,
            flow_id: self.flow_id,
            trigger_id: self.trigger_id,
        }
        .key()
    }
}

const ONE: &str = "a trigger: {\"namespace\", \"flowId\", \"triggerId\"}";
const LIST: &str = "a JSON list of triggers ({\"namespace\", \"flowId\", \"triggerId\"})";

/// `PUT /triggers/set-disabled` body (Kestra 2's `ApiDisableTriggerRequest`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct SetDisabled {
    #[serde(flatten)]
    trigger: TriggerRef,
    disabled: bool,
}

/// Disables or enables one trigger.
pub(super) async fn set_disabled(
    State(state): State<AppState>,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<Json<TriggerDetail>> {
    let request: SetDisabled = json_body(
        body,
        "{\"namespace\", \"flowId\", \"triggerId\", \"disabled\"}",
    )
    .await?;
    let key = request.trigger.key()?;
    Ok(Json(
        state
            .engine
            .set_trigger_disabled(&key, request.disabled)
            .await?,
    ))
}

/// `POST /triggers/set-disabled/by-triggers` body.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct SetDisabledMany {
    triggers: Vec<TriggerRef>,
    disabled: bool,
}

/// Most triggers one bulk call acts on.
const MAX_TRIGGERS: usize = 1000;

fn keys(refs: Vec<TriggerRef>) -> ApiResult<Vec<TriggerKey>> {
    if refs.len() > MAX_TRIGGERS {
        return Err(ApiError::bad_request(
            "tooManyTriggers",
            format!("at most {MAX_TRIGGERS} triggers can be acted on at once"),
        ));
    }
    refs.into_iter().map(TriggerRef::key).collect()
}

/// What a bulk trigger call does to each trigger.
#[derive(Debug, Clone, Copy)]
pub(super) enum TriggerAction {
    Disable(bool),
    Unlock,
    Delete,
    PauseBackfill(bool),
    DeleteBackfill,
}

async fn act(state: &AppState, action: TriggerAction, key: &TriggerKey) -> ApiResult<bool> {
    let engine = &state.engine;
    let done = match action {
        TriggerAction::Disable(disabled) => engine
            .set_trigger_disabled(key, disabled)
            .await
            .map(|_| true),
        TriggerAction::Unlock => engine.trigger_detail(key).await.map(|_| true),
        // Counted even when the trigger had no state yet (nothing to forget).
        TriggerAction::Delete => engine.forget_trigger(key).await.map(|_| true),
        TriggerAction::PauseBackfill(paused) => {
            engine.pause_backfill(key, paused).await.map(|_| true)
        }
        TriggerAction::DeleteBackfill => engine.delete_backfill(key).await.map(|_| true),
    };
    match done {
        Ok(done) => Ok(done),
        // In bulk, a trigger the action does not apply to is not counted.
        Err(TriggerActionError::Conflict(_)) => Ok(false),
        Err(err) => Err(err.into()),
    }
}

/// Checks every trigger exists, then acts on each; the count of those acted on.
async fn act_on_all(
    state: &AppState,
    action: TriggerAction,
    keys: &[TriggerKey],
) -> ApiResult<Json<BulkResponse>> {
    for key in keys {
        state.engine.trigger_detail(key).await?;
    }
    let mut count = 0;
    for key in keys {
        if act(state, action, key).await? {
            count += 1;
        }
    }
    Ok(Json(BulkResponse { count }))
}

/// Disables or enables the listed triggers.
pub(super) async fn set_disabled_by_triggers(
    State(state): State<AppState>,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<Json<BulkResponse>> {
    let request: SetDisabledMany =
        json_body(body, "{\"triggers\": [...], \"disabled\": true|false}").await?;
    let keys = keys(request.triggers)?;
    act_on_all(&state, TriggerAction::Disable(request.disabled), &keys).await
}

/// `disabled` of `/set-disabled/by-query` (Kestra's default: true).
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct DisabledQuery {
    disabled: Option<bool>,
}

/// Disables or enables the triggers the filters select.
pub(super) async fn set_disabled_by_query(
    State(state): State<AppState>,
    Query(query): Query<DisabledQuery>,
    RawQuery(raw): RawQuery,
    Editor(_): Editor,
) -> ApiResult<Json<BulkResponse>> {
    let action = TriggerAction::Disable(query.disabled.unwrap_or(true));
    by_query(&state, action, raw).await
}

async fn by_query(
    state: &AppState,
    action: TriggerAction,
    raw: Option<String>,
) -> ApiResult<Json<BulkResponse>> {
    let selection = trigger_selection(raw.as_deref())?;
    let keys: Vec<TriggerKey> = selected(state, &selection)
        .await?
        .into_iter()
        .map(|d| TriggerKey {
            namespace: d.view.namespace,
            flow_id: d.view.flow_id,
            trigger_id: d.view.trigger_id,
        })
        .collect();
    if keys.len() > MAX_TRIGGERS {
        return Err(ApiError::bad_request(
            "tooManyTriggers",
            format!("the query selects more than {MAX_TRIGGERS} triggers; narrow it"),
        ));
    }
    act_on_all(state, action, &keys).await
}

/// `DELETE /triggers/delete/by-triggers`: forgets the listed triggers' state.
pub(super) async fn delete_by_triggers(
    State(state): State<AppState>,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<Json<BulkResponse>> {
    let refs: Vec<TriggerRef> = json_body(body, LIST).await?;
    act_on_all(&state, TriggerAction::Delete, &keys(refs)?).await
}

/// A filter as Kestra's clients put it in a body (`{"filters": [...]}`).
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct BodyFilter {
    field: String,
    operation: String,
    value: Value,
}

/// The body of `DELETE /triggers/delete/by-query` (its filters may be in
/// the query string instead).
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(super) struct FiltersBody {
    #[serde(default)]
    filters: Vec<BodyFilter>,
}

/// `DELETE /triggers/delete/by-query`: forgets the state of the triggers
/// the filters select, given in the query string or in the body.
pub(super) async fn delete_by_query(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<Json<BulkResponse>> {
    let bytes = super::read_body(body).await?;
    let mut query = raw.unwrap_or_default();
    if !bytes.iter().all(u8::is_ascii_whitespace) {
        let given: FiltersBody = super::body::parse(
            &bytes,
            "{\"filters\": [{\"field\", \"operation\", \"value\"}]}",
        )?;
        for f in given.filters {
            // 1.x clients wrap the value: {"value": ...}.
            let value = match f.value {
                Value::Object(mut map) if map.len() == 1 && map.contains_key("value") => {
                    map.remove("value").unwrap_or(Value::Null)
                }
                other => other,
            };
            let value = match value {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let field = camel_case(&f.field);
            let pair = url_pair(&format!("filters[{field}][{}]", f.operation), &value);
            if !query.is_empty() {
                query.push('&');
            }
            query.push_str(&pair);
        }
    }
    by_query(&state, TriggerAction::Delete, Some(query)).await
}

/// A filter field as Kestra names it: `FLOW_ID` (1.x models) is `flowId`,
/// `QUERY` is `q`; other names are kept.
fn camel_case(field: &str) -> String {
    if field == "QUERY" {
        return "q".into();
    }
    if field.chars().any(|c| c.is_ascii_lowercase()) {
        return field.to_owned();
    }
    let mut out = String::new();
    for (i, part) in field.to_ascii_lowercase().split('_').enumerate() {
        let mut chars = part.chars();
        match chars.next() {
            Some(first) if i > 0 => {
                out.push(first.to_ascii_uppercase());
                out.extend(chars);
            }
            _ => out.push_str(part),
        }
    }
    out
}

fn url_pair(name: &str, value: &str) -> String {
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    format!("{}={}", encode(name), encode(value))
}

macro_rules! trigger_bulk_handlers {
    ($(($by_triggers:ident, $by_query:ident, $action:expr)),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($by_triggers), "`: the action on a JSON list of triggers.")]
        pub(super) async fn $by_triggers(
            State(state): State<AppState>,
            Editor(_): Editor,
            body: Body,
        ) -> ApiResult<Json<BulkResponse>> {
            let refs: Vec<TriggerRef> = json_body(body, LIST).await?;
            act_on_all(&state, $action, &keys(refs)?).await
        }

        #[doc = concat!("`", stringify!($by_query), "`: the action on the triggers the filters select.")]
        pub(super) async fn $by_query(
            State(state): State<AppState>,
            RawQuery(raw): RawQuery,
            Editor(_): Editor,
        ) -> ApiResult<Json<BulkResponse>> {
            by_query(&state, $action, raw).await
        }
    )*};
}

trigger_bulk_handlers!(
    (unlock_by_triggers, unlock_by_query, TriggerAction::Unlock),
    (
        pause_backfill_by_triggers,
        pause_backfill_by_query,
        TriggerAction::PauseBackfill(true)
    ),
    (
        unpause_backfill_by_triggers,
        unpause_backfill_by_query,
        TriggerAction::PauseBackfill(false)
    ),
    (
        delete_backfill_by_triggers,
        delete_backfill_by_query,
        TriggerAction::DeleteBackfill
    ),
);

/// Unlocks a trigger. Triggers here hold no lock (an execution they
/// started never blocks the next), so this answers the trigger as it is.
pub(super) async fn unlock(
    State(state): State<AppState>,
    Path(path): Path<TriggerPath>,
    Editor(_): Editor,
) -> ApiResult<Json<TriggerDetail>> {
    Ok(Json(state.engine.trigger_detail(&path.key()?).await?))
}

/// Restarts a trigger: a schedule goes on from now.
pub(super) async fn restart(
    State(state): State<AppState>,
    Path(path): Path<TriggerPath>,
    Editor(_): Editor,
) -> ApiResult<Json<TriggerDetail>> {
    Ok(Json(state.engine.restart_trigger(&path.key()?).await?))
}

/// Forgets a trigger's state (and controls); 204.
pub(super) async fn delete(
    State(state): State<AppState>,
    Path(path): Path<TriggerPath>,
    Editor(_): Editor,
) -> ApiResult<StatusCode> {
    state.engine.forget_trigger(&path.key()?).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The backfill asked for (Kestra's `backfill` of the create body).
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct BackfillRequest {
    #[schemars(with = "String")]
    start: jiff::Timestamp,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    end: Option<jiff::Timestamp>,
    #[serde(default)]
    inputs: Option<Map<String, Value>>,
    #[serde(default)]
    labels: Option<Vec<BackfillLabel>>,
}

/// `PUT /triggers/backfill/create` body: the trigger and its backfill.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct CreateBackfill {
    #[serde(flatten)]
    trigger: TriggerRef,
    backfill: BackfillRequest,
}

/// Starts a backfill of a schedule between two past dates.
pub(super) async fn create_backfill(
    State(state): State<AppState>,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<Json<TriggerDetail>> {
    let request: CreateBackfill = json_body(
        body,
        "{\"namespace\", \"flowId\", \"triggerId\", \"backfill\": {\"start\", \"end\", \"inputs\", \"labels\"}} with RFC 3339 dates",
    )
    .await?;
    let key = request.trigger.key()?;
    let given = request.backfill;
    let backfill = Backfill {
        start: given.start,
        end: given.end,
        current_date: None,
        paused: false,
        inputs: given.inputs,
        labels: given.labels,
        created: None,
    };
    Ok(Json(state.engine.create_backfill(&key, backfill).await?))
}

macro_rules! backfill_handlers {
    ($(($name:ident, $action:ident $(, $arg:expr)?)),* $(,)?) => {$(
        #[doc = concat!("`", stringify!($name), "` of one trigger's backfill.")]
        pub(super) async fn $name(
            State(state): State<AppState>,
            Editor(_): Editor,
            body: Body,
        ) -> ApiResult<Json<TriggerDetail>> {
            let trigger: TriggerRef = json_body(body, ONE).await?;
            Ok(Json(state.engine.$action(&trigger.key()? $(, $arg)?).await?))
        }
    )*};
}

backfill_handlers!(
    (pause_backfill, pause_backfill, true),
    (unpause_backfill, pause_backfill, false),
    (delete_backfill, delete_backfill),
);
