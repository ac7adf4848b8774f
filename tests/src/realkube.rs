//! The real Kubernetes control plane as local processes: etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler, built from the
//! Kubernetes Go modules by `scripts/realkube-build` (pinned in
//! `tests/realkube/`). kubesim is the fast path; realkube is the judge.
//!
//! [`RealKube::start`] generates a CA and certificates with the `openssl`
//! CLI, a service-account signing key, starts etcd and the control plane on
//! free loopback ports with RBAC and Node authorization and the admission
//! plugins a production cluster has, writes an admin kubeconfig and waits
//! until the API server is ready and the controller manager works (the
//! `default` ServiceAccount exists). Each process leads its own process
//! group; [`RealKube::stop`] or drop kills every group and removes the data
//! directory. Each process logs to `<dir>/logs/<name>.log`; a failed start
//! reports the tail of the failing process's log.
//!
//! Binaries: `$ATOLL_REALKUBE_BIN`, else the build cache of
//! `scripts/realkube-build` for the release chosen by `$ATOLL_REALKUBE_K8S`
//! (`1.37`, the default, or `1.34`).

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use rustix::process::Signal;
use serde_json::json;

use crate::nodesim::process::{group_alive, signal_group};

/// The pinned module file of the default release (1.37).
const GO_MOD_DEFAULT: &str = include_str!("../realkube/go.mod");
/// The pinned module file of the oldest release (1.34).
const GO_MOD_1_34: &str = include_str!("../realkube/k8s-1.34/go.mod");

/// The four binaries realkube runs.
pub const BINARIES: [&str; 4] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
];

/// The admission plugins enabled explicitly (in 1.37 all but NodeRestriction
/// are on by default already; naming them keeps the claim true on 1.34 and
/// if a default changes).
pub const ADMISSION_PLUGINS: &str = "NamespaceLifecycle,ServiceAccount,ResourceQuota,LimitRanger,PodSecurity,ValidatingAdmissionPolicy,NodeRestriction";

/// The Service IP range of the cluster.
pub const SERVICE_CLUSTER_IP_RANGE: &str = "10.96.0.0/16";

/// The service-account token issuer.
pub const SERVICE_ACCOUNT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";

/// How often readiness is checked again.
const POLL: Duration = Duration::from_millis(100);

/// Lines of a process's log quoted in an error.
const LOG_TAIL_LINES: usize = 40;

/// What went wrong starting or stopping the control plane.
#[derive(Debug, thiserror::Error)]
pub enum RealKubeError {
    /// The binaries are not built.
    #[error(
        "realkube binaries missing in {dir}: {missing}; build them with scripts/realkube-build \
         (or set ATOLL_REALKUBE_BIN to a folder holding etcd, kube-apiserver, \
         kube-controller-manager and kube-scheduler)"
    )]
    BinariesMissing {
        /// Where they were looked for.
        dir: PathBuf,
        /// The names missing, comma-separated.
        missing: String,
    },
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `openssl` failed.
    #[error("openssl {step} failed: {output}")]
    Certificates {
        /// The certificate or key being made.
        step: String,
        /// openssl's error output.
        output: String,
    },
    /// A control-plane process exited during start-up.
    #[error("{name} exited during start-up ({status}); last lines of {log}:\n{tail}")]
    Exited {
        /// The process.
        name: String,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The control plane did not become ready in time.
    #[error(
        "{what} not ready after {timeout:?} (last error: {last}); last lines of {log}:\n{tail}"
    )]
    NotReady {
        /// What was waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last error seen while polling.
        last: String,
        /// The log of the process responsible.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The kubeconfig could not be turned into a client.
    #[error("kubeconfig {path}: {source}")]
    Kubeconfig {
        /// The kubeconfig.
        path: PathBuf,
        /// The cause.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// A client could not be built or a request failed.
    #[error("kube client: {0}")]
    Client(#[from] kube::Error),
    /// A process survived stop.
    #[error("{0} still running after stop")]
    Survivor(String),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RealKubeError {
    let what = what.into();
    move |source| RealKubeError::Io { what, source }
}

/// How to start realkube; `Default` starts the whole control plane.
#[derive(Debug, Clone)]
pub struct RealKubeOptions {
    /// The folder holding the binaries; default [`bin_dir`].
    pub bin_dir: Option<PathBuf>,
    /// How long start-up may take before it fails (default 120 s: a loaded
    /// 2-core machine takes a while to start the API server).
    pub timeout: Duration,
    /// Start kube-controller-manager (default true).
    pub controller_manager: bool,
    /// Start kube-scheduler (default true).
    pub scheduler: bool,
    /// Extra `--flag=value` arguments for kube-apiserver.
    pub apiserver_args: Vec<String>,
}

impl Default for RealKubeOptions {
    fn default() -> Self {
        Self {
            bin_dir: None,
            timeout: Duration::from_secs(120),
            controller_manager: true,
            scheduler: true,
            apiserver_args: Vec::new(),
        }
    }
}

/// The pinned versions of one release, read from its module file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pinned {
    /// `k8s.io/kubernetes`, e.g. `v1.37.2`.
    pub kubernetes: String,
    /// `go.etcd.io/etcd/server/v3`, e.g. `v3.7.4`.
    pub etcd: String,
}

fn pinned_in(go_mod: &str, module: &str) -> Option<String> {
    go_mod.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some(module))
            .then(|| words.next())
            .flatten()
            .filter(|v| v.starts_with('v'))
            .map(str::to_owned)
    })
}

