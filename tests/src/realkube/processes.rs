//! Starting the control plane: etcd, kube-apiserver,
//! kube-controller-manager and kube-scheduler as processes, each leading
//! its own process group, and waiting until each is ready.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rustix::process::Signal;

use super::certs::{self, Pki, path_str};
use super::{
    ADMISSION_PLUGINS, LOG_TAIL_LINES, POLL, RealKube, RealKubeError, RealKubeOptions,
    SERVICE_ACCOUNT_ISSUER, SERVICE_CLUSTER_IP_RANGE, bin_dir, io, missing_binaries,
};
use crate::nodesim::process::signal_group;

fn free_port() -> Result<u16, RealKubeError> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(io("finding a free loopback port"))
}

/// The last `lines` lines of a log file.
fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One control-plane process, leading its own process group.
#[derive(Debug)]
pub(super) struct Proc {
    pub(super) name: &'static str,
    pub(super) child: Child,
    pub(super) log: PathBuf,
}

impl Proc {
    fn spawn(
        bin: &Path,
        name: &'static str,
        args: &[String],
        logs: &Path,
    ) -> Result<Proc, RealKubeError> {
        let log = logs.join(format!("{name}.log"));
        let out = File::create(&log).map_err(io(format!("creating {}", log.display())))?;
        let err = out
            .try_clone()
            .map_err(io(format!("opening {}", log.display())))?;
        const SETPRIV: &str = "/usr/bin/setpriv";
        let program = bin.join(name);
        // Where setpriv exists the process also dies with the test process
        // (SIGKILL on parent death), as nodesim's containers do.
        let mut command = if Path::new(SETPRIV).is_file() {
            let mut c = Command::new(SETPRIV);
            c.arg("--pdeathsig").arg("KILL").arg("--").arg(&program);
            c
        } else {
            Command::new(&program)
        };
        let child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0)
            .spawn()
            .map_err(io(format!("starting {}", program.display())))?;
        Ok(Proc { name, child, log })
    }

    /// An error if the process has exited.
    fn check_running(&mut self) -> Result<(), RealKubeError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(self.exited(e.to_string())),
        }
    }

    fn exited(&self, status: String) -> RealKubeError {
        RealKubeError::Exited {
            name: self.name.to_owned(),
            status,
            log: self.log.clone(),
            tail: log_tail(&self.log, LOG_TAIL_LINES),
        }
    }

    pub(super) fn kill(&mut self) {
        signal_group(self.child.id(), Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) async fn client_from(path: &Path) -> Result<(Client, Config), RealKubeError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| RealKubeError::Kubeconfig {
        path: path.to_owned(),
        source,
    })?;
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| RealKubeError::Kubeconfig {
            path: path.to_owned(),
            source,
        })?;
    Ok((Client::try_from(config.clone())?, config))
}

/// GET `path` with `client`; the body on success.
async fn get_text(client: &Client, path: &str) -> Result<String, String> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request_text(request)
        .await
        .map_err(|e| e.to_string())
}

/// Where start-up puts things, and until when it may take.
struct Launch {
    bin: PathBuf,
    root: PathBuf,
    certs: PathBuf,
    logs: PathBuf,
    deadline: Instant,
    timeout: Duration,
}

impl Launch {
    /// The path of a certificate or key, as a flag value.
    fn cert(&self, name: &str) -> String {
        path_str(&self.certs.join(name)).to_owned()
    }

    fn spawn(&self, name: &'static str, args: &[String]) -> Result<Proc, RealKubeError> {
        Proc::spawn(&self.bin, name, args, &self.logs)
    }
}

/// The kubeconfigs of the admin, the controller manager and the scheduler.
struct Kubeconfigs {
    admin: PathBuf,
    controller_manager: PathBuf,
    scheduler: PathBuf,
}

impl Kubeconfigs {
    fn write(pki: &Pki, server: &str, root: &Path) -> Result<Kubeconfigs, RealKubeError> {
        let configs = Kubeconfigs {
            admin: root.join("kubeconfig"),
            controller_manager: root.join("controller-manager.kubeconfig"),
            scheduler: root.join("scheduler.kubeconfig"),
        };
        pki.kubeconfig(server, "admin", &configs.admin)?;
        pki.kubeconfig(server, "controller-manager", &configs.controller_manager)?;
        pki.kubeconfig(server, "scheduler", &configs.scheduler)?;
        Ok(configs)
    }
}

