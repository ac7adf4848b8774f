//! Reading execution inputs and labels from requests: a JSON object, a
//! URL-encoded form or multipart/form-data text fields (as Kestra's clients
//! send them); labels as `key:value` lists.

use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};
use serde_json::{Map, Value};

use super::{ApiError, ApiResult, MAX_BODY_BYTES, is_multipart, read_body};
use crate::flow::Label;

fn invalid_inputs(message: &str) -> ApiError {
    ApiError::bad_request("invalidInputs", message)
}

/// Inputs from a JSON object, a URL-encoded form or multipart/form-data.
pub(super) async fn request_inputs(request: Request) -> ApiResult<Map<String, Value>> {
    if is_multipart(&request) {
        multipart_inputs(request).await
    } else {
        let headers = request.headers().clone();
        let bytes = read_body(request.into_body()).await?;
        parse_inputs(&headers, &bytes)
    }
}

/// Inputs arrive as a JSON object or as a URL-encoded form (values are
/// strings, as Kestra's API receives them).
fn parse_inputs(headers: &HeaderMap, bytes: &[u8]) -> ApiResult<Map<String, Value>> {
    if bytes.is_empty() {
        return Ok(Map::new());
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if content_type.starts_with("application/x-www-form-urlencoded") {
        let pairs =
            form_pairs(bytes).ok_or_else(|| invalid_inputs("the form body is not valid"))?;
        return Ok(pairs
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect());
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(invalid_inputs("inputs must be a JSON object")),
    }
}

/// Kestra's clients send inputs as multipart/form-data text fields.
async fn multipart_inputs(request: Request) -> ApiResult<Map<String, Value>> {
    let not_valid = || invalid_inputs("the multipart body is not valid");
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| not_valid())?;
    let mut inputs = Map::new();
    let mut total = 0usize;
    while let Some(field) = multipart.next_field().await.map_err(|_| not_valid())? {
        let Some(name) = field.name().map(str::to_owned) else {
            continue;
        };
        if field.file_name().is_some() {
            return Err(invalid_inputs("file inputs are not supported"));
        }
        let value = field
            .text()
            .await
            .map_err(|_| invalid_inputs("a multipart field is not valid text"))?;
        total += value.len();
        if total > MAX_BODY_BYTES {
            return Err(ApiError::PayloadTooLarge);
        }
        inputs.insert(name, Value::String(value));
    }
    Ok(inputs)
}

/// The pairs of a URL-encoded form or query string.
pub(super) fn form_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let url = reqwest::Url::parse(&format!("http://form.invalid/?{text}")).ok()?;
    Some(url.query_pairs().into_owned().collect())
}

/// `key:value` labels, comma-separated.
pub(super) fn parse_labels(text: Option<&str>) -> ApiResult<Vec<Label>> {
    let mut labels = Vec::new();
    for item in text
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
    {
        let (key, value) = item.split_once(':').ok_or_else(|| {
            ApiError::bad_request("invalidLabels", "labels are written key:value")
        })?;
        labels.push(Label {
            key: key.into(),
            value: value.into(),
        });
    }
    Ok(labels)
}
