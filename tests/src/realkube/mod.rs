//! The real Kubernetes control plane as local processes: etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler, built from the
//! Kubernetes Go modules by `scripts/realkube-build` (pinned in
//! `tests/realkube/`). kubesim is the fast path; realkube is the judge.
//!
//! [`RealKube::start`] generates a CA and certificates with the `openssl`
//! CLI, a service-account signing key, starts etcd and the control plane on
//! free loopback ports with RBAC and Node authorization and the admission
//! plugins a production cluster has, writes an admin kubeconfig and waits
//! until the API server is ready and the controller manager works (the
//! `default` ServiceAccount exists). Each process leads its own process
//! group; [`RealKube::stop`] or drop kills every group and removes the data
//! directory. Each process logs to `<dir>/logs/<name>.log`; a failed start
//! reports the tail of the failing process's log.
//!
//! Binaries: `$ATOLL_REALKUBE_BIN`, else the build cache of
//! `scripts/realkube-build` for the release chosen by `$ATOLL_REALKUBE_K8S`
//! (`1.37`, the default, or `1.34`).
//!
//! Split by concern: this file holds the options, the binaries' location
//! and the running control plane; `certs` makes the certificates, keys and
//! kubeconfigs with `openssl`, and `processes` starts the processes and
//! waits until they are ready.

mod certs;
mod processes;

use std::path::{Path, PathBuf};
use std::time::Duration;

use kube::Client;

use self::certs::{Pki, Subject};
use self::processes::{Proc, client_from};
use crate::nodesim::process::group_alive;

/// The pinned module file of the default release (1.37).
const GO_MOD_DEFAULT: &str = include_str!("../../realkube/go.mod");
/// The pinned module file of the oldest release (1.34).
const GO_MOD_1_34: &str = include_str!("../../realkube/k8s-1.34/go.mod");

/// The four binaries realkube runs.
pub const BINARIES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The admission plugins enabled explicitly (in 1.37 all but NodeRestriction
/// are on by default already; naming them keeps the claim true on 1.34 and
/// if a default changes).
pub const ADMISSION_PLUGINS: &str = "NamespaceLifecycle,ServiceAccount,ResourceQuota,LimitRanger,PodSecurity,ValidatingAdmissionPolicy,NodeRestriction";

/// The Service IP range of the cluster.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16";

/// The service-account token issuer.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How often readiness is checked again.
const POLL: Duration = Duration::from_millis(100);

/// Lines of a process's log quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// What went wrong starting or stopping the control plane.
#[derive(Debug, thiserror::Error)]
pub enum RealKubeError {
    /// The binaries are not built.
    #[error(
        "realkube binaries missing in {dir}: {missing}; build them with scripts/realkube-build \
         (or set ATOLL_REALKUBE_BIN to a folder holding etcd, kube-apiserver, \
         kube-controller-manager and kube-scheduler)"
    )]
    BinariesMissing {
        /// Where they were looked for.
        dir: PathBuf,
        /// The names missing, comma-separated.
        missing: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `openssl` failed.
    #[error("openssl {step} failed: {output}")]
    Certificates {
        /// The certificate or key being made.
        step: String,
        /// openssl's error output.
        output: String,
    },
    /// A control-plane process exited during start-up.
    #[error("{name} exited during start-up ({status}); last lines of {log}:\n{tail}")]
    Exited {
        /// The process.
        name: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The control plane did not become ready in time.
    #[error(
        "{what} not ready after {timeout:?} (last error: {last}); last lines of {log}:\n{tail}"
    )]
    NotReady {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last error seen while polling.
        last: String,
        /// The log of the process responsible.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The kubeconfig could not be turned into a client.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A client could not be built or a request failed.
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
    /// A process survived stop.
    #[error("{0} still running after stop")]
    Survivor(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RealKubeError {
    let what = what.into();
    move |source| RealKubeError::Io { what, source }
}

/// How to start realkube; `Default` starts the whole control plane.
#[derive(Debug, Clone)]
pub struct RealKubeOptions {
    /// The folder holding the binaries; default [`bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// How long start-up may take before it fails (default 120 s: a loaded
    /// 2-core machine takes a while to start the API server).
    pub timeout: Duration,
    /// Start kube-controller-manager (default true).
    pub controller_manager: bool,
    /// Start kube-scheduler (default true).
    pub scheduler: bool,
    /// Extra `--flag=value` arguments for kube-apiserver.
    pub apiserver_args: Vec<String>,
}

impl Default for RealKubeOptions {
    fn default() -> Self {
        Self {
            bin_dir: None,
            timeout: Duration::from_secs(120),
            controller_manager: true,
            scheduler: true,
            apiserver_args: Vec::new(),
        }
    }
}

/// The pinned versions of one release, read from its module file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// `k8s.io/kubernetes`, e.g. `v1.37.2`.
    pub kubernetes: String,
    /// `go.etcd.io/etcd/server/v3`, e.g. `v3.7.4`.
    pub etcd: String,
}

fn pinned_in(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(module))
            .then(|| words.next())
            .flatten()
            .filter(|v| v.starts_with('v'))
            .map(str::to_owned)
    })
}

