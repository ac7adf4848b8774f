//! One switch for the cluster a test runs on: `ATOLL_TEST_CLUSTER=kubesim`,
//! `realkube` or `both`. kubesim is the fast, simulated API server (with
//! RBAC, admission policies and fault injection); realkube is the real
//! control plane ([`crate::realkube`]), the judge. Tests that can run on
//! both iterate over [`clusters_from_env`] and start each with
//! [`TestCluster::start`]; what only kubesim can do (fault injection, the
//! request log) stays kubesim-only and says so.
//!
//! Unset, the variable means `kubesim`, unless `ATOLL_REALKUBE_BIN` names
//! the realkube binaries: then `both` (`scripts/test` sets `both`).
//! Selecting realkube without its binaries fails with a message naming
//! `scripts/realkube-build`; it never skips.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kube::Client;

use crate::kubesim::rbac::UserInfo;
use crate::kubesim::{KubeSim, Server};
use crate::nodesim::{NodeSim, NodeSimConfig};
use crate::realkube::{self, RealKube, RealKubeOptions};

/// The environment variable choosing the clusters.
pub const ENV: &str = "ATOLL_TEST_CLUSTER";

/// Which cluster a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterKind {
    /// The simulated API server; nodesim plays kubelet and the workload
    /// controllers.
    KubeSim,
    /// The real control plane; nodesim plays only kubelet.
    RealKube,
}

impl ClusterKind {
    /// `kubesim` or `realkube`.
    pub fn name(self) -> &'static str {
        match self {
            ClusterKind::KubeSim => "kubesim",
            ClusterKind::RealKube => "realkube",
        }
    }
}

impl std::fmt::Display for ClusterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The clusters `value` (of [`ENV`]) selects; `realkube_bin_set` decides
/// the default. `Err` for an unknown value.
pub fn parse_clusters(
    value: Option<&str>,
    realkube_bin_set: bool,
) -> Result<Vec<ClusterKind>, String> {
    match value.map(str::trim) {
        None | Some("") if realkube_bin_set => {
            Ok(vec![ClusterKind::KubeSim, ClusterKind::RealKube])
        }
        None | Some("") | Some("kubesim") => Ok(vec![ClusterKind::KubeSim]),
        Some("realkube") => Ok(vec![ClusterKind::RealKube]),
        Some("both") => Ok(vec![ClusterKind::KubeSim, ClusterKind::RealKube]),
        Some(other) => Err(format!("{ENV}={other}: expected kubesim, realkube or both")),
    }
}

/// The clusters [`ENV`] selects; panics on an unknown value.
fn selection() -> Vec<ClusterKind> {
    let value = std::env::var(ENV).ok();
    let bin_set = std::env::var_os("ATOLL_REALKUBE_BIN").is_some_and(|v| !v.is_empty());
    parse_clusters(value.as_deref(), bin_set).unwrap_or_else(|e| panic!("{e}"))
}

/// The clusters [`ENV`] selects. Panics on an unknown value, and when
/// realkube is selected but its binaries are missing (naming
/// `scripts/realkube-build`).
pub fn clusters_from_env() -> Vec<ClusterKind> {
    let kinds = selection();
    if kinds.contains(&ClusterKind::RealKube) {
        require_realkube();
    }
    kinds
}

/// Panics, naming `scripts/realkube-build`, when the realkube binaries are
/// missing.
pub fn require_realkube() {
    let bin = realkube::bin_dir();
    let missing = realkube::missing_binaries(&bin);
    assert!(
        missing.is_empty(),
        "{ENV} selects realkube but its binaries are missing in {} ({}): build them with \
         scripts/realkube-build (or set {ENV}=kubesim)",
        bin.display(),
        missing.join(", ")
    );
}

/// Prints which cluster a test is about to run on.
pub fn announce(test: &str, kind: ClusterKind) {
    println!("\n== {test} on {kind}");
}

/// Whether `test` runs on `kind`: true (and says so) when [`ENV`] selects
/// it; false, saying why, when not. Panics on an unknown value, and for
/// realkube when selected but its binaries are missing.
pub fn selected(test: &str, kind: ClusterKind) -> bool {
    if selection().contains(&kind) {
        // Only the realkube run fails for missing realkube binaries.
        if kind == ClusterKind::RealKube {
            require_realkube();
        }
        announce(test, kind);
        true
    } else {
        println!(
            "{test} on {kind}: not run, {ENV}={} does not select {kind} (scripts/test runs both)",
            std::env::var(ENV).unwrap_or_default()
        );
        false
    }
}

