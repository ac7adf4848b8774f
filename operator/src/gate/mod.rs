//! The wake gate (#20), `atoll-operator wake-gate`: an HTTP server in the
//! platform's namespace (several replicas) that serves the hosts of
//! sleeping and suspended tenants (their Ingress routes to it, see
//! `crate::build::shape_for_sleep`).
//!
//! A request for a sleeping tenant asks the operator to wake it (the wake
//! annotation on the Tenant, once per sleep however many requests come),
//! is held until one of the tenant's instance pods is ready (the gate
//! watches instance pods), and is then forwarded to it unchanged, its
//! answer streamed back: no request fails because the tenant slept. Held
//! longer than `--hold-limit-seconds`, it gets 503 with `Retry-After`; a
//! browser asking for a page is held briefly and then gets a "waking up"
//! page that reloads itself. A suspended tenant's requests get a clear
//! "suspended" answer and wake nothing.
//!
//! The gate reads Tenants and instance pods (watch caches, by label) and
//! may only change the two wake annotations of a Tenant (its RBAC and the
//! chart's admission policy): a compromised gate can wake tenants, nothing
//! more.

pub mod directory;
mod forward;
mod metrics;
pub mod page;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use atoll_crds::{Tenant, WAKE_CAUSE_ANNOTATION, WAKE_REQUESTED_AT_ANNOTATION};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use tokio::sync::watch;

use directory::{Standing, Target};

/// Arguments of `wake-gate`.
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// Where the gate serves tenants' hosts (the port their Ingress routes to).
    #[arg(long, env = "ATOLL_GATE_LISTEN", default_value = "0.0.0.0:8080")]
    pub listen: SocketAddr,

    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "ATOLL_GATE_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    /// Longest a request is held while its tenant wakes; then 503 with Retry-After.
    #[arg(long, env = "ATOLL_GATE_HOLD_LIMIT_SECONDS", default_value_t = 60)]
    pub hold_limit_seconds: u64,

    /// Longest a browser's page request is held before it gets the "waking up" page (which reloads itself).
    #[arg(long, env = "ATOLL_GATE_PAGE_HOLD_SECONDS", default_value_t = 3)]
    pub page_hold_seconds: u64,
}

/// Why the gate stopped.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// No Kubernetes client could be made.
    #[error("connecting to the Kubernetes API: {0}")]
    Client(#[source] kube::Error),
    /// A listener could not be bound.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A server failed.
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// How often a starting instance pod is asked whether it is ready.
const STARTING_RECHECK: Duration = Duration::from_millis(25);

/// The gate's shared state.
struct Gate {
    client: Client,
    tenants: Store<Tenant>,
    pods: Store<Pod>,
    changed: watch::Receiver<u64>,
    http: reqwest::Client,
    hold_limit: Duration,
    page_hold: Duration,
    metrics: metrics::GateMetrics,
    /// When this replica last asked for each tenant's wake.
    asked: Mutex<HashMap<String, Instant>>,
}

/// Runs the gate until SIGTERM or Ctrl-C.
pub async fn run(args: GateArgs) -> Result<(), GateError> {
    let client = Client::try_default().await.map_err(GateError::Client)?;
    run_with_client(args, client).await
}

/// Runs the gate with a given client (tests).
pub async fn run_with_client(args: GateArgs, client: Client) -> Result<(), GateError> {
    let (bump, changed) = watch::channel(0u64);
    let bump = Arc::new(bump);
    let (tenants, tenant_writer) = reflector::store();
    let tenant_stream = reflector::reflector(
        tenant_writer,
        watcher(
            Api::<Tenant>::all(client.clone()),
            watcher::Config::default(),
        ),
    )
    .default_backoff()
    .touched_objects();
    let (pods, pod_writer) = reflector::store();
    let instance_pods = watcher::Config::default().labels(&format!(
        "{}={},{}={}",
        crate::build::COMPONENT_LABEL,
        crate::build::INSTANCE,
        crate::build::MANAGED_BY_LABEL,
        crate::build::FIELD_MANAGER
    ));
    let pod_stream = reflector::reflector(
        pod_writer,
        watcher(Api::<Pod>::all(client.clone()), instance_pods),
    )
    .default_backoff()
    .modify(|pod| pod.managed_fields_mut().clear())
    .touched_objects();
    let follow = |stream: futures::stream::BoxStream<'static, ()>| {
        let bump = bump.clone();
        tokio::spawn(stream.for_each(move |()| {
            bump.send_modify(|n| *n = n.wrapping_add(1));
            futures::future::ready(())
        }))
    };
    let tenant_task = follow(tenant_stream.map(|_| ()).boxed());
    let pod_task = follow(pod_stream.map(|_| ()).boxed());
    let gate = Arc::new(Gate {
        client,
        tenants,
        pods,
        changed,
        http: forward::client(),
        hold_limit: Duration::from_secs(args.hold_limit_seconds),
        page_hold: Duration::from_secs(args.page_hold_seconds),
        metrics: metrics::GateMetrics::default(),
        asked: Mutex::default(),
    });
    let public = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|source| GateError::Listen {
            addr: args.listen,
            source,
        })?;
    let private = tokio::net::TcpListener::bind(args.metrics_addr)
        .await
        .map_err(|source| GateError::Listen {
            addr: args.metrics_addr,
            source,
        })?;
    tracing::info!(listen = %args.listen, metrics = %args.metrics_addr, "wake gate serving");
    let app = Router::new().fallback(handle).with_state(gate.clone());
    let admin = metrics::router(gate.metrics.clone(), {
        let gate = gate.clone();
        move || gate.tenants.is_ready() && gate.pods.is_ready()
    });
    let stop = crate::run::shutdown_signal();
    let result = tokio::select! {
        r = axum::serve(public, app).with_graceful_shutdown(stop) => r,
        r = axum::serve(private, admin) => r,
    };
    tenant_task.abort();
    pod_task.abort();
    result.map_err(GateError::Serve)
}

