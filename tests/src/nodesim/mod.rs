//! nodesim: the node (kubelet) and the workload controllers of a simulated
//! cluster, running containers as local processes.
//!
//! It is a plain Kubernetes client: it watches Deployments, StatefulSets,
//! Pods, Services, Ingresses, Secrets, ConfigMaps and PVCs through any
//! `kube::Client` (kubesim in process, or a real API server) and writes Pods,
//! PVCs and statuses back.
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
//! - **Ingress** ([`ingress`]): one loopback HTTP port routing by `Host` and
//!   path to the Service behind each Ingress rule; Ingress status shows it.
//! - **API access** ([`NodeSimConfig::api_server`]): pods get
//!   `KUBERNETES_SERVICE_HOST`/`_PORT` and, when they mount their
//!   service-account token, one from the TokenRequest API with the files
//!   kubelet writes and a `KUBECONFIG` using it, so they act as their
//!   service account (kubesim logs it and, with RBAC on, authorizes it).
//! - **Volumes**: a PVC is the directory `<state>/pvc/<namespace>/<name>`,
//!   removed with the PVC; Secret and ConfigMap volumes are written as files;
//!   mount paths in env and args point into these directories.

pub mod addr;
pub mod env;
pub mod ingress;
pub mod kubelet;
pub mod logs;
pub mod postgres;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod registration;
pub mod rewrite;
pub mod services;
pub mod testserver;
pub mod workloads;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

pub use process::{Backoff, pid_alive};

use addr::{AddressPool, Block};
use ingress::IngressRouter;
use kubelet::{PodContext, PodRuntime};
use rewrite::{Rewriter, ServiceResolver};
use services::ServiceTable;

/// The field manager of every write nodesim makes.
pub const FIELD_MANAGER: &str = "nodesim";

/// What runs for a container image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A local executable. The container's `command` (minus its first word,
    /// the in-image path) and `args` are its arguments; without `command`,
    /// `args` follows these default arguments.
    Binary {
        /// The executable.
        path: PathBuf,
        /// Arguments before the container's `args` when it sets no `command`.
        args: Vec<String>,
    },
    /// A real PostgreSQL server started like the official `postgres` image.
    Postgres {
        /// Directory of `initdb` and `postgres`.
        bindir: PathBuf,
    },
    /// Nothing runs; the container is reported running and ready at once.
    Instant,
}

/// Maps images that start with `prefix` (after dropping the registry host
/// and `library/`) to a program; a prefix without `/` also matches the
/// image's last path segment (`atoll-instance` matches
/// `registry.example.com/acme/atoll-instance:0.1.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRule {
    /// Image prefix, e.g. `postgres:` or `atoll/atoll-instance`.
    pub prefix: String,
    /// What runs.
    pub program: Program,
}

/// How nodesim runs.
#[derive(Debug, Clone)]
pub struct NodeSimConfig {
    /// Where PVC directories, pod scratch space and logs go.
    pub state_dir: PathBuf,
    /// Image rules, first match wins.
    pub images: Vec<ImageRule>,
    /// For images no rule matches; `None` leaves such pods in `ErrImagePull`.
    pub default_program: Option<Program>,
    /// `spec.nodeName` of the pods.
    pub node_name: String,
    /// Where the ingress router listens (`None`: no router).
    pub ingress_listen: Option<SocketAddr>,
    /// Whether Services listen and proxy (off in instant mode, where nothing
    /// would answer).
    pub serve_services: bool,
    /// Probe periods and initial delays are shortened to at most this.
    pub max_probe_period: Duration,
    /// Restart backoff.
    pub backoff: Backoff,
    /// Full resync interval (retries of waiting pods, missed events).
    pub resync: Duration,
    /// The API server's URL as pods reach it (kubesim's HTTP listener).
    /// When set, every pod gets `KUBERNETES_SERVICE_HOST`/`_PORT`, and a
    /// pod that mounts its service-account token (as
    /// `automountServiceAccountToken` decides) gets one from the
    /// TokenRequest API, written as kubelet would under
    /// `/var/run/secrets/kubernetes.io/serviceaccount` (mount paths in env
    /// and args point there), plus `KUBECONFIG` naming a kubeconfig that
    /// uses it: a process on a shared host cannot read the fixed in-cluster
    /// path, and clients try `KUBECONFIG` first. The service account must
    /// exist (kubesim has no controller creating `default`). Go clients
    /// (kubectl) send credentials only over TLS, so against kubesim's plain
    /// HTTP they act without any; kube-rs and plain HTTP clients send them.
    pub api_server: Option<String>,
    /// The CA certificate of an `https` API server (a real one): written
    /// as the token mount's `ca.crt` and named in the pods' kubeconfig.
    pub api_server_ca: Option<PathBuf>,
}

