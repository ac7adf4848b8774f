//! Backups of a Dedicated Tenant with real processes (#19): the API server
//! (kubesim, or the real control plane), nodesim running PostgreSQL with
//! `atoll-backup` as its archive_command and the backup-agent sidecar, an
//! S3 server (s3s-fs), and the operator in this test. A Tenant with
//! `spec.backup` gets its first base backup at once (a scheduled
//! TenantBackup that completes with its size and objects), its status
//! shows the recoverability window, BackupReady and ContinuousArchiving
//! turn True, and an on-demand TenantBackup completes too.
//!
//! Needs the workspace binaries (`cargo build --workspace --bins`) and the
//! S3 server (see `atoll_testkit::s3`).

mod common;

use std::time::Duration;

use atoll_crds::{BackupPhase, Tenant, TenantBackup, conditions, tenant_crd};
use atoll_operator::backup::{SCHEDULED_ANNOTATION, TENANT_LABEL, access};
use atoll_operator::cli::{Cli, Command};
use atoll_operator::run::{RunArgs, run_with_client};
use atoll_testkit::nodesim::{NodeSimConfig, workspace_binary};
use atoll_testkit::s3::TestS3;
use clap::Parser;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::json;

/// PostgreSQL's first start runs initdb on a busy 2-core machine, then a
/// base backup.
const TIMEOUT: Duration = Duration::from_secs(180);
const OPERATOR_NAMESPACE: &str = "atoll-system";
const STORE_SECRET: &str = "backup-store";

fn run_args(s3: &TestS3) -> RunArgs {
    let cli = Cli::parse_from([
        "atoll-operator",
        "run",
        "--metrics-addr",
        "127.0.0.1:0",
        "--base-domain",
        "atoll.localhost",
        "--backup-image",
        "atoll/atoll-backup:test",
        "--backup-endpoint",
        &s3.endpoint,
        "--backup-bucket",
        &s3.bucket,
        "--backup-path-style",
        "--backup-credentials-secret",
        STORE_SECRET,
    ]);
    match cli.command {
        Command::Run(args) => *args,
        other => panic!("parsed {other:?}"),
    }
}

/// The operator's namespace with the platform store's credentials.
async fn store_secret(client: &Client, s3: &TestS3) {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace = serde_json::from_value(json!({"metadata": {"name": OPERATOR_NAMESPACE}}))
        .expect("namespace");
    namespaces
        .create(&PostParams::default(), &namespace)
        .await
        .expect("operator namespace");
    let mut secret = Secret::default();
    secret.metadata.name = Some(STORE_SECRET.to_owned());
    secret.data = Some(
        [
            ("accessKeyId", &s3.access_key_id),
            ("secretAccessKey", &s3.secret_access_key),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), ByteString(v.as_bytes().to_vec())))
        .collect(),
    );
    Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
        .create(&PostParams::default(), &secret)
        .await
        .expect("store Secret");
}

