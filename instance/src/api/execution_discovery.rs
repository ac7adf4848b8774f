//! What a user looks up before or around running flows: the latest
//! execution of flows, the namespaces and flows that can be run, and a
//! dry run of a new execution's inputs.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::{Request, State};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{FlowKey, NamespaceName, Viewer, check_namespace};
use super::flows::FlowView;
use super::inputs::request_inputs;
use super::{ApiError, ApiResult, AppState, read_body};
use crate::execution::State as ExecState;
use crate::flow;

/// Most flows one `latest` call may name.
const MAX_LATEST_FLOWS: usize = 100;

/// One flow of a `latest` request.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct FlowFilter {
    #[schemars(
        length(max = 150),
        regex(pattern = r"^[a-z0-9][a-z0-9_-]*(\.[a-z0-9][a-z0-9_-]*)*(?!\n)$")
    )]
    namespace: String,
    #[schemars(regex(pattern = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9_.-]{0,99}(?!\n)$"))]
    id: String,
}

/// The latest execution of a flow (Kestra's `LastExecutionResponse`).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct LatestExecution {
    id: String,
    flow_id: String,
    namespace: String,
    #[schemars(with = "String")]
    start_date: Timestamp,
    #[schemars(with = "String")]
    status: ExecState,
}

/// `POST /executions/latest`: for each flow named in the body (a JSON list
/// of `{"namespace", "id"}`), its latest execution, if it has one.
pub(super) async fn latest_executions(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    body: axum::body::Body,
) -> ApiResult<Json<Vec<LatestExecution>>> {
    let bytes = read_body(body).await?;
    let filters: Vec<FlowFilter> =
        super::body::parse(&bytes, "a JSON list of {\"namespace\", \"id\"} flows")?;
    if filters.len() > MAX_LATEST_FLOWS {
        return Err(ApiError::bad_request(
            "invalidBody",
            format!("at most {MAX_LATEST_FLOWS} flows at once"),
        ));
    }
    let mut flows = Vec::with_capacity(filters.len());
    for filter in filters {
        let key = FlowKey::parse(filter.namespace, filter.id).ok_or_else(|| {
            ApiError::bad_request("invalidBody", "a flow's namespace or id is not valid")
        })?;
        flows.push((key.namespace, key.id));
    }
    let latest = state.engine.latest_executions(&flows).await?;
    Ok(Json(
        latest
            .into_iter()
            .map(|e| LatestExecution {
                start_date: e.state.start_date,
                status: e.state.current,
                id: e.id,
                flow_id: e.flow_id,
                namespace: e.namespace,
            })
            .collect(),
    ))
}

/// `GET /executions/namespaces`: the namespaces holding flows that can be
/// run, sorted.
pub(super) async fn executable_namespaces(
    State(state): State<AppState>,
    Viewer(principal): Viewer,
) -> ApiResult<Json<Vec<String>>> {
    let flows = state.engine.flows().list(None).await?;
    let namespaces: BTreeSet<String> = FlowView::list(flows, &principal)
        .into_iter()
        .filter(FlowView::executable)
        .map(|f| f.namespace)
        .collect();
    Ok(Json(namespaces.into_iter().collect()))
}

/// `GET /executions/namespaces/{namespace}/flows`: the flows of exactly
/// that namespace that can be run.
pub(super) async fn executable_flows(
    State(state): State<AppState>,
    Viewer(principal): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Json<Vec<FlowView>>> {
    check_namespace(&namespace)?;
    let flows = state.engine.flows().list(Some(&namespace)).await?;
    Ok(Json(
        FlowView::list(flows, &principal)
            .into_iter()
            .filter(|f| f.executable() && f.namespace == namespace)
            .map(FlowView::labels_as_map)
            .collect(),
    ))
}

/// One input of a dry run: its value as the execution would get it, or
/// why it would be refused.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct InputCheck {
    /// The declaration: `id`, `type`, `required`.
    input: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    enabled: bool,
    is_default: bool,
    errors: Vec<InputProblem>,
}

/// Why an input would be refused.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct InputProblem {
    message: String,
}

/// The dry run of a new execution's inputs (Kestra's
/// `ApiValidateExecutionInputsResponse`).
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct InputsCheck {
    id: String,
    namespace: String,
    inputs: Vec<InputCheck>,
}

/// `POST /executions/{namespace}/{id}/validate`: checks inputs (multipart,
/// form or JSON, as when starting) against the flow's latest revision
/// without starting anything; 200 with each input's problems.
pub(super) async fn validate_inputs(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    key: FlowKey,
    request: Request,
) -> ApiResult<Json<InputsCheck>> {
    let given = request_inputs(request).await?;
    let record = state
        .engine
        .flows()
        .get(&key.namespace, &key.id, None)
        .await?
        .filter(|r| !r.deleted)
        .ok_or_else(|| ApiError::NotFound("no such flow".into()))?;
    let parsed = flow::parse(&record.source).map_err(|e| ApiError::Internal(e.to_string()))?;
    let inputs = parsed
        .inputs
        .iter()
        .map(|input| {
            let declared = serde_json::json!({"id": input.id, "type": input.kind,
                                              "required": input.required});
            match flow::resolve_inputs(std::slice::from_ref(input), &given) {
                Ok(mut resolved) => InputCheck {
                    input: declared,
                    is_default: !given.contains_key(&input.id) && input.defaults.is_some(),
                    value: resolved.remove(&input.id),
                    enabled: true,
                    errors: Vec::new(),
                },
                Err(e) => InputCheck {
                    input: declared,
                    value: given.get(&input.id).cloned(),
                    enabled: true,
                    is_default: false,
                    errors: vec![InputProblem {
                        message: e.to_string(),
                    }],
                },
            }
        })
        .collect();
    Ok(Json(InputsCheck {
        id: key.id,
        namespace: key.namespace,
        inputs,
    }))
}
