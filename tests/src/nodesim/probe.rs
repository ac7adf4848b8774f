//! Readiness and liveness probes: httpGet, tcpSocket and exec, run against
//! the pod's loopback address with kubelet's thresholds.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerPort, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A probe ready to run.
#[derive(Debug, Clone)]
pub struct ProbeSpec {
    /// What the probe does.
    pub action: ProbeAction,
    /// Delay before the first probe.
    pub initial_delay: Duration,
    /// Time between probes.
    pub period: Duration,
    /// Time one probe may take.
    pub timeout: Duration,
    /// Consecutive successes that make the probe pass.
    pub success_threshold: u32,
    /// Consecutive failures that make the probe fail.
    pub failure_threshold: u32,
}

/// The check itself. `Debug` never shows the exec environment's values.
#[derive(Clone)]
pub enum ProbeAction {
    /// `GET path` over HTTP/1.1; 200–399 passes.
    Http {
        /// Where to connect.
        addr: SocketAddr,
        /// Request path and query.
        path: String,
        /// Extra headers.
        headers: Vec<(String, String)>,
    },
    /// A TCP connection that opens passes.
    Tcp {
        /// Where to connect.
        addr: SocketAddr,
    },
    /// A command that exits 0 passes.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
        /// Its environment (the container's).
        env: Vec<(String, String)>,
        /// Directories searched before `PATH` (the image's binaries).
        path_prefix: Vec<PathBuf>,
    },
    /// A probe nodesim cannot run (e.g. gRPC, HTTPS); it always fails, with
    /// this reason.
    Unsupported(String),
}

impl std::fmt::Debug for ProbeAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Http { addr, path, .. } => write!(f, "Http({addr}{path})"),
            Self::Tcp { addr } => write!(f, "Tcp({addr})"),
            Self::Exec { argv, .. } => {
                write!(f, "Exec({})", argv.first().map_or("", String::as_str))
            }
            Self::Unsupported(why) => write!(f, "Unsupported({why})"),
        }
    }
}

impl ProbeSpec {
    /// Builds a runnable probe from the pod spec. Periods and delays longer
    /// than `max_period` are shortened to it, so simulated pods settle fast.
    pub fn from_probe(
        probe: &Probe,
        pod_ip: Ipv4Addr,
        ports: &[ContainerPort],
        env: &[(String, String)],
        path_prefix: &[PathBuf],
        max_period: Duration,
    ) -> Self {
        let secs =
            |v: Option<i32>, default: i32| Duration::from_secs(v.unwrap_or(default).max(0) as u64);
        let action = if let Some(http) = &probe.http_get {
            match resolve_port(&http.port, ports) {
                Some(port)
                    if http
                        .scheme
                        .as_deref()
                        .unwrap_or("HTTP")
                        .eq_ignore_ascii_case("HTTP") =>
                {
                    let host = http
                        .host
                        .as_deref()
                        .and_then(|h| h.parse::<Ipv4Addr>().ok())
                        .filter(Ipv4Addr::is_loopback)
                        .unwrap_or(pod_ip);
                    ProbeAction::Http {
                        addr: SocketAddr::from((host, port)),
                        path: http.path.clone().unwrap_or_else(|| "/".to_owned()),
                        headers: http
                            .http_headers
                            .iter()
                            .flatten()
                            .map(|h| (h.name.clone(), h.value.clone()))
                            .collect(),
                    }
                }
                Some(_) => ProbeAction::Unsupported("HTTPS probes are not simulated".to_owned()),
                None => ProbeAction::Unsupported(format!("unknown probe port {:?}", http.port)),
            }
        } else if let Some(tcp) = &probe.tcp_socket {
            match resolve_port(&tcp.port, ports) {
                Some(port) => ProbeAction::Tcp {
                    addr: SocketAddr::from((pod_ip, port)),
                },
                None => ProbeAction::Unsupported(format!("unknown probe port {:?}", tcp.port)),
            }
        } else if let Some(exec) = &probe.exec {
            // The command runs "inside the pod": its loopback is the pod's
            // address here (`pg_isready --host=127.0.0.1` must reach the pod's
            // own server, not the host's).
            let pod = pod_ip.to_string();
            ProbeAction::Exec {
                argv: exec
                    .command
                    .iter()
                    .flatten()
                    .map(|arg| arg.replace("127.0.0.1", &pod).replace("localhost", &pod))
                    .collect(),
                env: env.to_vec(),
                path_prefix: path_prefix.to_vec(),
            }
        } else {
            ProbeAction::Unsupported("no probe handler (gRPC probes are not simulated)".to_owned())
        };
        Self {
            action,
            initial_delay: secs(probe.initial_delay_seconds, 0).min(max_period),
            period: secs(probe.period_seconds, 10).min(max_period),
            timeout: secs(probe.timeout_seconds, 1).max(Duration::from_millis(200)),
            success_threshold: probe.success_threshold.unwrap_or(1).max(1) as u32,
            failure_threshold: probe.failure_threshold.unwrap_or(3).max(1) as u32,
        }
    }

    /// Runs the probe once; `Err` says why it failed.
    pub async fn check(&self) -> Result<(), String> {
        match tokio::time::timeout(self.timeout, check(&self.action)).await {
            Ok(result) => result,
            Err(_) => Err(format!("probe timed out after {:?}", self.timeout)),
        }
    }
}

