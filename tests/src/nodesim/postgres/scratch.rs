//! Scratch files of the first-start initialisation, removed when dropped:
//! the temporary server's socket directory and the password file.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::chown;
use std::path::PathBuf;

use super::{PostgresError, PostgresInit, data_dir_error};

/// A private directory for the temporary server's socket, removed when
/// dropped.
pub(super) struct SocketDir(pub(super) PathBuf);

impl SocketDir {
    pub(super) fn create(init: &PostgresInit) -> Result<Self, PostgresError> {
        use std::os::unix::fs::DirBuilderExt;
        // Short: a socket path has a length limit of about 100 bytes.
        let path = std::env::temp_dir().join(format!(
            "nodesim-pg-{}-{}",
            std::process::id(),
            super::super::addr::random_u32()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(data_dir_error(&path))?;
        let dir = Self(path);
        if let Some((uid, gid)) = init.run_as {
            chown(&dir.0, Some(uid), Some(gid)).map_err(data_dir_error(&dir.0))?;
        }
        Ok(dir)
    }
}

impl Drop for SocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The superuser password in a file only the server's user can read,
/// removed when dropped.
pub(super) struct PasswordFile(pub(super) Option<PathBuf>);

impl PasswordFile {
    pub(super) fn create(init: &PostgresInit) -> Result<Self, PostgresError> {
        let Some(password) = &init.password else {
            return Ok(Self(None));
        };
        let path = std::env::temp_dir().join(format!(
            "nodesim-pw-{}-{}",
            std::process::id(),
            super::super::addr::random_u32()
        ));
        let write = || -> std::io::Result<()> {
            use std::os::unix::fs::OpenOptionsExt;
            let mut file = File::options()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            file.write_all(password.as_bytes())?;
            if let Some((uid, gid)) = init.run_as {
                chown(&path, Some(uid), Some(gid))?;
            }
            Ok(())
        };
        match write() {
            Ok(()) => Ok(Self(Some(path))),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(data_dir_error(&path)(e))
            }
        }
    }
}

impl Drop for PasswordFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}
