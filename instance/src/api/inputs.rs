//! Reading execution inputs and labels from requests: a JSON object, a
//! URL-encoded form or multipart/form-data fields (as Kestra's clients
//! send them: text fields, and file parts for FILE inputs, stored in the
//! execution's storage as Kestra does); labels as `key:value` lists.

use axum::extract::multipart::Field;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use serde_json::{Map, Value};

use super::{ApiError, ApiResult, MAX_BODY_BYTES, is_multipart, read_body};
use crate::flow::Label;
use crate::storage::{Storage, StoragePath};

/// Largest file a FILE input or a namespace file upload may be.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Most files one request may upload.
pub const MAX_FILES: usize = 16;

/// Where the file parts of a request go: `<execution>/inputs/<input>/<file>`.
#[derive(Debug)]
pub(super) struct FileSink<'a> {
    pub storage: &'a Storage,
    /// The execution's folder.
    pub execution: StoragePath,
    /// What was stored, for the caller to remove when the start fails.
    pub stored: Vec<StoragePath>,
}

fn invalid_inputs(message: &str) -> ApiError {
    ApiError::bad_request("invalidInputs", message)
}

/// Inputs from a JSON object, a URL-encoded form or multipart/form-data
/// (file parts refused).
pub(super) async fn request_inputs(request: Request) -> ApiResult<Map<String, Value>> {
    request_inputs_with_files(request, None).await
}

/// [`request_inputs`], with multipart file parts stored through `files`
/// (each input's value becomes its file's `kestra:///` URI); without a
/// sink file parts are refused.
pub(super) async fn request_inputs_with_files(
    request: Request,
    files: Option<&mut FileSink<'_>>,
) -> ApiResult<Map<String, Value>> {
    if is_multipart(&request) {
        multipart_inputs(request, files).await
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

/// Kestra's clients send inputs as multipart/form-data: text fields, and
/// file parts named after FILE inputs.
async fn multipart_inputs(
    request: Request,
    mut files: Option<&mut FileSink<'_>>,
) -> ApiResult<Map<String, Value>> {
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
        if let Some(file_name) = field.file_name().map(str::to_owned) {
            let Some(sink) = files.as_deref_mut() else {
                return Err(invalid_inputs("file inputs are not accepted here"));
            };
            let uri = store_file(sink, &name, &file_name, field).await?;
            inputs.insert(name, Value::String(uri));
            continue;
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

/// Stores one file part at `<execution>/inputs/<input>/<file name>`; its URI.
async fn store_file(
    sink: &mut FileSink<'_>,
    input: &str,
    file_name: &str,
    field: Field<'_>,
) -> ApiResult<String> {
    if sink.stored.len() >= MAX_FILES {
        return Err(invalid_inputs(&format!(
            "at most {MAX_FILES} files can be uploaded at once"
        )));
    }
    if !crate::flow::is_valid_flow_id(input) {
        return Err(invalid_inputs(
            "a file part must be named after a FILE input (letters, digits, `_` and `-`)",
        ));
    }
    let name = upload_name(file_name).ok_or_else(|| {
        invalid_inputs(&format!(
            "the file name of input `{input}` is not valid: it must be a file name without control characters, not empty, `.` or `..`"
        ))
    })?;
    let path = sink
        .execution
        .join(&format!("inputs/{input}/{name}"))
        .map_err(|e| invalid_inputs(&e.to_string()))?;
    let bytes = read_limited(field, MAX_FILE_BYTES, &format!("input `{input}`")).await?;
    sink.storage.put(&path, bytes).await?;
    let uri = path.uri();
    sink.stored.push(path);
    Ok(uri)
}

/// A file name from a client: its last path segment (browsers may send a
/// full path), checked as one storage path segment.
pub(super) fn upload_name(file_name: &str) -> Option<String> {
    let name = file_name.rsplit(['/', '\\']).next()?.trim();
    let valid = !name.is_empty()
        && name != "."
        && name != ".."
        && name.len() <= 255
        && !name.chars().any(char::is_control);
    valid.then(|| name.to_owned())
}

/// A multipart part's bytes, refused once past `limit`.
pub(super) async fn read_limited(
    mut field: Field<'_>,
    limit: usize,
    what: &str,
) -> ApiResult<Bytes> {
    let mut buffer = BytesMut::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|_| invalid_inputs("the multipart body is not valid"))?
    {
        if buffer.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "{what} is larger than {} MiB",
                limit / (1024 * 1024)
            )));
        }
        buffer.extend_from_slice(&chunk);
    }
    Ok(buffer.freeze())
}

/// The pairs of a URL-encoded form or query string.
pub(crate) fn form_pairs(bytes: &[u8]) -> Option<Vec<(String, String)>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let url = reqwest::Url::parse(&format!("http://form.invalid/?{text}")).ok()?;
    Some(url.query_pairs().into_owned().collect())
}

/// `key:value` labels, comma-separated.
pub(crate) fn parse_labels(text: Option<&str>) -> ApiResult<Vec<Label>> {
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
