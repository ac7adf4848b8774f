//! PostgreSQL's Unix socket inside a pod.
//!
//! The official image keeps its socket in `/var/run/postgresql`. When a
//! postgres-image server container mounts a volume there, nodesim puts the
//! server's socket into that volume's host directory, so another container
//! of the same pod mounting the same volume (a sidecar with
//! `PGHOST=/var/run/postgresql`, which nodesim rewrites to the same host
//! directory) connects over the socket. Without such a mount the server has
//! no socket at all, so pods never share one.
//!
//! A socket's path is limited to 107 bytes (`sun_path` with its NUL). When
//! the volume's host directory is too long for
//! `<dir>/.s.PGSQL.<any port>`, the pod gets a short link to it,
//! `$TMPDIR/nodesim-<pod uid>-<n>` (or under `/tmp` when `TMPDIR` is long
//! too), and that link stands for the volume in every container of the pod;
//! the link is removed with the pod. Where even that is too long, the pod
//! waits with a message saying so.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Pod;

/// Where the image keeps its Unix socket.
pub(super) const SOCKET_MOUNT: &str = "/var/run/postgresql";

/// The longest socket path the kernel takes (`sun_path` is 108 bytes with
/// the terminating NUL).
pub(super) const MAX_SOCKET_PATH: usize = 107;

/// The socket file of a server on `port` in `dir`.
pub(super) fn socket_path(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

/// Whether a server on any port can have its socket in `dir`.
fn fits_any_port(dir: &Path) -> bool {
    socket_path(dir, u16::MAX).as_os_str().len() <= MAX_SOCKET_PATH
}

/// `Err` with a message when the socket of a server on `port` in `dir`
/// would be longer than the kernel allows.
pub(super) fn check_socket_dir(dir: &Path, port: u16) -> Result<(), String> {
    let path = socket_path(dir, port);
    let len = path.as_os_str().len();
    if len <= MAX_SOCKET_PATH {
        return Ok(());
    }
    Err(format!(
        "the PostgreSQL socket {} would be {len} bytes long, more than the {MAX_SOCKET_PATH} a Unix \
         socket path may have: use a shorter nodesim state directory (or no subPath on the \
         {SOCKET_MOUNT} mount)",
        path.display()
    ))
}

/// The volumes some container of `pod` mounts at [`SOCKET_MOUNT`].
fn socket_volumes(pod: &Pod) -> Vec<String> {
    let mut names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .filter(|m| m.mount_path.trim_end_matches('/') == SOCKET_MOUNT)
        .map(|m| m.name.clone())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Replaces, in `volumes`, the host directory of each volume mounted at
/// [`SOCKET_MOUNT`] that is too long for a socket path by a short link to
/// it (see the module docs); returns the links, to remove with the pod.
/// Idempotent: a retried start of the same pod finds its links again.
pub(super) fn shorten_socket_dirs(
    pod: &Pod,
    uid: &str,
    volumes: &mut HashMap<String, PathBuf>,
) -> Result<Vec<PathBuf>, String> {
    let mut links = Vec::new();
    for (n, name) in socket_volumes(pod).into_iter().enumerate() {
        let Some(dir) = volumes.get(&name).filter(|d| !fits_any_port(d)) else {
            continue;
        };
        let link_name = format!("nodesim-{uid}-{n}");
        let link = [std::env::temp_dir(), PathBuf::from("/tmp")]
            .into_iter()
            .map(|tmp| tmp.join(&link_name))
            .find(|link| fits_any_port(link))
            .ok_or_else(|| {
                format!(
                    "volume \"{name}\" at {SOCKET_MOUNT}: its directory {} is too long for a \
                     PostgreSQL socket ({MAX_SOCKET_PATH} bytes at most) and so is a link in \
                     TMPDIR; use a shorter nodesim state directory",
                    dir.display()
                )
            })?;
        link_to(&link, dir).map_err(|e| {
            format!(
                "volume \"{name}\" at {SOCKET_MOUNT}: linking {} to {} for a short socket path: {e}",
                link.display(),
                dir.display()
            )
        })?;
        volumes.insert(name, link.clone());
        links.push(link);
    }
    Ok(links)
}

/// Makes `link` a symbolic link to `target`; an existing link to the same
/// target is kept, anything else there is an error (never replaced: the
/// temp directory is shared).
fn link_to(link: &Path, target: &Path) -> std::io::Result<()> {
    match std::os::unix::fs::symlink(target, link) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read_link(link).is_ok_and(|t| t == target) {
                Ok(())
            } else {
                Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "something else already exists there",
                ))
            }
        }
        Err(e) => Err(e),
    }
}