/// A process whose `/healthz` start-up waits for: its index in `procs`,
/// its name and its port.
type Health = (usize, &'static str, u16);

/// `/readyz` or `/healthz` with `client`: ok when the body is `ok`.
async fn answers_ok(client: &Client, path: &str) -> Result<(), String> {
    get_text(client, path)
        .await
        .and_then(|body| (body.trim() == "ok").then_some(()).ok_or(body))
}

impl RealKube {
    /// Starts etcd and the control plane and waits until it is ready.
    pub async fn start(options: RealKubeOptions) -> Result<RealKube, RealKubeError> {
        let started = Instant::now();
        let bin = options.bin_dir.clone().unwrap_or_else(bin_dir);
        let missing = missing_binaries(&bin);
        if !missing.is_empty() {
            return Err(RealKubeError::BinariesMissing {
                dir: bin,
                missing: missing.join(", "),
            });
        }
        let dir = tempfile::Builder::new()
            .prefix("atoll-realkube-")
            .tempdir()
            .map_err(io("creating the realkube directory"))?;
        let root = dir.path().to_owned();
        let launch = Launch {
            bin,
            certs: root.join("pki"),
            logs: root.join("logs"),
            root,
            deadline: started + options.timeout,
            timeout: options.timeout,
        };
        for d in [&launch.certs, &launch.logs] {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        let pki = Pki {
            dir: launch.certs.clone(),
        };
        certs::control_plane(&pki).await?;

        let etcd_ports = (free_port()?, free_port()?);
        let apiserver_port = free_port()?;
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfigs = Kubeconfigs::write(&pki, &server, &launch.root)?;
        let (client, admin_config) = client_from(&kubeconfigs.admin).await?;
        let mut kube = RealKube {
            procs: Vec::new(),
            kubeconfig: kubeconfigs.admin.clone(),
            certs: launch.certs.clone(),
            server,
            version: Default::default(),
            startup: Duration::ZERO,
            client,
            dir: None,
        };
        // From here on, a failure drops `kube`, which kills what started.
        kube.dir = Some(dir);
        let etcd_url = kube.start_etcd(&launch, etcd_ports)?;
        kube.start_apiserver(&launch, &etcd_url, apiserver_port, &options.apiserver_args)?;
        kube.wait_apiserver_ready(&launch).await?;
        let mut health = Vec::new();
        if options.controller_manager {
            health.push(kube.start_controller_manager(&launch, &kubeconfigs)?);
        }
        if options.scheduler {
            health.push(kube.start_scheduler(&launch, &kubeconfigs)?);
        }
        kube.wait_healthy(&launch, &admin_config, health).await?;
        kube.wait_default_service_account(&launch).await?;
        kube.version = kube.client.apiserver_version().await?;
        kube.startup = started.elapsed();
        Ok(kube)
    }

    /// Starts etcd on the client and peer ports; returns its client URL.
    fn start_etcd(
        &mut self,
        launch: &Launch,
        (client, peer): (u16, u16),
    ) -> Result<String, RealKubeError> {
        let etcd_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        self.procs.push(launch.spawn(
            "etcd",
            &[
                "--name=realkube".into(),
                format!("--data-dir={}", path_str(&launch.root.join("etcd"))),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=realkube={peer_url}"),
                // Throwaway data: no fsync, as envtest does.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
        )?);
        Ok(etcd_url)
    }

    /// Starts kube-apiserver on `port`, with the `extra` flags last.
    fn start_apiserver(
        &mut self,
        launch: &Launch,
        etcd_url: &str,
        port: u16,
        extra: &[String],
    ) -> Result<(), RealKubeError> {
        let f = |name: &str| launch.cert(name);
        let mut args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", f("serving.crt")),
            format!("--tls-private-key-file={}", f("serving.key")),
            format!("--client-ca-file={}", f("ca.crt")),
            format!("--requestheader-client-ca-file={}", f("front-proxy-ca.crt")),
            "--requestheader-allowed-names=front-proxy-client".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            format!("--proxy-client-cert-file={}", f("front-proxy-client.crt")),
            format!("--proxy-client-key-file={}", f("front-proxy-client.key")),
            // Kubelets (nodesim) serve with certificates of the cluster CA
            // for 127.0.0.1 and see this client certificate.
            format!("--kubelet-certificate-authority={}", f("ca.crt")),
            format!(
                "--kubelet-client-certificate={}",
                f("apiserver-kubelet-client.crt")
            ),
            format!("--kubelet-client-key={}", f("apiserver-kubelet-client.key")),
            "--kubelet-preferred-address-types=InternalIP,Hostname".into(),
            "--authorization-mode=Node,RBAC".into(),
            format!("--enable-admission-plugins={ADMISSION_PLUGINS}"),
            format!("--service-account-issuer={SERVICE_ACCOUNT_ISSUER}"),
            format!("--service-account-key-file={}", f("sa.pub")),
            format!("--service-account-signing-key-file={}", f("sa.key")),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            // A loopback advertise address cannot be an Endpoints address:
            // the `kubernetes` Service keeps no endpoints.
            "--endpoint-reconciler-type=none".into(),
            "--profiling=false".into(),
        ];
        args.extend(extra.iter().cloned());
        self.procs.push(launch.spawn("kube-apiserver", &args)?);
        Ok(())
    }

    async fn wait_apiserver_ready(&mut self, launch: &Launch) -> Result<(), RealKubeError> {
        let client = self.client.clone();
        self.wait_for("kube-apiserver /readyz", 1, launch, move || {
            let client = client.clone();
            async move { answers_ok(&client, "/readyz").await }
        })
        .await
    }

    /// The flags the controller manager and the scheduler share: their
    /// kubeconfig, serving on `port` with the API server's certificate.
    fn controller_args(launch: &Launch, kubeconfig: &Path, port: u16) -> Vec<String> {
        let k = path_str(kubeconfig).to_owned();
        vec![
            format!("--kubeconfig={k}"),
            format!("--authentication-kubeconfig={k}"),
            format!("--authorization-kubeconfig={k}"),
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--tls-cert-file={}", launch.cert("serving.crt")),
            format!("--tls-private-key-file={}", launch.cert("serving.key")),
            "--leader-elect=false".into(),
            "--profiling=false".into(),
        ]
    }

    fn start_controller_manager(
        &mut self,
        launch: &Launch,
        kubeconfigs: &Kubeconfigs,
    ) -> Result<Health, RealKubeError> {
        let f = |name: &str| launch.cert(name);
        let port = free_port()?;
        let mut args = Self::controller_args(launch, &kubeconfigs.controller_manager, port);
        args.extend([
            "--use-service-account-credentials=true".into(),
            format!("--service-account-private-key-file={}", f("sa.key")),
            format!("--root-ca-file={}", f("ca.crt")),
            format!("--cluster-signing-cert-file={}", f("ca.crt")),
            format!("--cluster-signing-key-file={}", f("ca.key")),
            format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
        ]);
        self.procs
            .push(launch.spawn("kube-controller-manager", &args)?);
        Ok((self.procs.len() - 1, "kube-controller-manager", port))
    }

    fn start_scheduler(
        &mut self,
        launch: &Launch,
        kubeconfigs: &Kubeconfigs,
    ) -> Result<Health, RealKubeError> {
        let port = free_port()?;
        let args = Self::controller_args(launch, &kubeconfigs.scheduler, port);
        self.procs.push(launch.spawn("kube-scheduler", &args)?);
        Ok((self.procs.len() - 1, "kube-scheduler", port))
    }

    /// Waits until each of `health` answers `/healthz` (as the admin).
    async fn wait_healthy(
        &mut self,
        launch: &Launch,
        admin_config: &Config,
        health: Vec<Health>,
    ) -> Result<(), RealKubeError> {
        for (index, name, port) in health {
            let mut config = admin_config.clone();
            config.cluster_url = format!("https://127.0.0.1:{port}").parse().map_err(
                |e: http::uri::InvalidUri| RealKubeError::Io {
                    what: format!("{name} URL"),
                    source: std::io::Error::other(e),
                },
            )?;
            let client = Client::try_from(config)?;
            self.wait_for(&format!("{name} /healthz"), index, launch, move || {
                let client = client.clone();
                async move { answers_ok(&client, "/healthz").await }
            })
            .await?;
        }
        Ok(())
    }

    /// The controller manager works once the service-account controller
    /// has made `default` in `default`: until then the ServiceAccount
    /// admission plugin refuses every Pod. Nothing to wait for without a
    /// controller manager.
    async fn wait_default_service_account(&mut self, launch: &Launch) -> Result<(), RealKubeError> {
        let Some(index) = self
            .procs
            .iter()
            .position(|p| p.name == "kube-controller-manager")
        else {
            return Ok(());
        };
        let client = self.client.clone();
        self.wait_for(
            "the default ServiceAccount (kube-controller-manager)",
            index,
            launch,
            move || {
                let api: kube::Api<k8s_openapi::api::core::v1::ServiceAccount> =
                    kube::Api::namespaced(client.clone(), "default");
                async move {
                    match api.get_opt("default").await {
                        Ok(Some(_)) => Ok(()),
                        Ok(None) => Err("not created yet".to_owned()),
                        Err(e) => Err(e.to_string()),
                    }
                }
            },
        )
        .await
    }

    /// Polls `check` until it succeeds; fails when a process exits or the
    /// deadline passes, with the log of process `index`.
    async fn wait_for<F, Fut>(
        &mut self,
        what: &str,
        index: usize,
        launch: &Launch,
        mut check: F,
    ) -> Result<(), RealKubeError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<(), String>>,
    {
        loop {
            for proc in &mut self.procs {
                proc.check_running()?;
            }
            let last = match check().await {
                Ok(()) => return Ok(()),
                Err(e) => e,
            };
            if Instant::now() >= launch.deadline {
                let (log, tail) = self
                    .procs
                    .get(index)
                    .map(|p| (p.log.clone(), log_tail(&p.log, LOG_TAIL_LINES)))
                    .unwrap_or_default();
                return Err(RealKubeError::NotReady {
                    what: what.to_owned(),
                    timeout: launch.timeout,
                    last,
                    log,
                    tail,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }
}
