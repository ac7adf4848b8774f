//! Continuous backup of a Dedicated database (#19), with the operator in
//! process as the chart's service account against kubesim and the real
//! control plane (`ATOLL_TEST_CLUSTER`), nodesim running the database pod
//! (PostgreSQL 15 and the workspace's `atoll-backup` as the backup image)
//! and s3s-fs as the platform's object store: a Tenant with `spec.backup`
//! gets the backup Secrets (the credentials copied from the platform's
//! Secret, as files only), the NetworkPolicy and a database pod whose
//! archive_command puts its WAL under `tenants/<uid>/wal/` in the bucket;
//! removing `spec.backup` removes all of it. The backup-agent sidecar is
//! checked (ready, answering with its token) when the binary has the
//! `agent` subcommand.

mod common;

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use atoll_crds::{Tenant, tenant_crd};
use atoll_testkit::nodesim::NodeSim;
use atoll_testkit::s3::TestS3;
use common::ClusterKind;
use common::backup::{
    assert_no_credential_in_logs, create_credentials, start_node, start_operator,
};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use kube::Client;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sqlx::ConnectOptions;

/// Generous: PostgreSQL's first start runs initdb on a busy machine.
const TIMEOUT: Duration = Duration::from_secs(180);
const TENANT: &str = "archie";
const NAMESPACE: &str = "atoll-archie";

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    common::eventually(what, TIMEOUT, check).await
}

/// The database pod's template as the operator applied it.
async fn database_template(client: &Client) -> Option<Value> {
    let set = Api::<StatefulSet>::namespaced(client.clone(), NAMESPACE)
        .get_opt("database")
        .await
        .ok()??;
    Some(serde_json::to_value(set).ok()?["spec"]["template"]["spec"].clone())
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_owned))
        .collect()
}

/// Forces a WAL switch as the superuser over the pod's Unix socket (trust,
/// as in the stock image), after a write so there is something to switch.
async fn switch_wal(node_dir: &Path, pod_uid: &str) -> Option<String> {
    let volume = node_dir.join("pods").join(pod_uid).join("volumes/run");
    // nodesim links a socket directory too long for a socket address.
    let link = std::env::temp_dir().join(format!("nodesim-{pod_uid}-0"));
    let dir = if link.exists() { link } else { volume };
    let mut connection = sqlx::postgres::PgConnectOptions::new()
        .socket(&dir)
        .username("postgres")
        .database("postgres")
        .disable_statement_logging()
        .connect()
        .await
        .ok()?;
    sqlx::raw_sql(
        "CREATE TABLE IF NOT EXISTS backup_probe (v text); INSERT INTO backup_probe VALUES ('x')",
    )
    .execute(&mut connection)
    .await
    .ok()?;
    sqlx::query_scalar("SELECT pg_walfile_name(pg_switch_wal())")
        .fetch_one(&mut connection)
        .await
        .ok()
}

async fn a_backed_up_database_archives_its_wal_until_backups_are_removed(kind: ClusterKind) {
    let Some(s3) = TestS3::start("the operator's backup test") else {
        return;
    };
    let cluster = common::start_cluster(kind).await;
    common::install_crd(&cluster.client(), &tenant_crd()).await;
    let operator_client = common::operator_client_as_the_chart(&cluster).await;
    let client = cluster.client();
    create_credentials(&client, &s3).await;
    let state = tempfile::tempdir().expect("tempdir");
    let node = start_node(&cluster, state.path(), false).await;
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": TENANT},
        "spec": {"backup": {}},
    }))
    .expect("tenant");
    let tenant = Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await
        .expect("tenant created");
    let uid = tenant.metadata.uid.clone().expect("uid");
    let operator = start_operator(&operator_client, &s3, &["--base-domain", "atoll.localhost"]);

    let token = backup_objects_are_applied(&client, &s3, &uid).await;
    wal_reaches_the_tenants_prefix(&client, &s3, &uid, &state.path().join("node")).await;
    the_agent_answers_with_its_token(&client, &node, token).await;
    // No credential in any container's log.
    assert_no_credential_in_logs(&node, &s3);
    own_store_without_the_right_is_reported(&client).await;
    removing_spec_backup_removes_it_all(&client).await;

    operator.abort();
    node.shutdown().await;
    cluster.stop().await.expect("the cluster stops");
}

/// The Secrets (settings and credentials as files, the agent's token), the
/// NetworkPolicy and the pod's backup containers; returns the token.
async fn backup_objects_are_applied(client: &Client, s3: &TestS3, uid: &str) -> ByteString {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let store = eventually("the backup-object-store Secret", || async {
        secrets.get_opt("backup-object-store").await.ok()?
    })
    .await;
    let data = store.data.expect("data");
    assert_eq!(data["secretAccessKey"].0, s3.secret_access_key.as_bytes());
    let config: Value = serde_json::from_slice(&data["config.json"].0).expect("config.json");
    assert_eq!(config["tenantUid"], uid);
    assert_eq!(config["endpoint"], s3.endpoint.as_str());
    let token = eventually("the backup-agent Secret", || async {
        secrets.get_opt("backup-agent").await.ok()?
    })
    .await
    .data
    .expect("data")["token"]
        .clone();
    assert_eq!(token.0.len(), 64);
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("the database-backup NetworkPolicy", || async {
        policies.get_opt("database-backup").await.ok()?
    })
    .await;
    let template = eventually("the database StatefulSet", || database_template(client)).await;
    assert_eq!(names(&template["containers"]), ["postgres", "backup-agent"]);
    assert_eq!(
        names(&template["initContainers"]),
        ["install-backup", "upgrade-roles"]
    );
    token
}

