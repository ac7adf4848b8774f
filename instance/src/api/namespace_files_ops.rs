//! The rest of Kestra's namespace-file routes: stats of a file or
//! directory, its revisions (only the current one is kept), move or
//! rename, search by name, and export of every file as a zip.

use std::io::Write;

use super::query::Query;
use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::{Editor, NamespaceName, Viewer};
use super::namespace_files::{
    EntryQuery, FileAttributes, FileType, PathQuery, check_writable, keep_parent, lookup, resolve,
    resolve_entry,
};
use super::{ApiError, ApiResult, AppState};
use crate::storage::{MAX_NAMESPACE_FILES, StoragePath, is_folder_marker};

/// Most bytes an export reads.
pub const MAX_EXPORT_BYTES: u64 = 256 * 1024 * 1024;

/// One revision of a file (Kestra's `NamespaceFileRevision`).
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct FileRevision {
    revision: u32,
}

/// `?from=&to=` of a move.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct MoveQuery {
    /// The file or directory to move, as `/dir/file.txt`.
    #[schemars(regex(
        pattern = r"^/?[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*(/[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*)*(?!\n)$"
    ))]
    from: String,
    /// Where it goes; it must not exist.
    #[schemars(regex(
        pattern = r"^/?[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*(/[^/\\\x00-\x1f\x7f-\x9f.][^/\\\x00-\x1f\x7f-\x9f]*)*(?!\n)$"
    ))]
    to: String,
}

/// `?q=` of a search.
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct SearchQuery {
    /// Text the file's path contains (any case).
    q: Option<String>,
}

/// `/dir/file.txt` of a storage path under `root`.
fn relative(root: &StoragePath, path: &StoragePath) -> String {
    path.as_str()
        .strip_prefix(root.as_str())
        .unwrap_or(path.as_str())
        .to_owned()
}

/// A file's or directory's attributes (the root's for no path).
pub(super) async fn stats(
    State(state): State<AppState>,
    Query(query): Query<PathQuery>,
    Viewer(_): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Json<FileAttributes>> {
    let (root, path) = resolve(&namespace, query.path.as_deref())?;
    let storage = state.engine.storage();
    let Some(path) = path else {
        let size = storage.list(&root).await?.iter().map(|(_, s)| s).sum();
        return Ok(Json(FileAttributes::new("", FileType::Directory, size)));
    };
    match lookup(storage, &path).await? {
        Some((kind, size)) => Ok(Json(FileAttributes::new(path.file_name(), kind, size))),
        None => Err(ApiError::NotFound("no such file or directory".into())),
    }
}

/// A file's revisions: only its current one is kept, revision 1.
pub(super) async fn revisions(
    State(state): State<AppState>,
    Query(query): Query<EntryQuery>,
    Viewer(_): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Json<Vec<FileRevision>>> {
    let path = resolve_entry(&namespace, Some(query.path.as_str()))?;
    match lookup(state.engine.storage(), &path).await? {
        Some((FileType::File, _)) => Ok(Json(vec![FileRevision { revision: 1 }])),
        // Revisions are a file's: no file is there (404, as for no entry).
        Some((FileType::Directory, _)) => Err(ApiError::NotFound(
            "no such file: the path names a directory, which has no revisions".into(),
        )),
        None => Err(ApiError::NotFound("no such file".into())),
    }
}

/// Moves (renames) a file or a directory with everything in it.
pub(super) async fn move_entry(
    State(state): State<AppState>,
    Query(query): Query<MoveQuery>,
    Editor(_): Editor,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<StatusCode> {
    let (root, _) = resolve(&namespace, None)?;
    let from = resolve_entry(&namespace, Some(query.from.as_str()))?;
    let to = resolve_entry(&namespace, Some(query.to.as_str()))?;
    if to.starts_with(&from) {
        return Err(ApiError::bad_request(
            "invalidPath",
            "cannot move a file or directory into itself",
        ));
    }
    let storage = state.engine.storage();
    let Some((kind, _)) = lookup(storage, &from).await? else {
        return Err(ApiError::NotFound("no such file or directory".into()));
    };
    if lookup(storage, &to).await?.is_some() {
        return Err(ApiError::Conflict(format!(
            "`{}` already exists",
            relative(&root, &to)
        )));
    }
    check_writable(storage, &root, &to).await?;
    let moves: Vec<(StoragePath, StoragePath)> = match kind {
        FileType::File => vec![(from.clone(), to.clone())],
        FileType::Directory => {
            let mut moves = Vec::new();
            for (path, _) in storage.list(&from).await? {
                let rest = &path.as_str()[from.as_str().len()..];
                moves.push((path.clone(), to.join(rest)?));
            }
            moves
        }
    };
    for (source, target) in &moves {
        storage.put(target, storage.get(source).await?).await?;
    }
    match kind {
        FileType::File => {
            storage.delete(&from).await?;
        }
        FileType::Directory => storage.delete_prefix(&from).await?,
    }
    keep_parent(storage, &root, &from).await?;
    Ok(StatusCode::OK)
}

/// The paths (`/dir/file.txt`) of the files whose path contains `q`.
pub(super) async fn search(
    State(state): State<AppState>,
    Query(query): Query<SearchQuery>,
    Viewer(_): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Json<Vec<String>>> {
    let (root, _) = resolve(&namespace, None)?;
    let needle = query.q.unwrap_or_default().to_lowercase();
    let found = state
        .engine
        .storage()
        .list(&root)
        .await?
        .into_iter()
        .filter(|(path, _)| !is_folder_marker(path))
        .map(|(path, _)| relative(&root, &path))
        .filter(|path| path.to_lowercase().contains(&needle))
        .collect();
    Ok(Json(found))
}

/// Every file of the namespace in a zip, by path.
pub(super) async fn export(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    NamespaceName(namespace): NamespaceName,
) -> ApiResult<Response> {
    let (root, _) = resolve(&namespace, None)?;
    let storage = state.engine.storage();
    let files: Vec<(StoragePath, u64)> = storage
        .list(&root)
        .await?
        .into_iter()
        .filter(|(path, _)| !is_folder_marker(path))
        .collect();
    let total: u64 = files.iter().map(|(_, size)| size).sum();
    if files.len() > MAX_NAMESPACE_FILES || total > MAX_EXPORT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "an export takes at most {MAX_NAMESPACE_FILES} files and {MAX_EXPORT_BYTES} bytes; the namespace has {} files, {total} bytes",
            files.len()
        )));
    }
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(total > u64::from(u32::MAX / 2));
    let failed = |e: &dyn std::fmt::Display| ApiError::Internal(format!("zip: {e}"));
    for (path, _) in &files {
        let bytes = storage.get(path).await?;
        let name = relative(&root, path);
        zip.start_file(name.trim_start_matches('/'), options)
            .map_err(|e| failed(&e))?;
        zip.write_all(&bytes).map_err(|e| failed(&e))?;
    }
    let bytes = zip.finish().map_err(|e| failed(&e))?.into_inner();
    let name = format!("{namespace}_files.zip");
    Ok((
        [
            (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        bytes,
    )
        .into_response())
}
