//! The kubelet part: turns each Pod into running containers (processes or
//! instant stand-ins; each container is prepared in `container`), its
//! volumes and token into host directories; the status is `podstatus`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, KeyToPath, Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;

use super::container::{PodSetup, prepare_container};
use super::env::{ConfigLookup, PodFields};
use super::pgsocket;
use super::process::{LaunchSpec, RestartPolicy, Supervisor, now};
use super::rewrite::ServiceResolver;
use super::{NodeSimConfig, Program};

/// Everything a pod start reads from the cluster.
pub trait PodContext: ConfigLookup {
    /// Whether the PVC exists in the pod's namespace.
    fn pvc_exists(&self, name: &str) -> bool;
    /// Service addresses.
    fn services(&self) -> &dyn ServiceResolver;
    /// The pod's service-account token, when nodesim gives pods API access
    /// and the pod mounts the token; `Err` says why it could not be had.
    fn service_account_token(&self) -> Option<&Result<String, String>> {
        None
    }
}

/// Where kubelet mounts a pod's service-account token, CA and namespace.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// How a pod's containers reach the API server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct ApiAccess {
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    pub(super) host: String,
    pub(super) port: String,
    /// The directory playing the token mount, with `token`, `namespace` and
    /// `kubeconfig`, when the pod mounts its token.
    pub(super) token_dir: Option<PathBuf>,
}

/// Writes the service-account files into `dir`: `token` and `namespace`
/// as kubelet mounts them (and `ca.crt` for an `https` API server), and a
/// `kubeconfig` that reads the token, since a process on a shared host
/// cannot be given the fixed in-cluster path.
fn write_service_account(
    dir: &Path,
    server: &str,
    ca: Option<&Path>,
    namespace: &str,
    token: &str,
) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    let token_path = dir.join("token");
    std::fs::write(&token_path, token)?;
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(dir.join("namespace"), namespace)?;
    let user = format!(
        "{{tokenFile: {}}}",
        serde_json::Value::String(token_path.display().to_string())
    );
    let mut kubeconfig = crate::kubesim::kubeconfig(server, namespace, &user);
    if let Some(ca) = ca {
        let ca_path = dir.join("ca.crt");
        std::fs::copy(ca, &ca_path)?;
        let server_line = format!("    server: {server}\n");
        kubeconfig = kubeconfig.replacen(
            &server_line,
            &format!(
                "{server_line}    certificate-authority: {}\n",
                serde_json::Value::String(ca_path.display().to_string())
            ),
            1,
        );
    }
    std::fs::write(dir.join("kubeconfig"), kubeconfig)
}

/// `KUBERNETES_SERVICE_HOST` and `_PORT` of an `http://host:port` URL.
fn host_and_port(url: &str) -> Option<(String, String)> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?.to_owned();
    let port = uri.port_u16().unwrap_or(match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    });
    Some((host, port.to_string()))
}

/// One container of a pod.
#[derive(Debug)]
pub enum Slot {
    /// A supervised process.
    Process {
        /// Container name.
        name: String,
        /// Image.
        image: String,
        /// Its supervisor.
        supervisor: Supervisor,
    },
    /// Instant mode: reported running and ready, nothing runs.
    Instant {
        /// Container name.
        name: String,
        /// Image.
        image: String,
        /// When it "started".
        started_at: Time,
    },
}

/// A container prepared but not started: it waits for the init
/// containers before it.
#[derive(Debug)]
pub struct Prepared {
    /// Container name.
    pub name: String,
    /// Image.
    pub image: String,
    /// How it launches, `None` for an instant one.
    pub launch: Option<LaunchSpec>,
}