trait StoreReady {
    fn is_ready(&self) -> bool;
}

impl<K> StoreReady for Store<K>
where
    K: kube::Resource + Clone + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + Default,
{
    fn is_ready(&self) -> bool {
        self.wait_until_ready()
            .now_or_never()
            .is_some_and(|r| r.is_ok())
    }
}

use futures::FutureExt;

async fn handle(State(gate): State<Arc<Gate>>, request: Request) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| request.uri().host())
        .unwrap_or_default()
        .to_owned();
    // A replica that has just started has not read the Tenants and pods
    // yet: it waits for them (as long as a request may be held) rather
    // than answer "unknown host" for a tenant it has not seen.
    if !gate.caches_ready().await {
        let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, page::gate_starting());
        retry_after(&mut response);
        return response;
    }
    let tenants = gate.tenants.state();
    let Some(target) = directory::find(tenants.iter().map(AsRef::as_ref), &host) else {
        return plain(
            StatusCode::NOT_FOUND,
            page::unknown_host(&directory::host_of(&host)),
        );
    };
    let accept = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok());
    let html = directory::wants_html(request.method(), accept);
    match target.standing {
        Standing::Suspended => {
            let mut response = (
                StatusCode::SERVICE_UNAVAILABLE,
                page::suspended(&target.name, html),
            )
                .into_response();
            set_type(&mut response, html);
            response
        }
        Standing::Sleeping { wake_requested } => {
            if !wake_requested {
                gate.ask_wake(&target.name).await;
            }
            gate.hold(&target, html, request).await
        }
        Standing::Awake => gate.hold(&target, html, request).await,
    }
}

fn set_type(response: &mut Response, html: bool) {
    let value = if html {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
}

fn retry_after(response: &mut Response) {
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(page::RETRY_AFTER_SECONDS),
    );
}

fn plain(status: StatusCode, text: String) -> Response {
    let mut response = (status, text).into_response();
    set_type(&mut response, false);
    response
}

impl Gate {
    /// Whether the Tenant and pod caches have been filled, waiting for
    /// them up to the hold limit.
    async fn caches_ready(&self) -> bool {
        let filled = async {
            self.tenants.wait_until_ready().await.is_ok()
                && self.pods.wait_until_ready().await.is_ok()
        };
        tokio::time::timeout(self.hold_limit, filled)
            .await
            .unwrap_or(false)
    }

    /// Asks the operator to wake `tenant`, at most once in a few seconds
    /// per replica (the operator wakes it once per sleep whatever comes).
    async fn ask_wake(&self, tenant: &str) {
        {
            let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
            let now = Instant::now();
            if asked
                .get(tenant)
                .is_some_and(|at| now.duration_since(*at) < Duration::from_secs(5))
            {
                return;
            }
            asked.insert(tenant.to_owned(), now);
        }
        let at = jiff::Timestamp::now()
            .round(jiff::Unit::Millisecond)
            .unwrap_or_else(|_| jiff::Timestamp::now());
        let patch = serde_json::json!({"metadata": {"annotations": {
            WAKE_REQUESTED_AT_ANNOTATION: at.to_string(),
            WAKE_CAUSE_ANNOTATION: "request",
        }}});
        let api: Api<Tenant> = Api::all(self.client.clone());
        let params = PatchParams::default();
        match api.patch(tenant, &params, &Patch::Merge(&patch)).await {
            Ok(_) => {
                self.metrics.wake_requested();
                tracing::info!(%tenant, "asked the operator to wake the tenant");
            }
            Err(error) => {
                self.asked
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(tenant);
                tracing::warn!(%tenant, %error, "asking for the tenant's wake failed");
            }
        }
    }

    /// Holds `request` until one of the tenant's instance pods is ready,
    /// then forwards it; past the limit, 503 (or the waking page).
    async fn hold(&self, target: &Target, html: bool, request: Request) -> Response {
        let started = Instant::now();
        let limit = if html {
            self.page_hold
        } else {
            self.hold_limit
        };
        let mut changed = self.changed.clone();
        let mut counted = false;
        loop {
            let pods = self.pods.state();
            let ready = directory::ready_instance(pods.iter(), &target.namespace);
            if let Some(addr) = pick(&ready) {
                return forward::forward(&self.http, addr, request).await;
            }
            // A started pod answers before the kubelet's next readiness
            // probe says so: ask it.
            let starting = directory::starting_instance(pods.iter(), &target.namespace);
            for addr in &starting {
                if forward::answers_ready(&self.http, *addr).await {
                    return forward::forward(&self.http, *addr, request).await;
                }
            }
            if !counted {
                counted = true;
                self.metrics.held();
            }
            let left = limit.saturating_sub(started.elapsed());
            // While a pod starts, look again soon; else wait for a change.
            let wait = if starting.is_empty() {
                left
            } else {
                left.min(STARTING_RECHECK)
            };
            if left.is_zero() {
                break;
            }
            let _ = tokio::time::timeout(wait, changed.changed()).await;
        }
        self.metrics.hold_limit_exceeded();
        let mut response = if html {
            (StatusCode::SERVICE_UNAVAILABLE, page::waking(&target.name)).into_response()
        } else {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                page::still_waking(&target.name, limit.as_secs()),
            )
                .into_response()
        };
        set_type(&mut response, html);
        retry_after(&mut response);
        response
    }
}

/// One ready address, in turn over the replicas.
fn pick(ready: &[SocketAddr]) -> Option<SocketAddr> {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    if ready.is_empty() {
        return None;
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ready.get(n % ready.len()).copied()
}