impl NodeSimConfig {
    /// Defaults: no image rules, node `nodesim`, no ingress router, probes at
    /// most every 500 ms, backoff 0.5 s doubling to 10 s.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            images: Vec::new(),
            default_program: None,
            node_name: "nodesim".to_owned(),
            ingress_listen: None,
            serve_services: true,
            max_probe_period: Duration::from_millis(500),
            backoff: Backoff::default(),
            resync: Duration::from_secs(5),
            api_server: None,
            api_server_ca: None,
        }
    }

    /// Gives pods access to the API server at `url` with their service
    /// account's token (see [`NodeSimConfig::api_server`]).
    pub fn api_server(mut self, url: impl Into<String>) -> Self {
        self.api_server = Some(url.into());
        self
    }

    /// Gives pods the CA of an `https` API server (see
    /// [`NodeSimConfig::api_server_ca`]).
    pub fn api_server_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.api_server_ca = Some(ca.into());
        self
    }

    /// Adds an image rule.
    pub fn image(mut self, prefix: impl Into<String>, program: Program) -> Self {
        self.images.push(ImageRule {
            prefix: prefix.into(),
            program,
        });
        self
    }

    /// Adds an image rule running a local binary.
    pub fn binary(self, prefix: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.image(
            prefix,
            Program::Binary {
                path: path.into(),
                args: Vec::new(),
            },
        )
    }

    /// Maps `postgres:*` and `postgres@*` to the PostgreSQL binaries of
    /// `$ATOLL_PG_BINDIR` (or the Debian default).
    pub fn postgres(self) -> Self {
        let bindir = postgres::bindir_from_env();
        self.image(
            "postgres:",
            Program::Postgres {
                bindir: bindir.clone(),
            },
        )
        .image("postgres@", Program::Postgres { bindir })
    }

    /// Instant mode for every image no rule matches, and no Service
    /// listeners: for scale benchmarks.
    pub fn instant(mut self) -> Self {
        self.default_program = Some(Program::Instant);
        self.serve_services = false;
        self
    }

    /// Runs the ingress router on `addr` (port 0 picks one).
    pub fn ingress(mut self, addr: SocketAddr) -> Self {
        self.ingress_listen = Some(addr);
        self
    }

    /// Where container logs go.
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
}

/// A binary of this workspace, next to the running executable (tests run
/// from `target/<profile>/deps`, binaries live in `target/<profile>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

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

struct Stores {
    deployments: Store<Deployment>,
    statefulsets: Store<StatefulSet>,
    pods: Store<Pod>,
    services: Store<Service>,
    ingresses: Store<Ingress>,
    secrets: Store<Secret>,
    config_maps: Store<ConfigMap>,
    pvcs: Store<PersistentVolumeClaim>,
}

type Key = (String, String);

fn key_of<K: Resource>(object: &K) -> Key {
    (object.namespace().unwrap_or_default(), object.name_any())
}

/// What changed since the last pass, so a pass only does the expensive work
/// (plans, status comparisons, writes) for what it must; everything is
/// revisited by a full pass after a re-list and every `resync`.
#[derive(Debug, Default)]
struct Dirty {
    full: bool,
    deployments: BTreeSet<Key>,
    statefulsets: BTreeSet<Key>,
    pods: BTreeSet<Key>,
    /// Services, or `(namespace, "")` for every Service of a namespace
    /// whose pods changed.
    services: BTreeSet<Key>,
    ingresses: BTreeSet<Key>,
    pvcs: BTreeSet<Key>,
    /// Namespaces whose Secrets, ConfigMaps or PVCs changed: their waiting
    /// pods are retried.
    config_namespaces: BTreeSet<String>,
    /// A pod stopped: PVC directories it held may go now.
    volumes_released: bool,
}

impl Dirty {
    fn mark_pod(&mut self, pod: &Pod) {
        let (ns, name) = key_of(pod);
        for owner in pod.owner_references() {
            let owner_key = (ns.clone(), owner.name.clone());
            match owner.kind.as_str() {
                "Deployment" => self.deployments.insert(owner_key),
                "StatefulSet" => self.statefulsets.insert(owner_key),
                _ => false,
            };
        }
        self.services.insert((ns.clone(), String::new()));
        self.pods.insert((ns, name));
    }
}

/// How each kind marks what its changes affect.
trait MarkDirty {
    fn mark(&self, dirty: &mut Dirty);
}

impl MarkDirty for Deployment {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.deployments.insert(key_of(self));
    }
}

impl MarkDirty for StatefulSet {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.statefulsets.insert(key_of(self));
    }
}

impl MarkDirty for Pod {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.mark_pod(self);
    }
}

impl MarkDirty for Service {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.services.insert(key_of(self));
    }
}

impl MarkDirty for Ingress {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.ingresses.insert(key_of(self));
    }
}

impl MarkDirty for Secret {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.config_namespaces.insert(key_of(self).0);
    }
}

impl MarkDirty for ConfigMap {
    fn mark(&self, dirty: &mut Dirty) {
        dirty.config_namespaces.insert(key_of(self).0);
    }
}

impl MarkDirty for PersistentVolumeClaim {
    fn mark(&self, dirty: &mut Dirty) {
        let key = key_of(self);
        dirty.config_namespaces.insert(key.0.clone());
        dirty.pvcs.insert(key);
    }
}

/// A store that is ready and stays empty: the kinds kubelet mode leaves to
/// the real controllers.
fn empty_store<K>() -> Store<K>
where
    K: Resource + Clone + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    writer.apply_watcher_event(&watcher::Event::InitDone);
    reader
}

