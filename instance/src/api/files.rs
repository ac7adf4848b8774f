//! `/executions/{id}/file` and `/executions/{id}/file/metas`: an
//! execution's files (FILE inputs, task output files) as Kestra serves
//! them, to anyone who may read the execution, and only from that
//! execution's own storage folder.

use super::query::Query;
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::{ExecutionId, Viewer};
use super::{ApiError, ApiResult, AppState};
use crate::storage::StoragePath;

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct FileQuery {
    /// The file's `kestra:///` URI (required: a 400 says so without it).
    #[schemars(
        with = "String",
        regex(pattern = r"^kestra:///[^\\\x00-\x1f\x7f-\x9f]+(?!\n)$")
    )]
    path: Option<String>,
}

/// The checked `path` of a file of execution `id`: a `kestra:///` URI
/// inside that execution's own folder.
async fn execution_file(state: &AppState, id: &str, query: FileQuery) -> ApiResult<StoragePath> {
    let execution = state
        .engine
        .execution(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such execution".into()))?;
    let uri = query.path.ok_or_else(|| {
        ApiError::bad_request("invalidPath", "the `path` query parameter is required")
    })?;
    let path = StoragePath::from_uri(&uri)?;
    let own = StoragePath::execution(&execution.namespace, &execution.flow_id, &execution.id)?;
    if !path.starts_with(&own) {
        return Err(ApiError::ForbiddenBecause(format!(
            "the file is not one of this execution's files: its path must start with {}/",
            own.uri()
        )));
    }
    Ok(path)
}

/// Downloads one of an execution's files.
pub(super) async fn download(
    State(state): State<AppState>,
    Query(query): Query<FileQuery>,
    Viewer(_): Viewer,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Response> {
    let path = execution_file(&state, &id, query).await?;
    let bytes = state.engine.storage().get(&path).await?;
    Ok(attachment(path.file_name(), bytes))
}

/// What `/file/metas` tells of a file.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct FileMetas {
    /// Its size in bytes.
    size: u64,
}

/// `{"size": n}` of one of an execution's files.
pub(super) async fn metas(
    State(state): State<AppState>,
    Query(query): Query<FileQuery>,
    Viewer(_): Viewer,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Json<FileMetas>> {
    let path = execution_file(&state, &id, query).await?;
    let size = state.engine.storage().size(&path).await?;
    Ok(Json(FileMetas { size }))
}

/// A file download: its bytes with a `Content-Disposition` naming it (an
/// ASCII fallback and the UTF-8 name, RFC 6266).
pub(super) fn attachment(name: &str, bytes: bytes::Bytes) -> Response {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded: String = name
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    let disposition = format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}");
    (
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (header::CONTENT_DISPOSITION, disposition),
        ],
        Body::from(bytes),
    )
        .into_response()
}
