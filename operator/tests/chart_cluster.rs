//! The Helm chart installed in a cluster, as `helm install` would install
//! it, on kubesim and on the real control plane (`ATOLL_TEST_CLUSTER`, see
//! `atoll_testkit::cluster`): every rendered object is applied, nodesim runs the
//! operator and identity from the chart's own Deployments (their args, env
//! with fieldRefs, ports, probes, mounted Secrets, the identity PVC and the
//! operator's service-account token), and a Tenant becomes Ready, answers
//! at its URL, is suspended and resumed, and is deleted. kubesim enforces
//! RBAC for the operator's token, so the chart's ClusterRole and Role must
//! allow everything the operator does; the RBAC check then proves the
//! converse: every permission they grant was used. The chart's
//! ValidatingAdmissionPolicy is installed too, and kubesim evaluates it on
//! every write: the operator stays inside its tenant namespaces (a denial
//! would be a 403 like an RBAC refusal). A second Tenant with an External
//! database makes the operator read its admin Secret in the release
//! namespace, the one Secret it may read there.
//!
//! On realkube the real RBAC authorizer and admission chain judge the
//! operator's token instead (nodesim plays only kubelet; the real
//! controllers own the workloads); the request log, and with it the check
//! that every granted permission was used, is kubesim's and runs there
//! only, saying so.
//!
//! Values: the defaults (leader election on, so the Lease Role is exercised
//! too).
//!
//! Needs helm (`ATOLL_HELM`; `scripts/test` installs it and sets it; the
//! test is skipped with a message without it) and the workspace binaries
//! (`cargo test --workspace` or `cargo build --bins` builds them).

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use atoll_testkit::kubesim::RequestRecord;
use atoll_testkit::kubesim::rbac::Policy;
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use atoll_testkit::sandbox::apply_files;
use common::{ClusterKind, RELEASE_NAMESPACE};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(120);
/// The operator's Deployment, named like its ServiceAccount.
const OPERATOR: &str = common::OPERATOR_ACCOUNT;
const IDENTITY: &str = "atoll-identity";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_atoll-operator")).with_file_name(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build --bins` (cargo test --workspace does)",
        path.display()
    );
    path
}

/// Helm's order, except that CRDs go first: nothing may use a kind before
/// its definition exists.
fn install_order(mut docs: Vec<Value>) -> Vec<Value> {
    docs.sort_by_key(|d| d["kind"] != "CustomResourceDefinition");
    docs
}

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    common::eventually(what, LIMIT, check).await
}

/// Pod phases, container states and logs of a namespace, for failures.
async fn describe(client: &Client, node: &NodeSim, namespace: &str) -> String {
    let pods = Api::<Pod>::namespaced(client.clone(), namespace)
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out = String::new();
    for pod in pods {
        let name = pod.name_any();
        let status = serde_json::to_string_pretty(&pod.status).unwrap_or_default();
        let logs = node.logs(namespace, &name, None).unwrap_or_default();
        let tail: Vec<&str> = logs.lines().rev().take(30).collect();
        out.push_str(&format!(
            "--- pod {namespace}/{name}\n{status}\n--- last log lines (newest first)\n{}\n",
            tail.join("\n")
        ));
    }
    out
}

async fn available(client: &Client, namespace: &str, name: &str) -> Option<()> {
    let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .ok()??;
    let status = deployment.status?;
    (status.available_replicas.unwrap_or(0) >= 1).then_some(())
}

/// A plain HTTP/1.1 request; returns the status code and body.
async fn http(
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    body: Option<&Value>,
) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.ok()?;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((status, body))
}

