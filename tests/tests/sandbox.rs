//! `atoll-sandbox` as a user runs it: it starts, kubectl works against it,
//! workloads run and answer through the ingress router, and SIGINT stops
//! everything, leaving no process behind.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use atoll_testkit::nodesim::process::group_alive;
use common::{eventually, http_get};
use tokio::io::{AsyncBufReadExt, BufReader};

const LIMIT: Duration = Duration::from_secs(60);

const WEB: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: default}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
        - name: web
          image: atoll-testserver:dev
          env: [{name: LISTEN, value: "0.0.0.0:8080"}]
          ports: [{containerPort: 8080}]
          readinessProbe: {httpGet: {path: /readyz, port: 8080}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web, namespace: default}
spec:
  rules:
    - host: web.atoll.localhost
      http:
        paths:
          - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
"#;

fn kubectl(kubeconfig: &str, args: &[&str]) -> (bool, String) {
    let kubectl = std::env::var("ATOLL_KUBECTL").unwrap_or_else(|_| "/usr/bin/kubectl".to_owned());
    let out = std::process::Command::new(kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

#[tokio::test]
async fn the_sandbox_serves_kubectl_runs_workloads_and_stops_cleanly_on_sigint() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().join("web.yaml");
    std::fs::write(&web, WEB).expect("manifest");
    let mut sandbox = tokio::process::Command::new(env!("CARGO_BIN_EXE_atoll-sandbox"))
        .args([
            "--api",
            "127.0.0.1:0",
            "--ingress",
            "127.0.0.1:0",
            "--no-platform",
            "--state-dir",
        ])
        .arg(dir.path().join("state"))
        .arg("--image")
        .arg(format!(
            "atoll-testserver={}",
            env!("CARGO_BIN_EXE_atoll-testserver")
        ))
        .arg("--apply")
        .arg(&web)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sandbox starts");
    let pid = sandbox.id().expect("pid");

    // The summary names the ingress router and the kubeconfig.
    let mut lines = BufReader::new(sandbox.stdout.take().expect("stdout")).lines();
    let mut ingress: Option<SocketAddr> = None;
    let kubeconfig = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.split("ingress router at http://").nth(1) {
                ingress = addr.trim().parse().ok();
            }
            if let Some(path) = line.strip_prefix("export KUBECONFIG=") {
                return path.to_owned();
            }
        }
        panic!("the sandbox ended without printing its kubeconfig");
    })
    .await
    .expect("the sandbox printed its kubeconfig in time");
    let ingress = ingress.expect("ingress address printed");

    // kubectl works against it: the CRD is installed, objects can be applied.
    let (ok, out) = kubectl(
        &kubeconfig,
        &["get", "crd", "tenants.atoll.dev", "-o", "name"],
    );
    assert!(ok, "{out}");
    assert_eq!(
        out.trim(),
        "customresourcedefinition.apiextensions.k8s.io/tenants.atoll.dev"
    );
    let tenant = repo_root().join("examples/tenant-minimal.yaml");
    let (ok, out) = kubectl(
        &kubeconfig,
        &["apply", "--server-side", "-f", &tenant.to_string_lossy()],
    );
    assert!(ok, "{out}");
    let (ok, out) = kubectl(&kubeconfig, &["get", "tenants", "-o", "name"]);
    assert!(ok && out.contains("tenant.atoll.dev/acme"), "{out}");

    // The applied Deployment runs, becomes Available, logs, and answers by host.
    let (ok, out) = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Available",
            "deployment/web",
            "--timeout=60s",
        ],
    );
    assert!(ok, "{out}");
    let (ok, container_id) = kubectl(
        &kubeconfig,
        &[
            "get",
            "pods",
            "-l",
            "app=web",
            "-o",
            "jsonpath={.items[0].status.containerStatuses[0].containerID}",
        ],
    );
    assert!(ok, "{container_id}");
    let server_pid: u32 = container_id
        .trim()
        .strip_prefix("nodesim://")
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("container ID {container_id:?}"));
    assert!(group_alive(server_pid));
    let (ok, out) = kubectl(&kubeconfig, &["logs", "deployment/web"]);
    assert!(ok && out.contains("atoll-testserver listening"), "{out}");
    let (ok, out) = kubectl(&kubeconfig, &["logs", "--tail=1", "deployment/web"]);
    assert!(ok && out.lines().count() == 1, "{out}");
    let (status, body) = eventually("the host to answer", LIMIT, || async {
        http_get(ingress, "web.atoll.localhost", "/pid")
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!((status, body), (200, server_pid.to_string()));

    // SIGINT: a clean exit, and no process left behind.
    let pid = rustix::process::Pid::from_raw(i32::try_from(pid).expect("pid")).expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT sent");
    let status = tokio::time::timeout(LIMIT, sandbox.wait())
        .await
        .expect("the sandbox exits after SIGINT")
        .expect("exit status");
    assert!(status.success(), "exit status {status}");
    assert!(
        !group_alive(server_pid),
        "the test server outlived the sandbox"
    );
}
