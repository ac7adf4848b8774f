//! The KV store as Kestra's API has it (`KVController`): one namespace's
//! keys (`/namespaces/{namespace}/kv`), one key's value, the keys a
//! namespace inherits from its parents (`.../kv/inheritance`), and the
//! keys of every namespace (`/kv`, paged, see `kv_search`). Viewers list
//! and read; Editors write (`PUT`: the body is the value, its type read
//! from it; optional `ttl` header, an ISO-8601 duration, and `description`
//! header) and delete (one key, or several with `{"keys": [...]}`).
//!
//! The same store the KV tasks and `kv()` use (`Engine::kv_*`).

use super::query::Path;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::extract::{Editor, Viewer};
use super::{ApiError, ApiResult, AppState, body_text, read_body};
use crate::flow::tasks::kv_expiry;
use crate::store::{KvEntry, KvType, MAX_KV_VALUE_BYTES, check_kv_key};

/// Most keys one bulk delete names.
pub const MAX_BULK_KEYS: usize = 1000;

/// `{namespace}` of the KV routes.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct NamespacePath {
    /// The namespace, as `company.team`.
    namespace: String,
}

/// `{namespace}/kv/{key}`.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct KeyPath {
    /// The namespace, as `company.team`.
    namespace: String,
    /// The key: letters, digits, `_`, `.` and `-`.
    key: String,
}

/// A key with its description and dates, without its value (Kestra's
/// `KVEntry`).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct KvEntryView {
    pub namespace: String,
    pub key: String,
    pub description: Option<String>,
    pub creation_date: String,
    pub update_date: String,
    /// When it expires; `null`: never.
    pub expiration_date: Option<String>,
}

impl From<&KvEntry> for KvEntryView {
    fn from(e: &KvEntry) -> Self {
        KvEntryView {
            namespace: e.namespace.clone(),
            key: e.key.clone(),
            description: e.description.clone(),
            creation_date: e.created.to_string(),
            update_date: e.updated.to_string(),
            expiration_date: e.expires.map(|t| t.to_string()),
        }
    }
}

/// One key's typed value (Kestra's `KvDetail`).
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct KvDetail {
    #[serde(rename = "type")]
    kind: KvType,
    value: Value,
    /// When it was last written.
    updated: String,
}

/// The keys a bulk delete names.
#[derive(Debug, Default, Deserialize, JsonSchema)]
pub(super) struct DeleteBulkRequest {
    #[serde(default)]
    #[schemars(inner(regex(pattern = r"^[A-Za-z0-9_.-]{1,255}(?!\n)$")))]
    keys: Option<Vec<String>>,
}

/// The keys a bulk delete deleted (those that existed).
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct DeleteBulkResponse {
    keys: Vec<String>,
}

pub(super) fn check_namespace(namespace: &str) -> ApiResult<()> {
    if crate::flow::is_valid_namespace(namespace) {
        return Ok(());
    }
    Err(ApiError::bad_request(
        "invalidNamespace",
        format!(
            "invalid namespace `{}`: dot-separated names of letters, digits, `_` and `-`",
            namespace.chars().take(100).collect::<String>()
        ),
    ))
}

fn check(namespace: &str, key: &str) -> ApiResult<()> {
    check_namespace(namespace)?;
    check_kv_key(key).map_err(|m| ApiError::bad_request("invalidKey", m))
}

/// The namespace's keys, with their description and dates (no values).
pub(super) async fn list(
    _: Viewer,
    State(state): State<AppState>,
    Path(path): Path<NamespacePath>,
) -> ApiResult<Json<Vec<KvEntryView>>> {
    check_namespace(&path.namespace)?;
    let entries = state.engine.kv_list(&path.namespace).await?;
    Ok(Json(entries.iter().map(KvEntryView::from).collect()))
}

/// The keys of the namespace's parents (`company` for `company.team`),
/// the nearest parent's when two have the same key; the namespace's own
/// keys are not included (as Kestra's `listKeysWithInheritence`).
pub(super) async fn inherited(
    _: Viewer,
    State(state): State<AppState>,
    Path(path): Path<NamespacePath>,
) -> ApiResult<Json<Vec<KvEntryView>>> {
    check_namespace(&path.namespace)?;
    let mut seen = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    let mut current = path.namespace.as_str();
    while let Some((parent, _)) = current.rsplit_once('.') {
        for entry in state.engine.kv_list(parent).await? {
            if seen.insert(entry.key.clone()) {
                out.push(KvEntryView::from(&entry));
            }
        }
        current = parent;
    }
    Ok(Json(out))
}

/// One key's typed value: `{"type": "STRING", "value": ..., "updated"}`.
pub(super) async fn get(
    _: Viewer,
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
) -> ApiResult<Json<KvDetail>> {
    let KeyPath { namespace, key } = path;
    check(&namespace, &key)?;
    match state.engine.kv_get(&namespace, &key).await? {
        Some(entry) => Ok(Json(KvDetail {
            kind: entry.kind,
            value: entry.value,
            updated: entry.updated.to_string(),
        })),
        None => Err(ApiError::NotFound(format!(
            "no key `{key}` in the KV store of namespace `{namespace}`"
        ))),
    }
}