fn watch_all<K>(
    client: &Client,
    watch_config: watcher::Config,
    changed: &Arc<Notify>,
    dirty: &Arc<Mutex<Dirty>>,
) -> (Store<K>, JoinHandle<()>)
where
    K: Resource + MarkDirty + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(Api::<K>::all(client.clone()), watch_config))
        .default_backoff();
    let changed = changed.clone();
    let dirty = dirty.clone();
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            {
                let mut dirty = dirty.lock().unwrap_or_else(|e| e.into_inner());
                match &event {
                    Ok(watcher::Event::Apply(o) | watcher::Event::Delete(o)) => o.mark(&mut dirty),
                    // A (re-)list may hide deletions: look at everything.
                    Ok(
                        watcher::Event::Init
                        | watcher::Event::InitApply(_)
                        | watcher::Event::InitDone,
                    ) => {
                        dirty.full = true;
                    }
                    Err(error) => {
                        tracing::debug!(%error, kind = %K::kind(&K::DynamicType::default()), "watch error");
                    }
                }
            }
            changed.notify_one();
        }
    });
    (reader, task)
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
        use std::os::unix::fs::PermissionsExt;
        let state_err = |source| NodeSimError::StateDir {
            path: config.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(config.logs_dir()).map_err(state_err)?;
        // Traversable by the unprivileged user PostgreSQL runs as.
        std::fs::set_permissions(&config.state_dir, std::fs::Permissions::from_mode(0o755))
            .map_err(state_err)?;
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
        let mut watchers = Vec::new();
        let mut add = |task| watchers.push(task);
        let all = watcher::Config::default();
        let (deployments, statefulsets) = if kubelet_only {
            // The real controller manager owns the workloads.
            (empty_store(), empty_store())
        } else {
            let (deployments, t) = watch_all(&cluster, all.clone(), &changed, &dirty);
            add(t);
            let (statefulsets, t) = watch_all(&cluster, all.clone(), &changed, &dirty);
            add(t);
            (deployments, statefulsets)
        };
        // As kubelet: only the pods bound to this node (the Node authorizer
        // lets a node list pods with exactly this selector).
        let pod_config = if kubelet_only {
            watcher::Config::default().fields(&format!("spec.nodeName={}", config.node_name))
        } else {
            all.clone()
        };
        let (pods, t) = watch_all(&client, pod_config, &changed, &dirty);
        add(t);
        let (services, t) = watch_all(&cluster, all.clone(), &changed, &dirty);
        add(t);
        let (ingresses, t) = watch_all(&cluster, all.clone(), &changed, &dirty);
        add(t);
        let (secrets, config_maps) = if kubelet_only {
            // As kubelet: each pod's Secrets and ConfigMaps are read one by
            // one with the node's identity when it starts (see
            // `fetch_referenced`); waiting pods are retried every resync.
            (empty_store(), empty_store())
        } else {
            let (secrets, t) = watch_all(&cluster, all.clone(), &changed, &dirty);
            add(t);
            let (config_maps, t) = watch_all(&cluster, all.clone(), &changed, &dirty);
            add(t);
            (secrets, config_maps)
        };
        let (pvcs, t) = watch_all(&cluster, all, &changed, &dirty);
        add(t);
        let stores = Stores {
            deployments,
            statefulsets,
            pods,
            services,
            ingresses,
            secrets,
            config_maps,
            pvcs,
        };
        if let Err(error) = stores.wait_ready(Duration::from_secs(30)).await {
            for w in &watchers {
                w.abort();
            }
            return Err(error);
        }
        if kubelet_only {
            match registration::register(&client, &config.node_name).await {
                Ok(heartbeat) => watchers.push(heartbeat),
                Err(error) => {
                    for w in &watchers {
                        w.abort();
                    }
                    return Err(error);
                }
            }
        }
        let config = Arc::new(config);
        let shared = Arc::new(Shared {
            services: ServiceTable::default(),
            pods: Mutex::new(HashMap::new()),
        });
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

impl Stores {
    async fn wait_ready(&self, limit: Duration) -> Result<(), NodeSimError> {
        macro_rules! ready {
            ($store:expr, $kind:literal) => {
                if tokio::time::timeout(limit, $store.wait_until_ready())
                    .await
                    .is_err()
                {
                    return Err(NodeSimError::InitialSync {
                        kind: $kind,
                        seconds: limit.as_secs(),
                    });
                }
            };
        }
        ready!(self.deployments, "deployments");
        ready!(self.statefulsets, "statefulsets");
        ready!(self.pods, "pods");
        ready!(self.services, "services");
        ready!(self.ingresses, "ingresses");
        ready!(self.secrets, "secrets");
        ready!(self.config_maps, "configmaps");
        ready!(self.pvcs, "persistentvolumeclaims");
        Ok(())
    }
}

/// The controller loop's state.
struct Node {
    /// Kubelet's client: pods, their status and deletion, tokens.
    client: Client,
    /// Everything else (the same client in kubesim mode).
    cluster: Client,
    /// Kubelet only: the real controllers own the workloads.
    kubelet_only: bool,
    config: Arc<NodeSimConfig>,
    shared: Arc<Shared>,
    stores: Stores,
    pod_pool: Arc<AddressPool>,
    runtimes: HashMap<String, PodRuntime>,
    stopping: HashMap<(String, String), JoinHandle<()>>,
    /// Woken by watch events.
    changed: Arc<Notify>,
    /// Woken by container state changes (processes, probes).
    containers_changed: Arc<Notify>,
    dirty: Arc<Mutex<Dirty>>,
    last_full: tokio::time::Instant,
    router: Option<IngressRouter>,
}

/// The work of one pass.
struct PassScope {
    dirty: Dirty,
    /// Recompute the status of every pod with processes.
    containers: bool,
}

impl PassScope {
    fn full(&self) -> bool {
        self.dirty.full
    }
}

struct Context<'a> {
    namespace: String,
    stores: &'a Stores,
    dns: ClusterDns<'a>,
    token: Option<Result<String, String>>,
    /// Kubelet-only mode: the pod's Secrets and ConfigMaps as the node read
    /// them (instead of the stores).
    fetched: Option<Fetched>,
}

