//! `/namespaces/{namespace}/files`: a namespace's files as Kestra's API
//! serves them (list a directory, create one, download, upload, delete),
//! kept under the namespace's `_files` folder of the internal storage,
//! where script tasks read them (`namespaceFiles: enabled: true`). Stats,
//! revisions, move, search and export are in `namespace_files_ops`.
//!
//! Paths are relative to the namespace (`/scripts/main.py`); a path with
//! `..` or `.` segments, empty segments (`//`), control characters (NUL),
//! backslashes or more than the storage's length is refused with a 400
//! before anything is read or written.

use std::collections::BTreeMap;

use super::query::Query;
use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use bytes::Bytes;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::{Editor, NamespaceName, Viewer};
use super::files::attachment;
use super::inputs::{MAX_FILE_BYTES, read_limited};
use super::{ApiError, ApiResult, AppState};
use crate::storage::{FOLDER_MARKER, Storage, StorageError, StoragePath, is_folder_marker};

/// Longest file or directory name (as file systems have it).
const MAX_NAME_BYTES: usize = 255;

/// `?path=` of the namespace-file routes that read a directory or the
/// namespace's root (list, stats).
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct PathQuery {
    /// The file or directory, relative to the namespace (`/dir/file.txt`);
    /// the namespace's root when absent, empty or `/`.
    #[schemars(regex(
        pattern = r"^/?(?!\n)$|^/?[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*(/[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*)*(?!\n)$"
    ))]
    pub(super) path: Option<String>,
}

/// `?path=` of the namespace-file routes on one file or directory (not
/// the root): download, upload, delete, revisions, new directory.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct EntryQuery {
    /// The file or directory, relative to the namespace (`/dir/file.txt`);
    /// a trailing `/` on an upload makes a directory.
    #[schemars(regex(
        pattern = r"^/?[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*(/[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*)*/?(?!\n)$"
    ))]
    pub(super) path: String,
    /// The revision to read (only the current one, 1, is kept).
    pub(super) revision: Option<u32>,
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub(super) enum FileType {
    File,
    Directory,
}

/// A file or directory (Kestra's `FileAttributes`).
#[derive(Debug, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(super) struct FileAttributes {
    pub(super) file_name: String,
    #[serde(rename = "type")]
    pub(super) kind: FileType,
    /// Bytes; a directory's is the sum of its files'.
    pub(super) size: u64,
    /// User metadata (none is kept: always absent).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(super) metadata: BTreeMap<String, String>,
}

impl FileAttributes {
    pub(super) fn new(name: &str, kind: FileType, size: u64) -> FileAttributes {
        FileAttributes {
            file_name: name.to_owned(),
            kind,
            size,
            metadata: BTreeMap::new(),
        }
    }
}

pub(super) fn invalid_path(raw: &str, reason: &str) -> ApiError {
    let shown: String = raw.chars().take(200).collect();
    ApiError::bad_request(
        "invalidPath",
        format!(
            "namespace file path {:?} is not valid: {reason}",
            shown.escape_debug().to_string()
        ),
    )
}

/// The namespace's files folder, and the file or folder `path` names in
/// it; `None` for the folder itself (`/` or no path).
pub(super) fn resolve(
    namespace: &str,
    path: Option<&str>,
) -> ApiResult<(StoragePath, Option<StoragePath>)> {
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
    if relative.split('/').any(|s| s.len() > MAX_NAME_BYTES) {
        return Err(invalid_path(
            raw,
            "a file or directory name is at most 255 bytes",
        ));
    }
    if relative.split('/').any(|s| s == FOLDER_MARKER) {
        return Err(invalid_path(raw, "the name is reserved"));
    }
    match root.join(relative) {
        Ok(path) => Ok((root, Some(path))),
        Err(StorageError::InvalidPath { reason, .. }) => Err(invalid_path(raw, reason)),
        Err(err) => Err(err.into()),
    }
}

