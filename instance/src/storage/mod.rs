//! Internal storage: the files of executions (FILE inputs, task output
//! files) and namespace files, addressed by `kestra:///...` URIs as in
//! Kestra. On a directory (a volume in a cluster) by default, or in an
//! S3-compatible object store.
//!
//! Paths follow Kestra's layout, the namespace's dots as folders:
//! `company/team/<flow>/executions/<execution>/tasks/<task>/<taskrun>/<file>`,
//! `.../executions/<execution>/inputs/<input>/<file>`, and namespace files
//! under `company/team/_files/<path>`.

use std::path::PathBuf;

use bytes::Bytes;

use crate::config::StorageSettings;

/// The URI scheme of internal-storage files.
pub const SCHEME: &str = "kestra://";

/// Longest path kept.
pub const MAX_PATH: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("file not found: {0}")]
    NotFound(String),
    #[error("invalid storage path `{path}`: {reason}")]
    InvalidPath { path: String, reason: &'static str },
    #[error("internal storage failed on {path}: {reason}")]
    Io { path: String, reason: String },
}

/// A relative, checked path inside the storage: segments of printable
/// characters, none empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoragePath(String);

impl StoragePath {
    pub fn new(path: &str) -> Result<StoragePath, StorageError> {
        let bad = |reason| StorageError::InvalidPath {
            path: path.chars().take(200).collect(),
            reason,
        };
        let trimmed = path.trim_start_matches('/');
        if trimmed.is_empty() {
            return Err(bad("empty"));
        }
        if trimmed.len() > MAX_PATH {
            return Err(bad("too long"));
        }
        for segment in trimmed.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(bad("empty, `.` or `..` segment"));
            }
            if segment.chars().any(|c| c.is_control() || c == '\\') {
                return Err(bad("control character or backslash"));
            }
        }
        Ok(StoragePath(trimmed.to_owned()))
    }

    /// Reads a `kestra:///path` URI.
    pub fn from_uri(uri: &str) -> Result<StoragePath, StorageError> {
        let rest = uri.strip_prefix(SCHEME).ok_or(StorageError::InvalidPath {
            path: uri.chars().take(200).collect(),
            reason: "not a kestra:// URI",
        })?;
        StoragePath::new(rest)
    }

    /// `kestra:///path`.
    pub fn uri(&self) -> String {
        format!("{SCHEME}/{}", self.0)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// This path with `name` (itself checked) appended.
    pub fn join(&self, name: &str) -> Result<StoragePath, StorageError> {
        StoragePath::new(&format!("{}/{}", self.0, name.trim_start_matches('/')))
    }

    /// The last segment.
    pub fn file_name(&self) -> &str {
        self.0.rsplit('/').next().unwrap_or(&self.0)
    }

    /// The folder of a namespace (`company.team` → `company/team`).
    pub fn namespace(namespace: &str) -> Result<StoragePath, StorageError> {
        StoragePath::new(&namespace.replace('.', "/"))
    }

    /// Where an execution's files are.
    pub fn execution(
        namespace: &str,
        flow_id: &str,
        execution_id: &str,
    ) -> Result<StoragePath, StorageError> {
        StoragePath::namespace(namespace)?.join(&format!("{flow_id}/executions/{execution_id}"))
    }

    /// Where one task run's output files go.
    pub fn task_run(
        namespace: &str,
        flow_id: &str,
        execution_id: &str,
        task_id: &str,
        task_run_id: &str,
    ) -> Result<StoragePath, StorageError> {
        StoragePath::execution(namespace, flow_id, execution_id)?
            .join(&format!("tasks/{task_id}/{task_run_id}"))
    }

    /// Where a namespace's files are (`company/team/_files`).
    pub fn namespace_files(namespace: &str) -> Result<StoragePath, StorageError> {
        StoragePath::namespace(namespace)?.join("_files")
    }

    /// Whether `self` is `prefix` or inside it.
    pub fn starts_with(&self, prefix: &StoragePath) -> bool {
        self.0 == prefix.0 || self.0.starts_with(&format!("{}/", prefix.0))
    }
}

/// The storage; cheap to clone.
#[derive(Debug, Clone)]
pub struct Storage {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Dir(PathBuf),
}

impl Storage {
    pub fn open(settings: &StorageSettings) -> Result<Storage, StorageError> {
        match settings {
            StorageSettings::Dir(dir) => Ok(Storage {
                backend: Backend::Dir(dir.clone()),
            }),
            StorageSettings::S3(s3) => Err(StorageError::Io {
                path: s3.endpoint.clone(),
                reason: "S3-compatible storage is not built yet".into(),
            }),
        }
    }

