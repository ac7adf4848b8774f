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
//! # What it implements
//!
//! - Discovery (`/api`, `/apis`, group/version resource lists, `/version`)
//!   for the built-in kinds Atoll touches and every version of every CRD
//!   created in it; OpenAPI v2 and v3 documents (CRD schemas, and the
//!   parameters kubectl looks for to use server-side field validation).
//! - get, list (label and field selectors, `limit`/`continue` pages), watch,
//!   create (`generateName`, uid, creationTimestamp, generation 1, 404 for a
//!   missing namespace, 403 in a terminating one), update (409 on a stale
//!   resourceVersion), patch (merge, JSON, strategic merge for built-in
//!   kinds), server-side apply (`managedFields` per manager, conflicts,
//!   `force`, fields a manager stops applying are removed), delete and
//!   deletecollection, `dryRun=All`, the `status` and `scale` subresources
//!   and pod `log` (through [`PodLogs`]).
//! - One global resourceVersion; `generation` bumps only when something
//!   outside metadata and status changes; a write that changes nothing
//!   keeps the resourceVersion and sends no watch event.
//! - Watches: replay after a resourceVersion from a bounded history (an
//!   `ERROR` event with 410 Gone when it is too old), synthetic `ADDED`
//!   events without one, `sendInitialEvents`, bookmarks, `timeoutSeconds`,
//!   selector transitions; `Table` and `PartialObjectMetadata` renderings.
//! - Deletion: finalizers and deletionTimestamp, Background, Foreground
//!   and Orphan propagation, ownerReference garbage collection (also of
//!   objects whose owners are all absent), namespaces removing everything
//!   inside, CRDs taking their objects with them; opt-in graceful pod
//!   deletion for nodesim playing kubelet.
//! - Custom resources pruned, defaulted and validated against the CRD's
//!   `openAPIV3Schema` and CEL rules, with 422 `Status` causes naming each
//!   field; `fieldValidation=Strict` refuses unknown fields.
//! - Built-in kinds: name, label and annotation syntax; immutable fields
//!   (immutable ConfigMaps/Secrets, workload selectors, StatefulSet and PVC
//!   specs, Service cluster IPs, RoleBinding `roleRef`); workload selectors
//!   that must select their template, Ingress `pathType`, Event creation
//!   rules; the defaults the server adds (Secret `stringData` folded into
//!   `data`, Service cluster IPs and port defaults, workload and pod template
//!   defaults).
//! - Events: one resource served as core `v1` and `events.k8s.io/v1`,
//!   converted as Kubernetes converts them (the `conversion` module).
//! - ValidatingAdmissionPolicies and their bindings
//!   (`admissionregistration.k8s.io/v1`), evaluated in CEL on every write
//!   a client makes, after RBAC and before storing, with the API server's
//!   denials (the `admission` module: match constraints and
//!   conditions, variables, validations, failure policy; no `paramKind`).
//! - Service-account tokens through the TokenRequest API; each request is
//!   logged with the user its token names; optional RBAC authorization
//!   ([`rbac`], also usable on its own to check roles against a log),
//!   including `create` for a server-side apply that creates its object.
//! - For tests: a [`RequestLog`] (user, verb, resource, namespace, name,
//!   field manager, code, whether it wrote, the verbs it was also
//!   authorized for) and [`Faults`] (scripted or random
//!   500, 409, 429 with `Retry-After`, latency, watch streams cut short;
//!   closing every open watch on demand).
//!
//! # What it does not do
//!
//! Authentication only by bearer tokens from the TokenRequest API
//! (`serviceaccounts/<name>/token`, which nodesim uses to give pods their
//! service account's credentials); requests without credentials are
//! allowed everything. Tokens do not expire. No TLS, so Go clients
//! (kubectl) send no credentials to it. RBAC is off unless turned on
//! ([`KubeSimBuilder::rbac`]); then it applies to token holders' resource
//! requests only (discovery stays open), without aggregated ClusterRoles.
//! No admission webhooks, no controllers besides the garbage collector and
//! namespace lifecycle (workloads come to life with nodesim), no Protocol
//! Buffers (kubectl's typed generators such as `kubectl create configmap`
//! get a 415; `kubectl apply`/`create -f` use JSON and work; kubectl
//! older than 1.29 wants the OpenAPI v2 document in protobuf and needs
//! `--validate=false`), no CRD
//! conversion webhooks (versions share one stored form), and built-in kinds
//! are not validated against their full OpenAPI schemas.

