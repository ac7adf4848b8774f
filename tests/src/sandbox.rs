//! `atoll-sandbox`: a whole simulated cluster on this machine, for trying
//! Atoll without Kubernetes. kubesim serves the API on a loopback port (with
//! a kubeconfig for kubectl), the Tenant CRD is installed, nodesim runs the
//! workloads as local processes and routes `*.atoll.localhost` hosts from
//! one loopback port, and Ctrl-C (or SIGTERM) stops every process it
//! started before it exits.
//!
//! With `--real` the API is the real control plane instead (realkube:
//! etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built
//! by `scripts/realkube-build`), served on the same `--api` port (forwarded
//! to realkube's own port, TLS end to end) with an admin kubeconfig, and
//! nodesim plays only the kubelet, as `system:node:nodesim`.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use crate::kubesim::KubeSim;
use crate::nodesim::{NodeSim, NodeSimConfig, NodeSimError, workspace_binary};
use crate::realkube::{RealKube, RealKubeOptions};

/// The field manager of the objects `--apply` creates.
pub const FIELD_MANAGER: &str = "atoll-sandbox";

/// Our binaries that the sandbox maps to images of the same name when they
/// have been built next to it.
pub const OWN_BINARIES: &[&str] = &["atoll-instance", "atoll-identity", "atoll-operator"];

/// Command line of `atoll-sandbox`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "atoll-sandbox",
    version,
    about = "A simulated Kubernetes cluster running Atoll on this machine"
)]
pub struct Args {
    /// Where the API server listens (loopback only).
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub api: SocketAddr,
    /// Where the ingress router listens (loopback only).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub ingress: SocketAddr,
    /// Base domain of tenant URLs, shown in the summary.
    #[arg(long, default_value = "atoll.localhost")]
    pub base_domain: String,
    /// Directory for PVCs, logs and the kubeconfig; a temporary one, removed
    /// at exit, when not given.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Where to write the kubeconfig (default: `<state-dir>/kubeconfig`).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// YAML files to apply (server-side) once the cluster runs; repeatable.
    #[arg(long = "apply", value_name = "FILE")]
    pub apply: Vec<PathBuf>,
    /// Runs images starting with PREFIX as the binary at PATH; repeatable.
    #[arg(long = "image", value_name = "PREFIX=PATH", value_parser = parse_image)]
    pub images: Vec<(String, PathBuf)>,
    /// Reports containers of unmapped images as ready without running
    /// anything (instead of ErrImagePull).
    #[arg(long)]
    pub instant: bool,
    /// Where identity listens (loopback only); its URL is the token issuer.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub identity: SocketAddr,
    /// Run only the cluster (API server, nodesim, router): no operator and
    /// no identity.
    #[arg(long)]
    pub no_platform: bool,
    /// Run on the real control plane (realkube) instead of kubesim.
    #[arg(long)]
    pub real: bool,
}

fn parse_image(value: &str) -> Result<(String, PathBuf), String> {
    let (prefix, path) = value
        .split_once('=')
        .ok_or_else(|| format!("expected PREFIX=PATH, got {value:?}"))?;
    if prefix.is_empty() || path.is_empty() {
        return Err(format!("expected PREFIX=PATH, got {value:?}"));
    }
    Ok((prefix.to_owned(), PathBuf::from(path)))
}

/// Why the sandbox stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// An address that is not loopback.
    #[error("{what} {addr} is not a loopback address; the sandbox only listens on loopback")]
    NotLoopback {
        /// Which flag.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
    },
    /// A file or directory could not be written or read.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The API server could not listen.
    #[error("kubesim cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The real control plane could not start.
    #[error("starting the real control plane: {0}")]
    RealKube(String),
    /// The Tenant CRD could not be installed.
    #[error("installing the Tenant CRD: {0}")]
    InstallCrd(#[source] kube::Error),
    /// nodesim could not start.
    #[error(transparent)]
    NodeSim(#[from] NodeSimError),
    /// A document of an `--apply` file is not a Kubernetes object.
    #[error("{path}: document {index}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based document number.
        index: usize,
        /// What is wrong.
        message: String,
    },
    /// The API refused an object of an `--apply` file.
    #[error("{path}: applying {kind} {name}: {source}")]
    Apply {
        /// The file.
        path: PathBuf,
        /// The object's kind.
        kind: String,
        /// The object's name.
        name: String,
        /// The cause.
        source: Box<kube::Error>,
    },
    /// Standard output could not be written.
    #[error("writing to standard output: {0}")]
    Output(#[source] std::io::Error),
    /// One of our binaries has not been built.
    #[error(
        "{0} is not built next to atoll-sandbox; run `cargo build --bins` first (or pass --no-platform)"
    )]
    NotBuilt(&'static str),
    /// A platform process could not start or become ready.
    #[error("starting {what}: {message}")]
    Platform {
        /// Which process.
        what: &'static str,
        /// What went wrong.
        message: String,
    },
}

