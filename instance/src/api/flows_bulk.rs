//! Flows acted on in bulk, as Kestra answers them: deletion of a JSON list
//! of `{namespace, id}` ([`IdWithNamespace`]), answered with the count of
//! flows deleted ([`BulkResponse`]). Ids that name no flow are skipped, as
//! Kestra skips them.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use schemars::JsonSchema;
use serde::Deserialize;

use super::bulk::{BulkResponse, MAX_BULK, json_body};
use super::{ApiError, ApiResult, AppState, Editor};

/// Kestra's `IdWithNamespace`: one flow.
#[derive(Debug, Deserialize, JsonSchema)]
pub struct IdWithNamespace {
    namespace: String,
    id: String,
}

/// Deletes the flows of a JSON list of `{namespace, id}`; the count of
/// those deleted.
pub(super) async fn delete_by_ids(
    State(state): State<AppState>,
    Editor(_): Editor,
    body: Body,
) -> ApiResult<Json<BulkResponse>> {
    let flows: Vec<IdWithNamespace> =
        json_body(body, "a JSON list of {\"namespace\", \"id\"} flows").await?;
    if flows.len() > MAX_BULK {
        return Err(ApiError::bad_request(
            "tooManyFlows",
            format!("at most {MAX_BULK} flows can be deleted at once"),
        ));
    }
    let mut count = 0;
    for flow in &flows {
        if state
            .engine
            .flows()
            .delete(&flow.namespace, &flow.id)
            .await?
        {
            count += 1;
        }
    }
    Ok(Json(BulkResponse { count }))
}
