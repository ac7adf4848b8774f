//! Backups and restores of External databases (#19, §9) with real
//! processes: the API server (kubesim, or the real control plane with
//! `ATOLL_TEST_CLUSTER`), the operator in this test as the chart's service
//! account, nodesim running the dump and restore-dump pods (PostgreSQL 15's
//! tools, the workspace's `atoll-backup` as the backup image) and the
//! instance, s3s-fs as the platform's object store, and a throwaway
//! PostgreSQL as the shared server.
//!
//! An External Tenant with `spec.backup` gets its first dump at once (a
//! scheduled TenantBackup Completed, `dump.json` in the store,
//! BackupReady=True saying the RPO is the schedule, no ContinuousArchiving);
//! rows written with its own credentials are in an on-demand dump; a new
//! External Tenant restored from that dump has them, in its own database,
//! under its own role, and its instance starts. A restore from an External
//! Tenant with no dumps says so and never starts an instance.
//!
//! Needs the workspace binaries (`cargo build --workspace --bins`) and the
//! S3 server (see `atoll_testkit::s3`).

mod common;

use common::backup::{
    CREDENTIALS_SECRET, condition, create_tenant, eventually, tenant_status, walk,
};

use atoll_crds::{BackupMethod, BackupPhase, TenantBackup, tenant_crd};
use atoll_operator::backup::TENANT_LABEL;
use atoll_testkit::nodesim::NodeSim;
use atoll_testkit::pg::TestPostgres;
use atoll_testkit::s3::TestS3;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use sqlx::ConnectOptions;

const ADMIN_SECRET: &str = "shared-postgres-admin";

/// The platform store's credentials and the shared server's admin URL, in
/// the operator's namespace.
async fn create_secrets(client: &Client, s3: &TestS3, shared: &TestPostgres) {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), common::RELEASE_NAMESPACE);
    for secret in [
        json!({
            "metadata": {"name": CREDENTIALS_SECRET},
            "stringData": {"accessKeyId": s3.access_key_id, "secretAccessKey": s3.secret_access_key},
        }),
        json!({
            "metadata": {"name": ADMIN_SECRET, "labels": {"atoll.dev/database-admin": "true"}},
            "stringData": {"url": shared.url},
        }),
    ] {
        let secret: Secret = serde_json::from_value(secret).expect("secret");
        secrets
            .create(&PostParams::default(), &secret)
            .await
            .expect("a Secret of the operator's namespace");
    }
}

fn external(extra: Value) -> Value {
    let mut spec = json!({
        "database": {"mode": "External", "external": {
            "adminSecretRef": {"name": ADMIN_SECRET, "key": "url"}}},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

/// Waits for a condition to have `state`; returns the status and message.
async fn wait_condition(client: &Client, name: &str, type_: &str, state: &str) -> (Value, String) {
    eventually(&format!("Tenant {name}: {type_}={state}"), || async {
        let status = tenant_status(client, name).await?;
        let (s, _, message) = condition(&status, type_)?;
        (s == state).then_some((status, message))
    })
    .await
}

async fn wait_completed(client: &Client, name: &str) -> TenantBackup {
    let api: Api<TenantBackup> = Api::all(client.clone());
    eventually(&format!("TenantBackup {name} to complete"), || async {
        let backup = api.get_opt(name).await.ok().flatten()?;
        let status = backup.status.as_ref()?;
        assert_ne!(
            status.phase,
            Some(BackupPhase::Failed),
            "TenantBackup {name} failed: {:?}",
            status.message
        );
        (status.phase == Some(BackupPhase::Completed)).then_some(backup)
    })
    .await
}

/// A dump's TenantBackup: method Dump, its size and objects, `dump.json`
/// in the store under the tenant's uid.
fn assert_dumped(backup: &TenantBackup, uid: &str, s3: &TestS3) {
    let status = backup.status.as_ref().expect("status");
    assert_eq!(status.tenant_uid.as_deref(), Some(uid));
    assert_eq!(status.method, Some(BackupMethod::Dump));
    assert!(status.size.unwrap_or(0) > 0, "{status:?}");
    assert!(status.started_at.is_some() && status.stopped_at.is_some());
    assert!(status.begin_wal.is_none(), "a dump has no WAL");
    let id = status.backup_id.as_deref().expect("id");
    let json = format!("tenants/{uid}/dumps/{id}/dump.json");
    assert!(
        status.objects.iter().any(|o| o.ends_with(&json)),
        "{status:?}"
    );
    assert!(s3.object(&json).is_some(), "{json} in the store");
}

/// The tenant's own database URL (its `database-credentials` Secret).
async fn database_url(client: &Client, tenant: &str) -> String {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &format!("atoll-{tenant}"));
    let secret = eventually(&format!("{tenant}'s database credentials"), || async {
        secrets.get_opt("database-credentials").await.ok()?
    })
    .await;
    String::from_utf8(secret.data.expect("data")["url"].0.clone()).expect("text")
}

async fn connect(url: &str) -> sqlx::PgConnection {
    let options: sqlx::postgres::PgConnectOptions = url.parse().expect("a postgres URL");
    options
        .disable_statement_logging()
        .connect()
        .await
        .expect("the tenant's own credentials log in")
}

async fn scalar(db: &mut sqlx::PgConnection, sql: &'static str) -> String {
    sqlx::query_scalar::<_, String>(sql)
        .fetch_one(db)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn dumps_are_taken_and_restored(kind: common::ClusterKind) {
    let Some(s3) = TestS3::start("the operator's dump test") else {
        return;
    };
    let shared = TestPostgres::start();
    let cluster = common::start_cluster(kind).await;
    let client = cluster.client();
    common::install_crd(&client, &tenant_crd()).await;
    let operator_client = common::operator_client_as_the_chart(&cluster).await;
    create_secrets(&client, &s3, &shared).await;
    let state = tempfile::tempdir().expect("tempdir");
    let node = common::backup::start_node(&cluster, state.path(), false).await;
    let operator = common::backup::start_operator(&operator_client, &s3, &[]);

    let uid = create_tenant(&client, "shop", external(json!({"backup": {}}))).await;
    // Without spec.backup: a source with no dumps.
    create_tenant(&client, "plain", external(json!({}))).await;

    // The first dump is scheduled at once and completes.
    let backups: Api<TenantBackup> = Api::all(client.clone());
    let first = eventually("a scheduled TenantBackup of shop", || async {
        let params = ListParams::default().labels(&format!("{TENANT_LABEL}=shop"));
        backups.list(&params).await.ok()?.items.into_iter().next()
    })
    .await;
    let name = first.metadata.name.clone().expect("name");
    assert_dumped(&wait_completed(&client, &name).await, &uid, &s3);
    let (status, message) = wait_condition(&client, "shop", "BackupReady", "True").await;
    assert!(message.contains("the RPO is the schedule"), "{message}");
    assert!(
        condition(&status, "ContinuousArchiving").is_none(),
        "no WAL of its own: {status}"
    );
    assert!(
        status["backup"]["lastSuccessfulBackup"].is_string(),
        "{status}"
    );
    assert!(
        status["backup"]["firstRecoverabilityPoint"].is_string(),
        "{status}"
    );

    // Rows written as the tenant, then an on-demand dump.
    let shop_url = database_url(&client, "shop").await;
    let mut db = connect(&shop_url).await;
    sqlx::raw_sql("CREATE TABLE probe (i int); INSERT INTO probe SELECT generate_series(1, 42)")
        .execute(&mut db)
        .await
        .expect("rows written with the tenant's credentials");
    let manual: TenantBackup = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "TenantBackup",
        "metadata": {"name": "shop-now"}, "spec": {"tenant": "shop"},
    }))
    .expect("TenantBackup");
    backups
        .create(&PostParams::default(), &manual)
        .await
        .expect("created");
    assert_dumped(&wait_completed(&client, "shop-now").await, &uid, &s3);
    let pods: Api<Pod> = Api::namespaced(client.clone(), "atoll-shop");
    eventually("the ended dump pods to be deleted", || async {
        let params = ListParams::default().labels("app.kubernetes.io/component=dump");
        let left = pods.list(&params).await.ok()?;
        left.items.is_empty().then_some(())
    })
    .await;

    restore_from_a_dump(&client, &node, &shop_url).await;
    restore_from_no_dumps(&client).await;

    for file in walk(&node.logs_dir()) {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains(&s3.secret_access_key),
            "credential in {}",
            file.display()
        );
    }
    drop(db);
    operator.abort();
    node.shutdown().await;
    cluster.stop().await.expect("the cluster stops");
}