fn io_error<'p>(
    action: &'static str,
    path: &'p Path,
) -> impl FnOnce(std::io::Error) -> SandboxError + 'p {
    move |source| SandboxError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// The nodesim settings for the sandbox.
pub fn node_config(args: &Args, state_dir: &Path) -> NodeSimConfig {
    let mut config = NodeSimConfig::new(state_dir.join("node"))
        .postgres()
        .ingress(args.ingress);
    for (prefix, path) in &args.images {
        config = config.binary(prefix.clone(), path.clone());
    }
    for name in OWN_BINARIES {
        let path = workspace_binary(name);
        if path.is_file() {
            config = config.binary(*name, path);
        }
    }
    if args.instant {
        config.default_program = Some(crate::nodesim::Program::Instant);
    }
    config
}

/// Runs the sandbox until `shutdown` resolves, printing how to use it to
/// `out`.
pub async fn run(
    args: Args,
    out: &mut (dyn Write + Send),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SandboxError> {
    for (what, addr) in [
        ("--api", args.api),
        ("--ingress", args.ingress),
        ("--identity", args.identity),
    ] {
        if !addr.ip().is_loopback() {
            return Err(SandboxError::NotLoopback { what, addr });
        }
    }
    let (state_dir, temporary) = match &args.state_dir {
        Some(dir) => (dir.clone(), false),
        None => (
            std::env::temp_dir().join(format!("atoll-sandbox-{}", std::process::id())),
            true,
        ),
    };
    std::fs::create_dir_all(&state_dir).map_err(io_error("creating", &state_dir))?;
    let result = run_in(&args, &state_dir, out, shutdown).await;
    if temporary {
        let _ = std::fs::remove_dir_all(&state_dir);
    }
    result
}

async fn run_in(
    args: &Args,
    state_dir: &Path,
    out: &mut (dyn Write + Send),
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), SandboxError> {
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| state_dir.join("kubeconfig"));
    let backend = if args.real {
        Backend::real(args, &kubeconfig).await?
    } else {
        Backend::sim(args, &kubeconfig).await?
    };
    let client = backend.client();
    if let Err(error) = install_crd(&client).await {
        backend.stop().await;
        return Err(error);
    }
    let node = match backend.start_node(node_config(args, state_dir)).await {
        Ok(node) => node,
        Err(error) => {
            backend.stop().await;
            return Err(error);
        }
    };
    let ingress = node.ingress_addr().unwrap_or(args.ingress);

    let platform = if args.no_platform {
        None
    } else {
        Some(Platform::start(args, state_dir, &kubeconfig, ingress.port()).await?)
    };
    let applied = apply_files(&client, &args.apply).await;
    let mut summary = format!(
        "atoll-sandbox: API server at {api}, ingress router at http://{ingress}\n\
         atoll-sandbox: tenant URLs look like http://<tenant>.{domain}:{port}\n\
         atoll-sandbox: state in {state}; Ctrl-C stops everything\n\
         export KUBECONFIG={kubeconfig}\n",
        api = backend.url(),
        domain = args.base_domain,
        port = ingress.port(),
        state = state_dir.display(),
        kubeconfig = kubeconfig.display(),
    );
    if let Some(platform) = &platform {
        summary.insert_str(0, &platform.summary());
    }
    out.write_all(summary.as_bytes())
        .and_then(|()| out.flush())
        .map_err(SandboxError::Output)?;
    if let Err(error) = applied {
        // Tear down before reporting: the error ends the sandbox.
        if let Some(platform) = platform {
            platform.stop().await;
        }
        node.shutdown().await;
        backend.stop().await;
        return Err(error);
    }

    shutdown.await;
    tracing::info!("stopping");
    if let Some(platform) = platform {
        platform.stop().await;
    }
    node.shutdown().await;
    backend.stop().await;
    Ok(())
}

