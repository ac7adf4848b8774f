//! The result of the last `wal-push`, left in a directory (`--status-dir`,
//! an emptyDir shared with the backup agent) so that the last archiving
//! error can be reported without reading PostgreSQL's log. Never holds a
//! credential: error texts are redacted before they get here.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file name in the status directory.
pub const LAST_PUSH_FILE: &str = "last-push.json";

/// `last-push.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PushStatus {
    /// The WAL file name (`%f`).
    pub segment: String,
    /// When the push ended.
    pub time: jiff::Timestamp,
    /// Whether the file is stored.
    pub ok: bool,
    /// Why not (credentials redacted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Reading or writing the status file failed.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// A file system step failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// The file is not a status.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: serde_json::Error,
    },
}

/// Writes `dir/last-push.json` atomically (temporary file, then rename).
pub fn write(dir: &Path, status: &PushStatus) -> Result<(), StatusError> {
    let path = dir.join(LAST_PUSH_FILE);
    let temp = dir.join(format!(".{LAST_PUSH_FILE}.{}", std::process::id()));
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| StatusError::Io { path, source }
    };
    let json = serde_json::to_vec(status).map_err(|source| StatusError::Parse {
        path: path.clone(),
        source,
    })?;
    let mut file = std::fs::File::create(&temp).map_err(io(&temp))?;
    file.write_all(&json).map_err(io(&temp))?;
    drop(file);
    std::fs::rename(&temp, &path).map_err(io(&path))
}

/// Reads `dir/last-push.json`; `None` when no push has run yet.
pub fn read(dir: &Path) -> Result<Option<PushStatus>, StatusError> {
    let path = dir.join(LAST_PUSH_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(StatusError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StatusError::Parse { path, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert_eq!(read(dir.path()).expect("read"), None);
        let status = PushStatus {
            segment: "000000010000000000000003".into(),
            time: jiff::Timestamp::from_second(1_800_000_000).expect("time"),
            ok: false,
            error: Some("put: connection refused".into()),
        };
        write(dir.path(), &status).expect("write");
        assert_eq!(read(dir.path()).expect("read"), Some(status));
        let text = std::fs::read_to_string(dir.path().join(LAST_PUSH_FILE)).expect("file");
        assert!(
            text.contains("\"segment\":\"000000010000000000000003\""),
            "{text}"
        );
        let leftovers = std::fs::read_dir(dir.path()).expect("list").count();
        assert_eq!(leftovers, 1, "no temporary file left");
    }
}