/// One test per cluster for each `async fn name(kind: ClusterKind)`
/// named: a module `name` with tests `name::kubesim` and `name::realkube`,
/// each calling `name` when [`ENV`] selects its cluster (see [`selected`]).
///
/// ```ignore
/// async fn a_tenant_becomes_ready(kind: ClusterKind) { /* ... */ }
/// atoll_testkit::on_each_cluster!(a_tenant_becomes_ready);
/// ```
#[macro_export]
macro_rules! on_each_cluster {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn kubesim() {
                    let kind = $crate::cluster::ClusterKind::KubeSim;
                    if $crate::cluster::selected(stringify!($name), kind) {
                        super::$name(kind).await;
                    }
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn realkube() {
                    let kind = $crate::cluster::ClusterKind::RealKube;
                    if $crate::cluster::selected(stringify!($name), kind) {
                        super::$name(kind).await;
                    }
                }
            }
        )+
    };
}

/// What serves the API.
enum Backend {
    Sim { sim: KubeSim, server: Server },
    Real { kube: Box<RealKube> },
}

/// A started cluster: the API server (kubesim served on a loopback port,
/// or realkube), an admin client and kubeconfig, clients as other users,
/// and nodesim started in the mode that fits.
pub struct TestCluster {
    kind: ClusterKind,
    backend: Backend,
    client: Client,
    kubeconfig: PathBuf,
    version: String,
    startup: Duration,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for TestCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCluster")
            .field("kind", &self.kind)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

/// How long nodesim's Node may take to become Ready and schedulable.
const NODE_READY: Duration = Duration::from_secs(120);

impl TestCluster {
    /// Starts a cluster of `kind`. kubesim: RBAC on (the admin client and
    /// kubeconfig carry no credentials and act as `system:admin`), graceful
    /// pod deletion, served on a loopback port. realkube: the whole control
    /// plane; the admin is in `system:masters`.
    pub async fn start(kind: ClusterKind) -> Result<TestCluster, String> {
        let started = Instant::now();
        let dir = tempfile::tempdir().map_err(|e| format!("temporary directory: {e}"))?;
        let (backend, client, kubeconfig) = match kind {
            ClusterKind::KubeSim => {
                let sim = KubeSim::builder()
                    .graceful_pod_deletion(true)
                    .rbac(true)
                    .build();
                let server = sim
                    .serve("127.0.0.1:0".parse().expect("loopback address"))
                    .await
                    .map_err(|e| format!("serving kubesim: {e}"))?;
                let kubeconfig = dir.path().join("kubeconfig");
                server
                    .write_kubeconfig(&kubeconfig)
                    .map_err(|e| format!("writing {}: {e}", kubeconfig.display()))?;
                let client = sim.client();
                (Backend::Sim { sim, server }, client, kubeconfig)
            }
            ClusterKind::RealKube => {
                require_realkube();
                let kube = RealKube::start(RealKubeOptions::default())
                    .await
                    .map_err(|e| format!("realkube did not start: {e}"))?;
                let client = kube.client();
                let kubeconfig = kube.kubeconfig_path().to_owned();
                (
                    Backend::Real {
                        kube: Box::new(kube),
                    },
                    client,
                    kubeconfig,
                )
            }
        };
        let version = client
            .apiserver_version()
            .await
            .map(|v| v.git_version)
            .map_err(|e| format!("{kind} /version: {e}"))?;
        Ok(TestCluster {
            kind,
            backend,
            client,
            kubeconfig,
            version,
            startup: started.elapsed(),
            dir,
        })
    }

    /// Which cluster this is.
    pub fn kind(&self) -> ClusterKind {
        self.kind
    }

    /// The API server's version (`/version`'s `gitVersion`).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// `kubesim (Kubernetes v1.33.0-kubesim)`, for summaries.
    pub fn describe(&self) -> String {
        format!("{} (Kubernetes {})", self.kind, self.version)
    }

