//! The API server: kubesim in process, or realkube behind a forwarder.

use std::path::Path;
use std::sync::Arc;

use kube::Client;

use super::{Args, SandboxError, io_error};
use crate::kubesim::KubeSim;
use crate::nodesim::{NodeSim, NodeSimConfig};
use crate::realkube::{RealKube, RealKubeOptions};

/// The API server: kubesim in process, or realkube behind a forwarder.
pub(super) enum Backend {
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
    pub(super) async fn sim(args: &Args, kubeconfig: &Path) -> Result<Self, SandboxError> {
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
    pub(super) async fn real(args: &Args, kubeconfig: &Path) -> Result<Self, SandboxError> {
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

    pub(super) fn client(&self) -> Client {
        match self {
            Self::Sim { sim, .. } => sim.client(),
            Self::Real { kube, .. } => kube.client(),
        }
    }

    pub(super) fn url(&self) -> String {
        match self {
            Self::Sim { server, .. } => server.url(),
            Self::Real { url, .. } => url.clone(),
        }
    }

    /// nodesim: the kubelet and the controllers on kubesim (which then
    /// serves its logs to `kubectl logs`), the kubelet alone on realkube.
    pub(super) async fn start_node(&self, config: NodeSimConfig) -> Result<NodeSim, SandboxError> {
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
                let tls = kube
                    .kubelet_tls(&config.node_name)
                    .await
                    .map_err(|e| SandboxError::RealKube(e.to_string()))?;
                let config = config.kubelet_tls(tls);
                Ok(NodeSim::start_kubelet(node_client, kube.client(), config).await?)
            }
        }
    }

    pub(super) async fn stop(self) {
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