/// A pod this node runs. Its init containers run one after the other, each
/// once the one before it completed; then its containers start together.
#[derive(Debug)]
pub struct PodRuntime {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Pod IP.
    pub ip: Ipv4Addr,
    /// When the node took the pod.
    pub started: Time,
    /// The same, for `activeDeadlineSeconds`.
    pub began: std::time::Instant,
    /// Where its volumes live.
    pub dir: PathBuf,
    /// Names and images of the init containers, in spec order.
    pub init_names: Vec<(String, String)>,
    /// Init containers started so far, in spec order.
    pub init_slots: Vec<Slot>,
    /// Init containers still to run, the next first.
    pub pending_init: VecDeque<Prepared>,
    /// Containers, once started.
    pub slots: Vec<Slot>,
    /// Containers waiting for the init containers.
    pub pending: Vec<Prepared>,
    /// Why the containers cannot be created yet: (container, reason, message).
    pub waiting: Vec<(String, String, String)>,
    /// Whether a failed init container runs again (not under `Never`).
    pub restart: RestartPolicy,
    /// Set when the node ended the pod itself: (reason, message), e.g.
    /// `DeadlineExceeded`.
    pub ended: Option<(String, String)>,
    /// Notified on container state changes.
    pub(super) changed: Arc<tokio::sync::Notify>,
    /// Short links to its PostgreSQL socket directories, removed with it
    /// (see `pgsocket`).
    pub(super) links: Vec<PathBuf>,
}

/// The path of a container's log file.
pub fn log_path(logs: &Path, namespace: &str, pod: &str, uid: &str, container: &str) -> PathBuf {
    logs.join(format!("{namespace}_{pod}_{uid}"))
        .join(format!("{container}.log"))
}

/// Finds the program for an image: the first matching rule, else the
/// default. A rule's prefix matches the start of the image, or, when it has
/// no `/`, the start of the image's last path segment (so `atoll-instance`
/// matches `registry.example.com/acme/atoll-instance:0.1.0`).
pub fn program_for<'c>(config: &'c NodeSimConfig, image: &str) -> Option<&'c Program> {
    let mut image = normalize_image(image);
    // `ubuntu` is `ubuntu:latest`.
    if !image.rsplit('/').next().unwrap_or("").contains([':', '@']) {
        image.push_str(":latest");
    }
    let last_segment = image.rsplit('/').next().unwrap_or(&image);
    config
        .images
        .iter()
        .find(|rule| {
            let prefix = normalize_image(&rule.prefix);
            image.starts_with(&prefix)
                || (!prefix.contains('/') && last_segment.starts_with(&prefix))
        })
        .map(|rule| &rule.program)
        .or(config.default_program.as_ref())
}

/// An image without its registry host and the default `library/`
/// namespace: `registry.example.com/library/postgres:16`,
/// `registry.example.com:5000/postgres:16` and `library/postgres:16` are all
/// `postgres:16`. As in image references, the first path component is a
/// host when it holds a `.` or a `:` or is `localhost`.
pub fn normalize_image(image: &str) -> String {
    let image = match image.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => image,
    };
    image.strip_prefix("library/").unwrap_or(image).to_owned()
}

/// Creates the pod's directory and its `volumes` directory, both (and
/// `<state>/pods`) traversable by every user, as the unprivileged user a
/// postgres-image container runs as must reach its volumes.
fn prepare_pod_dir(dir: &Path, config: &NodeSimConfig) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let volumes = dir.join("volumes");
    let io = |path: &Path, e: std::io::Error| format!("preparing {}: {e}", path.display());
    std::fs::create_dir_all(&volumes).map_err(|e| io(&volumes, e))?;
    for path in [&config.state_dir.join("pods"), dir, &volumes] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .map_err(|e| io(path, e))?;
    }
    Ok(())
}

/// Host directories of the pod's volumes, created as needed; an emptyDir
/// is writable by every user, as kubelet makes it (mode 0777). `Err` says
/// why the pod cannot start yet.
fn volume_dirs(
    pod: &Pod,
    dir: &Path,
    config: &NodeSimConfig,
    ctx: &dyn PodContext,
) -> Result<HashMap<String, PathBuf>, String> {
    use std::os::unix::fs::PermissionsExt;
    let namespace = pod.namespace().unwrap_or_default();
    let mut dirs = HashMap::new();
    let io = |path: &Path, e: std::io::Error| format!("preparing {}: {e}", path.display());
    for volume in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let own = dir.join("volumes").join(&volume.name);
        let path = if let Some(claim) = &volume.persistent_volume_claim {
            if !ctx.pvc_exists(&claim.claim_name) {
                return Err(format!(
                    "persistentvolumeclaim \"{}\" not found",
                    claim.claim_name
                ));
            }
            pvc_dir(&config.state_dir, &namespace, &claim.claim_name)
        } else if let Some(host) = &volume.host_path {
            PathBuf::from(&host.path)
        } else if let Some(secret) = &volume.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            let files = match ctx.secret(&name) {
                Some(s) => secret_files(&s),
                None if secret.optional == Some(true) => BTreeMap::new(),
                None => {
                    return Err(format!(
                        "MountVolume.SetUp failed for volume \"{}\" : secret \"{name}\" not found",
                        volume.name
                    ));
                }
            };
            write_files(&own, &files, secret.items.as_deref()).map_err(|e| io(&own, e))?;
            own
        } else if let Some(cm) = &volume.config_map {
            let files: BTreeMap<String, Vec<u8>> = match ctx.config_map(&cm.name) {
                Some(c) => config_map_files(&c),
                None if cm.optional == Some(true) => BTreeMap::new(),
                None => {
                    return Err(format!(
                        "MountVolume.SetUp failed for volume \"{}\" : configmap \"{}\" not found",
                        volume.name, cm.name
                    ));
                }
            };
            write_files(&own, &files, cm.items.as_deref()).map_err(|e| io(&own, e))?;
            own
        } else {
            std::fs::create_dir_all(&own).map_err(|e| io(&own, e))?;
            std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| io(&own, e))?;
            own
        };
        std::fs::create_dir_all(&path).map_err(|e| io(&path, e))?;
        dirs.insert(volume.name.clone(), path);
    }
    Ok(dirs)
}