/// The Tenant CRD, applied, once it is established.
async fn install_crd(client: &Client) -> Result<(), SandboxError> {
    let crd = atoll_crds::tenant_crd();
    let crds = Api::<CustomResourceDefinition>::all(client.clone());
    let name = crd.name_any();
    crds.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(SandboxError::InstallCrd)?;
    for _ in 0..600 {
        let established = crds
            .get(&name)
            .await
            .map_err(SandboxError::InstallCrd)?
            .status
            .and_then(|s| s.conditions)
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
        if established {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    Err(SandboxError::RealKube(
        "the Tenant CRD was not established within 60s".into(),
    ))
}

/// The API server: kubesim in process, or realkube behind a forwarder.
enum Backend {
    Sim {
        sim: KubeSim,
        server: crate::kubesim::Server,
    },
    Real {
        kube: Box<RealKube>,
        forwarder: tokio::task::JoinHandle<()>,
        url: String,
    },
}

impl Backend {
    /// kubesim on `--api`, its kubeconfig written to `kubeconfig`.
    async fn sim(args: &Args, kubeconfig: &Path) -> Result<Self, SandboxError> {
        // Pods stay terminating until nodesim has stopped their processes.
        let sim = KubeSim::builder().graceful_pod_deletion(true).build();
        let server = sim
            .serve(args.api)
            .await
            .map_err(|source| SandboxError::Listen {
                addr: args.api,
                source,
            })?;
        server
            .write_kubeconfig(kubeconfig)
            .map_err(io_error("writing", kubeconfig))?;
        Ok(Self::Sim { sim, server })
    }

    /// realkube, reached on `--api` through a TCP forwarder (its
    /// certificate names 127.0.0.1); its admin kubeconfig, pointed there,
    /// written to `kubeconfig`.
    async fn real(args: &Args, kubeconfig: &Path) -> Result<Self, SandboxError> {
        let listener = tokio::net::TcpListener::bind(args.api)
            .await
            .map_err(|source| SandboxError::Listen {
                addr: args.api,
                source,
            })?;
        let kube = RealKube::start(RealKubeOptions::default())
            .await
            .map_err(|e| SandboxError::RealKube(e.to_string()))?;
        let target = kube
            .server()
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        let bound = listener
            .local_addr()
            .map_err(|source| SandboxError::Listen {
                addr: args.api,
                source,
            })?;
        let url = format!("https://{bound}");
        let admin = std::fs::read_to_string(kube.kubeconfig_path())
            .map_err(io_error("reading", kube.kubeconfig_path()))?;
        std::fs::write(kubeconfig, admin.replace(kube.server(), &url))
            .map_err(io_error("writing", kubeconfig))?;
        let forwarder = tokio::spawn(forward(listener, target));
        Ok(Self::Real {
            kube: Box::new(kube),
            forwarder,
            url,
        })
    }

    fn client(&self) -> Client {
        match self {
            Self::Sim { sim, .. } => sim.client(),
            Self::Real { kube, .. } => kube.client(),
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Sim { server, .. } => server.url(),
            Self::Real { url, .. } => url.clone(),
        }
    }

    /// nodesim: the kubelet and the controllers on kubesim (which then
    /// serves its logs to `kubectl logs`), the kubelet alone on realkube.
    async fn start_node(&self, config: NodeSimConfig) -> Result<NodeSim, SandboxError> {
        match self {
            Self::Sim { sim, .. } => {
                let node = NodeSim::start(sim.client(), config).await?;
                sim.set_pod_logs(Arc::new(node.log_source()));
                Ok(node)
            }
            Self::Real { kube, .. } => {
                let user = format!("system:node:{}", config.node_name);
                let node_client = kube
                    .client_as(&user, &["system:nodes"])
                    .await
                    .map_err(|e| SandboxError::RealKube(e.to_string()))?;
                Ok(NodeSim::start_kubelet(node_client, kube.client(), config).await?)
            }
        }
    }

    async fn stop(self) {
        match self {
            Self::Sim { sim, server } => {
                sim.faults().close_watches();
                server.shutdown().await;
            }
            Self::Real {
                kube, forwarder, ..
            } => {
                forwarder.abort();
                if let Err(error) = kube.stop() {
                    tracing::warn!(%error, "stopping the real control plane");
                }
            }
        }
    }
}

/// Forwards every connection to `listener` to `target`, bytes unchanged.
async fn forward(listener: tokio::net::TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

/// Identity and the operator, run as local processes the way their
/// Deployments run them in a cluster.
struct Platform {
    identity: tokio::process::Child,
    operator: tokio::process::Child,
    identity_url: String,
    admin_email: String,
    admin_password: String,
    logs: PathBuf,
}

/// 32 random hex digits (a v4 UUID's 122 random bits).
/// The sandbox's cluster name at identity.
const SANDBOX_CLUSTER: &str = "sandbox";

fn random_secret() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// The files of the secrets identity and the operator share.
struct Secrets {
    /// Identity's cluster credentials directory.
    clusters_dir: PathBuf,
    /// The operator's credential at identity.
    token_file: PathBuf,
    /// The key sealing identity's signing keys.
    kek_file: PathBuf,
}

impl Secrets {
    fn prepare(state_dir: &Path) -> Result<Self, SandboxError> {
        // The operator's credential at identity: cluster "sandbox"'s file
        // in identity's cluster credentials directory (a 64-character
        // token; identity wants at least 32).
        let service_token = format!("{}{}", random_secret(), random_secret());
        let clusters_dir = state_dir.join("identity-clusters");
        std::fs::create_dir_all(&clusters_dir).map_err(io_error("creating", &clusters_dir))?;
        let token_file = clusters_dir.join(SANDBOX_CLUSTER);
        std::fs::write(&token_file, &service_token).map_err(io_error("writing", &token_file))?;
        // Seals identity's signing keys; kept with the state it seals (64
        // hex digits: 32 bytes).
        let kek_file = state_dir.join("identity-key-encryption-key");
        if !kek_file.is_file() {
            let kek = format!("{}{}", random_secret(), random_secret());
            std::fs::write(&kek_file, kek).map_err(io_error("writing", &kek_file))?;
        }
        Ok(Self {
            clusters_dir,
            token_file,
            kek_file,
        })
    }
}

impl Platform {
    async fn start(
        args: &Args,
        state_dir: &Path,
        kubeconfig: &Path,
        ingress_port: u16,
    ) -> Result<Self, SandboxError> {
        let identity_bin = workspace_binary("atoll-identity");
        let operator_bin = workspace_binary("atoll-operator");
        for (name, path) in [
            ("atoll-identity", &identity_bin),
            ("atoll-operator", &operator_bin),
        ] {
            if !path.is_file() {
                return Err(SandboxError::NotBuilt(name));
            }
        }
        let logs = state_dir.join("logs");
        std::fs::create_dir_all(&logs).map_err(io_error("creating", &logs))?;
        let secrets = Secrets::prepare(state_dir)?;
        let identity_url = format!("http://{}", args.identity);
        let admin_email = "admin@atoll.localhost".to_owned();
        let admin_password = random_secret();
        let identity_log = create_log(&logs, "identity.log")?;
        let database = state_dir.join("identity.db");
        let identity = spawn(
            "identity",
            tokio::process::Command::new(&identity_bin)
                .env("ATOLL_IDENTITY_LISTEN", args.identity.to_string())
                .env(
                    "ATOLL_IDENTITY_DATABASE_URL",
                    format!("sqlite://{}?mode=rwc", database.display()),
                )
                .env("ATOLL_IDENTITY_ISSUER", &identity_url)
                .env("ATOLL_IDENTITY_ADMIN_EMAIL", &admin_email)
                .env("ATOLL_IDENTITY_ADMIN_PASSWORD", &admin_password)
                .env("ATOLL_IDENTITY_CLUSTER_TOKENS_DIR", &secrets.clusters_dir)
                .env("ATOLL_IDENTITY_KEY_ENCRYPTION_KEY_FILE", &secrets.kek_file)
                .stdout(
                    identity_log
                        .try_clone()
                        .map_err(io_error("opening", &logs))?,
                )
                .stderr(identity_log)
                .kill_on_drop(true),
        )?;
        wait_ready("identity", args.identity, "/readyz").await?;
        let operator_log = create_log(&logs, "operator.log")?;
        let operator = spawn(
            "operator",
            tokio::process::Command::new(&operator_bin)
                .arg("run")
                .env("KUBECONFIG", kubeconfig)
                .env("ATOLL_BASE_DOMAIN", &args.base_domain)
                .env("ATOLL_PUBLIC_PORT", ingress_port.to_string())
                .env("ATOLL_IDENTITY_ISSUER", &identity_url)
                .env("ATOLL_IDENTITY_URL", &identity_url)
                .env("ATOLL_IDENTITY_TOKEN_FILE", &secrets.token_file)
                .env("ATOLL_CLUSTER_NAME", SANDBOX_CLUSTER)
                .env("ATOLL_METRICS_ADDR", "127.0.0.1:0")
                .stdout(
                    operator_log
                        .try_clone()
                        .map_err(io_error("opening", &logs))?,
                )
                .stderr(operator_log)
                .kill_on_drop(true),
        )?;
        Ok(Self {
            identity,
            operator,
            identity_url,
            admin_email,
            admin_password,
            logs,
        })
    }

    fn summary(&self) -> String {
        format!(
            "atoll-sandbox: identity at {url} (log in as {email} / {password})\n\
             atoll-sandbox: operator and identity logs in {logs}\n",
            url = self.identity_url,
            email = self.admin_email,
            password = self.admin_password,
            logs = self.logs.display(),
        )
    }

    /// SIGTERM, then SIGKILL after 10 seconds.
    async fn stop(mut self) {
        for child in [&mut self.operator, &mut self.identity] {
            if let Some(pid) = child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .and_then(rustix::process::Pid::from_raw)
            {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            if tokio::time::timeout(std::time::Duration::from_secs(10), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

fn create_log(dir: &Path, name: &str) -> Result<std::fs::File, SandboxError> {
    let path = dir.join(name);
    std::fs::File::create(&path).map_err(io_error("creating", &path))
}

fn spawn(
    what: &'static str,
    command: &mut tokio::process::Command,
) -> Result<tokio::process::Child, SandboxError> {
    command.spawn().map_err(|e| SandboxError::Platform {
        what,
        message: e.to_string(),
    })
}

/// Polls `GET path` on `addr` until it answers 200, for up to 30 seconds.
async fn wait_ready(what: &'static str, addr: SocketAddr, path: &str) -> Result<(), SandboxError> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await {
            let request =
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut head = [0u8; 12];
            if stream.write_all(request.as_bytes()).await.is_ok()
                && stream.read_exact(&mut head).await.is_ok()
                && head.ends_with(b" 200")
            {
                return Ok(());
            }
        }
        if tokio::time::Instant::now() > deadline {
            return Err(SandboxError::Platform {
                what,
                message: format!(
                    "http://{addr}{path} did not answer within 30 seconds; see its log"
                ),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Applies every document of `files` server-side, in order.
pub async fn apply_files(client: &Client, files: &[PathBuf]) -> Result<(), SandboxError> {
    for path in files {
        let text = std::fs::read_to_string(path).map_err(io_error("reading", path))?;
        for (index, document) in serde_norway::Deserializer::from_str(&text).enumerate() {
            let index = index + 1;
            let parse = |message: String| SandboxError::Parse {
                path: path.clone(),
                index,
                message,
            };
            let value =
                serde_json::Value::deserialize(document).map_err(|e| parse(e.to_string()))?;
            if value.is_null() {
                continue;
            }
            let object: DynamicObject =
                serde_json::from_value(value).map_err(|e| parse(e.to_string()))?;
            apply_object(client, path, object).await?;
        }
    }
    Ok(())
}

async fn apply_object(
    client: &Client,
    path: &Path,
    object: DynamicObject,
) -> Result<(), SandboxError> {
    let types = object.types.clone().unwrap_or_default();
    let name = object.name_any();
    let kind = types.kind.clone();
    let apply_error = |source| SandboxError::Apply {
        path: path.to_owned(),
        kind: kind.clone(),
        name: name.clone(),
        source: Box::new(source),
    };
    let gvk = GroupVersionKind::try_from(&types).map_err(|e| SandboxError::Parse {
        path: path.to_owned(),
        index: 0,
        message: e.to_string(),
    })?;
    let (resource, capabilities) = pinned_kind(client, &gvk).await.map_err(apply_error)?;
    let api: Api<DynamicObject> = match capabilities.scope {
        Scope::Namespaced => Api::namespaced_with(
            client.clone(),
            object.namespace().as_deref().unwrap_or("default"),
            &resource,
        ),
        Scope::Cluster => Api::all_with(client.clone(), &resource),
    };
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&object),
    )
    .await
    .map_err(apply_error)?;
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    crate::nodesim::testserver::shutdown_signal().await;
}