/// The file or folder a path names, which must not be the root.
pub(super) fn resolve_entry(namespace: &str, path: Option<&str>) -> ApiResult<StoragePath> {
    let (_, path) = resolve(namespace, path)?;
    path.ok_or_else(|| invalid_path("/", "it names the namespace's root folder"))
}

/// What is at `path`: a file (with its size), a folder (with the sum),
/// or nothing.
pub(super) async fn lookup(
    storage: &Storage,
    path: &StoragePath,
) -> ApiResult<Option<(FileType, u64)>> {
    // A folder first: some S3-compatible stores answer a file request for
    // a folder's name with an error rather than "not found".
    let inside = storage.list(path).await?;
    if inside.iter().any(|(p, _)| p != path) {
        let size = inside.iter().map(|(_, size)| size).sum();
        return Ok(Some((FileType::Directory, size)));
    }
    // A file: found in its folder's listing (a request for the file
    // itself may fail on such stores when a folder of that name was left).
    let Some((parent, _)) = path.as_str().rsplit_once('/') else {
        return Ok(None);
    };
    let found = storage
        .list(&StoragePath::new(parent)?)
        .await?
        .into_iter()
        .find(|(p, _)| p == path);
    Ok(found.map(|(_, size)| (FileType::File, size)))
}

/// Refuses to write at `path` when one of its parent folders is a file
/// (409).
pub(super) async fn check_writable(
    storage: &Storage,
    root: &StoragePath,
    path: &StoragePath,
) -> ApiResult<()> {
    let relative = &path.as_str()[root.as_str().len()..];
    let mut parent = root.clone();
    let segments: Vec<&str> = relative.split('/').filter(|s| !s.is_empty()).collect();
    for segment in &segments[..segments.len().saturating_sub(1)] {
        parent = parent.join(segment)?;
        if matches!(lookup(storage, &parent).await?, Some((FileType::File, _))) {
            return Err(ApiError::Conflict(format!(
                "`{}` is a file, not a directory",
                &parent.as_str()[root.as_str().len()..]
            )));
        }
    }
    Ok(())
}

/// After `path` left, keeps its parent folder (as on a file system) with
/// a marker when nothing else is in it; the root needs none.
pub(super) async fn keep_parent(
    storage: &Storage,
    root: &StoragePath,
    path: &StoragePath,
) -> ApiResult<()> {
    let Some((parent, _)) = path.as_str().rsplit_once('/') else {
        return Ok(());
    };
    let parent = StoragePath::new(parent)?;
    if parent == *root || !parent.starts_with(root) {
        return Ok(());
    }
    if storage.list(&parent).await?.is_empty() {
        storage
            .put(&parent.join(FOLDER_MARKER)?, Bytes::new())
            .await?;
    }
    Ok(())
}

/// Lists one directory: `[{"type": "File"|"Directory", "fileName", "size"}]`.
pub(super) async fn list_directory(
    State(state): State<AppState>,
    Query(query): Query<PathQuery>,
    Viewer(_): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Json<Vec<FileAttributes>>> {
    let (root, dir) = resolve(&namespace, query.path.as_deref())?;
    let is_root = dir.is_none();
    let dir = dir.unwrap_or(root);
    let files = state.engine.storage().list(&dir).await?;
    if files.is_empty() && !is_root {
        return Err(ApiError::NotFound("no such directory".into()));
    }
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
            None if is_folder_marker(&path) => {}
            None => {
                entries.insert(rest.to_owned(), (false, size));
            }
        }
    }
    Ok(Json(
        entries
            .into_iter()
            .map(|(name, (folder, size))| {
                let kind = if folder {
                    FileType::Directory
                } else {
                    FileType::File
                };
                FileAttributes::new(&name, kind, size)
            })
            .collect(),
    ))
}

