//! `/flows`: create, read, update and delete flows, their revisions and
//! searches. Changes go through the engine's flows service, which also
//! refreshes what the engine derived from the flows.

use axum::Json;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::{Editor, FlowKey, NamespaceName, Viewer, check_namespace};
use super::{ApiError, ApiResult, AppState, Page, body_text, read_body};
use crate::auth::{Principal, Role};
use crate::flow;
use crate::store::FlowRecord;

/// A flow revision as the API shows it.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct FlowView {
    id: String,
    namespace: String,
    revision: i64,
    source: String,
    deleted: bool,
    updated: String,
}

impl FlowView {
    /// The flow as `principal` may read it (see [`visible_source`]).
    fn for_caller(record: FlowRecord, principal: &Principal) -> FlowView {
        FlowView {
            id: record.id,
            namespace: record.namespace,
            revision: record.revision,
            source: visible_source(record.source, principal),
            deleted: record.deleted,
            updated: record.updated.to_string(),
        }
    }

    fn list(records: Vec<FlowRecord>, principal: &Principal) -> Vec<FlowView> {
        records
            .into_iter()
            .map(|r| FlowView::for_caller(r, principal))
            .collect()
    }
}

/// The source as `principal` may read it: Viewers get the webhook keys
/// redacted (a key is enough to start the flow, which Viewers may not).
pub(super) fn visible_source(source: String, principal: &Principal) -> String {
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