/// A numeric port, or the named port of the container.
pub fn resolve_port(port: &IntOrString, ports: &[ContainerPort]) -> Option<u16> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n).ok(),
        IntOrString::String(name) => match name.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => ports
                .iter()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        },
    }
}

async fn check(action: &ProbeAction) -> Result<(), String> {
    match action {
        ProbeAction::Http {
            addr,
            path,
            headers,
        } => http_get(*addr, path, headers).await,
        ProbeAction::Tcp { addr } => TcpStream::connect(addr)
            .await
            .map(drop)
            .map_err(|e| format!("dial tcp {addr}: {e}")),
        ProbeAction::Exec {
            argv,
            env,
            path_prefix,
        } => exec(argv, env, path_prefix).await,
        ProbeAction::Unsupported(reason) => Err(reason.clone()),
    }
}

async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("Get \"http://{addr}{path}\": {e}"))?;
    let host = match addr.ip() {
        IpAddr::V4(ip) => format!("{ip}:{}", addr.port()),
        IpAddr::V6(ip) => format!("[{ip}]:{}", addr.port()),
    };
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: kube-probe/nodesim\r\nAccept: */*\r\nConnection: close\r\n"
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("writing probe request to {addr}: {e}"))?;
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 4096 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading probe response from {addr}: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("malformed HTTP response from {addr}"))?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {status}"))
    }
}

async fn exec(
    argv: &[String],
    env: &[(String, String)],
    path_prefix: &[PathBuf],
) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("exec probe without a command".to_owned());
    };
    let mut path: Vec<PathBuf> = path_prefix.to_vec();
    path.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into()),
    ));
    let joined = std::env::join_paths(path).map_err(|e| format!("exec probe PATH: {e}"))?;
    let resolved = if program.contains('/') {
        PathBuf::from(program)
    } else {
        std::env::split_paths(&joined)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
            .ok_or_else(|| format!("exec probe: {program}: not found"))?
    };
    let output = tokio::process::Command::new(resolved)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("PATH", &joined)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .status()
        .await
        .map_err(|e| format!("exec probe {program}: {e}"))?;
    if output.success() {
        Ok(())
    } else {
        Err(format!("exec probe {program} exited with {output}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn spec(action: ProbeAction) -> ProbeSpec {
        ProbeSpec {
            action,
            initial_delay: Duration::ZERO,
            period: Duration::from_millis(100),
            timeout: Duration::from_secs(2),
            success_threshold: 1,
            failure_threshold: 1,
        }
    }

    async fn serve_once(status: &'static str) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())
                .await;
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_passes_on_2xx_and_fails_otherwise() {
        let ok = serve_once("200 OK").await;
        let probe = spec(ProbeAction::Http {
            addr: ok,
            path: "/readyz".into(),
            headers: vec![],
        });
        assert_eq!(probe.check().await, Ok(()));
        let bad = serve_once("503 Service Unavailable").await;
        let probe = spec(ProbeAction::Http {
            addr: bad,
            path: "/readyz".into(),
            headers: vec![],
        });
        assert_eq!(
            probe.check().await,
            Err("HTTP probe failed with statuscode: 503".into())
        );
    }

    #[tokio::test]
    async fn tcp_and_exec_probes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        assert!(spec(ProbeAction::Tcp { addr }).check().await.is_ok());
        drop(listener);
        // A port held by a socket that never listens: connections are
        // refused, and no test running in parallel can take it.
        let held = tokio::net::TcpSocket::new_v4().expect("socket");
        held.bind("127.0.0.1:0".parse().expect("addr"))
            .expect("bind");
        let closed = held.local_addr().expect("addr");
        assert!(
            spec(ProbeAction::Tcp { addr: closed })
                .check()
                .await
                .is_err()
        );
        drop(held);
        let exec = |code: &str| ProbeAction::Exec {
            argv: vec![
                "sh".into(),
                "-c".into(),
                format!("test \"$X\" = yes && exit {code}"),
            ],
            env: vec![("X".into(), "yes".into())],
            path_prefix: vec![],
        };
        assert!(spec(exec("0")).check().await.is_ok());
        assert!(spec(exec("1")).check().await.is_err());
    }

    #[test]
    fn named_ports_and_capped_periods() {
        let probe: Probe = serde_json::from_value(serde_json::json!({
            "httpGet": {"path": "/readyz", "port": "http"},
            "periodSeconds": 10, "initialDelaySeconds": 30
        }))
        .expect("probe");
        let ports: Vec<ContainerPort> =
            serde_json::from_value(serde_json::json!([{"name": "http", "containerPort": 8080}]))
                .expect("ports");
        let spec = ProbeSpec::from_probe(
            &probe,
            Ipv4Addr::new(127, 64, 0, 9),
            &ports,
            &[],
            &[],
            Duration::from_millis(500),
        );
        assert!(
            matches!(spec.action, ProbeAction::Http { addr, .. } if addr == SocketAddr::from(([127, 64, 0, 9], 8080)))
        );
        assert_eq!(spec.period, Duration::from_millis(500));
        assert_eq!(spec.initial_delay, Duration::from_millis(500));
        assert_eq!(spec.failure_threshold, 3);
    }
}