/// The versions pinned for `$ATOLL_REALKUBE_K8S` (`1.37` by default, or
/// `1.34`), as `scripts/realkube-build` reads them.
pub fn pinned() -> Pinned {
    let go_mod = match std::env::var("ATOLL_REALKUBE_K8S").as_deref() {
        Ok("1.34") => GO_MOD_1_34,
        _ => GO_MOD_DEFAULT,
    };
    Pinned {
        kubernetes: pinned_in(go_mod, "k8s.io/kubernetes").unwrap_or_default(),
        etcd: pinned_in(go_mod, "go.etcd.io/etcd/server/v3").unwrap_or_default(),
    }
}

/// Where the binaries are: `$ATOLL_REALKUBE_BIN`, else the build cache of
/// `scripts/realkube-build` (`${XDG_CACHE_HOME:-$HOME/.cache}/atoll/realkube/
/// <kubernetes>-etcd-<etcd>/bin`, root overridable with
/// `$ATOLL_REALKUBE_CACHE`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ATOLL_REALKUBE_BIN").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let root = std::env::var_os("ATOLL_REALKUBE_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("XDG_CACHE_HOME")
                .filter(|d| !d.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache")
                })
                .join("atoll")
                .join("realkube")
        });
    let pinned = pinned();
    root.join(format!("{}-etcd-{}", pinned.kubernetes, pinned.etcd))
        .join("bin")
}

/// The binaries missing from `dir` (empty when all are there).
pub fn missing_binaries(dir: &Path) -> Vec<&'static str> {
    BINARIES
        .into_iter()
        .filter(|name| !dir.join(name).is_file())
        .collect()
}