/// The directory that plays PVC `claim`.
pub fn pvc_dir(state: &Path, namespace: &str, claim: &str) -> PathBuf {
    state.join("pvc").join(namespace).join(claim)
}

fn secret_files(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = secret
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in secret.data.iter().flatten() {
        files.insert(k.clone(), v.0.clone());
    }
    files
}

fn config_map_files(cm: &ConfigMap) -> BTreeMap<String, Vec<u8>> {
    let mut files: BTreeMap<String, Vec<u8>> = cm
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
        .collect();
    for (k, v) in cm.binary_data.iter().flatten() {
        files.insert(k.clone(), v.0.clone());
    }
    files
}

fn write_files(
    dir: &Path,
    files: &BTreeMap<String, Vec<u8>>,
    items: Option<&[KeyToPath]>,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let chosen: Vec<(String, &Vec<u8>)> = match items {
        Some(items) => items
            .iter()
            .filter_map(|i| files.get(&i.key).map(|v| (i.path.clone(), v)))
            .collect(),
        None => files.iter().map(|(k, v)| (k.clone(), v)).collect(),
    };
    for (path, content) in chosen {
        if path.split('/').any(|part| part == ".." || part.is_empty()) {
            continue;
        }
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(target, content)?;
    }
    Ok(())
}

/// Starts (or retries starting) a pod: prepares every container, then
/// runs the first init container (or the containers, without any).
/// Containers whose configuration fails leave the pod waiting, as
/// kubelet's `CreateContainerConfigError` does.
pub fn start_pod(
    pod: &Pod,
    ip: Ipv4Addr,
    config: &NodeSimConfig,
    ctx: &dyn PodContext,
    changed: &Arc<tokio::sync::Notify>,
) -> PodRuntime {
    let uid = pod.uid().unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();
    let dir = config.state_dir.join("pods").join(&uid);
    let spec = pod.spec.clone().unwrap_or_default();
    let restart = RestartPolicy::parse(spec.restart_policy.as_deref());
    let mut runtime = PodRuntime {
        namespace: namespace.clone(),
        name: pod.name_any(),
        ip,
        started: now(),
        began: std::time::Instant::now(),
        dir: dir.clone(),
        init_names: image_names(spec.init_containers.iter().flatten()),
        init_slots: Vec::new(),
        pending_init: VecDeque::new(),
        slots: Vec::new(),
        pending: Vec::new(),
        waiting: Vec::new(),
        restart,
        ended: None,
        changed: changed.clone(),
        links: Vec::new(),
    };
    let all = || {
        spec.init_containers
            .iter()
            .flatten()
            .chain(&spec.containers)
    };
    let wait_all = |runtime: &mut PodRuntime, message: String| {
        for c in all() {
            let reason = "ContainerCreating".to_owned();
            runtime
                .waiting
                .push((c.name.clone(), reason, message.clone()));
        }
    };
    let volumes = prepare_pod_dir(&dir, config)
        .and_then(|()| volume_dirs(pod, &dir, config, ctx))
        .and_then(|mut volumes| {
            runtime.links = pgsocket::shorten_socket_dirs(pod, &uid, &mut volumes)?;
            Ok(volumes)
        });
    let volumes = match volumes {
        Ok(v) => v,
        Err(message) => {
            wait_all(&mut runtime, message);
            return runtime;
        }
    };
    let api = match api_access(config, ctx, &dir, &namespace) {
        Ok(api) => api,
        Err(message) => {
            let volume = "MountVolume.SetUp failed for volume \"kube-api-access\"";
            wait_all(&mut runtime, format!("{volume} : {message}"));
            return runtime;
        }
    };
    let fields = PodFields {
        name: runtime.name.clone(),
        namespace,
        uid,
        pod_ip: ip.to_string(),
        node_name: config.node_name.clone(),
        service_account: spec.service_account_name.clone().unwrap_or_default(),
        labels: pod.labels().clone(),
        annotations: pod.annotations().clone(),
    };
    let setup = PodSetup {
        ip,
        fields: &fields,
        volumes: &volumes,
        api: api.as_ref(),
        dir: &dir,
    };
    prepare_all(&mut runtime, pod, setup, config, ctx);
    if let Some(seconds) = spec
        .active_deadline_seconds
        .and_then(|s| u64::try_from(s).ok())
    {
        // Wakes the node when the deadline passes; the pass ends the pod.
        let changed = changed.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_secs(seconds)).await;
            changed.notify_one();
        });
    }
    runtime.advance();
    runtime
}

