//! The sandbox as a newcomer runs it: `atoll-sandbox --apply
//! examples/tenant-minimal.yaml` starts identity and the operator, the Tenant
//! turns Ready with a real PostgreSQL and the real instance binary, and its
//! URL answers through the ingress router. Needs the workspace binaries
//! (`cargo test --workspace` or `cargo build --bins` builds them).
//!
//! The same with `--real`, on the real control plane: skipped, loudly,
//! without the realkube binaries (`scripts/realkube-build`) unless
//! `ATOLL_REALKUBE_REQUIRED` is set.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{eventually, http_get};
use tokio::io::{AsyncBufReadExt, BufReader};

const LIMIT: Duration = Duration::from_secs(120);

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

fn kubectl(kubeconfig: &str, args: &[&str]) -> (bool, String) {
    let out =
        std::process::Command::new(std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".into()))
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_atoll-sandbox")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --bins` (cargo test --workspace does)",
        path.display()
    );
    path
}

#[tokio::test]
async fn a_tenant_applied_to_the_sandbox_answers_at_its_url() {
    tenant_answers(&[]).await;
}

#[tokio::test]
async fn on_the_real_control_plane_a_tenant_answers_at_its_url() {
    if atoll_testkit::realkube::binaries_or_skip("the sandbox on realkube").is_none() {
        return;
    }
    tenant_answers(&["--real"]).await;
}

/// `atoll-sandbox --apply examples/tenant-minimal.yaml` with `extra`
/// arguments: the Tenant becomes Ready, its URL answers, identity knows
/// it, and SIGINT stops the sandbox cleanly.
async fn tenant_answers(extra: &[&str]) {
    for name in ["atoll-operator", "atoll-identity", "atoll-instance"] {
        binary(name);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    // A second Tenant with backups to the platform's store (#19).
    let backed = dir.path().join("backed.yaml");
    std::fs::write(
        &backed,
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: backed}\nspec: {backup: {}}\n",
    )
    .expect("tenant file");
    let identity = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    let identity_addr = identity.local_addr().expect("addr");
    drop(identity);
    let mut sandbox = tokio::process::Command::new(env!("CARGO_BIN_EXE_atoll-sandbox"))
        .args([
            "--api",
            "127.0.0.1:0",
            "--ingress",
            "127.0.0.1:0",
            "--identity",
        ])
        .arg(identity_addr.to_string())
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .arg("--apply")
        .arg(repo_root().join("examples/tenant-minimal.yaml"))
        .arg("--apply")
        .arg(&backed)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("sandbox starts");

    let mut lines = BufReader::new(sandbox.stdout.take().expect("stdout")).lines();
    let mut ingress: Option<SocketAddr> = None;
    let mut identity_line = String::new();
    let mut store_line = String::new();
    let kubeconfig = tokio::time::timeout(LIMIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(addr) = line.split("ingress router at http://").nth(1) {
                ingress = addr.trim().parse().ok();
            }
            if line.contains("identity at") {
                identity_line = line.clone();
            }
            if line.contains("backup") {
                store_line = line.clone();
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
    assert!(
        identity_line.contains(&identity_addr.to_string()),
        "{identity_line}"
    );

    let (ok, out) = kubectl(
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Ready",
            "tenant/acme",
            "--timeout=120s",
        ],
    );
    assert!(
        ok,
        "acme did not become Ready: {out}\n{}",
        kubectl(&kubeconfig, &["get", "tenant", "acme", "-o", "yaml"]).1
    );
    let (ok, url) = kubectl(
        &kubeconfig,
        &["get", "tenant", "acme", "-o", "jsonpath={.status.url}"],
    );
    assert!(ok, "{url}");
    assert_eq!(
        url.trim(),
        format!("http://acme.atoll.localhost:{}", ingress.port())
    );

    // The platform's backup store (an s3s-fs on loopback, when installed):
    // the backed-up Tenant's namespace gets its settings and credentials.
    if atoll_testkit::s3::server_bin().is_file() {
        assert!(
            store_line.contains("backups go to http://127.0.0.1:"),
            "{store_line}"
        );
        eventually("backed's backup-object-store Secret", LIMIT, || async {
            let (ok, out) = kubectl(
                &kubeconfig,
                &[
                    "get",
                    "secret",
                    "-n",
                    "atoll-backed",
                    "backup-object-store",
                    "-o",
                    "name",
                ],
            );
            ok.then_some(out)
        })
        .await;
    } else {
        assert!(store_line.contains("no backup store"), "{store_line}");
    }

    // The instance answers at the tenant's host, and wants a token.
    let (status, _) = eventually("acme's URL to answer", LIMIT, || async {
        http_get(ingress, "acme.atoll.localhost", "/healthz")
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
    let (status, _) = http_get(ingress, "acme.atoll.localhost", "/api/v1/flows")
        .await
        .expect("answer");
    assert_eq!(
        status, 401,
        "the instance must refuse a request without a token"
    );

    // Identity has the tenant in its directory.
    let (ok, synced) = kubectl(
        &kubeconfig,
        &[
            "get",
            "tenant",
            "acme",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"IdentitySynced\")].status}",
        ],
    );
    assert!(ok && synced.trim() == "True", "IdentitySynced: {synced}");

    let pid =
        rustix::process::Pid::from_raw(i32::try_from(sandbox.id().expect("pid")).expect("pid"))
            .expect("pid");
    rustix::process::kill_process(pid, rustix::process::Signal::INT).expect("SIGINT");
    let status = tokio::time::timeout(LIMIT, sandbox.wait())
        .await
        .expect("exits")
        .expect("status");
    assert!(status.success(), "exit status {status}");
}
