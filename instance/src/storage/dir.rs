//! The directory backend: one file per storage path under a root folder
//! (a volume in a cluster). Files are written aside and renamed, so a
//! reader never sees half a file.

use std::path::Path;

use bytes::Bytes;

use super::{StorageError, StoragePath};

/// The marker in the names of files being written.
const PART: &str = ".part-";

pub(super) async fn put(root: &Path, path: &StoragePath, bytes: Bytes) -> Result<(), StorageError> {
    let file = root.join(path.as_str());
    if let Some(parent) = file.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(|e| write_error(path, e))?;
    }
    let tmp = file.with_file_name(format!(
        "{}{PART}{}",
        path.file_name(),
        uuid::Uuid::new_v4().simple()
    ));
    tokio::fs::write(&tmp, &bytes)
        .await
        .map_err(|e| io(path, e))?;
    if let Err(e) = tokio::fs::rename(&tmp, &file).await {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(write_error(path, e));
    }
    Ok(())
}

/// A write failure: a path whose file would be a folder, or whose folder
/// is a file, is a path that cannot be (S3 keys have no such clash).
fn write_error(path: &StoragePath, err: std::io::Error) -> StorageError {
    use std::io::ErrorKind::{AlreadyExists, DirectoryNotEmpty, IsADirectory, NotADirectory};
    match err.kind() {
        IsADirectory | NotADirectory | DirectoryNotEmpty | AlreadyExists => {
            StorageError::InvalidPath {
                path: path.as_str().chars().take(200).collect(),
                reason: "a file and a folder cannot have the same name",
            }
        }
        _ => io(path, err),
    }
}

pub(super) async fn get(root: &Path, path: &StoragePath) -> Result<Bytes, StorageError> {
    match tokio::fs::read(root.join(path.as_str())).await {
        Ok(bytes) => Ok(Bytes::from(bytes)),
        // A folder is no file (S3 stores answer 404 for a prefix).
        Err(e) if missing(&e) || e.kind() == std::io::ErrorKind::IsADirectory => {
            Err(StorageError::NotFound(path.uri()))
        }
        Err(e) => Err(io(path, e)),
    }
}

pub(super) async fn size(root: &Path, path: &StoragePath) -> Result<u64, StorageError> {
    match tokio::fs::metadata(root.join(path.as_str())).await {
        Ok(meta) if meta.is_file() => Ok(meta.len()),
        Ok(_) => Err(StorageError::NotFound(path.uri())),
        Err(e) if missing(&e) => Err(StorageError::NotFound(path.uri())),
        Err(e) => Err(io(path, e)),
    }
}

pub(super) async fn list(
    root: &Path,
    prefix: &StoragePath,
) -> Result<Vec<(StoragePath, u64)>, StorageError> {
    let mut out = Vec::new();
    let mut stack = vec![root.join(prefix.as_str())];
    while let Some(dir) = stack.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if missing(&e) => continue,
            Err(e) => return Err(io(prefix, e)),
        };
        while let Some(entry) = entries.next_entry().await.map_err(|e| io(prefix, e))? {
            let kind = entry.file_type().await.map_err(|e| io(prefix, e))?;
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains(PART) {
                    continue;
                }
                let rel = entry.path();
                let rel = rel.strip_prefix(root).unwrap_or(&rel);
                let size = entry.metadata().await.map(|m| m.len()).unwrap_or(0);
                out.push((StoragePath::new(&rel.to_string_lossy())?, size));
            }
        }
    }
    out.sort();
    Ok(out)
}

pub(super) async fn delete(root: &Path, path: &StoragePath) -> Result<bool, StorageError> {
    match tokio::fs::remove_file(root.join(path.as_str())).await {
        Ok(()) => Ok(true),
        // A folder is not a file (delete_prefix removes folders).
        Err(e) if missing(&e) || e.kind() == std::io::ErrorKind::IsADirectory => Ok(false),
        Err(e) => Err(io(path, e)),
    }
}

pub(super) async fn delete_prefix(root: &Path, prefix: &StoragePath) -> Result<(), StorageError> {
    match tokio::fs::remove_dir_all(root.join(prefix.as_str())).await {
        Ok(()) => Ok(()),
        Err(e) if missing(&e) => Ok(()),
        Err(e) => Err(io(prefix, e)),
    }
}

/// Not there, or a file where a folder of the path was expected.
fn missing(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    )
}

fn io(path: &StoragePath, err: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.uri(),
        reason: err.kind().to_string(),
    }
}