/// Prepares every container of the pod, init containers first, into the
/// runtime's queues; one that cannot be prepared leaves the whole pod
/// waiting (nothing starts).
fn prepare_all(
    runtime: &mut PodRuntime,
    pod: &Pod,
    setup: PodSetup<'_>,
    config: &NodeSimConfig,
    ctx: &dyn PodContext,
) {
    let Some(spec) = pod.spec.as_ref() else {
        return;
    };
    let inits = spec.init_containers.iter().flatten().map(|c| (true, c));
    for (init, container) in inits.chain(spec.containers.iter().map(|c| (false, c))) {
        let image = container.image.clone().unwrap_or_default();
        match prepare_container(pod, container, setup, config, ctx) {
            Ok(mut launch) => {
                if let (true, Some(launch)) = (init, launch.as_mut()) {
                    launch.restart = init_restart(runtime.restart);
                }
                let prepared = Prepared {
                    name: container.name.clone(),
                    image,
                    launch,
                };
                if init {
                    runtime.pending_init.push_back(prepared);
                } else {
                    runtime.pending.push(prepared);
                }
            }
            Err((reason, message)) => {
                runtime
                    .waiting
                    .push((container.name.clone(), reason, message));
            }
        }
    }
    if !runtime.waiting.is_empty() {
        runtime.pending_init.clear();
        runtime.pending.clear();
    }
}

/// Names and images of containers.
fn image_names<'a>(
    containers: impl Iterator<Item = &'a k8s_openapi::api::core::v1::Container>,
) -> Vec<(String, String)> {
    containers
        .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
        .collect()
}

/// An init container runs again after a failure unless the pod's policy
/// is `Never`; it never runs again after succeeding.
fn init_restart(pod: RestartPolicy) -> RestartPolicy {
    match pod {
        RestartPolicy::Never => RestartPolicy::Never,
        RestartPolicy::Always | RestartPolicy::OnFailure => RestartPolicy::OnFailure,
    }
}

/// The pod's access to the API server (`None` without one); writes its
/// token files when it mounts its token. `Err` says why the token mount
/// could not be set up.
fn api_access(
    config: &NodeSimConfig,
    ctx: &dyn PodContext,
    pod_dir: &Path,
    namespace: &str,
) -> Result<Option<ApiAccess>, String> {
    let Some(server) = &config.api_server else {
        return Ok(None);
    };
    let token_dir = match ctx.service_account_token() {
        None => None,
        Some(Err(message)) => return Err(message.clone()),
        Some(Ok(token)) => {
            let token_dir = pod_dir.join("serviceaccount");
            write_service_account(
                &token_dir,
                server,
                config.api_server_ca.as_deref(),
                namespace,
                token,
            )
            .map_err(|e| format!("preparing {}: {e}", token_dir.display()))?;
            Some(token_dir)
        }
    };
    Ok(host_and_port(server).map(|(host, port)| ApiAccess {
        host,
        port,
        token_dir,
    }))
}

pub use super::podstatus::pod_status;