/// The Secrets and ConfigMaps one pod refers to, as its node may read them.
#[derive(Debug, Default)]
struct Fetched {
    secrets: HashMap<String, Secret>,
    config_maps: HashMap<String, ConfigMap>,
}

/// The names of the Secrets and ConfigMaps a pod refers to (env, envFrom,
/// volumes, projected volumes): what the Node authorizer lets its node get.
fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (secrets, config_maps);
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for var in container.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                if let Some(r) = &from.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
                if let Some(r) = &from.config_map_key_ref {
                    config_maps.insert(r.name.clone());
                }
            }
        }
        for source in container.env_from.iter().flatten() {
            if let Some(r) = &source.secret_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &source.config_map_ref {
                config_maps.insert(r.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        if let Some(cm) = &volume.config_map {
            config_maps.insert(cm.name.clone());
        }
        let projected = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for source in projected {
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
            if let Some(c) = &source.config_map {
                config_maps.insert(c.name.clone());
            }
        }
    }
    secrets.remove("");
    config_maps.remove("");
    (secrets, config_maps)
}

/// Reads a pod's Secrets and ConfigMaps one by one through the node's
/// client, as kubelet does; a missing one is left out (the pod waits, as
/// with kubelet's `CreateContainerConfigError`), a refusal is logged.
async fn fetch_referenced(client: &Client, pod: &Pod) -> Fetched {
    async fn get<K>(api: Api<K>, name: &str) -> Option<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        match api.get_opt(name).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, name, "the node could not read a pod's Secret or ConfigMap");
                None
            }
        }
    }
    let namespace = pod.namespace().unwrap_or_default();
    let (secrets, config_maps) = referenced(pod);
    let mut fetched = Fetched::default();
    for name in secrets {
        let api = Api::<Secret>::namespaced(client.clone(), &namespace);
        if let Some(secret) = get(api, &name).await {
            fetched.secrets.insert(name, secret);
        }
    }
    for name in config_maps {
        let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
        if let Some(cm) = get(api, &name).await {
            fetched.config_maps.insert(name, cm);
        }
    }
    fetched
}

/// The token a pod mounts, from the TokenRequest API: `None` when nodesim
/// gives pods no API access or the pod does not mount its token.
async fn service_account_token(
    client: &Client,
    cluster: &Client,
    config: &NodeSimConfig,
    pod: &Pod,
) -> Option<Result<String, String>> {
    use k8s_openapi::api::authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec,
    };
    use k8s_openapi::api::core::v1::ServiceAccount;
    config.api_server.as_ref()?;
    let spec = pod.spec.as_ref()?;
    if spec.automount_service_account_token == Some(false) {
        return None;
    }
    let namespace = pod.namespace().unwrap_or_default();
    let account = spec
        .service_account_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let api = Api::<ServiceAccount>::namespaced(client.clone(), &namespace);
    let failed = |e: &dyn std::fmt::Display| Some(Err(format!("failed to fetch token: {e}")));
    match Api::<ServiceAccount>::namespaced(cluster.clone(), &namespace)
        .get_opt(&account)
        .await
    {
        Ok(Some(found)) => {
            if spec
                .automount_service_account_token
                .or(found.automount_service_account_token)
                == Some(false)
            {
                return None;
            }
        }
        Ok(None) => return failed(&format!("serviceaccounts \"{account}\" not found")),
        Err(error) => return failed(&error),
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            // kubelet's default for projected tokens.
            expiration_seconds: Some(3607),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        },
        ..TokenRequest::default()
    };
    match api
        .create_token_request(&account, &post_params(), &request)
        .await
    {
        Ok(answer) => match answer.status {
            Some(status) => Some(Ok(status.token)),
            None => failed(&"the TokenRequest answer has no status"),
        },
        Err(error) => failed(&error),
    }
}

/// Names to addresses: Services from the table, pods from the last pass.
struct ClusterDns<'a> {
    services: &'a ServiceTable,
    pods: &'a Mutex<HashMap<(String, String), PodInfo>>,
}

impl ServiceResolver for ClusterDns<'_> {
    fn resolve(&self, namespace: &str, name: &str, explicit: bool) -> Option<Ipv4Addr> {
        self.services.resolve(namespace, name, explicit)
    }

    fn resolve_pod(&self, namespace: &str, _service: &str, pod: &str) -> Option<Ipv4Addr> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), pod.to_owned()))
            .and_then(|p| p.ip)
    }
}

impl env::ConfigLookup for Context<'_> {
    fn secret(&self, name: &str) -> Option<Secret> {
        if let Some(fetched) = &self.fetched {
            return fetched.secrets.get(name).cloned();
        }
        self.stores
            .secrets
            .get(&reflector::ObjectRef::new(name).within(&self.namespace))
            .map(|s| (*s).clone())
    }

    fn config_map(&self, name: &str) -> Option<ConfigMap> {
        if let Some(fetched) = &self.fetched {
            return fetched.config_maps.get(name).cloned();
        }
        self.stores
            .config_maps
            .get(&reflector::ObjectRef::new(name).within(&self.namespace))
            .map(|s| (*s).clone())
    }
}