/// Whether the binaries are present in [`bin_dir`].
pub fn binaries_present() -> bool {
    missing_binaries(&bin_dir()).is_empty()
}

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
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
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

    fn kill(&mut self) {
        signal_group(self.child.id(), Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running control plane; stopped, and its directory removed, on drop.
pub struct RealKube {
    procs: Vec<Proc>,
    kubeconfig: PathBuf,
    certs: PathBuf,
    server: String,
    version: k8s_openapi::apimachinery::pkg::version::Info,
    startup: Duration,
    client: Client,
    // Removed after the processes are killed (see Drop and stop).
    dir: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for RealKube {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RealKube")
            .field("server", &self.server)
            .field("version", &self.version.git_version)
            .field("procs", &self.procs)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// A user and groups for a client certificate.
#[derive(Debug, Clone, Copy)]
struct Subject<'a> {
    user: &'a str,
    groups: &'a [&'a str],
}

/// Escapes a value for openssl's `-subj /K=V/...` form.
fn subj_escape(value: &str) -> String {
    value
        .chars()
        .flat_map(|c| match c {
            '/' | '\\' | '+' | ',' | '=' => vec!['\\', c],
            c => vec![c],
        })
        .collect()
}

async fn openssl(step: &str, args: &[&str]) -> Result<(), RealKubeError> {
    let out = tokio::process::Command::new("openssl")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(io("running openssl (is it installed?)"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(RealKubeError::Certificates {
            step: step.to_owned(),
            output: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap_or_default()
}

/// Certificates and keys in one folder, signed by the folder's CA.
#[derive(Debug)]
struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    async fn key(&self, name: &str) -> Result<PathBuf, RealKubeError> {
        let key = self.file(&format!("{name}.key"));
        openssl(
            &format!("{name} key"),
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                path_str(&key),
            ],
        )
        .await?;
        Ok(key)
    }

    /// A self-signed CA, `<name>.crt` and `<name>.key`.
    async fn ca(&self, name: &str, cn: &str) -> Result<(), RealKubeError> {
        let key = self.key(name).await?;
        let subj = format!("/CN={cn}");
        openssl(
            &format!("{name} certificate"),
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                path_str(&key),
                "-subj",
                &subj,
                "-days",
                "3650",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
                "-out",
                path_str(&self.file(&format!("{name}.crt"))),
            ],
        )
        .await
    }

    /// A certificate signed by the CA `ca`; `extensions` are `-addext`
    /// values.
    async fn signed(
        &self,
        ca: &str,
        name: &str,
        subj: &str,
        extensions: &[&str],
    ) -> Result<(), RealKubeError> {
        let key = self.key(name).await?;
        let ca_crt = self.file(&format!("{ca}.crt"));
        let ca_key = self.file(&format!("{ca}.key"));
        let crt = self.file(&format!("{name}.crt"));
        let mut args = vec![
            "req",
            "-x509",
            "-new",
            "-key",
            path_str(&key),
            "-CA",
            path_str(&ca_crt),
            "-CAkey",
            path_str(&ca_key),
            "-subj",
            subj,
            "-days",
            "3650",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "keyUsage=critical,digitalSignature,keyEncipherment",
        ];
        for ext in extensions {
            args.extend(["-addext", ext]);
        }
        args.extend(["-out", path_str(&crt)]);
        openssl(&format!("{name} certificate"), &args).await
    }

    async fn serving(&self, name: &str) -> Result<(), RealKubeError> {
        let sans = format!(
            "subjectAltName=IP:127.0.0.1,IP:{},DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,\
             DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local",
            service_ip()
        );
        self.signed(
            "ca",
            name,
            "/CN=kube-apiserver",
            &["extendedKeyUsage=serverAuth", &sans],
        )
        .await
    }

    async fn client(&self, name: &str, subject: Subject<'_>) -> Result<(), RealKubeError> {
        let mut subj = String::new();
        for group in subject.groups {
            subj.push_str("/O=");
            subj.push_str(&subj_escape(group));
        }
        subj.push_str("/CN=");
        subj.push_str(&subj_escape(subject.user));
        self.signed("ca", name, &subj, &["extendedKeyUsage=clientAuth"])
            .await
    }

    /// The service-account signing key pair (`sa.key`, `sa.pub`).
    async fn service_account(&self) -> Result<(), RealKubeError> {
        let key = self.key("sa").await?;
        openssl(
            "service-account public key",
            &[
                "pkey",
                "-in",
                path_str(&key),
                "-pubout",
                "-out",
                path_str(&self.file("sa.pub")),
            ],
        )
        .await
    }

    /// A kubeconfig for the client certificate `name`, at `path`.
    fn kubeconfig(&self, server: &str, name: &str, path: &Path) -> Result<(), RealKubeError> {
        let doc = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "realkube", "cluster": {
                "server": server,
                "certificate-authority": self.file("ca.crt"),
            }}],
            "users": [{"name": name, "user": {
                "client-certificate": self.file(&format!("{name}.crt")),
                "client-key": self.file(&format!("{name}.key")),
            }}],
            "contexts": [{"name": "realkube", "context": {"cluster": "realkube", "user": name}}],
            "current-context": "realkube",
        });
        // JSON is YAML: kubectl and kube-rs read it as a kubeconfig.
        std::fs::write(path, doc.to_string()).map_err(io(format!("writing {}", path.display())))
    }
}

