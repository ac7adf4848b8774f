//! Internal storage: the files of executions (FILE inputs, task output
//! files) and namespace files, addressed by `kestra:///...` URIs as in
//! Kestra. On a directory (a volume in a cluster) by default, or in an
//! S3-compatible object store.
//!
//! Paths follow Kestra's layout, the namespace's dots as folders:
//! `company/team/<flow>/executions/<execution>/tasks/<task>/<taskrun>/<file>`,
//! `.../executions/<execution>/inputs/<input>/<file>`, and namespace files
//! under `company/team/_files/<path>`.

mod dir;
mod namespace;
mod s3;
mod s3_list;

pub use namespace::{
    FOLDER_MARKER, MAX_NAMESPACE_FILES, is_folder_marker, namespace_files, readable_by_execution,
};

use std::path::PathBuf;
use std::sync::Arc;

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
    S3(Arc<s3::S3>),
}

impl Storage {
    /// The configured storage: a directory, or a bucket of an S3-compatible
    /// store (nothing is sent until the first call).
    pub fn open(settings: &StorageSettings) -> Result<Storage, StorageError> {
        match settings {
            StorageSettings::Dir(dir) => Ok(Storage::dir(dir.clone())),
            StorageSettings::S3(settings) => Ok(Storage {
                backend: Backend::S3(Arc::new(s3::S3::new(settings)?)),
            }),
        }
    }

    /// Storage in a directory (tests, the standalone instance).
    pub fn dir(dir: impl Into<PathBuf>) -> Storage {
        Storage {
            backend: Backend::Dir(dir.into()),
        }
    }