/// The value a `PUT` body holds and its type, as Kestra reads it: JSON
/// (a number, a boolean, an object or array, a quoted string), else an
/// ISO-8601 date-time, date or duration, else the text itself.
pub(super) fn body_value(text: &str) -> (Value, KvType) {
    let trimmed = text.trim();
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        let kind = match &value {
            Value::String(_) | Value::Null => KvType::String,
            Value::Number(_) => KvType::Number,
            Value::Bool(_) => KvType::Boolean,
            Value::Array(_) | Value::Object(_) => KvType::Json,
        };
        return (value, kind);
    }
    let as_string = |kind| (Value::String(trimmed.to_owned()), kind);
    if trimmed.parse::<jiff::civil::Date>().is_ok() && trimmed.len() == 10 {
        return as_string(KvType::Date);
    }
    if trimmed.parse::<Timestamp>().is_ok() || trimmed.parse::<jiff::civil::DateTime>().is_ok() {
        return as_string(KvType::Datetime);
    }
    if trimmed.starts_with('P') && kv_expiry(Timestamp::UNIX_EPOCH, trimmed).is_ok() {
        return as_string(KvType::Duration);
    }
    (Value::String(text.to_owned()), KvType::String)
}

/// A header's text, or a 400 naming it.
fn header_text<'a>(headers: &'a HeaderMap, name: &'static str) -> ApiResult<Option<&'a str>> {
    match headers.get(name).map(|v| v.to_str()) {
        None => Ok(None),
        Some(Ok(text)) => Ok(Some(text)),
        Some(Err(_)) => Err(ApiError::bad_request(
            "invalidHeader",
            format!("the `{name}` header must be ASCII text"),
        )),
    }
}

/// Writes a key: the body is its value (see [`body_value`]); the `ttl`
/// header sets when it expires, `description` describes it.
pub(super) async fn put(
    _: Editor,
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<StatusCode> {
    let KeyPath { namespace, key } = path;
    check(&namespace, &key)?;
    let bytes = read_body(body).await?;
    if bytes.len() > MAX_KV_VALUE_BYTES {
        return Err(ApiError::TooLarge(format!(
            "a KV value is at most {MAX_KV_VALUE_BYTES} bytes"
        )));
    }
    let (value, kind) = body_value(body_text(&bytes)?);
    let now = Timestamp::now();
    let expires = match header_text(&headers, "ttl")? {
        None => None,
        Some(ttl) => Some(kv_expiry(now, ttl).map_err(|m| {
            ApiError::bad_request(
                "invalidTtl",
                format!("{m} (the `ttl` header is an ISO-8601 duration, as PT1H or P1D)"),
            )
        })?),
    };
    let description = header_text(&headers, "description")?.map(str::to_owned);
    let entry = KvEntry {
        namespace,
        key,
        value,
        kind,
        description,
        expires,
        created: now,
        updated: now,
    };
    state.engine.kv_put(&entry).await?;
    Ok(StatusCode::OK)
}

/// Deletes a key: `true` when it existed.
pub(super) async fn delete(
    _: Editor,
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
) -> ApiResult<Json<bool>> {
    check(&path.namespace, &path.key)?;
    Ok(Json(
        state.engine.kv_delete(&path.namespace, &path.key).await?,
    ))
}

/// Deletes the keys of `{"keys": [...]}`; answers those that existed.
/// Every key is checked before any is deleted.
pub(super) async fn delete_bulk(
    _: Editor,
    State(state): State<AppState>,
    Path(path): Path<NamespacePath>,
    body: Body,
) -> ApiResult<Json<DeleteBulkResponse>> {
    check_namespace(&path.namespace)?;
    let bytes = read_body(body).await?;
    let request: DeleteBulkRequest = if bytes.iter().all(u8::is_ascii_whitespace) {
        DeleteBulkRequest::default()
    } else {
        super::body::parse(&bytes, "{\"keys\": [\"key\", ...]}")?
    };
    let keys = request.keys.unwrap_or_default();
    if keys.len() > MAX_BULK_KEYS {
        return Err(ApiError::bad_request(
            "tooManyKeys",
            format!("at most {MAX_BULK_KEYS} keys can be deleted at once"),
        ));
    }
    for key in &keys {
        check_kv_key(key).map_err(|m| ApiError::bad_request("invalidKey", m))?;
    }
    let mut deleted = Vec::new();
    for key in keys {
        if state.engine.kv_delete(&path.namespace, &key).await? {
            deleted.push(key);
        }
    }
    Ok(Json(DeleteBulkResponse { keys: deleted }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_body_gives_its_type() {
        let kind = |text: &str| body_value(text);
        assert_eq!(kind("42"), (json!(42), KvType::Number));
        assert_eq!(kind("4.5"), (json!(4.5), KvType::Number));
        assert_eq!(kind("true"), (json!(true), KvType::Boolean));
        assert_eq!(kind("{\"a\": [1]}"), (json!({"a": [1]}), KvType::Json));
        assert_eq!(kind("[1, 2]"), (json!([1, 2]), KvType::Json));
        assert_eq!(
            kind("\"2024-01-01\""),
            (json!("2024-01-01"), KvType::String)
        );
        assert_eq!(kind("2024-01-31"), (json!("2024-01-31"), KvType::Date));
        assert_eq!(
            kind("2024-01-31T10:00:00Z"),
            (json!("2024-01-31T10:00:00Z"), KvType::Datetime)
        );
        assert_eq!(
            kind("2024-01-31T10:00:00"),
            (json!("2024-01-31T10:00:00"), KvType::Datetime)
        );
        assert_eq!(kind("PT5M"), (json!("PT5M"), KvType::Duration));
        assert_eq!(kind("P2D"), (json!("P2D"), KvType::Duration));
        assert_eq!(kind("just text"), (json!("just text"), KvType::String));
        assert_eq!(kind("Paris"), (json!("Paris"), KvType::String));
        assert_eq!(kind("2024-13-01"), (json!("2024-13-01"), KvType::String));
    }
}