/// `copy` from shop's dump `shop-now`: Restored=True, the 42 rows in its
/// own database under its own role, its instance started.
async fn restore_from_a_dump(client: &Client, node: &NodeSim, shop_url: &str) {
    let spec = external(json!({"restore": {"from": "shop", "backup": "shop-now"}}));
    create_tenant(client, "copy", spec).await;
    let restored = eventually("copy: Restored=True", || async {
        let status = tenant_status(client, "copy").await?;
        let (state, reason, message) = condition(&status, "Restored")?;
        assert!(
            state != "False" || reason == "Restoring",
            "copy: Restored=False {reason}: {message}; logs:\n{}",
            logs_of(node, "atoll-copy")
        );
        (state == "True").then_some(status)
    })
    .await;
    assert_eq!(restored["restore"]["phase"], "Completed", "{restored}");
    let url = database_url(client, "copy").await;
    assert_ne!(url, shop_url, "its own database and credentials");
    let mut db = connect(&url).await;
    assert_eq!(
        scalar(&mut db, "SELECT count(*)::text FROM probe").await,
        "42"
    );
    assert_eq!(
        scalar(
            &mut db,
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'probe'"
        )
        .await,
        scalar(&mut db, "SELECT current_user::text").await,
        "the restored objects belong to the new tenant's role"
    );
    wait_condition(client, "copy", "InstanceReady", "True").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "atoll-copy");
    eventually("the restore-dump pod to be deleted", || async {
        pods.get_opt("restore-dump")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

/// From `plain`, which has no dumps: Restored=False saying so, the
/// instance held at 0 replicas.
async fn restore_from_no_dumps(client: &Client) {
    create_tenant(
        client,
        "empty",
        external(json!({"restore": {"from": "plain"}})),
    )
    .await;
    let (_, message) = wait_condition(client, "empty", "Restored", "False").await;
    let status = tenant_status(client, "empty").await.expect("status");
    let (_, reason, _) = condition(&status, "Restored").expect("Restored");
    assert_eq!(reason, "NoSuitableBackup", "{message}");
    assert!(message.contains("no complete dump"), "{message}");
    println!("empty: Restored=False {reason}: {message}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "atoll-empty");
    let instance = eventually("empty's instance Deployment", || async {
        deployments.get_opt("instance").await.ok()?
    })
    .await;
    assert_eq!(instance.spec.and_then(|s| s.replicas), Some(0));
}

fn logs_of(node: &NodeSim, namespace: &str) -> String {
    walk(&node.logs_dir())
        .into_iter()
        .filter(|f| f.display().to_string().contains(namespace))
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            format!("{}:\n{text}", f.display())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

atoll_testkit::on_each_cluster!(dumps_are_taken_and_restored);