/// The versions pinned for `$ATOLL_REALKUBE_K8S` (`1.37` by default, or
/// `1.34`), as `scripts/realkube-build` reads them.
pub fn pinned() -> Pinned {
    let go_mod = match std::env::var("ATOLL_REALKUBE_K8S").as_deref() {
        Ok("1.34") => GO_MOD_1_34,
        _ => GO_MOD_DEFAULT,
    };
    Pinned {
        kubernetes: pinned_in(go_mod, "k8s.io/kubernetes").unwrap_or_default(),
        etcd: pinned_in(go_mod, "go.etcd.io/etcd/server/v3").unwrap_or_default(),
    }
}

/// Where the binaries are: `$ATOLL_REALKUBE_BIN`, else the build cache of
/// `scripts/realkube-build` (`${XDG_CACHE_HOME:-$HOME/.cache}/atoll/realkube/
/// <kubernetes>-etcd-<etcd>/bin`, root overridable with
/// `$ATOLL_REALKUBE_CACHE`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATOLL_REALKUBE_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let root = std::env::var_os("ATOLL_REALKUBE_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("atoll")
                .join("realkube")
        });
    let pinned = pinned();
    root.join(format!("{}-etcd-{}", pinned.kubernetes, pinned.etcd))
        .join("bin")
}

/// The binaries missing from `dir` (empty when all are there).
pub fn missing_binaries(dir: &Path) -> Vec<&'static str> {
    BINARIES
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect()
}

/// Whether the binaries are present in [`bin_dir`].
pub fn binaries_present() -> bool {
    missing_binaries(&bin_dir()).is_empty()
}

/// The binaries' folder, or `None` after saying loudly that `what` is
/// skipped because they are missing; fails instead, naming
/// `scripts/realkube-build`, when `ATOLL_REALKUBE_REQUIRED` is set (as
/// `scripts/test` does).
pub fn binaries_or_skip(what: &str) -> Option<PathBuf> {
    let bin = bin_dir();
    let missing = missing_binaries(&bin);
    if missing.is_empty() {
        return Some(bin);
    }
    let message = format!(
        "realkube binaries missing in {} ({}): build them with scripts/realkube-build",
        bin.display(),
        missing.join(", ")
    );
    assert!(
        std::env::var_os("ATOLL_REALKUBE_REQUIRED").is_none(),
        "ATOLL_REALKUBE_REQUIRED is set but {message}"
    );
    println!("\n!!! SKIPPED {what}: {message} !!!\n");
    eprintln!("\n!!! SKIPPED {what}: {message} !!!\n");
    None
}