fn condition(tenant: &Value, type_: &str) -> Option<String> {
    tenant["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["status"].as_str())
        .map(str::to_owned)
}

atoll_testkit::on_each_cluster!(the_chart_runs_atoll_with_exactly_its_rbac);

async fn the_chart_runs_atoll_with_exactly_its_rbac(kind: ClusterKind) {
    let Some(docs) = common::render_chart(&[]) else {
        eprintln!(
            "SKIPPED: ATOLL_HELM is not set (scripts/test installs helm and sets it); \
             the chart was not installed in the simulated cluster"
        );
        return;
    };
    let operator_bin = binary("atoll-operator");
    let identity_bin = binary("atoll-identity");
    let instance_bin = binary("atoll-instance");
    let docs = install_order(docs);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    for kind in [
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(
            kinds.contains(&kind),
            "the chart installs a {kind} by default"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");

    // The cluster: kubesim with RBAC for token holders, served on loopback
    // for the processes nodesim runs, or realkube; nodesim maps the chart's
    // images to the workspace binaries (by their last path segment, so any
    // registry or tag in the values matches).
    let cluster = common::start_cluster(kind).await;
    let client = cluster.client();
    let config = NodeSimConfig::new(dir.path().join("node"))
        .postgres()
        .binary("atoll-operator", &operator_bin)
        .binary("atoll-identity", &identity_bin)
        .binary("atoll-instance", &instance_bin)
        .ingress("127.0.0.1:0".parse().expect("addr"));
    let node = cluster
        .start_node(config)
        .await
        .unwrap_or_else(|e| panic!("nodesim on {kind}: {e}"));
    let router = node.ingress_addr().expect("router");

    // `helm install --create-namespace`, then every rendered object.
    let namespace: Namespace =
        serde_json::from_value(json!({"metadata": {"name": RELEASE_NAMESPACE}})).expect("ns");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .expect("release namespace created");
    let manifest = dir.path().join("rendered.yaml");
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_norway::to_string(d).expect("yaml")))
        .collect();
    std::fs::write(&manifest, text).expect("write manifest");
    apply_files(&client, &[manifest])
        .await
        .expect("every rendered object is accepted");

    for deployment in [IDENTITY, OPERATOR] {
        let found = tokio::time::timeout(LIMIT, async {
            loop {
                if available(&client, RELEASE_NAMESPACE, deployment)
                    .await
                    .is_some()
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
        assert!(
            found.is_ok(),
            "Deployment {deployment} did not become Available:\n{}",
            describe(&client, &node, RELEASE_NAMESPACE).await
        );
    }

    // The operator runs with its service account's token and holds the
    // Lease under its pod name (POD_NAME from a fieldRef).
    let operator_pod = Api::<Pod>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .list(&ListParams::default().labels("app.kubernetes.io/name=atoll-operator"))
        .await
        .expect("pods")
        .items
        .into_iter()
        .next()
        .expect("an operator pod");
    let holder = eventually("the operator to hold the leader Lease", || async {
        Api::<Lease>::namespaced(client.clone(), RELEASE_NAMESPACE)
            .get_opt("atoll-operator")
            .await
            .ok()??
            .spec?
            .holder_identity
    })
    .await;
    assert_eq!(holder, operator_pod.name_any());

    // The first admin logs in to identity through its Service, with the
    // password the chart generated (mounted as a file into identity).
    let password = Api::<Secret>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .get("atoll-identity-first-admin")
        .await
        .expect("first-admin secret")
        .data
        .expect("data")["password"]
        .clone();
    let identity_ip = node
        .service_ip(RELEASE_NAMESPACE, IDENTITY)
        .expect("identity Service has an address");
    let login = json!({
        "email": "admin@atoll.example.com",
        "password": String::from_utf8(password.0).expect("utf-8"),
    });
    let (status, body) = http(
        SocketAddr::from((identity_ip, 80)),
        "POST",
        "atoll-identity.atoll-system.svc",
        "/api/v1/login",
        Some(&login),
    )
    .await
    .expect("identity answers");
    assert_eq!(status, 200, "first admin login: {body}");

    // A Tenant becomes Ready and answers at its URL.
    apply_files(&client, &[root().join("examples/tenant-minimal.yaml")])
        .await
        .expect("tenant applied");
    let tenants = Api::<kube::api::DynamicObject>::all_with(
        client.clone(),
        &kube::api::ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("atoll.dev", "v1alpha1", "Tenant"),
            "tenants",
        ),
    );
    let ready = tokio::time::timeout(LIMIT, async {
        loop {
            if let Ok(tenant) = tenants.get("acme").await {
                let tenant = serde_json::to_value(&tenant).expect("json");
                if condition(&tenant, "Ready").as_deref() == Some("True") {
                    return tenant;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let Ok(tenant) = ready else {
        let tenant = tenants
            .get("acme")
            .await
            .map(|t| serde_json::to_value(t).ok());
        panic!(
            "Tenant acme did not become Ready: {tenant:#?}\n{}\n{}",
            describe(&client, &node, RELEASE_NAMESPACE).await,
            describe(&client, &node, "atoll-acme").await
        );
    };
    assert_eq!(
        condition(&tenant, "IdentitySynced").as_deref(),
        Some("True"),
        "the operator registers the tenant with identity using the chart's service token"
    );
    assert_eq!(tenant["status"]["url"], "http://acme.atoll.example.com");
    let (status, _) = eventually("acme's URL to answer through the router", || async {
        http(router, "GET", "acme.atoll.example.com", "/healthz", None)
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
    assert_eq!(status, 200);
    let (status, _) = http(
        router,
        "GET",
        "acme.atoll.example.com",
        "/api/v1/flows",
        None,
    )
    .await
    .expect("answer");
    assert_eq!(status, 401, "the instance wants a token");

    // Suspended and resumed: the instance and database scale to zero and
    // back, and the Ready event repeats (the Recorder patches its series).
    for (suspended, phase) in [(true, "Suspended"), (false, "Ready")] {
        tenants
            .patch(
                "acme",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"suspended": suspended}})),
            )
            .await
            .expect("suspended set");
        eventually(&format!("acme to be {phase}"), || async {
            let tenant = serde_json::to_value(tenants.get("acme").await.ok()?).ok()?;
            (tenant["status"]["phase"] == phase).then_some(())
        })
        .await;
    }
    eventually("acme's URL to answer again", || async {
        http(router, "GET", "acme.atoll.example.com", "/healthz", None)
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;

    // Deletion with policy Delete: the operator deregisters the tenant and
    // deletes its namespace (the path that needs `delete namespaces`).
    tenants
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"deletionPolicy": "Delete"}})),
        )
        .await
        .expect("deletion policy set");
    tenants
        .delete("acme", &DeleteParams::default())
        .await
        .expect("tenant deleted");
    let namespaces = Api::<Namespace>::all(client.clone());
    eventually("the tenant and its namespace to be gone", || async {
        let tenant_gone = matches!(tenants.get_opt("acme").await, Ok(None));
        let namespace_gone = matches!(namespaces.get_opt("atoll-acme").await, Ok(None));
        (tenant_gone && namespace_gone).then_some(())
    })
    .await;

    // An External database: the operator reads the admin Secret in its own
    // namespace (through the chart's Role); the server is unreachable, so
    // the Tenant stays unprovisioned and is deleted (Retain) as such.
    let admin_secret: Secret = serde_json::from_value(json!({
        "metadata": {
            "name": "shared-postgres-admin",
            "namespace": RELEASE_NAMESPACE,
            "labels": {"atoll.dev/database-admin": "true"},
        },
        "stringData": {"url": "postgres://admin:unused@127.0.0.1:1/postgres"},
    }))
    .expect("secret");
    Api::<Secret>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .create(&PostParams::default(), &admin_secret)
        .await
        .expect("admin secret created");
    apply_files(&client, &[root().join("examples/tenant-external.yaml")])
        .await
        .expect("external tenant applied");
    match cluster.sim() {
        Some(sim) => {
            let log = sim.request_log();
            let operator_user = common::operator_user();
            eventually("the operator to read the External admin Secret", || async {
                log.records()
                    .iter()
                    .any(|r| {
                        r.user.as_deref() == Some(operator_user.name.as_str())
                            && r.resource == "secrets"
                            && r.namespace == RELEASE_NAMESPACE
                            && r.name == "shared-postgres-admin"
                            && r.code == 200
                    })
                    .then_some(())
            })
            .await;
        }
        None => {
            // Read: the operator tries the server the Secret names (and
            // fails, it is unreachable), not a refusal to read it.
            let message = eventually("initech's DatabaseReady condition", || async {
                let tenant = serde_json::to_value(tenants.get("initech").await.ok()?).ok()?;
                let condition = tenant["status"]["conditions"]
                    .as_array()?
                    .iter()
                    .find(|c| c["type"] == "DatabaseReady" && c["status"] == "False")?
                    .clone();
                Some(condition["message"].as_str().unwrap_or_default().to_owned())
            })
            .await;
            assert!(
                !message.contains("forbidden") && !message.contains("not found"),
                "the operator could not read the admin Secret: {message}"
            );
            println!("{}: External database: {message}", cluster.describe());
        }
    }
    tenants
        .delete("initech", &DeleteParams::default())
        .await
        .expect("external tenant deleted");
    eventually("the external tenant to be gone", || async {
        matches!(tenants.get_opt("initech").await, Ok(None)).then_some(())
    })
    .await;

    // Stop the operator the way a rollout does (it releases the Lease).
    Api::<Deployment>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .patch(
            OPERATOR,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 0}})),
        )
        .await
        .expect("operator scaled to zero");
    eventually("the operator to release the Lease", || async {
        let lease = Api::<Lease>::namespaced(client.clone(), RELEASE_NAMESPACE)
            .get("atoll-operator")
            .await
            .ok()?;
        lease
            .spec
            .is_some_and(|s| s.holder_identity.is_none())
            .then_some(())
    })
    .await;
    node.shutdown().await;

    match cluster.sim() {
        Some(sim) => assert_rbac_is_exact(&docs, &sim.request_log().records()),
        None => println!(
            "{}: the operator ran with its service account's token under the real RBAC authorizer and the chart's admission policy; \
             kubesim only (its request log): every permission granted was used",
            cluster.describe()
        ),
    }
    cluster.stop().await.expect("the cluster stops");
}

