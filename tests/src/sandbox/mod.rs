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
//!
//! This file holds the arguments, the errors, the run and `--apply`;
//! `backend` starts the API server (kubesim or realkube) and `platform`
//! identity and the operator.

mod backend;
mod backups;
mod platform;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{Scope, pinned_kind};
use kube::{Client, ResourceExt};
use serde::Deserialize;

use self::backend::Backend;
use self::platform::Platform;
use crate::nodesim::{NodeSimConfig, NodeSimError, workspace_binary};

/// The field manager of the objects `--apply` creates.
pub const FIELD_MANAGER: &str = "atoll-sandbox";

/// Our binaries that the sandbox maps to images of the same name when they
/// have been built next to it.
pub const OWN_BINARIES: &[&str] = &[
    "atoll-instance",
    "atoll-identity",
    "atoll-operator",
    "atoll-backup",
];

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
    // Task pods' script images, after the rules given (which win).
    config = config.script_images();
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
        Some(Platform::start(args, state_dir, &kubeconfig, ingress.port(), &client).await?)
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
    if let Ok(tenants) = &applied {
        summary.push_str(&open_lines(
            tenants,
            &args.base_domain,
            ingress.port(),
            platform.is_some(),
        ));
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

/// What to open in a browser: each applied Tenant's URL (its web UI signs
/// in through identity).
fn open_lines(tenants: &[String], domain: &str, port: u16, platform: bool) -> String {
    let mut lines = String::new();
    for tenant in tenants {
        lines.push_str(&format!(
            "atoll-sandbox: open http://{tenant}.{domain}:{port}/ in a browser (tenant {tenant})\n"
        ));
    }
    if platform && tenants.is_empty() {
        lines.push_str(&format!(
            "atoll-sandbox: apply a Tenant (--apply examples/tenant-minimal.yaml), then open http://<tenant>.{domain}:{port}/ in a browser\n"
        ));
    }
    lines
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

/// Applies every document of `files` server-side, in order; returns the
/// names of the Tenants among them.
pub async fn apply_files(client: &Client, files: &[PathBuf]) -> Result<Vec<String>, SandboxError> {
    let mut tenants = Vec::new();
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
            let tenant = object
                .types
                .as_ref()
                .is_some_and(|t| t.kind == "Tenant" && t.api_version.starts_with("atoll.dev/"));
            let name = object.name_any();
            apply_object(client, path, object).await?;
            if tenant && !tenants.contains(&name) {
                tenants.push(name);
            }
        }
    }
    Ok(tenants)
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