mod admission;
mod conversion;
mod defaults;
mod discovery;
pub mod error;
pub mod faults;
mod fields;
mod handlers;
pub mod log;
mod openapi;
mod patch;
pub mod quota;
pub mod rbac;
mod resources;
mod routes;
mod schema;
mod selectors;
mod store;
mod table;
mod validation;
mod watch;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::stream::BoxStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use axum::body::Bytes;
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

/// Supplies pod logs (the `log` subresource); nodesim implements it for
/// the processes it runs. [`Bytes`] is re-exported here for implementors.
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
    graceful_pods: bool,
    rbac: bool,
}

impl Default for KubeSimBuilder {
    fn default() -> Self {
        Self {
            history: 50_000,
            bookmark_interval: Duration::from_secs(5),
            graceful_pods: false,
            rbac: false,
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

    /// Graceful pod deletion, as with a kubelet: deleting a pod marks it
    /// terminating (deletionTimestamp, deletionGracePeriodSeconds) and it
    /// stays until deleted again with `gracePeriodSeconds=0`, which is what
    /// nodesim does once the pod's processes have stopped. Off by default:
    /// pods without finalizers then go at once.
    pub fn graceful_pod_deletion(mut self, on: bool) -> Self {
        self.graceful_pods = on;
        self
    }

    /// Authorizes requests that carry a bearer token (issued through the
    /// TokenRequest API, `serviceaccounts/<name>/token`) with RBAC: the
    /// Roles, ClusterRoles and bindings in the store decide, and a denied
    /// request gets the API server's 403 `Forbidden`. A server-side apply
    /// that creates its object needs `create` too, as on a real cluster. Requests without
    /// credentials (tests, nodesim, kubectl with the plain kubeconfig) stay
    /// allowed, like a cluster administrator. Off by default.
    pub fn rbac(mut self, on: bool) -> Self {
        self.rbac = on;
        self
    }

    /// Builds the simulator, with the namespaces `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease`.
    pub fn build(self) -> KubeSim {
        KubeSim {
            shared: Arc::new(Shared {
                store: Mutex::new({
                    let mut store = Store::new(self.history);
                    store.graceful_pods = self.graceful_pods;
                    store
                }),
                log: RequestLog::default(),
                faults: Faults::default(),
                pod_logs: RwLock::new(None),
                bookmark_interval: self.bookmark_interval,
                tokens: Mutex::default(),
                rbac: self.rbac,
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

    /// A `kube::Client` in process that authenticates as `user` with a
    /// bearer token this simulator issued, so that the request log names
    /// the user and RBAC (when on) applies to it; default namespace
    /// `default`.
    pub fn client_as(&self, user: rbac::UserInfo) -> kube::Client {
        let token = self.shared.issue_token(user);
        // The token is ASCII letters, digits and a dot: a valid header value.
        let bearer = http::HeaderValue::from_str(&format!("Bearer {token}"))
            .expect("kubesim tokens are valid header values");
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut request: http::Request<kube::client::Body>| {
                request
                    .headers_mut()
                    .insert(http::header::AUTHORIZATION, bearer.clone());
                request
            })
            .service(self.router());
        kube::Client::new(service, "default")
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
            faults: self.faults(),
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

/// A kubeconfig for the API server at `url` with default namespace
/// `namespace`; `user` is the YAML flow mapping of the user's credentials
/// (`{}` for none, `{tokenFile: /path}` for a bearer token read from a file).
pub fn kubeconfig(url: &str, namespace: &str, user: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: {url}\ncontexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: kubesim\n    namespace: {namespace}\ncurrent-context: kubesim\nusers:\n- name: kubesim\n  user: {user}\npreferences: {{}}\n"
    )
}

/// A running HTTP listener; stops when shut down or dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    faults: Faults,
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
        kubeconfig(&self.url(), "default", "{}")
    }

    /// Writes [`Server::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Stops accepting connections, ends open watch streams (in-process
    /// clients see them close too, and simply watch again), and waits up to
    /// five seconds for open requests to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.faults.close_watches();
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
        {
            task.abort();
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
