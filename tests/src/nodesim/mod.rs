//! nodesim: the node (kubelet) and the workload controllers of a simulated
//! cluster, running containers as local processes.
//!
//! It is a plain Kubernetes client: it watches Deployments, StatefulSets,
//! Pods, Services, EndpointSlices, Ingresses, Secrets, ConfigMaps and PVCs
//! through any `kube::Client` (kubesim in process, or a real API server)
//! and writes Pods, PVCs, EndpointSlices and statuses back.
//!
//! - **Workloads** ([`workloads`]): Deployments and StatefulSets get Pod
//!   objects (StatefulSets also their PVCs) and a status with `replicas`,
//!   `readyReplicas`, `availableReplicas`, `updatedReplicas`,
//!   `observedGeneration` and (Deployments) `Available`/`Progressing`.
//! - **Pods** ([`kubelet`], [`process`]): each container runs as a process
//!   when its image matches an [`ImageRule`]: one of our binaries
//!   ([`Program::Binary`]), a real PostgreSQL ([`Program::Postgres`]), or
//!   nothing at all ([`Program::Instant`], reported ready at once). Env from
//!   values, Secrets, ConfigMaps and `fieldRef`; readiness and liveness
//!   probes; restarts with backoff (`CrashLoopBackOff`); SIGTERM, then
//!   SIGKILL after the grace period, to the whole process group; output in
//!   `<state>/logs/<namespace>_<pod>_<uid>/<container>.log`. The container
//!   ID in the pod status is `nodesim://<pid>`.
//! - **Network** ([`addr`], [`rewrite`], [`services`]): every pod gets its own
//!   loopback address (127.64.0.0/10) as its pod IP, and every Service one
//!   (127.128.0.0/10) on which it listens on its declared ports and forwards
//!   to its ready pods. Processes are pointed at them by rewriting their env
//!   and args: `0.0.0.0`/`[::]`/`:PORT` become the pod IP (so two pods using
//!   the same containerPort never collide; our binaries get their listen
//!   address from `ATOLL_LISTEN`, which the operator sets), and in-cluster
//!   names (`svc.ns`, `svc.ns.svc`, `svc.ns.svc.cluster.local`) become the
//!   Service address, ports unchanged.
//! - **EndpointSlices** ([`endpointslices`]): on kubesim, the EndpointSlice
//!   controller's job (one slice per Service with a selector, listing its
//!   pods); in both modes a Service without a selector forwards to the
//!   ready addresses of the slices labelled with its name, whoever wrote
//!   them (so an Ingress whose backend is such a Service reaches them).
//! - **Ingress** ([`ingress`]): one loopback HTTP port routing by `Host` and
//!   path to the Service behind each Ingress rule; Ingress status shows it.
//! - **Logs** ([`logs`], [`kubelet_server`]): served to kubesim's pod
//!   `log` subresource ([`NodeSim::log_source`]); in kubelet mode with
//!   [`NodeSimConfig::kubelet_tls`], on kubelet's HTTPS endpoint
//!   (`/containerLogs`), registered in the Node status, where a real API
//!   server proxies `pods/log` (and so `kubectl logs`).
//! - **API access** ([`NodeSimConfig::api_server`]): pods get
//!   `KUBERNETES_SERVICE_HOST`/`_PORT` and, when they mount their
//!   service-account token, one from the TokenRequest API with the files
//!   kubelet writes and a `KUBECONFIG` using it, so they act as their
//!   service account (kubesim logs it and, with RBAC on, authorizes it).
//! - **Volumes**: a PVC is the directory `<state>/pvc/<namespace>/<name>`,
//!   removed with the PVC; Secret and ConfigMap volumes are written as files;
//!   an emptyDir is `<state>/pods/<uid>/volumes/<name>` (mode 0777, as
//!   kubelet makes it); mount paths in env and args point into these
//!   directories. A postgres-image server keeps its Unix socket in the
//!   volume mounted at `/var/run/postgresql` (`pgsocket`).

//!
//! The code: [`config`] (what runs and how), [`informers`] (the watches
//! and what changed), `node` (the controller loop), `controllers` (the
//! workload controllers' pass), `pods` and `context` (kubelet's pass),
//! `volumes` (PVC directories), [`status`] (how statuses are written).