    /// Stores a file (replacing any at that path).
    pub async fn put(&self, path: &StoragePath, bytes: Bytes) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Dir(root) => dir::put(root, path, bytes).await,
            Backend::S3(s3) => s3.put(path, bytes).await,
        }
    }

    /// A file's bytes ([`StorageError::NotFound`] when there is none).
    pub async fn get(&self, path: &StoragePath) -> Result<Bytes, StorageError> {
        match &self.backend {
            Backend::Dir(root) => dir::get(root, path).await,
            Backend::S3(s3) => s3.get(path).await,
        }
    }

    /// A file's size in bytes ([`StorageError::NotFound`] when there is
    /// none).
    pub async fn size(&self, path: &StoragePath) -> Result<u64, StorageError> {
        match &self.backend {
            Backend::Dir(root) => dir::size(root, path).await,
            Backend::S3(s3) => s3.size(path).await,
        }
    }

    /// Files under `prefix` (recursively) with their sizes, sorted.
    pub async fn list(
        &self,
        prefix: &StoragePath,
    ) -> Result<Vec<(StoragePath, u64)>, StorageError> {
        match &self.backend {
            Backend::Dir(root) => dir::list(root, prefix).await,
            Backend::S3(s3) => s3.list(prefix).await,
        }
    }

    /// Deletes one file; `false` when there was none.
    pub async fn delete(&self, path: &StoragePath) -> Result<bool, StorageError> {
        match &self.backend {
            Backend::Dir(root) => dir::delete(root, path).await,
            Backend::S3(s3) => s3.delete(path).await,
        }
    }

    /// Deletes everything under `prefix`.
    pub async fn delete_prefix(&self, prefix: &StoragePath) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Dir(root) => dir::delete_prefix(root, prefix).await,
            Backend::S3(s3) => s3.delete_prefix(prefix).await,
        }
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

    /// The same calls and answers on every backend.
    async fn suite(s: &Storage) {
        let p = StoragePath::new("ns/f/executions/e/tasks/t/r/out.txt").expect("p");
        let odd = StoragePath::new("ns/f/executions/e/inputs/in/a b?c#d%e&é.txt").expect("p");
        s.put(&p, Bytes::from_static(b"hi")).await.expect("put");
        s.put(&odd, Bytes::from_static(b"odd"))
            .await
            .expect("put odd");
        assert_eq!(s.get(&p).await.expect("get"), Bytes::from_static(b"hi"));
        assert_eq!(
            s.get(&odd).await.expect("get odd"),
            Bytes::from_static(b"odd")
        );
        assert_eq!(s.size(&p).await.expect("size"), 2);
        s.put(&p, Bytes::from_static(b"again"))
            .await
            .expect("replace");
        assert_eq!(s.get(&p).await.expect("get"), Bytes::from_static(b"again"));
        let prefix = StoragePath::new("ns/f/executions/e").expect("p");
        let mut want = vec![(odd.clone(), 3), (p.clone(), 5)];
        want.sort();
        assert_eq!(s.list(&prefix).await.expect("list"), want);
        let other = StoragePath::new("ns/f/executions/e2/x").expect("p");
        s.put(&other, Bytes::new()).await.expect("put empty");
        assert_eq!(
            s.list(&prefix).await.expect("list").len(),
            2,
            "e2 is not under e"
        );
        let missing = StoragePath::new("ns/f/executions/e/nothing").expect("p");
        assert!(matches!(
            s.get(&missing).await,
            Err(StorageError::NotFound(_))
        ));
        assert!(matches!(
            s.size(&missing).await,
            Err(StorageError::NotFound(_))
        ));
        assert!(s.list(&missing).await.expect("list nothing").is_empty());
        assert!(s.delete(&p).await.expect("delete"));
        assert!(!s.delete(&p).await.expect("delete again"));
        assert!(matches!(s.get(&p).await, Err(StorageError::NotFound(_))));
        s.delete_prefix(&prefix).await.expect("delete prefix");
        assert!(s.list(&prefix).await.expect("list").is_empty());
        assert_eq!(s.get(&other).await.expect("e2 kept"), Bytes::new());
        // Namespace files, as script tasks read them.
        let ns = StoragePath::namespace_files("company.team").expect("p");
        s.put(
            &ns.join("scripts/main.py").expect("p"),
            Bytes::from_static(b"print(1)"),
        )
        .await
        .expect("put");
        s.put(&ns.join("a.txt").expect("p"), Bytes::from_static(b"a"))
            .await
            .expect("put");
        let files = namespace_files(s, "company.team")
            .await
            .expect("namespace files");
        assert_eq!(
            files,
            vec![
                ("a.txt".to_owned(), Bytes::from_static(b"a")),
                (
                    "scripts/main.py".to_owned(),
                    Bytes::from_static(b"print(1)")
                ),
            ]
        );
        assert!(
            namespace_files(s, "company")
                .await
                .expect("other")
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_directory_stores_lists_and_deletes() {
        let dir = tempfile::tempdir().expect("dir");
        suite(&Storage::dir(dir.path())).await;
    }

    /// A folder read as a file is a missing file (as S3 answers); a file
    /// where a folder is, or under a file, is a path that cannot be.
    #[tokio::test]
    async fn a_directory_tells_files_from_folders() {
        let dir = tempfile::tempdir().expect("dir");
        let s = Storage::dir(dir.path());
        let path = |p: &str| StoragePath::new(p).expect("p");
        s.put(&path("ns/d/x"), Bytes::from_static(b"x"))
            .await
            .expect("put");
        assert!(matches!(
            s.get(&path("ns/d")).await,
            Err(StorageError::NotFound(_))
        ));
        for clash in ["ns/d", "ns/d/x/y"] {
            assert!(
                matches!(
                    s.put(&path(clash), Bytes::new()).await,
                    Err(StorageError::InvalidPath { .. })
                ),
                "{clash}"
            );
        }
    }

    #[tokio::test]
    async fn an_s3_bucket_stores_lists_and_deletes() {
        let Some(server) = atoll_testkit::s3::TestS3::start("the S3 storage test") else {
            return;
        };
        let settings = crate::config::S3Settings {
            endpoint: server.endpoint.clone(),
            bucket: server.bucket.clone(),
            region: server.region.clone(),
            access_key_id: server.access_key_id.clone(),
            secret_access_key: server.secret_access_key.clone(),
        };
        let s = Storage::open(&StorageSettings::S3(settings.clone())).expect("open");
        suite(&s).await;
        // Pages of the listing are followed.
        let prefix = StoragePath::new("many").expect("p");
        for i in 0..1005 {
            std::fs::create_dir_all(server.dir().join("atoll-test/many")).expect("dir");
            std::fs::write(server.dir().join(format!("atoll-test/many/{i:04}")), b"x")
                .expect("write");
        }
        assert_eq!(s.list(&prefix).await.expect("list").len(), 1005);
        s.delete_prefix(&prefix).await.expect("delete prefix");
        assert!(s.list(&prefix).await.expect("list").is_empty());
        // Wrong credentials: refused, and the error names neither them nor
        // the signed URL.
        let wrong = Storage::open(&StorageSettings::S3(crate::config::S3Settings {
            secret_access_key: "WRONGSECRET".into(),
            ..settings
        }))
        .expect("open");
        let err = wrong
            .get(&StoragePath::new("x").expect("p"))
            .await
            .expect_err("refused")
            .to_string();
        assert!(err.contains("kestra:///x") && err.contains("403"), "{err}");
        for leak in ["WRONGSECRET", &server.access_key_id, "X-Amz", "http:"] {
            assert!(!err.contains(leak), "{err}");
        }
        // Nothing listens: the error says so, without the URL.
        drop(server);
        let err = wrong
            .get(&StoragePath::new("x").expect("p"))
            .await
            .expect_err("down")
            .to_string();
        assert!(err.contains("could not be reached"), "{err}");
    }
}