async fn tenant(client: &Client, name: &str) -> Option<Tenant> {
    Api::<Tenant>::all(client.clone())
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// Waits for a condition of the Tenant; returns the Tenant.
async fn wait_condition(client: &Client, name: &str, type_: &str, status: &str) -> Tenant {
    let what = format!("Tenant {name} to have {type_}={status}");
    common::eventually(&what, TIMEOUT, || async {
        let tenant = tenant(client, name).await?;
        let condition = conditions::get(&tenant.status.as_ref()?.conditions, type_)?;
        (condition.status == status).then_some(tenant)
    })
    .await
}

/// Waits until the TenantBackup `name` is Completed (fails fast on Failed).
async fn wait_completed(client: &Client, name: &str) -> TenantBackup {
    let api: Api<TenantBackup> = Api::all(client.clone());
    common::eventually(
        &format!("TenantBackup {name} to complete"),
        TIMEOUT,
        || async {
            let backup = api.get_opt(name).await.ok().flatten()?;
            let status = backup.status.as_ref()?;
            assert_ne!(
                status.phase,
                Some(BackupPhase::Failed),
                "TenantBackup {name} failed: {:?}",
                status.message
            );
            (status.phase == Some(BackupPhase::Completed)).then_some(backup)
        },
    )
    .await
}

fn assert_complete(backup: &TenantBackup, uid: &str, s3: &TestS3) {
    let status = backup.status.as_ref().expect("status");
    assert_eq!(status.tenant_uid.as_deref(), Some(uid));
    assert!(status.size.unwrap_or(0) > 0, "{status:?}");
    assert!(status.started_at.is_some() && status.stopped_at.is_some());
    assert!(status.begin_wal.is_some() && status.end_wal.is_some());
    let id = status.backup_id.as_deref().expect("backup id");
    let json = format!("tenants/{uid}/base/{id}/backup.json");
    assert!(status.objects.contains(&json), "{:?}", status.objects);
    for key in &status.objects {
        assert!(s3.object(key).is_some(), "{key} is in the store");
    }
}

async fn a_tenant_with_backups_gets_them(kind: common::ClusterKind) {
    let Some(s3) = TestS3::start("a_tenant_with_backups_gets_them") else {
        return;
    };
    let agent_binary = workspace_binary("atoll-backup");
    assert!(
        agent_binary.is_file(),
        "{} is not built: run `cargo build --workspace --bins`",
        agent_binary.display()
    );
    let cluster = common::start_cluster(kind).await;
    let client = cluster.client();
    common::install_crd(&client, &tenant_crd()).await;
    store_secret(&client, &s3).await;
    let state = tempfile::tempdir().expect("state dir");
    let config = NodeSimConfig::new(state.path().join("node"))
        .postgres()
        .binary("atoll/atoll-backup", agent_binary)
        .binary("atoll-instance", "/bin/sleep");
    let node = cluster
        .start_node(config)
        .await
        .unwrap_or_else(|e| panic!("nodesim on {kind}: {e}"));
    let operator = {
        let (client, args) = (client.clone(), run_args(&s3));
        tokio::spawn(async move {
            if let Err(error) = run_with_client(args, client).await {
                panic!("operator stopped: {error}");
            }
        })
    };

    let name = "bk";
    let spec = json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"instance": {"replicas": 0}, "backup": {"schedule": "0 3 * * *"}},
    });
    Api::<Tenant>::all(client.clone())
        .patch(
            name,
            &PatchParams::apply("backups-test").force(),
            &Patch::Apply(&spec),
        )
        .await
        .expect("Tenant applied");

    // The first base backup is scheduled at once and completes.
    let backups: Api<TenantBackup> = Api::all(client.clone());
    let first = common::eventually("a scheduled TenantBackup", TIMEOUT, || async {
        let params = ListParams::default().labels(&format!("{TENANT_LABEL}={name}"));
        backups.list(&params).await.ok()?.items.into_iter().next()
    })
    .await;
    assert_eq!(
        first
            .annotations()
            .get(SCHEDULED_ANNOTATION)
            .map(String::as_str),
        Some("true")
    );
    let first = wait_completed(&client, &first.name_any()).await;
    let uid = tenant(&client, name)
        .await
        .and_then(|t| t.metadata.uid)
        .expect("uid");
    assert_complete(&first, &uid, &s3);

    // The Tenant's status shows it.
    let ready = wait_condition(&client, name, conditions::types::BACKUP_READY, "True").await;
    let status = ready.status.and_then(|s| s.backup).expect("status.backup");
    assert!(status.first_recoverability_point.is_some(), "{status:?}");
    assert!(status.last_successful_backup.is_some(), "{status:?}");
    assert!(s3.object(&format!("tenants/{uid}/tenant.json")).is_some());
    assert!(s3.object(&format!("names/{name}/{uid}")).is_some());

    // A WAL switch is archived and seen.
    let agent = access::agent(&client, &reqwest::Client::new(), "atoll-bk")
        .await
        .expect("agent address")
        .expect("the database pod has an IP");
    let switched = agent.switch_wal().await.expect("switch-wal");
    let archiving = wait_condition(
        &client,
        name,
        conditions::types::CONTINUOUS_ARCHIVING,
        "True",
    )
    .await;
    let wal = archiving
        .status
        .and_then(|s| s.backup)
        .and_then(|b| b.last_archived_wal);
    assert!(
        wal.is_some_and(|w| w >= switched.wal),
        "archived up to the switch"
    );

    // An on-demand TenantBackup completes too.
    let manual: TenantBackup = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "TenantBackup",
        "metadata": {"name": "bk-manual"}, "spec": {"tenant": name},
    }))
    .expect("TenantBackup");
    backups
        .create(&PostParams::default(), &manual)
        .await
        .expect("created");
    let manual = wait_completed(&client, "bk-manual").await;
    assert_complete(&manual, &uid, &s3);
    assert_eq!(
        manual.labels().get(TENANT_LABEL).map(String::as_str),
        Some(name)
    );
    let base = s3.list_keys(&format!("tenants/{uid}/base/"));
    assert_eq!(
        base.iter().filter(|k| k.ends_with("/backup.json")).count(),
        2,
        "{base:?}"
    );

    operator.abort();
    node.shutdown().await;
    cluster
        .stop()
        .await
        .expect("the cluster stops leaving nothing");
}

atoll_testkit::on_each_cluster!(a_tenant_with_backups_gets_them);
