//! kubesim: an in-memory Kubernetes API server that speaks the real
//! HTTP+JSON protocol.
//!
//! Use it in process, as the tower service behind a [`kube::Client`]
//! ([`KubeSim::client`]), or over plain HTTP on a loopback port for kubectl
//! and the project's binaries ([`KubeSim::serve`], [`Server::write_kubeconfig`]).
//! Both faces share one store, so a test can drive kubectl and check with
//! a client, or the reverse.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use atoll_testkit::kubesim::KubeSim;
//! let sim = KubeSim::new();
//! let client = sim.client(); // a kube::Client, default namespace "default"
//! let server = sim.serve("127.0.0.1:0".parse().unwrap()).await?;
//! server.write_kubeconfig("/tmp/kubeconfig")?;
//! let writes = sim.request_log().write_count();
//! # Ok(()) }
//! ```
//!
//! What it implements: discovery (built-in kinds Atoll uses, plus every
//! CRD created in it), get/list/watch/create/update/patch (merge, JSON,
//! strategic, server-side apply with managedFields)/delete/deletecollection,
//! the status subresource, resourceVersion and generation rules, no-op
//! writes that change nothing, label and field selectors, watch replay,
//! bookmarks and 410 Gone, finalizers, ownerReference garbage collection
//! and namespace deletion, CRD schema validation (OpenAPI and CEL rules) and
//! defaulting, `Table` output for kubectl, a request log and fault
//! injection. It has no authentication, admission webhooks or controllers
//! other than the garbage collector and namespace lifecycle: workloads are
//! brought to life by nodesim.

mod discovery;
pub mod error;
pub mod faults;
mod fields;
pub mod log;
mod openapi;
mod patch;
mod resources;
mod routes;
mod schema;
mod selectors;
mod store;
mod table;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::body::Bytes;
use futures::stream::BoxStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use error::{ApiError, Cause};
pub use faults::{Fault, FaultRule, Faults};
pub use log::{RequestLog, RequestRecord, Verb};

use routes::Shared;
use store::Store;

/// What `kubectl logs` (the pod `log` subresource) asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodLogRequest {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container (defaults to the pod's first container).
    pub container: Option<String>,
    /// `follow=true`: keep the stream open for new lines.
    pub follow: bool,
    /// `tailLines`.
    pub tail_lines: Option<u64>,
    /// `previous=true`: the previous instance of the container.
    pub previous: bool,
}

/// Supplies pod logs; nodesim implements it for the processes it runs.
pub trait PodLogs: Send + Sync + 'static {
    /// The log text as a stream of chunks, or a message explaining why
    /// there is none (answered as 400, like kubelet's errors).
    fn logs(&self, request: PodLogRequest) -> Result<BoxStream<'static, Bytes>, String>;
}

/// Settings for a [`KubeSim`].
#[derive(Clone, Debug)]
pub struct KubeSimBuilder {
    history: usize,
    bookmark_interval: Duration,
}

impl Default for KubeSimBuilder {
    fn default() -> Self {
        Self {
            history: 50_000,
            bookmark_interval: Duration::from_secs(5),
        }
    }
}

impl KubeSimBuilder {
    /// How many changes are kept for watch replay (older versions get 410
    /// Gone). Default 50,000.
    pub fn history(mut self, changes: usize) -> Self {
        self.history = changes;
        self
    }

    /// How often watches that allow bookmarks get one. Default 5 s.
    pub fn bookmark_interval(mut self, interval: Duration) -> Self {
        self.bookmark_interval = interval;
        self
    }

    /// Builds the simulator, with the namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`.
    pub fn build(self) -> KubeSim {
        KubeSim {
            shared: Arc::new(Shared {
                store: Mutex::new(Store::new(self.history)),
                log: RequestLog::default(),
                faults: Faults::default(),
                pod_logs: RwLock::new(None),
                bookmark_interval: self.bookmark_interval,
            }),
        }
    }
}

/// An in-memory Kubernetes API server. Cheap to clone; clones share state.
#[derive(Clone, Debug)]
pub struct KubeSim {
    shared: Arc<Shared>,
}

impl Default for KubeSim {
    fn default() -> Self {
        Self::new()
    }
}

impl KubeSim {
    /// A simulator with default settings.
    pub fn new() -> Self {
        KubeSimBuilder::default().build()
    }

    /// Settings.
    pub fn builder() -> KubeSimBuilder {
        KubeSimBuilder::default()
    }

    /// The axum router serving the API (a tower `Service`).
    pub fn router(&self) -> axum::Router {
        routes::router(self.shared.clone())
    }

    /// A `kube::Client` talking to this simulator in process, default
    /// namespace `default`.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.router(), "default")
    }

    /// Serves the API over plain HTTP on `addr` (use port 0 for a free one)
    /// until the returned [`Server`] is shut down or dropped.
    pub async fn serve(&self, addr: SocketAddr) -> std::io::Result<Server> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let router = self.router();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
            if let Err(e) = served {
                tracing::warn!(error = %e, "kubesim listener stopped");
            }
        });
        Ok(Server {
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The log of every request served so far.
    pub fn request_log(&self) -> RequestLog {
        self.shared.log.clone()
    }

    /// The fault-injection handle.
    pub fn faults(&self) -> Faults {
        self.shared.faults.clone()
    }

    /// Sets where pod logs come from (nodesim's processes).
    pub fn set_pod_logs(&self, provider: Arc<dyn PodLogs>) {
        *self
            .shared
            .pod_logs
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(provider);
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().resource_version()
    }
}

/// A running HTTP listener; stops when shut down or dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL (`http://127.0.0.1:PORT`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig (context `kubesim`, namespace `default`, no credentials).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: default\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user: {{}}\npreferences: {{}}\n",
            self.url()
        )
    }

    /// Writes [`Server::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Stops accepting connections and waits for open ones to end (watch
    /// streams end with the simulator's watchers; close them first with
    /// [`Faults::close_watches`] for a quick stop).
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