/// Removes the links [`shorten_socket_dirs`] made (never their targets).
pub(super) fn remove_links(links: &[PathBuf]) {
    for link in links {
        if std::fs::symlink_metadata(link).is_ok_and(|m| m.file_type().is_symlink()) {
            let _ = std::fs::remove_file(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(mount: &str) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "db-0", "uid": "u"},
            "spec": {"containers": [
                {"name": "postgres", "volumeMounts": [{"name": "run", "mountPath": mount}]},
                {"name": "agent", "volumeMounts": [{"name": "run", "mountPath": mount}]}
            ]}
        }))
        .expect("pod")
    }

    #[test]
    fn a_short_volume_directory_is_used_as_it_is() {
        let mut volumes = HashMap::from([("run".to_owned(), PathBuf::from("/tmp/x/run"))]);
        let links = shorten_socket_dirs(&pod("/var/run/postgresql/"), "uid-1", &mut volumes)
            .expect("no error");
        assert!(links.is_empty());
        assert_eq!(volumes["run"], PathBuf::from("/tmp/x/run"));
        assert!(check_socket_dir(Path::new("/tmp/x/run"), 5432).is_ok());
    }

    #[test]
    fn a_long_volume_directory_gets_a_short_link_removed_with_the_pod() {
        let state = tempfile::tempdir().expect("tempdir");
        let long = state.path().join("d".repeat(100)).join("run");
        std::fs::create_dir_all(&long).expect("mkdir");
        let error = check_socket_dir(&long, 5432).expect_err("too long");
        assert!(error.contains("more than the 107"), "{error}");
        let uid = uuid::Uuid::new_v4().to_string();
        let mut volumes = HashMap::from([("run".to_owned(), long.clone())]);
        let links = shorten_socket_dirs(&pod(SOCKET_MOUNT), &uid, &mut volumes).expect("link");
        assert_eq!(links.len(), 1);
        assert_eq!(volumes["run"], links[0]);
        assert!(check_socket_dir(&links[0], 5432).is_ok());
        assert_eq!(std::fs::read_link(&links[0]).expect("a link"), long);

        // A retried start finds the same link; another target there is refused.
        let mut again = HashMap::from([("run".to_owned(), long.clone())]);
        let same = shorten_socket_dirs(&pod(SOCKET_MOUNT), &uid, &mut again).expect("again");
        assert_eq!(same, links);
        let mut other = HashMap::from([("run".to_owned(), long.join("elsewhere"))]);
        let error = shorten_socket_dirs(&pod(SOCKET_MOUNT), &uid, &mut other).expect_err("taken");
        assert!(error.contains("already exists"), "{error}");

        remove_links(&links);
        assert!(std::fs::symlink_metadata(&links[0]).is_err());
        assert!(long.is_dir(), "the target stays");
    }

    #[test]
    fn other_mounts_are_left_alone() {
        let long = PathBuf::from(format!("/{}", "d".repeat(120)));
        let mut volumes = HashMap::from([("run".to_owned(), long.clone())]);
        let links = shorten_socket_dirs(&pod("/var/run/other"), "u", &mut volumes).expect("ok");
        assert!(links.is_empty());
        assert_eq!(volumes["run"], long);
    }
}
