//! The webhook endpoints (the rest of the trigger API is in
//! `trigger_actions`), which take no token: the key in the path is the secret (see
//! `engine::webhook`).

use axum::Json;
use axum::extract::{Request, State};

use super::query::Path;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use super::executions::ended_or_current;
use super::extract::FlowKey;
use super::inputs::form_pairs;
use super::kestra_shape::KestraExecution;
use super::{ApiError, ApiResult, AppState, read_body};
use crate::engine::WebhookRequest;
use crate::execution::Execution;

/// Longest webhook key looked up.
const MAX_KEY_LEN: usize = 256;

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct WebhookPath {
    /// Kestra's tenant segment, on `/api/v1/{tenant}/…`.
    tenant: Option<String>,
    namespace: String,
    flow_id: String,
    key: String,
    /// Anything after the key (Kestra's webhook path): accepted and not
    /// read, as on Kestra; callers route on it on their side.
    #[allow(dead_code)]
    path: Option<String>,
}

/// Starts an execution from a webhook call (GET, POST, PUT…), with or
/// without a path after the key (given to nothing: Kestra ignores it too,
/// but for routing on the caller's side). A wrong
/// tenant, a wrong key, an unknown or disabled flow and a disabled trigger
/// all answer the same 404.
pub(super) async fn webhook(
    State(state): State<AppState>,
    Path(path): Path<WebhookPath>,
    request: Request,
) -> ApiResult<Response> {
    if path.tenant.as_ref().is_some_and(|t| *t != state.tenant) {
        return Err(ApiError::NotFound("no such endpoint".into()));
    }
    let not_found = || ApiError::NotFound("no such webhook".into());
    let key = FlowKey::parse(path.namespace, path.flow_id).ok_or_else(not_found)?;
    if path.key.len() > MAX_KEY_LEN {
        return Err(not_found());
    }
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let bytes = read_body(request.into_body()).await?;
    let parameters = form_pairs(query.as_bytes()).unwrap_or_default();
    let request = WebhookRequest::new(
        &bytes,
        headers
            .iter()
            .filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))),
        parameters,
    );
    let started = state
        .engine
        .webhook(&key.namespace, &key.id, &path.key, request)
        .await?
        .ok_or_else(not_found)?;
    state.metrics.executions_started.inc();
    let execution = started.execution;
    if !started.trigger.wait {
        return Ok(Json(webhook_response(&state.tenant, &execution)).into_response());
    }
    let done = ended_or_current(&state, execution).await?;
    if started.trigger.return_outputs {
        let outputs = done.outputs.clone().unwrap_or_default();
        return Ok(Json(Value::Object(outputs)).into_response());
    }
    Ok(Json(KestraExecution::of(&done)).into_response())
}

/// The execution a webhook started, as Kestra's `WebhookResponse`.
fn webhook_response(tenant: &str, execution: &Execution) -> KestraExecution {
    const KEPT: [&str; 7] = [
        "id",
        "namespace",
        "flowId",
        "flowRevision",
        "trigger",
        "labels",
        "state",
    ];
    let mut shape = KestraExecution::of(execution);
    shape.retain(|key| KEPT.contains(&key));
    shape.insert("tenantId", Value::String(tenant.to_owned()));
    shape
}
