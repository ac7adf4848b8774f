//! `/namespaces/{namespace}/kv`: the namespace's KV store, as Kestra's API
//! has it. Viewers list and read; Editors write (`PUT`, the body is the
//! JSON value, or text; optional `ttl` header, an ISO-8601 duration) and
//! delete.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Editor, Viewer};
use super::{ApiError, ApiResult, AppState, body_text, read_body};
use crate::flow::tasks::kv_expiry;
use crate::store::{KvEntry, MAX_KV_VALUE_BYTES, check_kv_key};

/// `{namespace}` (by name: the tenant form adds `{tenant}` before it).
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct NamespacePath {
    namespace: String,
}

/// `{namespace}/kv/{key}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct KeyPath {
    namespace: String,
    key: String,
}

fn check(namespace: &str, key: Option<&str>) -> ApiResult<()> {
    if !crate::flow::is_valid_namespace(namespace) {
        return Err(ApiError::bad_request(
            "invalidNamespace",
            "invalid namespace name",
        ));
    }
    if let Some(key) = key {
        check_kv_key(key).map_err(|m| ApiError::bad_request("invalidKey", m))?;
    }
    Ok(())
}

fn time(t: Option<Timestamp>) -> Value {
    t.map_or(Value::Null, |t| Value::String(t.to_string()))
}

/// The namespace's keys, with their description and dates (no values).
pub(super) async fn list(
    _: Viewer,
    State(state): State<AppState>,
    Path(NamespacePath { namespace }): Path<NamespacePath>,
) -> ApiResult<Json<Value>> {
    check(&namespace, None)?;
    let entries = state.engine.kv_list(&namespace).await?;
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({
                "key": e.key,
                "description": e.description,
                "creationDate": time(Some(e.created)),
                "updateDate": time(Some(e.updated)),
                "expirationDate": time(e.expires),
            })
        })
        .collect();
    Ok(Json(Value::Array(list)))
}

/// One key's typed value: `{"type": "STRING", "value": ...}`.
pub(super) async fn get(
    _: Viewer,
    State(state): State<AppState>,
    Path(KeyPath { namespace, key }): Path<KeyPath>,
) -> ApiResult<Json<Value>> {
    check(&namespace, Some(&key))?;
    match state.engine.kv_get(&namespace, &key).await? {
        Some(entry) => Ok(Json(json!({"type": entry.kind, "value": entry.value}))),
        None => Err(ApiError::NotFound(format!(
            "no key `{key}` in the KV store of namespace `{namespace}`"
        ))),
    }
}

/// Writes a key: the body is its JSON value (text that is not JSON is a
/// string); the `ttl` header sets when it expires.
pub(super) async fn put(
    _: Editor,
    State(state): State<AppState>,
    Path(KeyPath { namespace, key }): Path<KeyPath>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    check(&namespace, Some(&key))?;
    let bytes = read_body(body).await?;
    if bytes.len() > MAX_KV_VALUE_BYTES {
        return Err(ApiError::PayloadTooLarge);
    }
    let text = body_text(&bytes)?;
    let value = serde_json::from_str::<Value>(text).unwrap_or_else(|_| Value::String(text.into()));
    let (value, kind) = crate::flow::tasks::kv_typed(value, None)
        .map_err(|m| ApiError::bad_request("invalidValue", m))?;
    let now = Timestamp::now();
    let expires = match headers.get("ttl").map(|v| v.to_str()) {
        None => None,
        Some(Ok(ttl)) => {
            Some(kv_expiry(now, ttl).map_err(|m| ApiError::bad_request("invalidTtl", m))?)
        }
        Some(Err(_)) => {
            return Err(ApiError::bad_request(
                "invalidTtl",
                "ttl: not an ISO-8601 duration",
            ));
        }
    };
    let entry = KvEntry {
        namespace,
        key,
        value,
        kind,
        description: None,
        expires,
        created: now,
        updated: now,
    };
    state.engine.kv_put(&entry).await?;
    Ok(StatusCode::OK.into_response())
}

/// Deletes a key: `true` when it existed.
pub(super) async fn delete(
    _: Editor,
    State(state): State<AppState>,
    Path(KeyPath { namespace, key }): Path<KeyPath>,
) -> ApiResult<Json<bool>> {
    check(&namespace, Some(&key))?;
    Ok(Json(state.engine.kv_delete(&namespace, &key).await?))
}
