//! The database pod of continuous backups (#19) as nodesim plays it: an
//! init container copies programs into an emptyDir, the postgres server
//! archives WAL through an `archive_command` in that emptyDir (paths in the
//! setting pointing into the pod's volumes, the server's environment
//! inherited), and a sidecar of the postgres image runs one of those
//! programs (not the server) as `postgres`, connecting over the server's
//! Unix socket in the volume both mount at `/var/run/postgresql`.
//!
//! The node's state directory is deliberately long, so the socket path
//! would exceed the kernel's 107 bytes: the pod gets a short link instead,
//! removed with the pod.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, Program};
use common::{from_json, namespace};
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(90);
const NS: &str = "atoll-acme";

/// `archive_command`: `archive.sh --to DIR PATH`, PATH relative to PGDATA.
const ARCHIVE_SH: &str = r#"#!/bin/sh
set -eu
[ "$1" = --to ] || exit 2
dir=$2 file=$3 name=$(basename "$3")
cp "$file" "$dir/.$name.tmp"
mv "$dir/.$name.tmp" "$dir/$name"
printf '%s\n' "$ARCHIVE_NOTE" > "$dir/note"
"#;

/// The sidecar: waits for the server on the socket, reports how it is
/// connected, forces a WAL switch, then idles as a sidecar does.
const SIDECAR_SH: &str = r#"#!/bin/sh
set -eu
i=0
until pg_isready -q; do
  i=$((i + 1))
  [ "$i" -lt 600 ] || { echo "no server at $PGHOST"; exit 1; }
  sleep 0.1
done
echo "user:$(id -un)"
psql -X -At -v ON_ERROR_STOP=1 -c "SELECT 'socket:' || (inet_server_addr() IS NULL) || ':' || current_user"
psql -X -At -v ON_ERROR_STOP=1 -c "CREATE TABLE t (v text)" -c "INSERT INTO t VALUES ('x')" \
  -c "SELECT 'switched:' || pg_walfile_name(pg_switch_wal())"
exec sleep infinity
"#;

