//! `/flows`: create, read, update and delete flows, their revisions and
//! searches. Changes go through the engine's flows service, which also
//! refreshes what the engine derived from the flows.

use super::query::Query;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::extract::{Editor, FlowKey, NamespaceName, Viewer, check_namespace};
use super::{ApiError, ApiResult, AppState, Page, body_text, read_body};
use crate::auth::{Principal, Role};
use crate::flow;
use crate::store::FlowRecord;

/// A flow revision as the API shows it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct FlowView {
    pub(super) id: String,
    pub(super) namespace: String,
    revision: i64,
    source: String,
    deleted: bool,
    updated: String,
    /// From the source, as Kestra's clients expect them on a flow.
    disabled: bool,
    draft: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    /// `[{"key", "value"}]`, or a map (see [`FlowView::labels_as_map`]).
    labels: Value,
    tasks: Vec<Value>,
}

impl FlowView {
    /// The flow as `principal` may read it (see [`visible_source`]).
    pub(super) fn for_caller(record: FlowRecord, principal: &Principal) -> FlowView {
        let source = visible_source(record.source, principal);
        let parsed: Value = serde_norway::from_str(&source).unwrap_or(Value::Null);
        FlowView {
            id: record.id,
            namespace: record.namespace,
            revision: record.revision,
            deleted: record.deleted,
            updated: record.updated.to_string(),
            disabled: parsed["disabled"].as_bool().unwrap_or(false),
            draft: false,
            description: parsed["description"].as_str().map(str::to_owned),
            labels: Value::Array(label_list(&parsed["labels"])),
            tasks: parsed["tasks"].as_array().cloned().unwrap_or_default(),
            source,
        }
    }

    /// The labels as a map of key to value, as Kestra's `FlowForExecution`
    /// has them.
    pub(super) fn labels_as_map(mut self) -> FlowView {
        if let Value::Array(items) = &self.labels {
            let map: serde_json::Map<String, Value> = items
                .iter()
                .filter_map(|l| Some((l["key"].as_str()?.to_owned(), l["value"].clone())))
                .collect();
            self.labels = Value::Object(map);
        }
        self
    }

    /// Whether the flow can be run (live and not disabled).
    pub(super) fn executable(&self) -> bool {
        !self.deleted && !self.disabled
    }

    pub(super) fn list(records: Vec<FlowRecord>, principal: &Principal) -> Vec<FlowView> {
        records
            .into_iter()
            .map(|r| FlowView::for_caller(r, principal))
            .collect()
    }
}

/// A flow's labels as Kestra lists them: `[{"key", "value"}]`, from the
/// source's map (or list).
fn label_list(labels: &Value) -> Vec<Value> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match labels {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| json!({"key": k, "value": text(v)}))
            .collect(),
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    }
}

/// The source as `principal` may read it: Viewers get the webhook keys
/// redacted (a key is enough to start the flow, which Viewers may not).
pub(crate) fn visible_source(source: String, principal: &Principal) -> String {
    if principal.role >= Role::Editor {
        source
    } else {
        flow::redact_webhook_keys(&source)
    }
}

pub(super) async fn create_flow(
    State(state): State<AppState>,
    Editor(principal): Editor,
    body: Body,
) -> ApiResult<Json<FlowView>> {
    let bytes = read_body(body).await?;
    let record = state.engine.flows().create(body_text(&bytes)?).await?;
    Ok(Json(FlowView::for_caller(record, &principal)))
}

pub(super) async fn update_flow(
    State(state): State<AppState>,
    Editor(principal): Editor,
    key: FlowKey,
    body: Body,
) -> ApiResult<Json<FlowView>> {
    let bytes = read_body(body).await?;
    let source = body_text(&bytes)?;
    let record = state
        .engine
        .flows()
        .update(&key.namespace, &key.id, source)
        .await?;
    Ok(Json(FlowView::for_caller(record, &principal)))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct RevisionQuery {
    #[schemars(range(min = 1))]
    revision: Option<i64>,
}

pub(super) async fn get_flow(
    State(state): State<AppState>,
    Query(query): Query<RevisionQuery>,
    Viewer(principal): Viewer,
    key: FlowKey,
) -> ApiResult<Json<FlowView>> {
    let record = state
        .engine
        .flows()
        .get(&key.namespace, &key.id, query.revision)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such flow".into()))?;
    Ok(Json(FlowView::for_caller(record, &principal)))
}

pub(super) async fn flow_revisions(
    State(state): State<AppState>,
    Viewer(principal): Viewer,
    key: FlowKey,
) -> ApiResult<Json<Vec<FlowView>>> {
    let revisions = state
        .engine
        .flows()
        .revisions(&key.namespace, &key.id)
        .await?;
    if revisions.is_empty() {
        return Err(ApiError::NotFound("no such flow".into()));
    }
    Ok(Json(FlowView::list(revisions, &principal)))
}

pub(super) async fn delete_flow(
    State(state): State<AppState>,
    Editor(_): Editor,
    key: FlowKey,
) -> ApiResult<StatusCode> {
    if state.engine.flows().delete(&key.namespace, &key.id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("no such flow".into()))
    }
}

pub(super) async fn list_namespace(
    State(state): State<AppState>,
    Viewer(principal): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Json<Vec<FlowView>>> {
    let flows = state.engine.flows().list(Some(&namespace)).await?;
    Ok(Json(FlowView::list(flows, &principal)))
}

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct NamespaceQuery {
    pub(super) namespace: Option<String>,
}

impl NamespaceQuery {
    /// The namespace searched, when given, checked like a path's.
    pub(super) fn checked(&self) -> ApiResult<Option<&str>> {
        if let Some(ns) = &self.namespace {
            check_namespace(ns)?;
        }
        Ok(self.namespace.as_deref())
    }
}

pub(super) async fn search_flows(
    State(state): State<AppState>,
    Query(query): Query<NamespaceQuery>,
    Viewer(principal): Viewer,
) -> ApiResult<Json<Page<FlowView>>> {
    let flows = state.engine.flows().list(query.checked()?).await?;
    let total = flows.len() as u64;
    let results = FlowView::list(flows, &principal);
    Ok(Json(Page { results, total }))
}