    /// How long start-up took.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The admin client.
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The admin kubeconfig (for kubectl).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A scratch directory removed with the cluster.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The API server's URL as pods reach it.
    pub fn api_url(&self) -> String {
        match &self.backend {
            Backend::Sim { server, .. } => server.url(),
            Backend::Real { kube } => kube.server().to_owned(),
        }
    }

    /// kubesim, when this is kubesim.
    pub fn sim(&self) -> Option<&KubeSim> {
        match &self.backend {
            Backend::Sim { sim, .. } => Some(sim),
            Backend::Real { .. } => None,
        }
    }

    /// realkube, when this is realkube.
    pub fn real(&self) -> Option<&RealKube> {
        match &self.backend {
            Backend::Real { kube } => Some(kube),
            Backend::Sim { .. } => None,
        }
    }

    /// A client authenticated as `user` in `groups` (kubesim: a token it
    /// issued; realkube: a client certificate), judged by RBAC and
    /// admission as that user.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<Client, String> {
        match &self.backend {
            Backend::Sim { sim, .. } => Ok(sim.client_as(UserInfo {
                name: user.to_owned(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            })),
            Backend::Real { kube } => kube
                .client_as(user, groups)
                .await
                .map_err(|e| format!("a client as {user}: {e}")),
        }
    }

    /// A client as a service account, with its groups.
    pub async fn client_as_service_account(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Client, String> {
        let user = UserInfo::service_account(namespace, name);
        let groups: Vec<&str> = user.groups.iter().map(String::as_str).collect();
        self.client_as(&user.name, &groups).await
    }

    /// Starts nodesim with `config`, giving pods access to the API server:
    /// on kubesim as kubelet and the workload controllers (pod logs served
    /// through kubesim), on realkube as kubelet only, authenticated as
    /// `system:node:<name>`, serving kubelet's HTTPS endpoint (pod logs
    /// through the API server) with a certificate of the cluster CA;
    /// returns once its Node is Ready and schedulable.
    pub async fn start_node(&self, config: NodeSimConfig) -> Result<NodeSim, String> {
        let config = config.api_server(self.api_url());
        match &self.backend {
            Backend::Sim { sim, .. } => {
                let node = NodeSim::start(self.client.clone(), config)
                    .await
                    .map_err(|e| format!("nodesim: {e}"))?;
                sim.set_pod_logs(std::sync::Arc::new(node.log_source()));
                Ok(node)
            }
            Backend::Real { kube } => {
                let name = config.node_name.clone();
                let node_client = kube
                    .client_as(&format!("system:node:{name}"), &["system:nodes"])
                    .await
                    .map_err(|e| format!("a client certificate for the node: {e}"))?;
                let tls = kube
                    .kubelet_tls(&name)
                    .await
                    .map_err(|e| format!("the node's kubelet certificate: {e}"))?;
                let config = config.api_server_ca(kube.ca_path()).kubelet_tls(tls);
                let node = NodeSim::start_kubelet(node_client, self.client.clone(), config)
                    .await
                    .map_err(|e| format!("nodesim (kubelet mode): {e}"))?;
                crate::nodesim::wait_schedulable(&self.client, &name, NODE_READY).await;
                Ok(node)
            }
        }
    }

    /// Stops the API server; realkube checks no process survived.
    pub async fn stop(self) -> Result<(), String> {
        match self.backend {
            Backend::Sim { sim, server } => {
                sim.faults().close_watches();
                server.shutdown().await;
                Ok(())
            }
            Backend::Real { kube } => kube.stop().map_err(|e| e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_switch_reads_kubesim_realkube_or_both() {
        use ClusterKind::{KubeSim, RealKube};
        assert_eq!(parse_clusters(None, false), Ok(vec![KubeSim]));
        assert_eq!(parse_clusters(None, true), Ok(vec![KubeSim, RealKube]));
        assert_eq!(parse_clusters(Some("kubesim"), true), Ok(vec![KubeSim]));
        assert_eq!(parse_clusters(Some("realkube"), false), Ok(vec![RealKube]));
        assert_eq!(
            parse_clusters(Some("both"), false),
            Ok(vec![KubeSim, RealKube])
        );
        assert!(
            parse_clusters(Some("kind"), false)
                .expect_err("an unknown cluster")
                .contains("kubesim, realkube or both")
        );
    }
}