/// Every request the operator made was allowed by the chart's roles, and
/// every permission they grant was used.
fn assert_rbac_is_exact(docs: &[Value], records: &[RequestRecord]) {
    let policy = Policy::from_objects(docs).expect("the chart's RBAC objects read");
    let operator = common::operator_user();
    let made: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| r.user.as_deref() == Some(operator.name.as_str()))
        .collect();
    assert!(
        made.len() > 10,
        "the operator's requests carry its service-account token ({} found)",
        made.len()
    );
    // A tenant's instance holds a token too when its tasks run as pods
    // (spec.tasks.runner Kubernetes): it may only manage pods and read their
    // logs, in its own namespace.
    let is_instance = |r: &RequestRecord| {
        r.namespace.starts_with("atoll-")
            && r.user.as_deref()
                == Some(format!("system:serviceaccount:{}:instance", r.namespace).as_str())
    };
    // The wake gate (#20) holds one too: it only reads Tenants and
    // instance pods and patches Tenants (their wake annotations, fenced by
    // the chart's admission policy), never refused.
    let gate_user = format!(
        "system:serviceaccount:{}:atoll-wake-gate",
        common::RELEASE_NAMESPACE
    );
    let is_gate = |r: &RequestRecord| r.user.as_deref() == Some(gate_user.as_str());
    let gate_beyond: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| is_gate(r))
        .filter(|r| {
            let verb = r.verb.rbac_verb();
            let reads = matches!(verb, "list" | "watch");
            let allowed =
                (r.group == "atoll.dev" && r.resource == "tenants" && (reads || verb == "patch"))
                    || (r.group.is_empty() && r.resource == "pods" && reads);
            !allowed || r.code == 403
        })
        .collect();
    assert!(
        gate_beyond.is_empty(),
        "the wake gate asked for more than Tenants and pods: {gate_beyond:#?}"
    );
    let others: Vec<&str> = records
        .iter()
        .filter(|r| !is_instance(r) && !is_gate(r))
        .filter_map(|r| r.user.as_deref())
        .filter(|u| *u != operator.name)
        .collect();
    assert!(
        others.is_empty(),
        "only the operator, the wake gate and instances hold a token (identity's pod mounts none): {others:?}"
    );
    let beyond_pods: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| is_instance(r))
        .filter(|r| {
            !(r.group.is_empty()
                && r.resource == "pods"
                && (r.subresource.is_empty() || r.subresource == "log")
                && r.code != 403)
        })
        .collect();
    assert!(
        beyond_pods.is_empty(),
        "an instance asked for more than its pods and their logs: {beyond_pods:#?}"
    );
    let refused: Vec<&&RequestRecord> = made.iter().filter(|r| r.code == 403).collect();
    assert!(
        refused.is_empty(),
        "the API server refused the operator: {refused:#?}"
    );
    let coverage = policy.coverage(&operator, records);
    assert!(
        coverage.denied.is_empty(),
        "requests the chart's roles do not allow: {:#?}",
        coverage.denied
    );
    // Pruning runs only when a Tenant gives up a Dedicated database for an
    // External one (operator/tests/lifecycle.rs switches modes on a real
    // shared server); this story never does, so its verbs go unused here.
    const PRUNING: &[(&str, &str)] = &[
        ("get", "serviceaccounts"),
        ("delete", "serviceaccounts"),
        ("get", "services"),
        ("delete", "services"),
        ("get", "configmaps"),
        ("delete", "configmaps"),
        ("get", "networkpolicies"),
        ("delete", "networkpolicies"),
        ("delete", "statefulsets"),
        // And when a Tenant's tasks stop running as pods (its task-pods
        // RoleBinding goes; operator/tests/tasks.rs).
        ("get", "rolebindings"),
        ("delete", "rolebindings"),
        // Not a request: the API server checks `bind` when the operator
        // writes the RoleBinding to the task-pods ClusterRole.
        ("bind", "clusterroles"),
        // The backup Secrets (#19) are written only for a Tenant with
        // spec.backup and removed when it turns backups off
        // (operator/tests/backup.rs); this story's Tenant has none, so
        // only their `get` (the pruning check) is used here.
        ("create", "secrets"),
        ("patch", "secrets"),
        ("delete", "secrets"),
    ];
    // Backups (#19) run only for a Tenant with spec.backup, which needs an
    // object store this story has none of: operator/tests/backups.rs takes
    // them (scheduled and on-demand TenantBackups, retention, the agent at
    // the database pod's IP). Here the TenantBackup controllers only list
    // and watch.
    const BACKUPS: &[(&str, &str)] = &[
        ("create", "tenantbackups"),
        ("patch", "tenantbackups"),
        ("delete", "tenantbackups"),
        ("patch", "tenantbackups/status"),
        ("get", "pods"),
        // An External database's dump and restore-dump pods
        // (operator/tests/dumps.rs): this story backs up nothing.
        ("create", "pods"),
        ("delete", "pods"),
        ("get", "pods/log"),
        // The restore-object-store Secret of a restored Tenant
        // (operator/tests/restore.rs): this story restores none.
        ("get", "secrets"),
    ];
    let unused: Vec<String> = coverage
        .unused
        .iter()
        .filter(|g| {
            !PRUNING
                .iter()
                .any(|(verb, resource)| g.verb == *verb && g.resource == *resource)
        })
        .filter(|g| {
            !BACKUPS
                .iter()
                .any(|(verb, resource)| g.verb == *verb && g.resource == *resource)
        })
        .map(ToString::to_string)
        .collect();
    assert!(
        unused.is_empty(),
        "permissions the chart grants but the operator never used:\n  {}",
        unused.join("\n  ")
    );
}