/// The server archives: a forced switch lands in the tenant's prefix.
async fn wal_reaches_the_tenants_prefix(client: &Client, s3: &TestS3, uid: &str, node_dir: &Path) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let pod_uid = eventually("the database pod", || async {
        pods.get_opt("database-0").await.ok()??.metadata.uid
    })
    .await;
    let segment = eventually("a WAL switch over the pod's socket", || {
        switch_wal(node_dir, &pod_uid)
    })
    .await;
    let key = format!("tenants/{uid}/wal/{segment}.lz4");
    eventually(&format!("{key} in the bucket"), || async {
        s3.list_keys(&format!("tenants/{uid}/wal/"))
            .contains(&key)
            .then_some(())
    })
    .await;
}

/// The sidecar is ready and answers on the pod's IP: 401 without the
/// token, its status with it.
async fn the_agent_answers_with_its_token(client: &Client, node: &NodeSim, token: ByteString) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    let ip = eventually("the database pod to be ready (agent included)", || async {
        let pod = pods.get_opt("database-0").await.ok()??;
        atoll_testkit::nodesim::workloads::pod_ready(&pod)
            .then(|| node.pod_ip(NAMESPACE, "database-0"))?
    })
    .await;
    let http = reqwest::Client::new();
    let status = |auth: Option<String>| {
        let mut request = http.get(format!("http://{ip}:9187/status"));
        if let Some(token) = auth {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let refused = status(None).await.expect("agent answers");
    assert_eq!(refused.status(), 401);
    let token = String::from_utf8(token.0).expect("hex");
    let ok = status(Some(token)).await.expect("agent answers");
    assert_eq!(ok.status(), 200);
    let body: Value = ok.json().await.expect("status JSON");
    assert!(body["archiver"].is_object(), "{body}");
}

/// Backups removed: Secrets, policy, sidecar and archiving go.
async fn removing_spec_backup_removes_it_all(client: &Client) {
    Api::<Tenant>::all(client.clone())
        .patch(
            TENANT,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backup": null}})),
        )
        .await
        .expect("spec.backup removed");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    for name in ["backup-object-store", "backup-agent"] {
        eventually(&format!("Secret {name} to be removed"), || async {
            secrets.get_opt(name).await.ok()?.is_none().then_some(())
        })
        .await;
    }
    let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), NAMESPACE);
    eventually("the database-backup policy to be removed", || async {
        policies
            .get_opt("database-backup")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let template = eventually("the StatefulSet without backups", || async {
        let template = database_template(client).await?;
        (names(&template["containers"]) == ["postgres"]).then_some(template)
    })
    .await;
    assert_eq!(names(&template["initContainers"]), ["upgrade-roles"]);
    assert!(!template.to_string().contains("atoll-backup"), "{template}");
}

/// A Tenant naming a store of its own while the chart does not let the
/// operator read Tenants' Secrets (backup.tenantObjectStores off, the
/// default): refused by the API server's authorizer, the Tenant runs
/// without backups and a Warning event says why.
async fn own_store_without_the_right_is_reported(client: &Client) {
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "byos"},
        "spec": {"backup": {"objectStore": {
            "endpoint": "https://s3.example.com", "bucket": "byos-backups",
            "credentialsSecretRef": {"name": "byos-store"},
        }}},
    }))
    .expect("tenant");
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await
        .expect("tenant created");
    let events: Api<k8s_openapi::api::events::v1::Event> =
        Api::namespaced(client.clone(), "default");
    let note = eventually("a BackupUnavailable event about byos", || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.reason.as_deref() == Some("BackupUnavailable")
                    && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("byos")
            })?
            .note
    })
    .await;
    assert!(
        note.contains("Secret atoll-byos/byos-store") && note.contains("tenantObjectStores"),
        "{note}"
    );
    let set = eventually("byos's database without backups", || async {
        Api::<StatefulSet>::namespaced(client.clone(), "atoll-byos")
            .get_opt("database")
            .await
            .ok()?
    })
    .await;
    let template = serde_json::to_value(set).expect("json")["spec"]["template"]["spec"].clone();
    assert_eq!(names(&template["containers"]), ["postgres"]);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "atoll-byos");
    assert!(
        secrets
            .get_opt("backup-object-store")
            .await
            .expect("read")
            .is_none()
    );
}

atoll_testkit::on_each_cluster!(a_backed_up_database_archives_its_wal_until_backups_are_removed);
