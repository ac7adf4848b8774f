//! The kubelet part: turns each Pod into running containers (processes or
//! instant stand-ins) and computes the Pod's status from them.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ConfigMap, Container, ContainerState as K8sContainerState, ContainerStateRunning,
    ContainerStateTerminated, ContainerStateWaiting, ContainerStatus, HostIP, KeyToPath, Pod,
    PodCondition, PodIP, PodStatus, Secret,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use rustix::process::Signal;

use super::env::{ConfigLookup, PodFields, resolve_env};
use super::postgres::{self, PostgresInit};
use super::probe::ProbeSpec;
use super::process::{
    ContainerState, LaunchSpec, Prepare, RestartPolicy, RunState, Supervisor, Termination, now,
};
use super::rewrite::{Rewriter, ServiceResolver};
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
struct ApiAccess {
    /// `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`.
    host: String,
    port: String,
    /// The directory playing the token mount, with `token`, `namespace` and
    /// `kubeconfig`, when the pod mounts its token.
    token_dir: Option<PathBuf>,
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

/// A pod this node runs.
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
    /// Where its volumes live.
    pub dir: PathBuf,
    /// Containers, once they could be created.
    pub slots: Vec<Slot>,
    /// Why the containers cannot be created yet: (container, reason, message).
    pub waiting: Vec<(String, String, String)>,
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
    let image = normalize_image(image);
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

/// Host directories of the pod's volumes, created as needed; `Err` says
/// why the pod cannot start yet.
fn volume_dirs(
    pod: &Pod,
    dir: &Path,
    config: &NodeSimConfig,
    ctx: &dyn PodContext,
) -> Result<HashMap<String, PathBuf>, String> {
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

/// Starts (or retries starting) a pod. Containers whose configuration fails
/// leave the pod waiting, as kubelet's `CreateContainerConfigError` does.
pub fn start_pod(
    pod: &Pod,
    ip: Ipv4Addr,
    config: &NodeSimConfig,
    ctx: &dyn PodContext,
    changed: &Arc<tokio::sync::Notify>,
) -> PodRuntime {
    let uid = pod.uid().unwrap_or_default();
    let namespace = pod.namespace().unwrap_or_default();
    let name = pod.name_any();
    let dir = config.state_dir.join("pods").join(&uid);
    let mut runtime = PodRuntime {
        namespace: namespace.clone(),
        name: name.clone(),
        ip,
        started: now(),
        dir: dir.clone(),
        slots: Vec::new(),
        waiting: Vec::new(),
    };
    let Some(spec) = pod.spec.as_ref() else {
        return runtime;
    };
    let volumes = match volume_dirs(pod, &dir, config, ctx) {
        Ok(v) => v,
        Err(message) => {
            for c in &spec.containers {
                runtime.waiting.push((
                    c.name.clone(),
                    "ContainerCreating".to_owned(),
                    message.clone(),
                ));
            }
            return runtime;
        }
    };
    let api = match &config.api_server {
        None => None,
        Some(server) => {
            let token_dir = match ctx.service_account_token() {
                None => Ok(None),
                Some(Err(message)) => Err(message.clone()),
                Some(Ok(token)) => {
                    let token_dir = dir.join("serviceaccount");
                    write_service_account(
                        &token_dir,
                        server,
                        config.api_server_ca.as_deref(),
                        &namespace,
                        token,
                    )
                    .map(|()| Some(token_dir.clone()))
                    .map_err(|e| format!("preparing {}: {e}", token_dir.display()))
                }
            };
            match (token_dir, host_and_port(server)) {
                (Ok(token_dir), Some((host, port))) => Some(ApiAccess {
                    host,
                    port,
                    token_dir,
                }),
                (Ok(_), None) => None,
                (Err(message), _) => {
                    for c in &spec.containers {
                        runtime.waiting.push((
                            c.name.clone(),
                            "ContainerCreating".to_owned(),
                            format!(
                                "MountVolume.SetUp failed for volume \"kube-api-access\" : {message}"
                            ),
                        ));
                    }
                    return runtime;
                }
            }
        }
    };
    let fields = PodFields {
        name: name.clone(),
        namespace: namespace.clone(),
        uid: uid.clone(),
        pod_ip: ip.to_string(),
        node_name: config.node_name.clone(),
        service_account: spec.service_account_name.clone().unwrap_or_default(),
        labels: pod.labels().clone(),
        annotations: pod.annotations().clone(),
    };
    let mut launches = Vec::new();
    for container in &spec.containers {
        let image = container.image.clone().unwrap_or_default();
        let setup = PodSetup {
            ip,
            fields: &fields,
            volumes: &volumes,
            api: api.as_ref(),
        };
        match prepare_container(pod, container, setup, config, ctx) {
            Ok(launch) => launches.push((container.name.clone(), image, launch)),
            Err((reason, message)) => {
                runtime
                    .waiting
                    .push((container.name.clone(), reason, message))
            }
        }
    }
    if !runtime.waiting.is_empty() {
        return runtime;
    }
    for (name, image, launch) in launches {
        runtime.slots.push(match launch {
            None => Slot::Instant {
                name,
                image,
                started_at: now(),
            },
            Some(spec) => Slot::Process {
                name,
                image,
                supervisor: Supervisor::spawn(spec, changed.clone()),
            },
        });
    }
    runtime
}

type ContainerError = (String, String);

/// What the containers of one pod share.
#[derive(Clone, Copy)]
struct PodSetup<'a> {
    ip: Ipv4Addr,
    fields: &'a PodFields,
    /// Host directories of the pod's volumes, by volume name.
    volumes: &'a HashMap<String, PathBuf>,
    api: Option<&'a ApiAccess>,
}

fn prepare_container(
    pod: &Pod,
    container: &Container,
    setup: PodSetup<'_>,
    config: &NodeSimConfig,
    ctx: &dyn PodContext,
) -> Result<Option<LaunchSpec>, ContainerError> {
    let PodSetup {
        ip,
        fields,
        volumes,
        api,
    } = setup;
    let image = container.image.clone().unwrap_or_default();
    let program = program_for(config, &image).ok_or_else(|| {
        (
            "ErrImagePull".to_owned(),
            format!("nodesim has no mapping for image \"{image}\""),
        )
    })?;
    if matches!(program, Program::Instant) {
        return Ok(None);
    }
    let mut env = resolve_env(container, fields, ctx)
        .map_err(|e| ("CreateContainerConfigError".to_owned(), e.to_string()))?;
    if let Some(api) = api {
        // As kubelet, the API server's address comes first, and the
        // container's own variables win.
        let mut service = vec![
            ("KUBERNETES_SERVICE_HOST".to_owned(), api.host.clone()),
            ("KUBERNETES_SERVICE_PORT".to_owned(), api.port.clone()),
        ];
        if let Some(dir) = &api.token_dir {
            service.push((
                "KUBECONFIG".to_owned(),
                dir.join("kubeconfig").display().to_string(),
            ));
        }
        service.retain(|(name, _)| !env.iter().any(|(n, _)| n == name));
        service.append(&mut env);
        env = service;
    }
    let mut mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let dir = volumes.get(&m.name)?;
            let dir = match m.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() && !sub.split('/').any(|p| p == "..") => dir.join(sub),
                _ => dir.clone(),
            };
            let _ = std::fs::create_dir_all(&dir);
            Some((m.mount_path.clone(), dir))
        })
        .collect();
    if let Some(dir) = api.and_then(|a| a.token_dir.as_ref()) {
        mounts.push((SERVICE_ACCOUNT_MOUNT.to_owned(), dir.clone()));
    }
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    let rewriter = Rewriter {
        pod_ip: ip,
        services: ctx.services(),
        mounts,
    };
    let env_list = super::env::EnvList(env.clone());
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| {
            let v = rewriter.rewrite(&v);
            (k, v)
        })
        .collect();
    let expand = |s: &String| rewriter.rewrite(&super::env::expand(s, &env_list));
    let command: Vec<String> = container.command.iter().flatten().map(expand).collect();
    let args: Vec<String> = container.args.iter().flatten().map(expand).collect();
    let uid = fields.uid.as_str();
    let namespace = fields.namespace.as_str();
    let spec = pod.spec.as_ref();
    let grace = Duration::from_secs(
        spec.and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64,
    );
    let restart = RestartPolicy::parse(spec.and_then(|s| s.restart_policy.as_deref()));
    let ports = container.ports.clone().unwrap_or_default();

    let (program_path, args, prepare, run_as, path_prefix, stop_signal) = match program {
        Program::Instant => return Ok(None),
        Program::Binary {
            path,
            args: default_args,
        } => {
            let args = if command.is_empty() {
                default_args.iter().cloned().chain(args).collect()
            } else {
                command.iter().skip(1).cloned().chain(args).collect()
            };
            let dir = path.parent().map(Path::to_path_buf).into_iter().collect();
            (
                path.clone(),
                args,
                Prepare::Nothing,
                None,
                dir,
                Signal::TERM,
            )
        }
        Program::Postgres { bindir } => {
            let get = |k: &str| {
                env.iter()
                    .rev()
                    .find(|(n, _)| n == k)
                    .map(|(_, v)| v.clone())
            };
            let mut pgdata = PathBuf::from(
                get("PGDATA").unwrap_or_else(|| rewriter.rewrite("/var/lib/postgresql/data")),
            );
            if pgdata.starts_with("/var/lib/postgresql") {
                // No volume behind it: data lives and dies with the pod.
                pgdata = config.state_dir.join("pods").join(uid).join("pgdata");
            }
            let port: u16 = get("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432);
            let run_as = postgres::unprivileged_user();
            // The image's init scripts: wherever a volume is mounted at
            // /docker-entrypoint-initdb.d.
            let scripts = rewriter.rewrite(postgres::INITDB_DIR);
            let scripts = (scripts != postgres::INITDB_DIR).then(|| PathBuf::from(scripts));
            let init = PostgresInit::from_env(bindir.clone(), pgdata, &env, run_as)
                .with_init_scripts(scripts, env.clone(), port);
            let extra: Vec<String> = if command.is_empty() {
                args
            } else {
                command.iter().skip(1).cloned().chain(args).collect()
            };
            let args = init.server_args(ip, port, &extra);
            for (k, v) in [("PGHOST", ip.to_string()), ("PGPORT", port.to_string())] {
                if !env.iter().any(|(n, _)| n == k) {
                    env.push((k.to_owned(), v));
                }
            }
            (
                bindir.join("postgres"),
                args,
                Prepare::Postgres(Box::new(init)),
                run_as,
                vec![bindir.clone()],
                // The official image stops with SIGINT: a fast shutdown
                // that does not wait for clients to disconnect.
                Signal::INT,
            )
        }
    };
    let probe = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref().map(|p| {
            ProbeSpec::from_probe(p, ip, &ports, &env, &path_prefix, config.max_probe_period)
        })
    };
    Ok(Some(LaunchSpec {
        name: container.name.clone(),
        program: program_path,
        args,
        env: env.clone(),
        workdir: container
            .working_dir
            .as_ref()
            .map(|w| PathBuf::from(rewriter.rewrite(w)))
            .filter(|w| w.is_dir())
            .or_else(|| run_as.map(|_| PathBuf::from("/"))),
        run_as,
        prepare,
        log_path: log_path(
            &config.logs_dir(),
            namespace,
            &fields.name,
            uid,
            &container.name,
        ),
        stop_signal,
        grace,
        readiness: probe(&container.readiness_probe),
        liveness: probe(&container.liveness_probe),
        restart,
        backoff: config.backoff,
    }))
}

