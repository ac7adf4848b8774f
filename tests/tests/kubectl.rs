//! kubectl against kubesim's HTTP listener: server-side apply of the Tenant
//! CRD and a Tenant, `get -o yaml`, `get -w`, selectors, `wait`, `delete`
//! held by a finalizer, a Tenant that breaks the schema, and Events
//! recorded through `events.k8s.io/v1` as `kubectl get events` and
//! `kubectl describe` show them.
//!
//! kubectl is `$ATOLL_KUBECTL`, else `kubectl` on the PATH (the test
//! command installs it where missing).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use atoll_crds::{Tenant, tenant_crd};
use std::sync::Arc;

use atoll_testkit::kubesim::{Bytes, KubeSim, PodLogRequest, PodLogs, Server, Verb};
use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

const TIMEOUT: Duration = Duration::from_secs(30);

struct Cluster {
    sim: KubeSim,
    _server: Server,
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
}

impl Cluster {
    async fn start() -> Self {
        let sim = KubeSim::new();
        let server = sim
            .serve("127.0.0.1:0".parse().expect("loopback"))
            .await
            .expect("listening");
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        server
            .write_kubeconfig(&kubeconfig)
            .expect("kubeconfig written");
        Self {
            sim,
            _server: server,
            dir,
            kubeconfig,
        }
    }