impl PodContext for Context<'_> {
    fn pvc_exists(&self, name: &str) -> bool {
        self.stores
            .pvcs
            .get(&reflector::ObjectRef::new(name).within(&self.namespace))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    }

    fn services(&self) -> &dyn ServiceResolver {
        &self.dns
    }

    fn service_account_token(&self) -> Option<&Result<String, String>> {
        self.token.as_ref()
    }
}

/// The part of `desired` (an object) that differs from `existing`, with
/// `null` for `managed` keys that `desired` no longer has; `None` if equal.
pub fn status_diff(existing: Option<&Value>, desired: &Value, managed: &[&str]) -> Option<Value> {
    let empty = serde_json::Map::new();
    let existing = existing.and_then(Value::as_object).unwrap_or(&empty);
    let desired = desired.as_object()?;
    let mut patch = serde_json::Map::new();
    for (k, v) in desired {
        if existing.get(k) != Some(v) {
            patch.insert(k.clone(), v.clone());
        }
    }
    for k in managed {
        if !desired.contains_key(*k) && existing.get(*k).is_some_and(|v| !v.is_null()) {
            patch.insert((*k).to_owned(), Value::Null);
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

fn is_conflict_or_missing(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(s) if s.code == 409 || s.code == 404)
}

fn patch_params() -> PatchParams {
    PatchParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PatchParams::default()
    }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    }
}

async fn patch_status<K>(
    api: Api<K>,
    name: &str,
    existing: Option<Value>,
    desired: Value,
    managed: &[&str],
) where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let Some(diff) = status_diff(existing.as_ref(), &desired, managed) else {
        return;
    };
    if let Err(error) = api
        .patch_status(
            name,
            &patch_params(),
            &Patch::Merge(json!({ "status": diff })),
        )
        .await
        && !is_conflict_or_missing(&error)
    {
        tracing::warn!(%error, name, "status update failed");
    }
}

const DEPLOYMENT_STATUS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "updatedReplicas",
    "readyReplicas",
    "availableReplicas",
    "unavailableReplicas",
    "conditions",
];
const STATEFULSET_STATUS: &[&str] = &[
    "observedGeneration",
    "replicas",
    "readyReplicas",
    "availableReplicas",
    "currentReplicas",
    "updatedReplicas",
    "currentRevision",
    "updateRevision",
];
const POD_STATUS: &[&str] = &[
    "phase",
    "conditions",
    "containerStatuses",
    "podIP",
    "podIPs",
    "hostIP",
    "hostIPs",
    "startTime",
];

