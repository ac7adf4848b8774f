//! `/namespaces/{namespace}/files`: a namespace's files as Kestra's API
//! serves them (list a directory, download, upload, delete), kept under
//! the namespace's `_files` folder of the internal storage. Script tasks
//! read them with `namespaceFiles: enabled: true`.
//!
//! Paths are relative to the namespace (`/scripts/main.py`); a path with
//! `..` or `.` segments, empty segments (`//`), control characters or
//! backslashes is refused before anything is read or written.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{FromRequest, Multipart, Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::extract::{Editor, NamespaceName, Viewer};
use super::files::attachment;
use super::inputs::{MAX_FILE_BYTES, read_limited};
use super::{ApiError, ApiResult, AppState};
use crate::storage::StoragePath;

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct PathQuery {
    /// A path in the namespace's files, as `/dir/file.txt`: segments of
    /// printable characters, none `.` or `..`, no backslash.
    #[schemars(
        with = "String",
        regex(
            pattern = r"^/?[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*(/[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*)*$"
        )
    )]
    path: Option<String>,
}

fn invalid_path(raw: &str, reason: &str) -> ApiError {
    let shown: String = raw.chars().take(200).collect();
    ApiError::bad_request(
        "invalidPath",
        format!(
            "namespace file path {:?} is not valid: {reason}",
            shown.escape_debug().to_string()
        ),
    )
}

/// The namespace's files folder, or the file or folder `path` names in
/// it; `None` for the folder itself (`/` or no path).
fn resolve(namespace: &str, path: Option<&str>) -> ApiResult<(StoragePath, Option<StoragePath>)> {
    let root = StoragePath::namespace_files(namespace)?;
    let raw = path.unwrap_or("/");
    let relative = raw.strip_prefix('/').unwrap_or(raw);
    if relative.is_empty() {
        return Ok((root, None));
    }
    if relative.starts_with('/') {
        return Err(invalid_path(
            raw,
            "it must be relative to the namespace, as /dir/file",
        ));
    }
    let relative = relative.strip_suffix('/').unwrap_or(relative);
    if relative.split('/').any(|s| s == ".." || s == ".") {
        return Err(invalid_path(raw, "`.` and `..` segments are not allowed"));
    }
    if relative.chars().any(|c| c.is_control() || c == '\\') {
        return Err(invalid_path(
            raw,
            "control characters and backslashes are not allowed",
        ));
    }
    match root.join(relative) {
        Ok(path) => Ok((root, Some(path))),
        Err(crate::storage::StorageError::InvalidPath { reason, .. }) => {
            Err(invalid_path(raw, reason))
        }
        Err(err) => Err(err.into()),
    }
}

/// Lists one directory: `[{"type": "File"|"Directory", "fileName", "size"}]`.
pub(super) async fn list_directory(
    State(state): State<AppState>,
    Query(query): Query<PathQuery>,
    Viewer(_): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Json<Vec<Value>>> {
    let (root, dir) = resolve(&namespace, query.path.as_deref())?;
    let dir = dir.unwrap_or(root);
    let files = state.engine.storage().list(&dir).await?;
    let prefix = format!("{}/", dir.as_str());
    // name → (is a directory, size)
    let mut entries: BTreeMap<String, (bool, u64)> = BTreeMap::new();
    for (path, size) in files {
        let Some(rest) = path.as_str().strip_prefix(&prefix) else {
            continue;
        };
        match rest.split_once('/') {
            Some((folder, _)) => {
                let entry = entries.entry(folder.to_owned()).or_insert((true, 0));
                entry.1 += size;
            }
            None => {
                entries.insert(rest.to_owned(), (false, size));
            }
        }
    }
    Ok(Json(
        entries
            .into_iter()
            .map(|(name, (folder, size))| {
                let kind = if folder { "Directory" } else { "File" };
                json!({"type": kind, "fileName": name, "size": size})
            })
            .collect(),
    ))
}

/// Downloads one namespace file.
pub(super) async fn download(
    State(state): State<AppState>,
    Query(query): Query<PathQuery>,
    Viewer(_): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Response> {
    let (_, path) = resolve(&namespace, query.path.as_deref())?;
    let path = path.ok_or_else(|| {
        ApiError::bad_request(
            "invalidPath",
            "the path names the namespace's folder, not a file",
        )
    })?;
    let bytes = state.engine.storage().get(&path).await?;
    Ok(attachment(path.file_name(), bytes))
}

/// Uploads (or replaces) one namespace file from the multipart field
/// `fileContent`.
pub(super) async fn upload(
    State(state): State<AppState>,
    Query(query): Query<PathQuery>,
    Editor(_): Editor,
    NamespaceName(namespace): NamespaceName,
    request: Request,
) -> ApiResult<StatusCode> {
    let raw = query.path.clone().unwrap_or_default();
    let (_, path) = resolve(&namespace, query.path.as_deref())?;
    let path = match path {
        Some(path) if !raw.ends_with('/') => path,
        _ => return Err(invalid_path(&raw, "it must name a file, as /dir/file.txt")),
    };
    let not_valid = || {
        ApiError::bad_request(
            "invalidBody",
            "expected a multipart/form-data body with a `fileContent` file part",
        )
    };
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| not_valid())?;
    while let Some(field) = multipart.next_field().await.map_err(|_| not_valid())? {
        if field.name() != Some("fileContent") {
            continue;
        }
        let bytes = read_limited(field, MAX_FILE_BYTES, "the file").await?;
        state.engine.storage().put(&path, bytes).await?;
        return Ok(StatusCode::OK);
    }
    Err(not_valid())
}

/// Deletes one namespace file, or a directory with everything in it.
pub(super) async fn delete(
    State(state): State<AppState>,
    Query(query): Query<PathQuery>,
    Editor(_): Editor,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<StatusCode> {
    let (_, path) = resolve(&namespace, query.path.as_deref())?;
    let path = path.ok_or_else(|| {
        ApiError::bad_request(
            "invalidPath",
            "the path names the namespace's folder; delete its files one by one",
        )
    })?;
    let storage = state.engine.storage();
    // A folder first: some S3-compatible stores answer a file request for
    // a folder's name with an error rather than "not found".
    if !storage.list(&path).await?.is_empty() {
        storage.delete_prefix(&path).await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    if storage.delete(&path).await? {
        return Ok(StatusCode::NO_CONTENT);
    }
    Err(ApiError::NotFound("no such file".into()))
}