/// Creates an (empty) directory; nothing changes when it exists.
pub(super) async fn create_directory(
    State(state): State<AppState>,
    Query(query): Query<EntryQuery>,
    Editor(_): Editor,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<StatusCode> {
    let (root, _) = resolve(&namespace, None)?;
    let dir = resolve_entry(&namespace, Some(query.path.as_str()))?;
    make_directory(state.engine.storage(), &root, &dir).await?;
    Ok(StatusCode::OK)
}

async fn make_directory(storage: &Storage, root: &StoragePath, dir: &StoragePath) -> ApiResult<()> {
    match lookup(storage, dir).await? {
        Some((FileType::Directory, _)) => return Ok(()),
        Some((FileType::File, _)) => {
            return Err(ApiError::Conflict(format!(
                "`{}` is a file",
                &dir.as_str()[root.as_str().len()..]
            )));
        }
        None => {}
    }
    let marker = dir.join(FOLDER_MARKER)?;
    check_writable(storage, root, &marker).await?;
    storage.put(&marker, Bytes::new()).await?;
    Ok(())
}

/// Downloads one namespace file (its current revision).
pub(super) async fn download(
    State(state): State<AppState>,
    Query(query): Query<EntryQuery>,
    Viewer(_): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Response> {
    let path = resolve_entry(&namespace, Some(query.path.as_str()))?;
    if query.revision.is_some_and(|r| r != 1) {
        return Err(ApiError::NotFound(
            "no such revision: only the current revision (1) of a namespace file is kept".into(),
        ));
    }
    let storage = state.engine.storage();
    if let Some((FileType::Directory, _)) = lookup(storage, &path).await? {
        return Err(invalid_path(
            query.path.as_str(),
            "it names a directory, not a file",
        ));
    }
    let bytes = storage.get(&path).await?;
    Ok(attachment(path.file_name(), bytes))
}

/// Uploads (or replaces) one namespace file from the multipart field
/// `fileContent`; a path ending with `/` (and no file) creates a directory.
pub(super) async fn upload(
    State(state): State<AppState>,
    Query(query): Query<EntryQuery>,
    Editor(_): Editor,
    NamespaceName(namespace): NamespaceName,
    request: Request,
) -> ApiResult<StatusCode> {
    let raw = query.path.clone();
    let (root, _) = resolve(&namespace, None)?;
    let path = resolve_entry(&namespace, Some(query.path.as_str()))?;
    let storage = state.engine.storage();
    let not_valid = || {
        ApiError::bad_request(
            "invalidBody",
            "expected a multipart/form-data body with a `fileContent` file part",
        )
    };
    if raw.ends_with('/') {
        // A directory: any multipart body sent along must still be one.
        if super::is_multipart(&request) {
            let mut multipart = Multipart::from_request(request, &())
                .await
                .map_err(|_| not_valid())?;
            while multipart
                .next_field()
                .await
                .map_err(|_| not_valid())?
                .is_some()
            {}
        }
        make_directory(storage, &root, &path).await?;
        return Ok(StatusCode::OK);
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| not_valid())?;
    while let Some(field) = multipart.next_field().await.map_err(|_| not_valid())? {
        if field.name() != Some("fileContent") {
            continue;
        }
        let bytes = read_limited(field, MAX_FILE_BYTES, "the file").await?;
        if let Some((FileType::Directory, _)) = lookup(storage, &path).await? {
            return Err(ApiError::Conflict(format!("`{raw}` is a directory")));
        }
        check_writable(storage, &root, &path).await?;
        storage.put(&path, bytes).await?;
        return Ok(StatusCode::OK);
    }
    Err(not_valid())
}

/// Deletes one namespace file, or a directory with everything in it.
pub(super) async fn delete(
    State(state): State<AppState>,
    Query(query): Query<EntryQuery>,
    Editor(_): Editor,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<StatusCode> {
    let (root, _) = resolve(&namespace, None)?;
    let path = resolve_entry(&namespace, Some(query.path.as_str()))?;
    let storage = state.engine.storage();
    match lookup(storage, &path).await? {
        Some((FileType::Directory, _)) => storage.delete_prefix(&path).await?,
        Some((FileType::File, _)) => {
            storage.delete(&path).await?;
        }
        None => return Err(ApiError::NotFound("no such file or directory".into())),
    }
    keep_parent(storage, &root, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}