pub mod addr;
pub mod config;
mod container;
mod context;
mod controllers;
pub mod endpointslices;
pub mod env;
pub mod informers;
pub mod ingress;
pub mod kubelet;
pub mod kubelet_server;
pub mod logs;
mod node;
mod pgsocket;
mod pods;
mod podstatus;
pub mod postgres;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod registration;
pub mod rewrite;
pub mod services;
mod stages;
pub mod status;
pub mod testserver;
mod volumes;
pub mod workloads;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::Client;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use config::{FIELD_MANAGER, ImageRule, NodeSimConfig, Program, workspace_binary};
pub use kubelet_server::KubeletTls;
pub use process::{Backoff, pid_alive};
pub use registration::wait_schedulable;
pub use status::status_diff;

use addr::{AddressPool, Block};
use context::ClusterDns;
use informers::{Dirty, Stores};
use ingress::IngressRouter;
use node::Node;
use rewrite::Rewriter;
use services::ServiceTable;

/// Why nodesim could not start.
#[derive(Debug, thiserror::Error)]
pub enum NodeSimError {
    /// The state directory could not be prepared.
    #[error("preparing state directory {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The ingress router could not listen.
    #[error("ingress router cannot listen on {addr}: {source}")]
    IngressListen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Kubelet-only mode could not register its Node (or its Lease).
    #[error("registering node {node}: {source}")]
    Register {
        /// The node's name.
        node: String,
        /// The API server's answer.
        source: kube::Error,
    },
    /// Kubelet mode's HTTPS endpoint could not be set up.
    #[error("nodesim's kubelet endpoint: {0}")]
    KubeletEndpoint(String),
    /// The watches did not deliver their first list in time.
    #[error("the initial list of {kind} did not arrive within {seconds}s")]
    InitialSync {
        /// The resource.
        kind: &'static str,
        /// The time allowed.
        seconds: u64,
    },
}

#[derive(Debug, Default)]
struct PodInfo {
    ip: Option<Ipv4Addr>,
    pids: Vec<u32>,
    /// Containers that ended for good (their logs are complete).
    finished: Vec<String>,
    /// Containers not started yet, and why.
    not_started: Vec<(String, String)>,
}

#[derive(Debug)]
struct Shared {
    services: ServiceTable,
    pods: Mutex<HashMap<(String, String), PodInfo>>,
}

/// A running nodesim. Dropping it kills every process it started;
/// [`NodeSim::shutdown`] stops them gracefully first.
#[derive(Debug)]
pub struct NodeSim {
    shared: Arc<Shared>,
    config: Arc<NodeSimConfig>,
    ingress_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    main: Option<JoinHandle<()>>,
    watchers: Vec<JoinHandle<()>>,
}

impl NodeSim {
    /// Starts watching and running workloads through `client`, playing
    /// kubelet and the workload controllers (for kubesim). Returns once
    /// every watch has delivered its first list.
    pub async fn start(client: Client, config: NodeSimConfig) -> Result<Self, NodeSimError> {
        Self::start_with(client.clone(), client, config, false).await
    }

    /// Kubelet-only mode, for a real API server whose controller manager
    /// and scheduler own the workloads: registers Node
    /// `config.node_name` and keeps it Ready (status and a Lease in
    /// `kube-node-lease`), runs the pods bound to it, reports their status
    /// and confirms their deletion, all through `node` (a client
    /// authenticated as `system:node:<name>` in `system:nodes`, so the Node
    /// authorizer and NodeRestriction judge it as they judge kubelet). It
    /// creates no Pod, ReplicaSet or PVC and writes no workload status.
    ///
    /// `cluster` plays the other node-side components: it watches Secrets,
    /// ConfigMaps and PVCs (kubelet gets them one by one, as its pods need
    /// them), Services (kube-proxy) and Ingresses (an ingress controller,
    /// which also writes Ingress status), and provisions a hostPath
    /// PersistentVolume, pre-bound to its claim, for every unbound PVC
    /// (the cluster has no provisioner; PVs need cluster-wide rights). The
    /// real PV controller binds them; nodesim deletes its PVs once their
    /// claims are gone. Service endpoints are computed from the pods'
    /// readiness, as in kubesim mode (there is one node).
    pub async fn start_kubelet(
        node: Client,
        cluster: Client,
        config: NodeSimConfig,
    ) -> Result<Self, NodeSimError> {
        Self::start_with(node, cluster, config, true).await
    }