impl PodRuntime {
    /// Stops every container (gracefully, in parallel) and removes the pod's
    /// scratch directories.
    pub async fn stop(self) {
        let stops = self.slots.into_iter().filter_map(|slot| match slot {
            Slot::Process { supervisor, .. } => Some(supervisor.stop()),
            Slot::Instant { .. } => None,
        });
        futures::future::join_all(stops).await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// Whether the containers still wait to be created.
    pub fn is_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// The process ids of the running containers.
    pub fn pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Process { supervisor, .. } => match supervisor.state().current {
                    RunState::Running { pid, .. } => Some(pid),
                    _ => None,
                },
                Slot::Instant { .. } => None,
            })
            .collect()
    }
}

fn waiting(reason: &str, message: Option<String>) -> K8sContainerState {
    K8sContainerState {
        waiting: Some(ContainerStateWaiting {
            reason: Some(reason.to_owned()),
            message,
        }),
        ..K8sContainerState::default()
    }
}

fn terminated(t: &Termination, pid: Option<u32>) -> K8sContainerState {
    K8sContainerState {
        terminated: Some(ContainerStateTerminated {
            exit_code: t.exit_code,
            signal: t.signal,
            reason: Some(t.reason.clone()),
            message: t.message.clone(),
            started_at: t.started_at.clone(),
            finished_at: Some(t.finished_at.clone()),
            container_id: pid.map(|p| format!("nodesim://{p}")),
        }),
        ..K8sContainerState::default()
    }
}

