//! Flow tools of Kestra's API that change nothing: validation of flow
//! sources (several YAML documents at once), of one task or trigger, the
//! flow graph (from a source or of a stored flow), one task of a stored
//! flow, and the distinct namespaces of the flows.

use super::query::Path;
use super::query::Query;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{FlowKey, Viewer};
use super::{ApiError, ApiResult, AppState, body_text, read_body};
use crate::flow::graph::{FlowGraph, graph};
use crate::flow::{self, FlowError};

/// Most YAML documents validated in one call.
const MAX_DOCUMENTS: usize = 100;

/// Kestra's `ValidateConstraintViolation`: what is wrong with one document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ValidateConstraintViolation {
    /// The document's position, from 0.
    pub index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Every problem, one a line; absent when the document is valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraints: Option<String>,
    pub outdated: bool,
    pub deprecation_paths: Vec<String>,
    pub warnings: Vec<String>,
    pub infos: Vec<String>,
}

/// The documents of a multi-document YAML text (separated by `---` lines).
fn documents(text: &str) -> Vec<String> {
    let mut docs = vec![String::new()];
    for line in text.lines() {
        if line.trim_end() == "---" {
            docs.push(String::new());
        } else if let Some(doc) = docs.last_mut() {
            doc.push_str(line);
            doc.push('\n');
        }
    }
    docs.retain(|d| !d.trim().is_empty());
    docs
}

fn constraints(err: &FlowError) -> String {
    match err {
        FlowError::Yaml { .. } => err.to_string(),
        FlowError::Invalid { problems } => problems
            .iter()
            .map(|p| format!("{}: {}", p.path, p.message))
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// Validates one document; `id` and `namespace` are read leniently so an
/// invalid flow is still named.
fn validate_one(index: usize, source: &str) -> ValidateConstraintViolation {
    let loose: Option<Value> = serde_norway::from_str(source).ok();
    let field = |name: &str| {
        loose
            .as_ref()
            .and_then(|v| v.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    ValidateConstraintViolation {
        index: u32::try_from(index).unwrap_or(u32::MAX),
        flow: field("id"),
        namespace: field("namespace"),
        constraints: flow::parse(source).err().map(|e| constraints(&e)),
        ..Default::default()
    }
}

/// `POST /flows/validate`: one answer per YAML document.
pub(super) async fn validate_flows(
    Viewer(_): Viewer,
    body: Body,
) -> ApiResult<Json<Vec<ValidateConstraintViolation>>> {
    let bytes = read_body(body).await?;
    let docs = documents(body_text(&bytes)?);
    if docs.len() > MAX_DOCUMENTS {
        return Err(ApiError::bad_request(
            "tooManyDocuments",
            format!("at most {MAX_DOCUMENTS} flows can be validated at once"),
        ));
    }
    Ok(Json(
        docs.iter()
            .enumerate()
            .map(|(i, d)| validate_one(i, d))
            .collect(),
    ))
}

/// `section` of `/flows/validate/task` (TASKS or TRIGGERS).
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct SectionQuery {
    /// TASKS (default) or TRIGGERS, in any case.
    #[schemars(regex(pattern = r"^(TASKS|TRIGGERS|tasks|triggers)(?!\n)$"))]
    section: Option<String>,
}

/// A flow holding `item` (JSON or YAML text) as its only task or trigger.
fn wrapped(item: &str, as_trigger: bool) -> ApiResult<String> {
    // JSON first: YAML does not read every JSON string (escaped surrogate
    // pairs, C1 control characters).
    let value: Value = serde_json::from_str(item)
        .or_else(|_| serde_norway::from_str(item))
        .map_err(|e| {
            ApiError::bad_request(
                "invalidBody",
                format!("the body must be a task or trigger object: {e}"),
            )
        })?;
    if !value.is_object() {
        return Err(ApiError::bad_request(
            "invalidBody",
            "the body must be a task or trigger object",
        ));
    }
    let placeholder = serde_json::json!({"id": "validate", "type": "io.kestra.plugin.core.log.Log", "message": "-"});
    let flow = if as_trigger {
        serde_json::json!({"id": "validate", "namespace": "validate", "tasks": [placeholder], "triggers": [value]})
    } else {
        serde_json::json!({"id": "validate", "namespace": "validate", "tasks": [value]})
    };
    // JSON is YAML.
    Ok(flow.to_string())
}

async fn validate_item(
    body: Body,
    as_trigger: bool,
) -> ApiResult<Json<ValidateConstraintViolation>> {
    let bytes = read_body(body).await?;
    let source = wrapped(body_text(&bytes)?, as_trigger)?;
    let mut answer = validate_one(0, &source);
    answer.flow = None;
    answer.namespace = None;
    Ok(Json(answer))
}

/// `POST /flows/validate/task`: one task (JSON), checked as a flow's task.
pub(super) async fn validate_task(
    Query(query): Query<SectionQuery>,
    Viewer(_): Viewer,
    body: Body,
) -> ApiResult<Json<ValidateConstraintViolation>> {
    let as_trigger = match query
        .section
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("TASKS") => false,
        Some("TRIGGERS") => true,
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalidSection",
                format!("section {other:?} is not TASKS or TRIGGERS"),
            ));
        }
    };
    validate_item(body, as_trigger).await
}