/// A running control plane; stopped, and its directory removed, on drop.
pub struct RealKube {
    procs: Vec<Proc>,
    kubeconfig: PathBuf,
    certs: PathBuf,
    server: String,
    version: k8s_openapi::apimachinery::pkg::version::Info,
    startup: Duration,
    client: Client,
    // Removed after the processes are killed (see Drop and stop).
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for RealKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealKube")
            .field("server", &self.server)
            .field("version", &self.version.git_version)
            .field("procs", &self.procs)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl RealKube {
    /// The admin kubeconfig (user `atoll-admin`, group `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA certificate the API server's certificate is signed with.
    pub fn ca_path(&self) -> PathBuf {
        self.certs.join("ca.crt")
    }

    /// A client as the admin (group `system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client authenticated as `user` in `groups`, with a client
    /// certificate signed by the cluster's CA: RBAC and the Node authorizer
    /// see exactly that identity.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<Client, RealKubeError> {
        let pki = Pki {
            dir: self.certs.clone(),
        };
        let name = format!("user-{}", uuid::Uuid::new_v4().simple());
        pki.client(&name, Subject { user, groups }).await?;
        let path = self.certs.join(format!("{name}.kubeconfig"));
        pki.kubeconfig(&self.server, &name, &path)?;
        Ok(client_from(&path).await?.0)
    }

    /// The TLS settings of node `node`'s kubelet endpoint (nodesim's
    /// [`crate::nodesim::NodeSimConfig::kubelet_tls`]): a serving
    /// certificate for 127.0.0.1 signed by the cluster CA (which the API
    /// server's `--kubelet-certificate-authority` names), and that CA for
    /// the clients (the API server presents its kubelet client
    /// certificate).
    pub async fn kubelet_tls(
        &self,
        node: &str,
    ) -> Result<crate::nodesim::KubeletTls, RealKubeError> {
        let pki = Pki {
            dir: self.certs.clone(),
        };
        pki.kubelet_serving(node).await?;
        Ok(crate::nodesim::KubeletTls {
            cert: self.certs.join(format!("kubelet-{node}.crt")),
            key: self.certs.join(format!("kubelet-{node}.key")),
            client_ca: Some(self.ca_path()),
        })
    }

    /// The API server's version (`/version`), e.g. `v1.37.2`.
    pub fn version(&self) -> &str {
        &self.version.git_version
    }

    /// The API server's full version answer.
    pub fn version_info(&self) -> &k8s_openapi::apimachinery::pkg::version::Info {
        &self.version
    }

    /// How long start-up took, from the call to `start` until ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The data directory (certificates, etcd data, logs).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// The process ids of the control plane, by name (each leads its own
    /// process group).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.procs.iter().map(|p| (p.name, p.child.id())).collect()
    }

    /// The log file of a process (`etcd`, `kube-apiserver`, ...).
    pub fn log_path(&self, name: &str) -> Option<&Path> {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.log.as_path())
    }

    fn kill_all(&mut self) {
        // The control plane first, etcd last.
        for proc in self.procs.iter_mut().rev() {
            proc.kill();
        }
    }

    /// Kills every process group, checks none survived and removes the data
    /// directory.
    pub fn stop(mut self) -> Result<(), RealKubeError> {
        self.kill_all();
        let survivors: Vec<String> = self
            .procs
            .iter()
            .filter(|p| group_alive(p.child.id()))
            .map(|p| format!("{} (pid {})", p.name, p.child.id()))
            .collect();
        self.procs.clear();
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            dir.close()
                .map_err(io(format!("removing {}", path.display())))?;
        }
        if survivors.is_empty() {
            Ok(())
        } else {
            Err(RealKubeError::Survivor(survivors.join(", ")))
        }
    }
}

impl Drop for RealKube {
    fn drop(&mut self) {
        self.kill_all();
        // `dir` (a TempDir) is removed after this, with the processes gone.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pinned_versions() {
        assert_eq!(
            pinned_in(GO_MOD_DEFAULT, "k8s.io/kubernetes").as_deref(),
            Some("v1.37.2")
        );
        assert!(
            pinned_in(GO_MOD_DEFAULT, "go.etcd.io/etcd/server/v3")
                .is_some_and(|v| v.starts_with("v3.7."))
        );
        assert!(
            pinned_in(GO_MOD_1_34, "k8s.io/kubernetes").is_some_and(|v| v.starts_with("v1.34."))
        );
    }
}