    fn kubectl(&self) -> Command {
        let program = std::env::var("ATOLL_KUBECTL").unwrap_or_else(|_| "kubectl".into());
        let mut cmd = Command::new(program);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            // kubectl keeps a discovery cache under $HOME; keep it in the test's dir.
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// Runs kubectl to completion: (success, stdout, stderr).
    async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::time::timeout(TIMEOUT, self.kubectl().args(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap_or_else(|e| panic!("kubectl could not start ({e}); set ATOLL_KUBECTL"));
        (
            output.status.success(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    }

    async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\n{out}\n{err}");
        out
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("file written");
        path
    }
}

fn repo_file(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

async fn with_tenant_crd(cluster: &Cluster) {
    let crd = serde_norway::to_string(&tenant_crd()).expect("CRD as YAML");
    let path = cluster.write("crd.yaml", &crd);
    let out = cluster
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            path.to_str().expect("utf-8 path"),
        ])
        .await;
    assert!(
        out.contains("tenants.atoll.dev serverside-applied"),
        "{out}"
    );
    let crds = cluster.ok(&["get", "crds"]).await;
    assert!(crds.contains("tenants.atoll.dev"), "{crds}");
}

async fn apply_minimal_tenant(cluster: &Cluster) {
    let example = repo_file("examples/tenant-minimal.yaml");
    let out = cluster
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            example.to_str().expect("utf-8 path"),
        ])
        .await;
    assert!(
        out.contains("tenant.atoll.dev/acme serverside-applied"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_get_and_selectors() {
    let cluster = Cluster::start().await;
    with_tenant_crd(&cluster).await;
    apply_minimal_tenant(&cluster).await;

    let yaml = cluster.ok(&["get", "tenant", "acme", "-o", "yaml"]).await;
    let tenant: Tenant = serde_norway::from_str(&yaml).expect("a Tenant");
    assert_eq!(tenant.spec.members[0].user, "alice@acme.com");
    assert_eq!(tenant.spec.instance.replicas, 1, "schema defaults applied");
    assert_eq!(cluster.sim.request_log().count(Verb::Apply), 2);

    // Applying the same file again changes nothing.
    let before = cluster.sim.request_log().write_count();
    apply_minimal_tenant(&cluster).await;
    assert_eq!(
        cluster.sim.request_log().write_count(),
        before,
        "re-apply wrote"
    );

    let table = cluster.ok(&["get", "tenants"]).await;
    assert!(
        table.starts_with("NAME") && table.contains("PHASE") && table.contains("acme"),
        "{table}"
    );
    cluster.ok(&["label", "tenant", "acme", "tier=gold"]).await;
    for (selector, expect_acme) in [
        ("tier=gold", true),
        ("tier!=gold", false),
        ("tier in (gold,silver)", true),
        ("tier notin (gold)", false),
        ("tier", true),
        ("!tier", false),
    ] {
        let (ok, out, err) = cluster
            .run(&["get", "tenants", "-l", selector, "-o", "name"])
            .await;
        assert!(ok, "{selector}: {err}");
        assert_eq!(
            out.contains("tenant.atoll.dev/acme"),
            expect_acme,
            "{selector}: {out}"
        );
    }
    let by_field = cluster
        .ok(&[
            "get",
            "tenants",
            "--field-selector",
            "metadata.name=acme",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(by_field.trim(), "tenant.atoll.dev/acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_that_breaks_the_schema_is_refused_naming_the_field() {
    let cluster = Cluster::start().await;
    with_tenant_crd(&cluster).await;
    let bad = cluster.write(
        "bad.yaml",
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: bad}\nspec:\n  instance: {replicas: 99}\n  members: [{user: alice@acme.com, role: Boss}]\n",
    );
    let (ok, _, err) = cluster
        .run(&[
            "apply",
            "--server-side",
            "-f",
            bad.to_str().expect("utf-8 path"),
        ])
        .await;
    assert!(!ok);
    assert!(err.contains("The Tenant \"bad\" is invalid"), "{err}");
    assert!(
        err.contains("spec.instance.replicas: Invalid value: 99")
            && err.contains("less than or equal to 10"),
        "{err}"
    );
    assert!(
        err.contains("spec.members[0].role: Unsupported value: \"Boss\""),
        "{err}"
    );

    // A misspelt field is refused (kubectl asks for strict field validation).
    let typo = cluster.write(
        "typo.yaml",
        "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {name: typo}\nspec:\n  instance: {replica: 2}\n",
    );
    let (ok, _, err) = cluster
        .run(&[
            "apply",
            "--server-side",
            "-f",
            typo.to_str().expect("utf-8 path"),
        ])
        .await;
    assert!(!ok);
    assert!(
        err.contains("unknown field \"spec.instance.replica\""),
        "{err}"
    );

    // The CRD's CEL rules run too.
    let long = "a".repeat(41);
    let too_long = cluster.write(
        "long.yaml",
        &format!(
            "apiVersion: atoll.dev/v1alpha1\nkind: Tenant\nmetadata: {{name: {long}}}\nspec: {{}}\n"
        ),
    );
    let (ok, _, err) = cluster
        .run(&[
            "apply",
            "--server-side",
            "-f",
            too_long.to_str().expect("utf-8 path"),
        ])
        .await;
    assert!(!ok);
    assert!(
        err.contains("metadata.name must be at most 40 characters"),
        "{err}"
    );

    let (_, out, _) = cluster.run(&["get", "tenants", "-o", "name"]).await;
    assert!(out.trim().is_empty(), "nothing was stored: {out}");
}

struct Greeting;

impl PodLogs for Greeting {
    fn logs(&self, request: PodLogRequest) -> Result<BoxStream<'static, Bytes>, String> {
        let line = format!(
            "hello from {}/{} container {}\n",
            request.namespace,
            request.pod,
            request.container.unwrap_or_default()
        );
        Ok(futures::stream::iter([Bytes::from(line)]).boxed())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_scale_and_discovery_of_built_in_kinds() {
    let cluster = Cluster::start().await;
    cluster.sim.set_pod_logs(Arc::new(Greeting));
    let pod = cluster.write(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web}\nspec:\n  containers: [{name: app, image: demo}]\n",
    );
    cluster
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            pod.to_str().expect("utf-8 path"),
        ])
        .await;
    let logs = cluster.ok(&["logs", "web"]).await;
    assert_eq!(logs, "hello from default/web container app\n");

    let resources = cluster.ok(&["api-resources", "-o", "name"]).await;
    for name in [
        "namespaces",
        "secrets",
        "configmaps",
        "services",
        "serviceaccounts",
        "pods",
        "events",
        "resourcequotas",
        "limitranges",
        "persistentvolumeclaims",
        "deployments.apps",
        "statefulsets.apps",
        "events.events.k8s.io",
        "ingresses.networking.k8s.io",
        "networkpolicies.networking.k8s.io",
        "endpointslices.discovery.k8s.io",
        "roles.rbac.authorization.k8s.io",
        "rolebindings.rbac.authorization.k8s.io",
        "clusterroles.rbac.authorization.k8s.io",
        "clusterrolebindings.rbac.authorization.k8s.io",
        "leases.coordination.k8s.io",
        "customresourcedefinitions.apiextensions.k8s.io",
    ] {
        assert!(
            resources.lines().any(|l| l == name),
            "{name} missing from:\n{resources}"
        );
    }
    let deployment = cluster.write(
        "deployment.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: app, image: demo}]\n",
    );
    cluster
        .ok(&[
            "apply",
            "--server-side",
            "-f",
            deployment.to_str().expect("utf-8 path"),
        ])
        .await;
    cluster
        .ok(&["scale", "deployment", "web", "--replicas=3"])
        .await;
    let replicas = cluster
        .ok(&[
            "get",
            "deployment",
            "web",
            "-o",
            "jsonpath={.spec.replicas}",
        ])
        .await;
    assert_eq!(replicas, "3");
    let version = cluster.ok(&["version", "-o", "json"]).await;
    assert!(version.contains("\"serverVersion\""), "{version}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_wait_and_delete_held_by_a_finalizer() {
    let cluster = Cluster::start().await;
    with_tenant_crd(&cluster).await;
    apply_minimal_tenant(&cluster).await;
    let tenants: Api<Tenant> = Api::all(cluster.sim.client());

    // `get -w` prints the update.
    let mut watch = cluster
        .kubectl()
        .args(["get", "tenants", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl get -w");
    let mut lines = BufReader::new(watch.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(TIMEOUT, lines.next_line())
        .await
        .expect("header in time")
        .expect("readable");
    assert!(first.is_some_and(|l| l.starts_with("NAME")));
    // `wait` blocks until the condition appears.
    let waiting = cluster
        .kubectl()
        .args([
            "wait",
            "--for=condition=Ready",
            "tenant/acme",
            "--timeout=25s",
        ])
        .output();
    let waiting = tokio::spawn(waiting);
    let status = json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "status": {"phase": "Ready", "conditions": [{
            "type": "Ready", "status": "True", "reason": "Provisioned", "message": "ready",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1
        }]}
    });
    tenants
        .patch_status(
            "acme",
            &PatchParams::apply("test").force(),
            &Patch::Apply(status),
        )
        .await
        .expect("status applied");
    let saw_update = tokio::time::timeout(TIMEOUT, async {
        while let Some(line) = lines.next_line().await.expect("readable") {
            if line.contains("acme") && line.contains("Ready") && line.contains("True") {
                return true;
            }
        }
        false
    })
    .await
    .expect("the update within the timeout");
    assert!(saw_update);
    watch.kill().await.expect("kubectl get -w stopped");
    let waited = waiting.await.expect("joined").expect("kubectl wait ran");
    assert!(
        waited.status.success(),
        "{}",
        String::from_utf8_lossy(&waited.stderr)
    );
    assert!(String::from_utf8_lossy(&waited.stdout).contains("condition met"));

    // `delete` waits while a finalizer holds the object.
    cluster
        .ok(&[
            "patch",
            "tenant",
            "acme",
            "--type=merge",
            "-p",
            r#"{"metadata":{"finalizers":["atoll.dev/cleanup"]}}"#,
        ])
        .await;
    let mut delete = cluster
        .kubectl()
        .args(["delete", "tenant", "acme", "--timeout=25s"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("kubectl delete");
    let marked = async {
        loop {
            let t = tenants.get("acme").await.expect("still there");
            if t.metadata.deletion_timestamp.is_some() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(TIMEOUT, marked)
        .await
        .expect("deletion requested");
    assert!(
        delete.try_wait().expect("status").is_none(),
        "delete waits for the finalizer"
    );
    tenants
        .patch(
            "acme",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("finalizer removed");
    let done = tokio::time::timeout(TIMEOUT, delete.wait())
        .await
        .expect("delete finished once the finalizer went")
        .expect("exit status");
    assert!(done.success());
    assert!(tenants.get_opt("acme").await.expect("read").is_none());
}

/// The operator records Events through `events.k8s.io/v1`; kubectl reads
/// them as core `v1` Events: one resource, as the API server serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_recorded_through_events_k8s_io_show_in_get_events_and_describe() {
    use k8s_openapi::api::core::v1::ObjectReference;
    use k8s_openapi::api::events::v1::Event;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};

    let cluster = Cluster::start().await;
    with_tenant_crd(&cluster).await;
    apply_minimal_tenant(&cluster).await;
    let tenant = Api::<Tenant>::all(cluster.sim.client())
        .get("acme")
        .await
        .expect("tenant");
    let event = Event {
        metadata: ObjectMeta {
            generate_name: Some("acme.".into()),
            ..ObjectMeta::default()
        },
        event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
        action: Some("Reconcile".into()),
        reason: Some("Provisioned".into()),
        type_: Some("Normal".into()),
        note: Some("instance database created".into()),
        reporting_controller: Some("atoll.dev/operator".into()),
        reporting_instance: Some("atoll-operator-0".into()),
        regarding: Some(ObjectReference {
            api_version: Some("atoll.dev/v1alpha1".into()),
            kind: Some("Tenant".into()),
            name: tenant.metadata.name.clone(),
            uid: tenant.metadata.uid.clone(),
            ..ObjectReference::default()
        }),
        ..Event::default()
    };
    Api::<Event>::namespaced(cluster.sim.client(), "default")
        .create(&Default::default(), &event)
        .await
        .expect("event recorded");

    let events = cluster.ok(&["get", "events"]).await;
    assert!(events.contains("instance database created"), "{events}");
    let described = cluster.ok(&["describe", "tenant", "acme"]).await;
    let (_, listed) = described
        .split_once("Events:")
        .unwrap_or_else(|| panic!("no events in:\n{described}"));
    assert!(listed.contains("Provisioned"), "{described}");
    assert!(listed.contains("instance database created"), "{described}");
    let as_events_k8s_io = cluster
        .ok(&[
            "get",
            "events.events.k8s.io",
            "-o",
            "jsonpath={.items[0].note}",
        ])
        .await;
    assert_eq!(as_events_k8s_io, "instance database created");
}