    async fn start_with(
        client: Client,
        cluster: Client,
        config: NodeSimConfig,
        kubelet_only: bool,
    ) -> Result<Self, NodeSimError> {
        prepare_state_dir(&config)?;
        let router = match config.ingress_listen {
            Some(addr) => Some(
                IngressRouter::bind(addr)
                    .await
                    .map_err(|source| NodeSimError::IngressListen { addr, source })?,
            ),
            None => None,
        };
        let ingress_addr = router.as_ref().map(IngressRouter::addr);
        let changed = Arc::new(Notify::new());
        let dirty = Arc::new(Mutex::new(Dirty {
            full: true,
            ..Dirty::default()
        }));
        let (stores, mut watchers) =
            Stores::watch(&client, &cluster, &config, kubelet_only, &changed, &dirty);
        let shared = Arc::new(Shared {
            services: ServiceTable::default(),
            pods: Mutex::new(HashMap::new()),
        });
        let ready = async {
            stores.wait_ready(Duration::from_secs(30)).await?;
            if kubelet_only {
                let port = match &config.kubelet_tls {
                    Some(tls) => {
                        let logs = logs::PodLogSource {
                            logs_dir: config.logs_dir(),
                            shared: shared.clone(),
                        };
                        let (addr, server) = kubelet_server::serve(tls, logs).await?;
                        watchers.push(server);
                        Some(addr.port())
                    }
                    None => None,
                };
                watchers.push(registration::register(&client, &config.node_name, port).await?);
            }
            Ok(())
        };
        if let Err(error) = ready.await {
            for w in &watchers {
                w.abort();
            }
            return Err(error);
        }
        let config = Arc::new(config);
        let (shutdown, shutdown_rx) = watch::channel(false);
        let node = Node {
            client,
            cluster,
            kubelet_only,
            config: config.clone(),
            shared: shared.clone(),
            stores,
            pod_pool: Arc::new(AddressPool::new(Block::Pods)),
            runtimes: HashMap::new(),
            stopping: HashMap::new(),
            changed,
            containers_changed: Arc::new(Notify::new()),
            dirty,
            last_full: tokio::time::Instant::now(),
            router,
        };
        let main = tokio::spawn(node.run(shutdown_rx));
        Ok(Self {
            shared,
            config,
            ingress_addr,
            shutdown,
            main: Some(main),
            watchers,
        })
    }

    /// Where the ingress router listens.
    pub fn ingress_addr(&self) -> Option<SocketAddr> {
        self.ingress_addr
    }

    /// The loopback address of a Service.
    pub fn service_ip(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.shared.services.address(namespace, name)
    }

    /// The pod IP nodesim gave a pod it runs.
    pub fn pod_ip(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .and_then(|p| p.ip)
    }

    /// Process ids of a pod's running containers.
    pub fn pod_pids(&self, namespace: &str, name: &str) -> Vec<u32> {
        self.shared
            .pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), name.to_owned()))
            .map(|p| p.pids.clone())
            .unwrap_or_default()
    }

    /// Rewrites in-cluster Service (and StatefulSet pod) names in `text` to
    /// their loopback addresses, as a process in the cluster would reach
    /// them; for tests and tools running outside nodesim.
    pub fn resolve(&self, text: &str) -> String {
        let dns = ClusterDns {
            services: &self.shared.services,
            pods: &self.shared.pods,
        };
        Rewriter {
            pod_ip: Ipv4Addr::LOCALHOST,
            services: &dns,
            mounts: Vec::new(),
        }
        .rewrite_hosts(text)
    }

    /// Directory of the container logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.config.logs_dir()
    }

    /// The log of a pod's container (the first one when `container` is
    /// `None`), across restarts; `None` when nodesim has none.
    pub fn logs(&self, namespace: &str, pod: &str, container: Option<&str>) -> Option<String> {
        let file = logs::log_file(&self.config.logs_dir(), namespace, pod, container)?;
        std::fs::read_to_string(file).ok()
    }

    /// Serves these logs to kubesim's pod `log` subresource
    /// (`KubeSim::set_pod_logs`), so `kubectl logs` works.
    pub fn log_source(&self) -> logs::PodLogSource {
        logs::PodLogSource {
            logs_dir: self.config.logs_dir(),
            shared: self.shared.clone(),
        }
    }

    /// Stops every container gracefully and waits for all processes to end.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        if let Some(main) = self.main.take() {
            let _ = main.await;
        }
    }
}

impl Drop for NodeSim {
    fn drop(&mut self) {
        for w in &self.watchers {
            w.abort();
        }
        if let Some(main) = self.main.take() {
            main.abort();
        }
    }
}

/// Creates the state and logs directories, the state directory
/// traversable by the unprivileged user PostgreSQL runs as.
fn prepare_state_dir(config: &NodeSimConfig) -> Result<(), NodeSimError> {
    use std::os::unix::fs::PermissionsExt;
    let state_err = |source| NodeSimError::StateDir {
        path: config.state_dir.clone(),
        source,
    };
    std::fs::create_dir_all(config.logs_dir()).map_err(state_err)?;
    std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(state_err)
}