/// The first address of the Service range: the `kubernetes` Service.
fn service_ip() -> &'static str {
    "10.96.0.1"
}

async fn client_from(path: &Path) -> Result<(Client, Config), RealKubeError> {
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
        let certs = dir.path().join("pki");
        let logs = dir.path().join("logs");
        for d in [&certs, &logs] {
            std::fs::create_dir_all(d).map_err(io(format!("creating {}", d.display())))?;
        }
        let pki = Pki { dir: certs.clone() };
        pki.ca("ca", "atoll-realkube-ca").await?;
        // The front proxy (request-header authentication): what aggregated
        // API servers, and the controller manager's and scheduler's own
        // authentication, expect to find.
        pki.ca("front-proxy-ca", "atoll-realkube-front-proxy-ca")
            .await?;
        pki.signed(
            "front-proxy-ca",
            "front-proxy-client",
            "/CN=front-proxy-client",
            &["extendedKeyUsage=clientAuth"],
        )
        .await?;
        pki.serving("serving").await?;
        pki.service_account().await?;
        pki.client(
            "admin",
            Subject {
                user: "atoll-admin",
                groups: &["system:masters"],
            },
        )
        .await?;
        pki.client(
            "controller-manager",
            Subject {
                user: "system:kube-controller-manager",
                groups: &[],
            },
        )
        .await?;
        pki.client(
            "scheduler",
            Subject {
                user: "system:kube-scheduler",
                groups: &[],
            },
        )
        .await?;

        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let apiserver_port = free_port()?;
        let server = format!("https://127.0.0.1:{apiserver_port}");
        let kubeconfig = dir.path().join("kubeconfig");
        pki.kubeconfig(&server, "admin", &kubeconfig)?;
        let kcm_kubeconfig = dir.path().join("controller-manager.kubeconfig");
        pki.kubeconfig(&server, "controller-manager", &kcm_kubeconfig)?;
        let scheduler_kubeconfig = dir.path().join("scheduler.kubeconfig");
        pki.kubeconfig(&server, "scheduler", &scheduler_kubeconfig)?;

        let (client, admin_config) = client_from(&kubeconfig).await?;
        let mut kube = RealKube {
            procs: Vec::new(),
            kubeconfig: kubeconfig.clone(),
            certs: certs.clone(),
            server: server.clone(),
            version: Default::default(),
            startup: Duration::ZERO,
            client,
            dir: None,
        };
        let root = dir.path().to_owned();
        // From here on, a failure drops `kube`, which kills what started.
        kube.dir = Some(dir);
        let f = |name: &str| path_str(&certs.join(name)).to_owned();
        let etcd_url = format!("http://127.0.0.1:{etcd_client}");
        let peer_url = format!("http://127.0.0.1:{etcd_peer}");
        kube.procs.push(Proc::spawn(
            &bin,
            "etcd",
            &[
                "--name=realkube".into(),
                format!("--data-dir={}", path_str(&root.join("etcd"))),
                format!("--listen-client-urls={etcd_url}"),
                format!("--advertise-client-urls={etcd_url}"),
                format!("--listen-peer-urls={peer_url}"),
                format!("--initial-advertise-peer-urls={peer_url}"),
                format!("--initial-cluster=realkube={peer_url}"),
                // Throwaway data: no fsync, as envtest does.
                "--unsafe-no-fsync=true".into(),
                "--log-level=warn".into(),
            ],
            &logs,
        )?);
        let mut apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--secure-port={apiserver_port}"),
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
        apiserver_args.extend(options.apiserver_args.iter().cloned());
        kube.procs
            .push(Proc::spawn(&bin, "kube-apiserver", &apiserver_args, &logs)?);

        let deadline = started + options.timeout;
        kube.wait_for("kube-apiserver /readyz", 1, deadline, options.timeout, {
            let client = kube.client.clone();
            move || {
                let client = client.clone();
                async move {
                    get_text(&client, "/readyz")
                        .await
                        .and_then(|body| (body.trim() == "ok").then_some(()).ok_or(body))
                }
            }
        })
        .await?;

        let mut health: Vec<(usize, &'static str, u16)> = Vec::new();
        let common = |kubeconfig: &Path, port: u16| {
            let k = path_str(kubeconfig).to_owned();
            vec![
                format!("--kubeconfig={k}"),
                format!("--authentication-kubeconfig={k}"),
                format!("--authorization-kubeconfig={k}"),
                "--bind-address=127.0.0.1".into(),
                format!("--secure-port={port}"),
                format!("--tls-cert-file={}", f("serving.crt")),
                format!("--tls-private-key-file={}", f("serving.key")),
                "--leader-elect=false".into(),
                "--profiling=false".into(),
            ]
        };
        if options.controller_manager {
            let port = free_port()?;
            let mut args = common(&kcm_kubeconfig, port);
            args.extend([
                "--use-service-account-credentials=true".into(),
                format!("--service-account-private-key-file={}", f("sa.key")),
                format!("--root-ca-file={}", f("ca.crt")),
                format!("--cluster-signing-cert-file={}", f("ca.crt")),
                format!("--cluster-signing-key-file={}", f("ca.key")),
                format!("--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}"),
            ]);
            kube.procs
                .push(Proc::spawn(&bin, "kube-controller-manager", &args, &logs)?);
            health.push((kube.procs.len() - 1, "kube-controller-manager", port));
        }
        if options.scheduler {
            let port = free_port()?;
            let args = common(&scheduler_kubeconfig, port);
            kube.procs
                .push(Proc::spawn(&bin, "kube-scheduler", &args, &logs)?);
            health.push((kube.procs.len() - 1, "kube-scheduler", port));
        }

        for (index, name, port) in health {
            let mut config = admin_config.clone();
            config.cluster_url = format!("https://127.0.0.1:{port}").parse().map_err(
                |e: http::uri::InvalidUri| RealKubeError::Io {
                    what: format!("{name} URL"),
                    source: std::io::Error::other(e),
                },
            )?;
            let client = Client::try_from(config)?;
            kube.wait_for(
                &format!("{name} /healthz"),
                index,
                deadline,
                options.timeout,
                move || {
                    let client = client.clone();
                    async move {
                        get_text(&client, "/healthz")
                            .await
                            .and_then(|body| (body.trim() == "ok").then_some(()).ok_or(body))
                    }
                },
            )
            .await?;
        }
        if let Some(index) = kube
            .procs
            .iter()
            .position(|p| p.name == "kube-controller-manager")
        {
            // The controller manager works once the service-account
            // controller has made `default` in `default`: until then the
            // ServiceAccount admission plugin refuses every Pod.
            let client = kube.client.clone();
            kube.wait_for(
                "the default ServiceAccount (kube-controller-manager)",
                index,
                deadline,
                options.timeout,
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
            .await?;
        }
        kube.version = kube.client.apiserver_version().await?;
        kube.startup = started.elapsed();
        Ok(kube)
    }

    /// Polls `check` until it succeeds; fails when a process exits or the
    /// deadline passes, with the log of process `index`.
    async fn wait_for<F, Fut>(
        &mut self,
        what: &str,
        index: usize,
        deadline: Instant,
        timeout: Duration,
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
            if Instant::now() >= deadline {
                let (log, tail) = self
                    .procs
                    .get(index)
                    .map(|p| (p.log.clone(), log_tail(&p.log, LOG_TAIL_LINES)))
                    .unwrap_or_default();
                return Err(RealKubeError::NotReady {
                    what: what.to_owned(),
                    timeout,
                    last,
                    log,
                    tail,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// The admin kubeconfig (user `atoll-admin`, group `system:masters`).
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The CA certificate the API server's certificate is signed with.
    pub fn ca_path(&self) -> PathBuf {
        self.certs.join("ca.crt")
    }

    /// A client as the admin (group `system:masters`).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// A client authenticated as `user` in `groups`, with a client
    /// certificate signed by the cluster's CA: RBAC and the Node authorizer
    /// see exactly that identity.
    pub async fn client_as(&self, user: &str, groups: &[&str]) -> Result<Client, RealKubeError> {
        let pki = Pki {
            dir: self.certs.clone(),
        };
        let name = format!("user-{}", uuid::Uuid::new_v4().simple());
        pki.client(&name, Subject { user, groups }).await?;
        let path = self.certs.join(format!("{name}.kubeconfig"));
        pki.kubeconfig(&self.server, &name, &path)?;
        Ok(client_from(&path).await?.0)
    }

    /// The API server's version (`/version`), e.g. `v1.37.2`.
    pub fn version(&self) -> &str {
        &self.version.git_version
    }

    /// The API server's full version answer.
    pub fn version_info(&self) -> &k8s_openapi::apimachinery::pkg::version::Info {
        &self.version
    }

    /// How long start-up took, from the call to `start` until ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The data directory (certificates, etcd data, logs).
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_ref().map(|d| d.path())
    }

    /// The process ids of the control plane, by name (each leads its own
    /// process group).
    pub fn pids(&self) -> Vec<(&'static str, u32)> {
        self.procs.iter().map(|p| (p.name, p.child.id())).collect()
    }

    /// The log file of a process (`etcd`, `kube-apiserver`, ...).
    pub fn log_path(&self, name: &str) -> Option<&Path> {
        self.procs
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.log.as_path())
    }

    fn kill_all(&mut self) {
        // The control plane first, etcd last.
        for proc in self.procs.iter_mut().rev() {
            proc.kill();
        }
    }

    /// Kills every process group, checks none survived and removes the data
    /// directory.
    pub fn stop(mut self) -> Result<(), RealKubeError> {
        self.kill_all();
        let survivors: Vec<String> = self
            .procs
            .iter()
            .filter(|p| group_alive(p.child.id()))
            .map(|p| format!("{} (pid {})", p.name, p.child.id()))
            .collect();
        self.procs.clear();
        if let Some(dir) = self.dir.take() {
            let path = dir.path().to_owned();
            dir.close()
                .map_err(io(format!("removing {}", path.display())))?;
        }
        if survivors.is_empty() {
            Ok(())
        } else {
            Err(RealKubeError::Survivor(survivors.join(", ")))
        }
    }
}

impl Drop for RealKube {
    fn drop(&mut self) {
        self.kill_all();
        // `dir` (a TempDir) is removed after this, with the processes gone.
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_pinned_versions() {
        assert_eq!(
            pinned_in(GO_MOD_DEFAULT, "k8s.io/kubernetes").as_deref(),
            Some("v1.37.2")
        );
        assert!(
            pinned_in(GO_MOD_DEFAULT, "go.etcd.io/etcd/server/v3")
                .is_some_and(|v| v.starts_with("v3.7."))
        );
        assert!(
            pinned_in(GO_MOD_1_34, "k8s.io/kubernetes").is_some_and(|v| v.starts_with("v1.34."))
        );
    }

    #[test]
    fn escapes_subject_values() {
        assert_eq!(subj_escape("a/b+c"), "a\\/b\\+c");
        assert_eq!(subj_escape("system:masters"), "system:masters");
    }
}