impl Node {
    async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut containers = true;
        loop {
            let mut dirty =
                std::mem::take(&mut *self.dirty.lock().unwrap_or_else(|e| e.into_inner()));
            if self.last_full.elapsed() >= self.config.resync {
                dirty.full = true;
            }
            if dirty.full {
                self.last_full = tokio::time::Instant::now();
            }
            self.pass(PassScope { dirty, containers }).await;
            containers = false;
            tokio::select! {
                () = self.changed.notified() => {}
                () = self.containers_changed.notified() => containers = true,
                () = tokio::time::sleep(self.config.resync) => {}
                _ = shutdown.changed() => break,
            }
        }
        let stops = self
            .runtimes
            .drain()
            .map(|(_, runtime)| runtime.stop())
            .collect::<Vec<_>>();
        futures::future::join_all(stops).await;
        for (_, task) in self.stopping.drain() {
            let _ = task.await;
        }
    }

    async fn pass(&mut self, scope: PassScope) {
        let pods = self.stores.pods.state();
        let mut by_owner: HashMap<&str, Vec<&Pod>> = HashMap::new();
        let mut by_namespace: HashMap<String, Vec<&Pod>> = HashMap::new();
        for pod in &pods {
            for owner in pod.owner_references() {
                if owner.controller == Some(true) {
                    by_owner.entry(owner.uid.as_str()).or_default().push(pod);
                }
            }
            by_namespace
                .entry(pod.namespace().unwrap_or_default())
                .or_default()
                .push(pod);
        }
        if !self.kubelet_only {
            self.sync_deployments(&by_owner, &scope).await;
            self.sync_statefulsets(&by_owner, &scope).await;
            if scope.full() {
                self.collect_orphans(&pods).await;
            }
        }
        self.sync_pods(&pods, &scope).await;
        let services = self.stores.services.state();
        let service_refs: Vec<&Service> = services.iter().map(AsRef::as_ref).collect();
        let dirty = &scope.dirty;
        let revisit = |service: &Service| {
            let key = key_of(service);
            scope.full()
                || dirty.services.contains(&key)
                || dirty.services.contains(&(key.0, String::new()))
        };
        self.shared
            .services
            .sync(
                &service_refs,
                &by_namespace,
                self.config.serve_services,
                revisit,
            )
            .await;
        if scope.full() || !dirty.ingresses.is_empty() || !dirty.services.is_empty() {
            self.sync_ingresses(&services, &scope).await;
        }
        self.sync_pvcs(&scope).await;
    }

    async fn sync_deployments(&self, by_owner: &HashMap<&str, Vec<&Pod>>, scope: &PassScope) {
        let now = process::now();
        let store = &self.stores.deployments;
        let deployments = if scope.full() {
            store.state()
        } else {
            scope
                .dirty
                .deployments
                .iter()
                .filter_map(|(ns, name)| store.get(&reflector::ObjectRef::new(name).within(ns)))
                .collect()
        };
        for deployment in deployments {
            if deployment.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let uid = deployment.uid().unwrap_or_default();
            let owned = by_owner.get(uid.as_str()).cloned().unwrap_or_default();
            let plan = workloads::plan_deployment(&deployment, &owned, &now);
            let ns = deployment.namespace().unwrap_or_default();
            self.apply_pods(&ns, &plan.create_pods, &plan.delete_pods)
                .await;
            if !plan.create_pods.is_empty() {
                // The new pods' events bring the next pass, with a status
                // that counts them: one write instead of two.
                continue;
            }
            let existing = deployment
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
            let desired = serde_json::to_value(&plan.status).unwrap_or_default();
            patch_status(
                Api::<Deployment>::namespaced(self.client.clone(), &ns),
                &deployment.name_any(),
                existing,
                desired,
                DEPLOYMENT_STATUS,
            )
            .await;
        }
    }

    async fn sync_statefulsets(&self, by_owner: &HashMap<&str, Vec<&Pod>>, scope: &PassScope) {
        let store = &self.stores.statefulsets;
        let sets = if scope.full() {
            store.state()
        } else {
            scope
                .dirty
                .statefulsets
                .iter()
                .filter_map(|(ns, name)| store.get(&reflector::ObjectRef::new(name).within(ns)))
                .collect()
        };
        if sets.is_empty() {
            return;
        }
        let mut claims_by_namespace: HashMap<String, BTreeSet<String>> = HashMap::new();
        for pvc in self.stores.pvcs.state() {
            claims_by_namespace
                .entry(pvc.namespace().unwrap_or_default())
                .or_default()
                .insert(pvc.name_any());
        }
        for sts in sets {
            if sts.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let ns = sts.namespace().unwrap_or_default();
            let uid = sts.uid().unwrap_or_default();
            let owned = by_owner.get(uid.as_str()).cloned().unwrap_or_default();
            let no_claims = BTreeSet::new();
            let claims = claims_by_namespace.get(&ns).unwrap_or(&no_claims);
            let plan = workloads::plan_statefulset(&sts, &owned, claims);
            let pvc_api = Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &ns);
            for pvc in &plan.create_pvcs {
                if let Err(error) = pvc_api.create(&post_params(), pvc).await
                    && !is_conflict_or_missing(&error)
                {
                    tracing::warn!(%error, pvc = %pvc.name_any(), "creating PVC failed");
                }
            }
            self.apply_pods(&ns, &plan.create_pods, &plan.delete_pods)
                .await;
            if !plan.create_pods.is_empty() {
                // The new pods' events bring the next pass, with a status
                // that counts them: one write instead of two.
                continue;
            }
            let existing = sts
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
            let desired = serde_json::to_value(&plan.status).unwrap_or_default();
            patch_status(
                Api::<StatefulSet>::namespaced(self.client.clone(), &ns),
                &sts.name_any(),
                existing,
                desired,
                STATEFULSET_STATUS,
            )
            .await;
        }
    }

    async fn apply_pods(&self, ns: &str, create: &[Pod], delete: &[String]) {
        let api = Api::<Pod>::namespaced(self.client.clone(), ns);
        for pod in create {
            if let Err(error) = api.create(&post_params(), pod).await
                && !is_conflict_or_missing(&error)
            {
                tracing::warn!(%error, pod = %pod.name_any(), "creating pod failed");
            }
        }
        for name in delete {
            if let Err(error) = api.delete(name, &DeleteParams::default()).await
                && !is_conflict_or_missing(&error)
            {
                tracing::warn!(%error, pod = %name, "deleting pod failed");
            }
        }
    }

    /// Deletes pods whose controlling Deployment or StatefulSet is gone, in
    /// case the API server does not collect garbage itself.
    async fn collect_orphans(&self, pods: &[Arc<Pod>]) {
        let deployments: BTreeSet<String> = self
            .stores
            .deployments
            .state()
            .iter()
            .filter_map(|d| d.uid())
            .collect();
        let statefulsets: BTreeSet<String> = self
            .stores
            .statefulsets
            .state()
            .iter()
            .filter_map(|d| d.uid())
            .collect();
        for pod in pods {
            let orphaned = pod.owner_references().iter().any(|o| {
                o.controller == Some(true)
                    && ((o.kind == "Deployment" && !deployments.contains(&o.uid))
                        || (o.kind == "StatefulSet" && !statefulsets.contains(&o.uid)))
            });
            if orphaned && pod.metadata.deletion_timestamp.is_none() {
                let ns = pod.namespace().unwrap_or_default();
                self.apply_pods(&ns, &[], &[pod.name_any()]).await;
            }
        }
    }

    async fn sync_pods(&mut self, pods: &[Arc<Pod>], scope: &PassScope) {
        let live: HashMap<String, &Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| {
                p.spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(|n| n == self.config.node_name)
            })
            .filter_map(|p| Some((p.uid()?, p)))
            .collect();
        // Stop what is no longer wanted.
        let gone: Vec<String> = self
            .runtimes
            .keys()
            .filter(|uid| !live.contains_key(*uid))
            .cloned()
            .collect();
        for uid in gone {
            let Some(runtime) = self.runtimes.remove(&uid) else {
                continue;
            };
            let key = (runtime.namespace.clone(), runtime.name.clone());
            let pool = self.pod_pool.clone();
            let changed = self.changed.clone();
            let dirty = self.dirty.clone();
            let api = Api::<Pod>::namespaced(self.client.clone(), &runtime.namespace);
            let terminating = pods
                .iter()
                .any(|p| p.uid().as_deref() == Some(uid.as_str()));
            let task = tokio::spawn(async move {
                let ip = runtime.ip;
                let name = runtime.name.clone();
                runtime.stop().await;
                pool.release(ip);
                if terminating {
                    // Graceful deletion: the node confirms the containers
                    // are gone, as kubelet does.
                    let params = DeleteParams {
                        grace_period_seconds: Some(0),
                        ..DeleteParams::default()
                    };
                    let _ = api.delete(&name, &params).await;
                }
                dirty
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .volumes_released = true;
                changed.notify_one();
            });
            self.stopping.insert(key, task);
        }
        self.stopping.retain(|_, task| !task.is_finished());

        // Terminating pods this node never ran (deleted before they
        // started): confirm at once, as kubelet does.
        for pod in pods {
            let key = key_of(pod.as_ref());
            let never_ran = pod.metadata.deletion_timestamp.is_some()
                && pod
                    .uid()
                    .is_some_and(|uid| !self.runtimes.contains_key(&uid))
                && !self.stopping.contains_key(&key)
                && pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_none_or(|n| n == self.config.node_name);
            if never_ran && (scope.full() || scope.dirty.pods.contains(&key)) {
                let params = DeleteParams {
                    grace_period_seconds: Some(0),
                    ..DeleteParams::default()
                };
                if let Err(error) = Api::<Pod>::namespaced(self.client.clone(), &key.0)
                    .delete(&key.1, &params)
                    .await
                    && !is_conflict_or_missing(&error)
                {
                    tracing::warn!(%error, pod = %key.1, "confirming pod deletion failed");
                }
            }
        }

        // Start new pods and retry waiting ones.
        let ctx_services = &self.shared.services;
        let mut started = BTreeSet::new();
        for (uid, pod) in &live {
            let ns = pod.namespace().unwrap_or_default();
            let key = (ns.clone(), pod.name_any());
            let retry = self.runtimes.get(uid).is_some_and(PodRuntime::is_waiting)
                && (scope.full() || scope.dirty.config_namespaces.contains(&ns));
            if self.runtimes.contains_key(uid) && !retry {
                continue;
            }
            if self.stopping.contains_key(&key) {
                continue;
            }
            let ip = match self.runtimes.get(uid) {
                Some(r) => r.ip,
                None => {
                    let ports: Vec<u16> = if self.config.default_program == Some(Program::Instant)
                        && self.config.images.is_empty()
                    {
                        Vec::new()
                    } else {
                        pod.spec
                            .iter()
                            .flat_map(|s| s.containers.iter())
                            .flat_map(|c| c.ports.iter().flatten())
                            .filter_map(|p| u16::try_from(p.container_port).ok())
                            .collect()
                    };
                    let Some(ip) = self.pod_pool.allocate(&ports) else {
                        tracing::warn!(namespace = %ns, pod = %pod.name_any(), "no free pod address");
                        continue;
                    };
                    ip
                }
            };
            let token = service_account_token(&self.client, &self.cluster, &self.config, pod).await;
            let fetched = if self.kubelet_only {
                Some(fetch_referenced(&self.client, pod).await)
            } else {
                None
            };
            let ctx = Context {
                namespace: ns.clone(),
                stores: &self.stores,
                dns: ClusterDns {
                    services: ctx_services,
                    pods: &self.shared.pods,
                },
                token,
                fetched,
            };
            let mut runtime =
                kubelet::start_pod(pod, ip, &self.config, &ctx, &self.containers_changed);
            if let Some(old) = self.runtimes.remove(uid) {
                runtime.started = old.started;
            }
            self.runtimes.insert(uid.clone(), runtime);
            started.insert(uid.clone());
        }

        // Report.
        let mut index = HashMap::new();
        for (uid, runtime) in &self.runtimes {
            index.insert(
                (runtime.namespace.clone(), runtime.name.clone()),
                PodInfo {
                    ip: Some(runtime.ip),
                    pids: runtime.pids(),
                },
            );
            let Some(pod) = live.get(uid) else { continue };
            let has_processes = runtime
                .slots
                .iter()
                .any(|s| matches!(s, kubelet::Slot::Process { .. }));
            let wanted = scope.full()
                || started.contains(uid)
                || (scope.containers && has_processes)
                || scope
                    .dirty
                    .pods
                    .contains(&(runtime.namespace.clone(), runtime.name.clone()));
            if !wanted {
                continue;
            }
            let status = kubelet::pod_status(runtime, pod.status.as_ref());
            let existing = pod
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
            let desired = serde_json::to_value(&status).unwrap_or_default();
            patch_status(
                Api::<Pod>::namespaced(self.client.clone(), &runtime.namespace),
                &runtime.name,
                existing,
                desired,
                POD_STATUS,
            )
            .await;
        }
        *self.shared.pods.lock().unwrap_or_else(|e| e.into_inner()) = index;
    }

    async fn sync_ingresses(&self, services: &[Arc<Service>], scope: &PassScope) {
        let Some(router) = &self.router else {
            return;
        };
        let by_key: HashMap<Key, &Service> = services
            .iter()
            .map(|s| (key_of(s.as_ref()), s.as_ref()))
            .collect();
        let mut routes = Vec::new();
        for ingress in self.stores.ingresses.state() {
            let ns = ingress.namespace().unwrap_or_default();
            let lookup = |name: &str| by_key.get(&(ns.clone(), name.to_owned())).copied();
            routes.extend(services::ingress_routes(
                &ingress,
                lookup,
                &self.shared.services,
            ));
            if !scope.full() && !scope.dirty.ingresses.contains(&key_of(ingress.as_ref())) {
                continue;
            }
            let desired = json!({
                "loadBalancer": {"ingress": [{
                    "ip": router.addr().ip().to_string(),
                    "ports": [{"port": router.addr().port(), "protocol": "TCP"}]
                }]}
            });
            let existing = ingress
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
            patch_status(
                Api::<Ingress>::namespaced(self.cluster.clone(), &ns),
                &ingress.name_any(),
                existing,
                desired,
                &["loadBalancer"],
            )
            .await;
        }
        router.set_routes(routes);
    }

    /// PVCs are directories: created and marked Bound while the claim exists,
    /// removed once it is gone and no pod of this node uses it.
    async fn sync_pvcs(&self, scope: &PassScope) {
        if !scope.full() && scope.dirty.pvcs.is_empty() && !scope.dirty.volumes_released {
            return;
        }
        let pvcs = self.stores.pvcs.state();
        let mut wanted = BTreeSet::new();
        for pvc in &pvcs {
            let ns = pvc.namespace().unwrap_or_default();
            let dir = kubelet::pvc_dir(&self.config.state_dir, &ns, &pvc.name_any());
            wanted.insert(dir.clone());
            if pvc.metadata.deletion_timestamp.is_some()
                || (!scope.full() && !scope.dirty.pvcs.contains(&key_of(pvc.as_ref())))
            {
                continue;
            }
            if let Err(error) = std::fs::create_dir_all(&dir) {
                tracing::warn!(%error, dir = %dir.display(), "creating PVC directory failed");
                continue;
            }
            if self.kubelet_only {
                // The real PV controller binds the claim to nodesim's PV.
                continue;
            }
            let spec = pvc.spec.clone().unwrap_or_default();
            let capacity = spec
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get("storage"))
                .map(|q| json!({"storage": q}));
            let mut desired = json!({"phase": "Bound", "accessModes": spec.access_modes});
            if let Some(capacity) = capacity {
                desired["capacity"] = capacity;
            }
            let existing = pvc
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
            patch_status(
                Api::<PersistentVolumeClaim>::namespaced(self.client.clone(), &ns),
                &pvc.name_any(),
                existing,
                desired,
                &[],
            )
            .await;
        }
        if self.kubelet_only {
            registration::provision_volumes(
                &self.cluster,
                &self.config.node_name,
                &self.config.state_dir,
                &pvcs,
            )
            .await;
        }
        let in_use: BTreeSet<PathBuf> = self
            .stores
            .pods
            .state()
            .iter()
            .filter(|p| p.uid().is_some_and(|u| self.runtimes.contains_key(&u)))
            .flat_map(|p| {
                let ns = p.namespace().unwrap_or_default();
                p.spec
                    .iter()
                    .flat_map(|s| s.volumes.iter().flatten())
                    .filter_map(|v| v.persistent_volume_claim.as_ref())
                    .map(|c| kubelet::pvc_dir(&self.config.state_dir, &ns, &c.claim_name))
                    .collect::<Vec<_>>()
            })
            .collect();
        let root = self.config.state_dir.join("pvc");
        let Ok(namespaces) = std::fs::read_dir(&root) else {
            return;
        };
        for ns_dir in namespaces.flatten() {
            let Ok(claims) = std::fs::read_dir(ns_dir.path()) else {
                continue;
            };
            for claim in claims.flatten() {
                let path = claim.path();
                if !wanted.contains(&path)
                    && !in_use.contains(&path)
                    && self.stopping.is_empty()
                    && let Err(error) = std::fs::remove_dir_all(&path)
                {
                    tracing::warn!(%error, dir = %path.display(), "removing PVC directory failed");
                }
            }
            // The namespace's directory goes with its last claim.
            if self.stopping.is_empty() {
                let _ = std::fs::remove_dir(ns_dir.path());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_diff_sends_only_changes_and_clears_dropped_fields() {
        let existing = json!({"replicas": 1, "readyReplicas": 1, "extra": 5});
        assert_eq!(
            status_diff(
                Some(&existing),
                &json!({"replicas": 1, "readyReplicas": 1}),
                &["replicas", "readyReplicas"]
            ),
            None
        );
        assert_eq!(
            status_diff(
                Some(&existing),
                &json!({"replicas": 2}),
                &["replicas", "readyReplicas"]
            ),
            Some(json!({"replicas": 2, "readyReplicas": null}))
        );
    }

    #[test]
    fn images_match_by_prefix_after_normalisation() {
        let config = NodeSimConfig::new("/tmp/x")
            .postgres()
            .binary("atoll/atoll-instance", "/bin/true");
        assert!(matches!(
            kubelet::program_for(&config, "registry.example.com/library/postgres:16"),
            Some(Program::Postgres { .. })
        ));
        assert!(matches!(
            kubelet::program_for(
                &config,
                "registry.example.com:5000/atoll/atoll-instance:0.1.0"
            ),
            Some(Program::Binary { .. })
        ));
        assert!(matches!(
            kubelet::program_for(&config, "bitnami/postgres:16"),
            Some(Program::Postgres { .. })
        ));
        assert_eq!(kubelet::program_for(&config, "redis:7"), None);
        assert_eq!(
            kubelet::program_for(&config.instant(), "redis:7"),
            Some(&Program::Instant)
        );
    }
}