fn objects(archive: &Path) -> (serde_json::Value, serde_json::Value) {
    let tools = json!({
        "metadata": {"name": "tools"},
        "data": {"archive.sh": ARCHIVE_SH, "sidecar.sh": SIDECAR_SH}
    });
    let mount = |name: &str, path: &str| json!({"name": name, "mountPath": path});
    let pod = json!({
        "metadata": {"name": "db-0"},
        "spec": {
            "volumes": [
                {"name": "atoll-bin", "emptyDir": {}},
                {"name": "run", "emptyDir": {}},
                {"name": "data", "emptyDir": {}},
                {"name": "tools", "configMap": {"name": "tools"}},
                {"name": "archive", "hostPath": {"path": archive.display().to_string()}}
            ],
            "initContainers": [{
                "name": "install",
                "image": "installer:1",
                "command": ["install", "-m", "0755", "/tools/archive.sh", "/tools/sidecar.sh", "/atoll/bin/"],
                "volumeMounts": [mount("tools", "/tools"), mount("atoll-bin", "/atoll/bin")]
            }],
            "containers": [{
                "name": "postgres",
                "image": "postgres:16",
                "env": [
                    {"name": "POSTGRES_PASSWORD", "value": "pw-for-the-archive-test"},
                    {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
                    {"name": "ARCHIVE_NOTE", "value": "from-the-server-env"}
                ],
                "args": ["-c", "archive_mode=on", "-c", "archive_timeout=60",
                         "-c", "archive_command=/atoll/bin/archive.sh --to /archive %p"],
                "volumeMounts": [
                    mount("data", "/var/lib/postgresql/data"),
                    mount("run", "/var/run/postgresql"),
                    mount("atoll-bin", "/atoll/bin"),
                    mount("archive", "/archive")
                ]
            }, {
                "name": "agent",
                "image": "postgres:16",
                "command": ["/atoll/bin/sidecar.sh"],
                "env": [
                    {"name": "PGHOST", "value": "/var/run/postgresql"},
                    {"name": "PGUSER", "value": "postgres"}
                ],
                "volumeMounts": [mount("run", "/var/run/postgresql"), mount("atoll-bin", "/atoll/bin")]
            }]
        }
    });
    (tools, pod)
}

/// Every container log of the pod, for failure messages.
fn logs(node: &NodeSim) -> String {
    ["install", "postgres", "agent"]
        .iter()
        .map(|c| {
            let log = node.logs(NS, "db-0", Some(c)).unwrap_or_default();
            format!("--- {c}:\n{log}")
        })
        .collect()
}

/// Waits up to [`LIMIT`] for `check`, panicking with the pod's logs.
async fn wait_for<T>(what: &str, node: &NodeSim, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            logs(node)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pg_hba.conf lines that are not comments, whitespace collapsed.
fn hba_lines(pgdata: &Path) -> Vec<String> {
    std::fs::read_to_string(pgdata.join("pg_hba.conf"))
        .expect("pg_hba.conf")
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

async fn start(client: &Client, state: &Path) -> (NodeSim, PathBuf) {
    namespace(client, NS).await;
    // Long on purpose: <node>/pods/<uid>/volumes/run/.s.PGSQL.5432 would
    // not fit in a socket address.
    let node_dir = state.join("n".repeat(60));
    let config = NodeSimConfig::new(&node_dir).postgres().image(
        "installer:",
        Program::Binary {
            path: PathBuf::from("/usr/bin/install"),
            args: Vec::new(),
        },
    );
    let node = NodeSim::start(client.clone(), config)
        .await
        .expect("nodesim starts");
    (node, node_dir)
}

#[tokio::test]
async fn a_database_pod_archives_wal_through_an_installed_program_and_serves_a_sidecar_over_its_socket()
 {
    let sim = KubeSim::builder().graceful_pod_deletion(true).build();
    let client = sim.client();
    let state = tempfile::tempdir().expect("tempdir");
    let (node, node_dir) = start(&client, state.path()).await;
    // A host directory the server's user may write, as an admin would make it.
    let archive = state.path().join("archive");
    std::fs::create_dir(&archive).expect("archive dir");
    std::fs::set_permissions(&archive, std::fs::Permissions::from_mode(0o777)).expect("chmod");

    let (tools, pod) = objects(&archive);
    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), NS);
    let pods = Api::<Pod>::namespaced(client.clone(), NS);
    config_maps
        .create(&PostParams::default(), &from_json(tools))
        .await
        .expect("configmap");
    let pod = pods
        .create(&PostParams::default(), &from_json(pod))
        .await
        .expect("pod");
    let uid = pod.metadata.uid.expect("uid");

    // The sidecar ran the installed program as postgres, over the socket.
    let agent = wait_for("the sidecar's WAL switch", &node, || {
        let log = node.logs(NS, "db-0", Some("agent"))?;
        log.contains("switched:").then_some(log)
    })
    .await;
    assert!(agent.contains("user:postgres\n"), "{agent}");
    assert!(agent.contains("socket:true:postgres\n"), "{agent}");
    let segment = agent
        .lines()
        .find_map(|l| l.strip_prefix("switched:"))
        .expect("segment name")
        .to_owned();
    assert_eq!(segment.len(), 24, "{segment}");

    // The archive_command (paths rewritten, the server's env) archived it.
    let archived = archive.join(&segment);
    let size = wait_for("the switched segment in the archive", &node, || {
        std::fs::metadata(&archived)
            .ok()
            .map(|m| m.len())
            .filter(|&n| n == 16 * 1024 * 1024)
    })
    .await;
    assert_eq!(size, 16 * 1024 * 1024);
    assert_eq!(
        std::fs::read_to_string(archive.join("note")).expect("note"),
        "from-the-server-env\n"
    );

    // The socket lives in the pod's own volume, reached through a short link.
    let pod_dir = node_dir.join("pods").join(&uid);
    let socket = pod_dir.join("volumes/run/.s.PGSQL.5432");
    let kind = std::fs::symlink_metadata(&socket)
        .expect("socket")
        .file_type();
    assert!(kind.is_socket(), "{}", socket.display());
    let link = std::env::temp_dir().join(format!("nodesim-{uid}-0"));
    assert_eq!(
        std::fs::read_link(&link).expect("link"),
        pod_dir.join("volumes/run")
    );

    // pg_hba.conf as the stock image has it: trust over the socket only.
    let hba = hba_lines(&pod_dir.join("volumes/data/pgdata"));
    for line in ["local all all trust", "local replication all trust"] {
        assert!(hba.contains(&line.to_owned()), "{hba:#?}");
    }
    assert!(hba.contains(&"host all all all scram-sha-256".to_owned()));
    let host_trust = hba
        .iter()
        .any(|l| l.starts_with("host") && l.ends_with("trust"));
    assert!(!host_trust, "{hba:#?}");

    // Deleting the pod removes its directory and its link.
    pods.delete("db-0", &DeleteParams::default())
        .await
        .expect("deleted");
    wait_for("the pod's link and directory to go", &node, || {
        (std::fs::symlink_metadata(&link).is_err() && !pod_dir.exists()).then_some(())
    })
    .await;
    node.shutdown().await;
}
