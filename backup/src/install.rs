//! `atoll-backup install DIR`: copies the running executable into a
//! directory shared with another container (an emptyDir), so the stock
//! PostgreSQL image can run it as `archive_command`.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The installed file's name.
pub const BINARY_NAME: &str = "atoll-backup";

/// Installing failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The running executable could not be located.
    #[error("cannot locate the running executable: {0}")]
    CurrentExe(#[source] std::io::Error),
    /// A file system step failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// The step.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> InstallError {
    let path = path.to_owned();
    move |source| InstallError::Io { what, path, source }
}

/// Copies the running executable to `dir/atoll-backup` (mode 0755; `dir`
/// and missing parents created 0755) through a temporary file and a
/// rename, so a reader never sees a half-written binary. Returns the path.
pub fn install(dir: &Path) -> Result<PathBuf, InstallError> {
    let exe = std::env::current_exe().map_err(InstallError::CurrentExe)?;
    install_from(&exe, dir)
}

/// [`install`] of a given file (tests).
pub fn install_from(exe: &Path, dir: &Path) -> Result<PathBuf, InstallError> {
    if !dir.is_dir() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .map_err(io("cannot create", dir))?;
        // Whatever the umask: the database container's user must enter it.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
            .map_err(io("cannot set the mode of", dir))?;
    }
    let target = dir.join(BINARY_NAME);
    let temp = dir.join(format!(".{BINARY_NAME}.tmp"));
    std::fs::copy(exe, &temp).map_err(io("cannot copy the executable to", &temp))?;
    std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o755))
        .map_err(io("cannot make executable", &temp))?;
    std::fs::rename(&temp, &target).map_err(io("cannot move into place", &target))?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_with_mode_0755_into_new_dirs() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let source = tmp.path().join("source");
        std::fs::write(&source, b"#!/bin/sh\n").expect("write");
        let dir = tmp.path().join("a/b");
        let target = install_from(&source, &dir).expect("install");
        assert_eq!(target, dir.join("atoll-backup"));
        assert_eq!(std::fs::read(&target).expect("read"), b"#!/bin/sh\n");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(&target), 0o755);
        assert_eq!(mode(&dir), 0o755);
        // Again over the existing file: replaced, no temporary left.
        install_from(&source, &dir).expect("install again");
        let names: Vec<_> = std::fs::read_dir(&dir).expect("list").flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn a_missing_source_names_the_target() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let err = install_from(&tmp.path().join("nope"), tmp.path()).expect_err("fails");
        assert!(err.to_string().contains(".atoll-backup.tmp"), "{err}");
    }
}