fn container_status(name: &str, image: &str, state: &ContainerState) -> ContainerStatus {
    let (k8s_state, pid) = match &state.current {
        RunState::Waiting { reason, message } => (waiting(reason, message.clone()), None),
        RunState::Running { pid, started_at } => (
            K8sContainerState {
                running: Some(ContainerStateRunning {
                    started_at: Some(started_at.clone()),
                }),
                ..K8sContainerState::default()
            },
            Some(*pid),
        ),
        RunState::Terminated(t) => (terminated(t, None), None),
    };
    ContainerStatus {
        name: name.to_owned(),
        image: image.to_owned(),
        image_id: String::new(),
        container_id: pid.map(|p| format!("nodesim://{p}")),
        ready: state.ready,
        restart_count: state.restart_count,
        started: Some(matches!(state.current, RunState::Running { .. })),
        state: Some(k8s_state),
        last_state: state.last_termination.as_ref().map(|t| terminated(t, None)),
        ..ContainerStatus::default()
    }
}

/// The Pod status for a runtime, keeping condition transition times from
/// `previous` where nothing changed.
pub fn pod_status(runtime: &PodRuntime, previous: Option<&PodStatus>) -> PodStatus {
    let mut statuses = Vec::new();
    let mut any_started = false;
    let mut all_final = true;
    let mut all_succeeded = true;
    for (name, reason, message) in &runtime.waiting {
        all_final = false;
        statuses.push(ContainerStatus {
            name: name.clone(),
            state: Some(waiting(reason, Some(message.clone()))),
            started: Some(false),
            ..ContainerStatus::default()
        });
    }
    for slot in &runtime.slots {
        match slot {
            Slot::Instant {
                name,
                image,
                started_at,
            } => {
                any_started = true;
                all_final = false;
                statuses.push(ContainerStatus {
                    name: name.clone(),
                    image: image.clone(),
                    ready: true,
                    started: Some(true),
                    container_id: Some("nodesim://instant".to_owned()),
                    state: Some(K8sContainerState {
                        running: Some(ContainerStateRunning {
                            started_at: Some(started_at.clone()),
                        }),
                        ..K8sContainerState::default()
                    }),
                    ..ContainerStatus::default()
                });
            }
            Slot::Process {
                name,
                image,
                supervisor,
            } => {
                let state = supervisor.state();
                match &state.current {
                    RunState::Terminated(t) => {
                        any_started = true;
                        all_succeeded &= t.exit_code == 0;
                    }
                    RunState::Running { .. } => {
                        any_started = true;
                        all_final = false;
                    }
                    RunState::Waiting { .. } => {
                        any_started |= state.restart_count > 0;
                        all_final = false;
                    }
                }
                statuses.push(container_status(name, image, &state));
            }
        }
    }
    statuses.sort_by(|a, b| a.name.cmp(&b.name));
    let all_ready = !statuses.is_empty() && statuses.iter().all(|s| s.ready);
    let phase = if all_final && !statuses.is_empty() {
        if all_succeeded { "Succeeded" } else { "Failed" }
    } else if any_started {
        "Running"
    } else {
        "Pending"
    };
    let now = now();
    let prev = previous.and_then(|p| p.conditions.as_ref());
    let condition = |type_: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" }.to_owned();
        let last_transition_time = prev
            .and_then(|c| c.iter().find(|c| c.type_ == type_ && c.status == status))
            .and_then(|c| c.last_transition_time.clone())
            .unwrap_or_else(|| now.clone());
        PodCondition {
            type_: type_.to_owned(),
            status,
            reason: reason.map(str::to_owned),
            last_transition_time: Some(last_transition_time),
            ..PodCondition::default()
        }
    };
    let not_ready = (!all_ready).then_some("ContainersNotReady");
    let scheduled_ok = true;
    let ip = runtime.ip.to_string();
    PodStatus {
        phase: Some(phase.to_owned()),
        conditions: Some(vec![
            condition("PodReadyToStartContainers", true, None),
            condition("Initialized", true, None),
            condition("Ready", all_ready, not_ready),
            condition("ContainersReady", all_ready, not_ready),
            condition("PodScheduled", scheduled_ok, None),
        ]),
        container_statuses: Some(statuses),
        host_ip: Some("127.0.0.1".to_owned()),
        host_ips: Some(vec![HostIP {
            ip: "127.0.0.1".to_owned(),
        }]),
        pod_ip: Some(ip.clone()),
        pod_ips: Some(vec![PodIP { ip }]),
        start_time: Some(
            previous
                .and_then(|p| p.start_time.clone())
                .unwrap_or_else(|| runtime.started.clone()),
        ),
        // The API server sets the QoS class at creation and refuses to
        // change it.
        qos_class: Some(
            previous
                .and_then(|p| p.qos_class.clone())
                .unwrap_or_else(|| "BestEffort".to_owned()),
        ),
        ..PodStatus::default()
    }
}
