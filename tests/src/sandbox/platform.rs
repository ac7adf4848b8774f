//! Identity and the operator, run as local processes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::backups::SandboxStore;
use super::{Args, SandboxError, io_error};
use crate::nodesim::workspace_binary;

/// Identity and the operator, run as local processes the way their
/// Deployments run them in a cluster.
pub(super) struct Platform {
    identity: tokio::process::Child,
    operator: tokio::process::Child,
    /// The wake gate (#20): serves sleeping tenants' hosts.
    gate: tokio::process::Child,
    gate_addr: std::net::SocketAddr,
    /// Whether the API server took the gate's loopback endpoint (kubesim
    /// does, a real one does not).
    gate_routed: bool,
    identity_url: String,
    admin_email: String,
    admin_password: String,
    logs: PathBuf,
    /// The platform's backup store, when s3s-fs is installed.
    store: Option<SandboxStore>,
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
    pub(super) async fn start(
        args: &Args,
        state_dir: &Path,
        kubeconfig: &Path,
        ingress_port: u16,
        client: &kube::Client,
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
        let store = SandboxStore::start(client).await?;
        let store_env = store.iter().flat_map(SandboxStore::operator_env);
        let operator_log = create_log(&logs, "operator.log")?;
        let operator = spawn(
            "operator",
            tokio::process::Command::new(&operator_bin)
                .arg("run")
                .envs(store_env)
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
        // The wake gate (#20), as the chart's Deployment and Service would
        // provide it: sleeping tenants' hosts are routed to it.
        let (gate, gate_addr) = crate::wake_gate::spawn(
            &operator_bin,
            kubeconfig,
            create_log(&logs, "wake-gate.log")?,
            60,
        )
        .await
        .map_err(|message| SandboxError::Platform {
            what: "wake gate",
            message,
        })?;
        let gate_routed = crate::wake_gate::register(client, "atoll-system", gate_addr)
            .await
            .map_err(|message| SandboxError::Platform {
                what: "wake gate",
                message,
            })?;
        Ok(Self {
            identity,
            operator,
            gate,
            gate_addr,
            gate_routed,
            identity_url,
            admin_email,
            admin_password,
            logs,
            store,
        })
    }

    pub(super) fn summary(&self) -> String {
        let store = self.store.as_ref().map(SandboxStore::summary);
        let store = store.unwrap_or_else(|| {
            "atoll-sandbox: no backup store (s3s-fs is not installed): Tenants with spec.backup run without backups\n".to_owned()
        });
        store
            + &format!(
                "atoll-sandbox: identity at {url}: sign in at {url}/login as {email} / {password}\n\
             atoll-sandbox: wake gate at {gate} ({routing})\n\
             atoll-sandbox: operator, wake gate and identity logs in {logs}\n",
                url = self.identity_url,
                email = self.admin_email,
                password = self.admin_password,
                gate = self.gate_addr,
                routing = if self.gate_routed {
                    "serves the hosts of sleeping and suspended tenants"
                } else {
                    "not routed: this API server refuses its loopback address in an EndpointSlice, so sleeping tenants wake only on schedule or by annotation here"
                },
                logs = self.logs.display(),
            )
    }

    /// SIGTERM, then SIGKILL after 10 seconds.
    pub(super) async fn stop(mut self) {
        for child in [&mut self.gate, &mut self.operator, &mut self.identity] {
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