/// `POST /flows/validate/trigger`: one trigger (JSON).
pub(super) async fn validate_trigger(
    Viewer(_): Viewer,
    body: Body,
) -> ApiResult<Json<ValidateConstraintViolation>> {
    validate_item(body, true).await
}

/// `POST /flows/graph`: the graph of a flow source (400 when it is invalid).
pub(super) async fn graph_from_source(Viewer(_): Viewer, body: Body) -> ApiResult<Json<FlowGraph>> {
    let bytes = read_body(body).await?;
    let flow = flow::parse(body_text(&bytes)?)?;
    Ok(Json(graph(&flow)))
}

/// `revision` of a stored flow's graph.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct RevisionQuery {
    revision: Option<i64>,
}

async fn stored_flow(
    state: &AppState,
    key: &FlowKey,
    revision: Option<i64>,
) -> ApiResult<flow::Flow> {
    let record = state
        .engine
        .flows()
        .get(&key.namespace, &key.id, revision)
        .await?
        .filter(|r| !r.deleted)
        .ok_or_else(|| ApiError::NotFound("no such flow".into()))?;
    flow::parse(&record.source)
        .map_err(|e| ApiError::Internal(format!("stored flow no longer parses: {e}")))
}

/// `GET /flows/{namespace}/{id}/graph`: the graph of a stored flow.
pub(super) async fn stored_graph(
    State(state): State<AppState>,
    Query(query): Query<RevisionQuery>,
    Viewer(_): Viewer,
    key: FlowKey,
) -> ApiResult<Json<FlowGraph>> {
    Ok(Json(graph(
        &stored_flow(&state, &key, query.revision).await?,
    )))
}

/// `{namespace}/{id}/tasks/{task_id}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct TaskPath {
    task_id: String,
}

/// The object declaring task `id` anywhere in a flow document.
fn find_task(value: &Value, id: &str) -> Option<Value> {
    match value {
        Value::Object(map) => {
            if map.get("id").and_then(Value::as_str) == Some(id) && map.contains_key("type") {
                return Some(value.clone());
            }
            map.iter()
                .filter(|(k, _)| k.as_str() != "triggers")
                .find_map(|(_, v)| find_task(v, id))
        }
        Value::Array(items) => items.iter().find_map(|v| find_task(v, id)),
        _ => None,
    }
}

/// `GET /flows/{namespace}/{id}/tasks/{taskId}`: one task as declared.
pub(super) async fn flow_task(
    State(state): State<AppState>,
    Path(path): Path<TaskPath>,
    Viewer(principal): Viewer,
    key: FlowKey,
) -> ApiResult<Json<Value>> {
    let record = state
        .engine
        .flows()
        .get(&key.namespace, &key.id, None)
        .await?
        .filter(|r| !r.deleted)
        .ok_or_else(|| ApiError::NotFound("no such flow".into()))?;
    let source = super::flows::visible_source(record.source, &principal);
    let document: Value = serde_norway::from_str(&source)
        .map_err(|e| ApiError::Internal(format!("stored flow no longer reads: {e}")))?;
    find_task(&document, &path.task_id)
        .map(Json)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no task {:?} in flow {}/{}",
                path.task_id, key.namespace, key.id
            ))
        })
}

/// `q` of the distinct namespaces.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct NamespacesQuery {
    q: Option<String>,
}

/// `GET /flows/distinct-namespaces`: the namespaces that have flows, sorted.
pub(super) async fn distinct_namespaces(
    State(state): State<AppState>,
    Query(query): Query<NamespacesQuery>,
    Viewer(_): Viewer,
) -> ApiResult<Json<Vec<String>>> {
    let q = query.q.unwrap_or_default().to_lowercase();
    let mut namespaces: Vec<String> = state
        .engine
        .flows()
        .list(None)
        .await?
        .into_iter()
        .map(|r| r.namespace)
        .filter(|ns| ns.to_lowercase().contains(&q))
        .collect();
    namespaces.sort();
    namespaces.dedup();
    Ok(Json(namespaces))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_split_on_separator_lines() {
        let docs = documents("---\nid: a\n---\n\nid: b\nx: '---'\n---\n");
        assert_eq!(docs, ["id: a\n", "\nid: b\nx: '---'\n"]);
    }

    #[test]
    fn an_invalid_flow_is_still_named() {
        let v = validate_one(
            3,
            "id: f\nnamespace: n\ntasks:\n  - id: t\n    type: nope\n",
        );
        assert_eq!(v.index, 3);
        assert_eq!(v.flow.as_deref(), Some("f"));
        assert!(v.constraints.is_some_and(|c| c.contains("tasks[0]")));
    }
}