    /// Storage in a directory (tests, the standalone instance).
    pub fn dir(dir: impl Into<PathBuf>) -> Storage {
        Storage {
            backend: Backend::Dir(dir.into()),
        }
    }

    pub async fn put(&self, path: &StoragePath, bytes: Bytes) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Dir(root) => {
                let file = root.join(path.as_str());
                if let Some(parent) = file.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(|e| io(path, e))?;
                }
                // Written aside and renamed: a reader never sees half a file.
                let tmp = file.with_extension(format!("part-{}", uuid::Uuid::new_v4().simple()));
                tokio::fs::write(&tmp, &bytes)
                    .await
                    .map_err(|e| io(path, e))?;
                tokio::fs::rename(&tmp, &file)
                    .await
                    .map_err(|e| io(path, e))
            }
        }
    }

    pub async fn get(&self, path: &StoragePath) -> Result<Bytes, StorageError> {
        match &self.backend {
            Backend::Dir(root) => match tokio::fs::read(root.join(path.as_str())).await {
                Ok(bytes) => Ok(Bytes::from(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(StorageError::NotFound(path.uri()))
                }
                Err(e) => Err(io(path, e)),
            },
        }
    }

    /// Files under `prefix` (recursively) with their sizes, sorted.
    pub async fn list(
        &self,
        prefix: &StoragePath,
    ) -> Result<Vec<(StoragePath, u64)>, StorageError> {
        match &self.backend {
            Backend::Dir(root) => {
                let mut out = Vec::new();
                let mut stack = vec![root.join(prefix.as_str())];
                while let Some(dir) = stack.pop() {
                    let mut entries = match tokio::fs::read_dir(&dir).await {
                        Ok(entries) => entries,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                        Err(e) => return Err(io(prefix, e)),
                    };
                    while let Some(entry) = entries.next_entry().await.map_err(|e| io(prefix, e))? {
                        let kind = entry.file_type().await.map_err(|e| io(prefix, e))?;
                        if kind.is_dir() {
                            stack.push(entry.path());
                        } else if kind.is_file() {
                            let name = entry.file_name().to_string_lossy().into_owned();
                            if name.contains(".part-") {
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
        }
    }

    /// Deletes one file; `false` when there was none.
    pub async fn delete(&self, path: &StoragePath) -> Result<bool, StorageError> {
        match &self.backend {
            Backend::Dir(root) => match tokio::fs::remove_file(root.join(path.as_str())).await {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(io(path, e)),
            },
        }
    }

    /// Deletes everything under `prefix`.
    pub async fn delete_prefix(&self, prefix: &StoragePath) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Dir(root) => match tokio::fs::remove_dir_all(root.join(prefix.as_str())).await
            {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(io(prefix, e)),
            },
        }
    }
}

fn io(path: &StoragePath, err: std::io::Error) -> StorageError {
    StorageError::Io {
        path: path.uri(),
        reason: err.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_checked() {
        for bad in ["", "/", "a//b", "a/../b", "..", "a/./b", "a\\b", "a/\u{0}"] {
            assert!(StoragePath::new(bad).is_err(), "{bad:?}");
        }
        let p = StoragePath::task_run("company.team", "hello", "e1", "py", "tr1").expect("path");
        assert_eq!(p.as_str(), "company/team/hello/executions/e1/tasks/py/tr1");
        assert_eq!(
            p.uri(),
            "kestra:///company/team/hello/executions/e1/tasks/py/tr1"
        );
        assert_eq!(StoragePath::from_uri(&p.uri()).expect("uri"), p);
        assert!(StoragePath::from_uri("file:///etc/passwd").is_err());
        assert!(p.join("../../x").is_err());
        let e = StoragePath::execution("company.team", "hello", "e1").expect("path");
        assert!(p.starts_with(&e));
        assert!(
            !StoragePath::new("company/team/hello/executions/e10")
                .expect("p")
                .starts_with(&e)
        );
    }

    #[tokio::test]
    async fn a_directory_stores_lists_and_deletes() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Storage::dir(dir.path());
        let p = StoragePath::new("ns/f/executions/e/tasks/t/r/out.txt").expect("p");
        s.put(&p, Bytes::from_static(b"hi")).await.expect("put");
        assert_eq!(s.get(&p).await.expect("get"), Bytes::from_static(b"hi"));
        let prefix = StoragePath::new("ns/f/executions/e").expect("p");
        assert_eq!(s.list(&prefix).await.expect("list"), vec![(p.clone(), 2)]);
        assert!(s.delete(&p).await.expect("delete"));
        assert!(matches!(s.get(&p).await, Err(StorageError::NotFound(_))));
        s.delete_prefix(&prefix).await.expect("delete prefix");
    }
}
