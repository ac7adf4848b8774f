//! Restore into a new Tenant (#19), with the operator in process as the
//! chart's service account against kubesim (and the real control plane
//! with `ATOLL_TEST_CLUSTER`), nodesim running the database pods
//! (PostgreSQL 15 and the workspace's `atoll-backup` as the backup image)
//! and the instance, and s3s-fs as the platform's object store.
//!
//! A source Tenant with backups gets rows and a flow, a base backup (the
//! agent's `POST /backups`), more rows, the moment T, more rows and a WAL
//! switch; a Tenant created with `spec.restore {from, targetTime: T}`
//! becomes Ready with exactly the rows of T, its own database password
//! (the source's no longer logs in) and an instance serving the source's
//! flow. A restore past the archive's end stops (Restored=False saying how
//! far it got, the database scaled to 0); one from an unknown Tenant never
//! starts a database.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use atoll_crds::tenant_crd;
use atoll_testkit::nodesim::NodeSim;
use atoll_testkit::s3::TestS3;
use common::backup::{
    condition, create_credentials, create_tenant, database_pod, eventually, restored, secret_value,
    socket, start_node, start_operator, tenant_status,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::Api;
use serde_json::{Value, json};
use sqlx::ConnectOptions;

const DOMAIN: &str = "atoll.localhost";
const FLOW: &str = "id: hello\nnamespace: team\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: hello from the restore test\n";

async fn sql(connection: &mut sqlx::PgConnection, text: &'static str) -> String {
    sqlx::query_scalar::<_, String>(text)
        .fetch_one(connection)
        .await
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

async fn insert(connection: &mut sqlx::PgConnection, batch: i32, n: i32) {
    sqlx::query("INSERT INTO probe (batch, i) SELECT $1, g FROM generate_series(1, $2) g")
        .bind(batch)
        .bind(n)
        .execute(connection)
        .await
        .expect("insert");
}

/// A client reaching a tenant's host through nodesim's ingress.
fn http(ingress: SocketAddr, tenant: &str) -> (reqwest::Client, String) {
    let host = format!("{tenant}.{DOMAIN}");
    let client = reqwest::Client::builder()
        .resolve(&host, ingress)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    (client, format!("http://{host}:{}", ingress.port()))
}

/// Saves the test flow through the tenant's instance API.
async fn save_flow(ingress: SocketAddr, tenant: &str) {
    let (client, base) = http(ingress, tenant);
    eventually("the flow saved through the instance", || async {
        let response = client
            .post(format!("{base}/api/v1/flows"))
            .header("content-type", "application/x-yaml")
            .body(FLOW)
            .send()
            .await
            .ok()?;
        response.status().is_success().then_some(())
    })
    .await;
}

/// The agent's base backup: its id once completed.
async fn base_backup(agent: &str, token: &str) -> String {
    let http = reqwest::Client::new();
    // The operator's first scheduled backup may be running: the agent
    // takes one at a time (409) until it ends.
    let id = eventually("the agent to start a base backup", || async {
        let answer = http
            .post(format!("{agent}/backups"))
            .bearer_auth(token)
            .json(&json!({}))
            .send()
            .await
            .expect("POST /backups");
        if answer.status() == reqwest::StatusCode::CONFLICT {
            return None;
        }
        let started: Value = answer.json().await.expect("json");
        Some(started["id"].as_str().expect("id").to_owned())
    })
    .await;
    eventually(&format!("base backup {id}"), || async {
        let state: Value = http
            .get(format!("{agent}/backups/{id}"))
            .bearer_auth(token)
            .send()
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        assert_ne!(state["phase"], "Failed", "{state}");
        (state["phase"] == "Completed").then_some(())
    })
    .await;
    id
}

/// Whether `password` opens the tenant's database as `atoll` over TCP.
async fn logs_in(ip: &str, password: &str) -> bool {
    sqlx::postgres::PgConnectOptions::new()
        .host(ip)
        .port(5432)
        .username("atoll")
        .password(password)
        .database("atoll")
        .disable_statement_logging()
        .connect()
        .await
        .is_ok()
}

struct Source {
    uid: String,
    backup: String,
    t: String,
    password: String,
}

/// The source Tenant `acme`: batch 0 and a flow before its base backup,
/// batch 1 before T, batch 2 after, all archived.
async fn source(client: &Client, node: &NodeSim, node_dir: &Path, ingress: SocketAddr) -> Source {
    let uid = create_tenant(client, "acme", json!({"backup": {}})).await;
    let (pod_uid, ip) = database_pod(client, node, "atoll-acme").await;
    let mut db = eventually("the source's database over its socket", || {
        socket(node_dir, &pod_uid, "atoll")
    })
    .await;
    sqlx::raw_sql("CREATE TABLE probe (batch int, i int)")
        .execute(&mut db)
        .await
        .expect("create table");
    insert(&mut db, 0, 10).await;
    save_flow(ingress, "acme").await;
    let token = secret_value(client, "atoll-acme", "backup-agent", "token").await;
    let agent = format!("http://{ip}:9187");
    let backup = base_backup(&agent, &token).await;
    insert(&mut db, 1, 100).await;
    let t = sql(
        &mut db,
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    )
    .await;
    insert(&mut db, 2, 50).await;
    let switched = reqwest::Client::new()
        .post(format!("{agent}/switch-wal"))
        .bearer_auth(&token)
        .timeout(Duration::from_secs(90))
        .send()
        .await
        .expect("POST /switch-wal");
    assert!(
        switched.status().is_success(),
        "switch-wal: {}",
        switched.status()
    );
    let password = secret_value(client, "atoll-acme", "database-credentials", "password").await;
    Source {
        uid,
        backup,
        t,
        password,
    }
}

async fn a_new_tenant_is_restored_to_a_point_in_time(kind: common::ClusterKind) {
    let Some(s3) = TestS3::start("the operator's restore test") else {
        return;
    };
    let cluster = common::start_cluster(kind).await;
    common::install_crd(&cluster.client(), &tenant_crd()).await;
    let operator_client = common::operator_client_as_the_chart(&cluster).await;
    let client = cluster.client();
    create_credentials(&client, &s3).await;
    let state = tempfile::tempdir().expect("tempdir");
    let node = start_node(&cluster, state.path(), true).await;
    let ingress = node.ingress_addr().expect("ingress router");
    let node_dir = state.path().join("node");
    let operator = start_operator(
        &operator_client,
        &s3,
        &["--base-domain", DOMAIN, "--public-port", "8080"],
    );
    let src = source(&client, &node, &node_dir, ingress).await;

    restore_at_t(&client, &node, &node_dir, ingress, &src).await;
    restore_past_the_archive(&client, &src).await;
    restore_from_nobody(&client, &node).await;

    common::backup::assert_no_credential_in_logs(&node, &s3);
    operator.abort();
    node.shutdown().await;
    cluster.stop().await.expect("the cluster stops");
}

/// `copy` from `acme` at T: Ready, exactly batches 0 and 1, its own
/// password, the source's flow in its instance.
async fn restore_at_t(
    client: &Client,
    node: &NodeSim,
    node_dir: &Path,
    ingress: SocketAddr,
    src: &Source,
) {
    create_tenant(
        client,
        "copy",
        json!({"restore": {"from": "acme", "targetTime": src.t}}),
    )
    .await;
    let (status, reason, message) = restored(client, node, "copy", "True").await;
    assert_eq!(reason, "Restored", "{message}");
    println!("copy: Restored=True: {message}");
    let restore = &status["restore"];
    assert_eq!(restore["sourceUid"], src.uid.as_str());
    assert_eq!(restore["backupId"], src.backup.as_str());
    assert_eq!(restore["phase"], "Completed");
    let t: k8s_openapi::jiff::Timestamp = src.t.parse().expect("T");
    let reached: k8s_openapi::jiff::Timestamp = restore["reachedTime"]
        .as_str()
        .expect("reachedTime")
        .parse()
        .expect("time");
    assert!(reached <= t, "{restore}");
    eventually("copy to be Ready", || async {
        (tenant_status(client, "copy").await?["phase"] == "Ready").then_some(())
    })
    .await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "atoll-copy");
    let set = sets.get("database").await.expect("StatefulSet");
    let init: Vec<String> = set
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.init_containers)
        .into_iter()
        .flatten()
        .map(|c| c.name)
        .collect();
    assert_eq!(init, ["install-backup", "restore", "upgrade-roles"]);
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "atoll-copy");
    eventually("the restore's Secret to be removed", || async {
        secrets
            .get_opt("restore-object-store")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;

    let (pod_uid, ip) = database_pod(client, node, "atoll-copy").await;
    let mut db = eventually("the copy's database over its socket", || {
        socket(node_dir, &pod_uid, "atoll")
    })
    .await;
    let rows = sql(
        &mut db,
        "SELECT string_agg(batch || ':' || n, ',' ORDER BY batch) FROM (SELECT batch, count(*) n FROM probe GROUP BY 1) c",
    )
    .await;
    assert_eq!(rows, "0:10,1:100", "exactly the rows of T");
    let own = secret_value(client, "atoll-copy", "database-credentials", "password").await;
    assert_ne!(own, src.password);
    assert!(logs_in(&ip, &own).await, "the copy's own password");
    assert!(!logs_in(&ip, &src.password).await, "not the source's");

    let (http, base) = http(ingress, "copy");
    let flow = http
        .get(format!("{base}/api/v1/flows/team/hello"))
        .send()
        .await
        .expect("the copy's instance answers");
    assert!(
        flow.status().is_success(),
        "the source's flow: {}",
        flow.status()
    );
}

/// Past the archive's end: Restored=False saying how far it got, Degraded,
/// the database scaled to 0.
async fn restore_past_the_archive(client: &Client, src: &Source) {
    let late =
        k8s_openapi::jiff::Timestamp::now() + k8s_openapi::jiff::SignedDuration::from_hours(1);
    create_tenant(
        client,
        "late",
        json!({"restore": {"from": src.uid, "targetTime": late.to_string()}}),
    )
    .await;
    let (status, reason, message) = eventually("late: RestoreFailed", || async {
        let status = tenant_status(client, "late").await?;
        let (state, reason, message) = condition(&status, "Restored")?;
        (state == "False" && reason == "RestoreFailed").then_some((status, reason, message))
    })
    .await;
    assert_eq!(reason, "RestoreFailed");
    assert!(message.contains("could reach only"), "{message}");
    println!("late: Restored=False: {message}");
    assert_eq!(status["restore"]["phase"], "Failed");
    eventually("late: Degraded", || async {
        (tenant_status(client, "late").await?["phase"] == "Degraded").then_some(())
    })
    .await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "atoll-late");
    eventually("late's database scaled to 0", || async {
        let set = sets.get_opt("database").await.ok()??;
        (set.spec?.replicas == Some(0)).then_some(())
    })
    .await;
}

/// From a Tenant nobody knows: no database, a message saying so.
async fn restore_from_nobody(client: &Client, node: &NodeSim) {
    create_tenant(client, "ghost", json!({"restore": {"from": "nobody"}})).await;
    let (status, reason, message) = restored(client, node, "ghost", "False").await;
    assert_eq!(reason, "SourceUnavailable", "{message}");
    assert!(message.contains("\"nobody\""), "{message}");
    assert_eq!(status["phase"], "Degraded");
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "atoll-ghost");
    let set = eventually("ghost's StatefulSet", || async {
        sets.get_opt("database").await.ok()?
    })
    .await;
    assert_eq!(set.spec.and_then(|s| s.replicas), Some(0));
}

atoll_testkit::on_each_cluster!(a_new_tenant_is_restored_to_a_point_in_time);
