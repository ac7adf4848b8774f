//! The real control plane (realkube) starts, judges the Tenant CRD with the
//! real API server's CEL, serves kubectl, runs the real controllers, and
//! stops leaving nothing behind.
//!
//! Skipped, loudly, when the binaries are missing (build them with
//! `scripts/realkube-build`), unless `ATOLL_REALKUBE_REQUIRED` is set, as
//! `scripts/test` does: then a missing build fails the test.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use atoll_crds::{Tenant, tenant_crd};
use atoll_testkit::eventually;
use atoll_testkit::nodesim::process::group_alive;
use atoll_testkit::realkube::{self, RealKube, RealKubeError, RealKubeOptions};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(60);

fn repo_file(path: &str) -> String {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// The message of the CRD's root CEL rule whose expression contains `needle`.
fn rule_message(crd: &CustomResourceDefinition, needle: &str) -> String {
    let rules = crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| s.x_kubernetes_validations.as_ref())
        .expect("the Tenant schema has CEL rules at its root");
    rules
        .iter()
        .find(|r| r.rule.contains(needle))
        .and_then(|r| r.message.clone())
        .unwrap_or_else(|| panic!("no CEL rule with a message containing {needle:?}"))
}

/// Creates a Tenant named `name` and returns the API server's refusal.
async fn refused(tenants: &Api<Tenant>, example: &Tenant, name: &str) -> kube::core::Status {
    let mut tenant = example.clone();
    tenant.metadata.name = Some(name.to_owned());
    match tenants.create(&PostParams::default(), &tenant).await {
        Ok(_) => panic!("the real API server accepted a Tenant named {name:?}"),
        Err(kube::Error::Api(status)) => *status,
        Err(e) => panic!("creating Tenant {name:?}: {e}"),
    }
}

fn kubectl(kube: &RealKube, cache: &Path, args: &[&str]) -> std::process::Output {
    let program = std::env::var("ATOLL_KUBECTL").unwrap_or_else(|_| "kubectl".into());
    std::process::Command::new(program)
        .arg("--kubeconfig")
        .arg(kube.kubeconfig_path())
        .arg("--cache-dir")
        .arg(cache)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("kubectl runs (set ATOLL_KUBECTL or put kubectl on the PATH)")
}

#[tokio::test]
async fn real_control_plane_judges_tenants_and_runs_controllers() {
    let Some(bin) = realkube::binaries_or_skip("realkube smoke test") else {
        return;
    };

    let kube = RealKube::start(RealKubeOptions::default())
        .await
        .unwrap_or_else(|e| panic!("realkube did not start: {e}"));
    println!(
        "realkube: Kubernetes {} (etcd {}) from {}, ready in {:.1} s",
        kube.version(),
        realkube::pinned().etcd,
        bin.display(),
        kube.startup_time().as_secs_f64()
    );
    let client = kube.client();

    // The Tenant CRD, server-side applied as the chart's install would.
    let crd = tenant_crd();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let name = crd.metadata.name.clone().expect("the CRD has a name");
    crds.patch(
        &name,
        &PatchParams::apply("atoll-realkube-test").force(),
        &Patch::Apply(&crd),
    )
    .await
    .expect("the real API server takes the Tenant CRD");
    eventually("the Tenant CRD to be established", TIMEOUT, || {
        let crds = crds.clone();
        let name = name.clone();
        async move {
            let crd = crds.get(&name).await.ok()?;
            crd.status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True")
                .then_some(())
        }
    })
    .await;

    // A valid Tenant is accepted (the first create may race the new
    // resource's discovery, so it is retried until the deadline).
    let example: Tenant =
        serde_norway::from_str(&repo_file("examples/tenant-minimal.yaml")).expect("example Tenant");
    let tenants: Api<Tenant> = Api::all(client.clone());
    eventually(
        "examples/tenant-minimal.yaml to be accepted",
        TIMEOUT,
        || {
            let tenants = tenants.clone();
            let example = example.clone();
            async move {
                match tenants.create(&PostParams::default(), &example).await {
                    Ok(_) => Some(()),
                    Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {
                        (s.code == 409).then_some(())
                    }
                    Err(e) => panic!("the valid example Tenant was refused: {e}"),
                }
            }
        },
    )
    .await;

    // The CRD's CEL rules, evaluated by the real API server.
    let reserved = refused(&tenants, &example, "system").await;
    assert_eq!(reserved.code, 422, "{reserved:?}");
    let reserved_message = rule_message(&crd, "'system'");
    assert!(
        reserved.message.contains(&reserved_message),
        "Tenant `system` refused, but not with the CRD's message: {}",
        reserved.message
    );
    let long_name = "a".repeat(41);
    let too_long = refused(&tenants, &example, &long_name).await;
    assert_eq!(too_long.code, 422, "{too_long:?}");
    let too_long_message = rule_message(&crd, "size(self.metadata.name) <= 40");
    assert!(
        too_long.message.contains(&too_long_message),
        "a 41-character Tenant name refused, but not with the CRD's message: {}",
        too_long.message
    );
    println!("realkube: CEL refused `system` and a 41-character name with the CRD's messages");

    // kubectl reads Tenants from the real API server.
    let cache = tempfile::tempdir().expect("kubectl cache dir");
    let out = kubectl(&kube, cache.path(), &["get", "tenants", "-o", "name"]);
    assert!(
        out.status.success(),
        "kubectl get tenants failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "tenant.atoll.dev/acme"
    );

    // RBAC is on: a user with no binding may not list Tenants.
    let stranger = kube
        .client_as("jane@example.com", &["atoll-testers"])
        .await
        .expect("a client certificate for jane");
    match Api::<Tenant>::all(stranger)
        .list(&ListParams::default())
        .await
    {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("an unbound user listed Tenants: {other:?}"),
    }

    // The real controller manager: a Deployment gets a ReplicaSet, which
    // makes a Pod (admitted by ServiceAccount and PodSecurity).
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "realkube-smoke"}}))
                .expect("namespace"),
        )
        .await
        .expect("namespace created");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "realkube-smoke");
    let deployment: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "atoll-smoke:1"}]}
            }
        }
    }))
    .expect("deployment");
    let created_at = Instant::now();
    let uid = deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment created")
        .metadata
        .uid
        .expect("uid");
    let replica_sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "realkube-smoke");
    let rs = eventually(
        "a ReplicaSet owned by the Deployment (kube-controller-manager)",
        TIMEOUT,
        || {
            let replica_sets = replica_sets.clone();
            let uid = uid.clone();
            async move {
                let list = replica_sets.list(&ListParams::default()).await.ok()?;
                list.items.into_iter().find(|rs| {
                    rs.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == uid)
                })
            }
        },
    )
    .await;
    let rs_uid = rs.metadata.uid.expect("replica set uid");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "realkube-smoke");
    eventually("a Pod owned by the ReplicaSet", TIMEOUT, || {
        let pods = pods.clone();
        let rs_uid = rs_uid.clone();
        async move {
            let list = pods.list(&ListParams::default()).await.ok()?;
            list.items
                .iter()
                .any(|p| {
                    p.metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.uid == rs_uid)
                })
                .then_some(())
        }
    })
    .await;
    println!(
        "realkube: Deployment -> ReplicaSet -> Pod by the real controllers in {} ms",
        created_at.elapsed().as_millis()
    );

    // Stop: no process, no data directory.
    let pids = kube.pids();
    assert_eq!(pids.len(), 4, "{pids:?}");
    let dir = kube.dir().expect("data dir").to_owned();
    assert!(dir.is_dir());
    kube.stop().expect("realkube stops cleanly");
    for (name, pid) in pids {
        assert!(!group_alive(pid), "{name} (pid {pid}) survived stop");
    }
    assert!(!dir.exists(), "{} survived stop", dir.display());
}

#[tokio::test]
async fn missing_binaries_name_the_build_script() {
    let empty = tempfile::tempdir().expect("temp dir");
    let options = RealKubeOptions {
        bin_dir: Some(empty.path().to_owned()),
        ..RealKubeOptions::default()
    };
    let error = RealKube::start(options)
        .await
        .expect_err("no binaries, no control plane")
        .to_string();
    assert!(error.contains("scripts/realkube-build"), "{error}");
    assert!(error.contains("kube-apiserver"), "{error}");
}

#[tokio::test]
async fn a_failed_start_quotes_the_failing_log_and_leaves_nothing() {
    if realkube::binaries_or_skip("realkube failed-start test").is_none() {
        return;
    }
    let options = RealKubeOptions {
        apiserver_args: vec!["--no-such-flag=1".into()],
        ..RealKubeOptions::default()
    };
    let error = RealKube::start(options)
        .await
        .expect_err("kube-apiserver refuses an unknown flag");
    let text = error.to_string();
    assert!(text.contains("kube-apiserver exited"), "{text}");
    assert!(
        text.contains("no-such-flag"),
        "the log tail is quoted: {text}"
    );
    let RealKubeError::Exited { log, .. } = error else {
        panic!("not an exit: {text}")
    };
    let dir = log
        .parent()
        .and_then(Path::parent)
        .expect("the log is in <dir>/logs");
    assert!(!dir.exists(), "{} survived the failed start", dir.display());
}
