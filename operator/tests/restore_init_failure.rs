//! A restore whose init container fails before it can write
//! `restore.json` (#19): the source and its backup resolve while the
//! platform's store (s3s-fs) is up; the store then goes away before the
//! database pod starts (nodesim starts only then), so `atoll-backup
//! restore` can neither restore nor write its outcome and exits non-zero
//! again and again. The operator reads that from the pod's init container
//! status: `Restored=False` (RestoreFailed) quoting the container's last
//! words, and the database StatefulSet held at 0 instead of looping.
//! Operator in process as the chart's service account against kubesim
//! (and the real control plane with `ATOLL_TEST_CLUSTER`).

mod common;

use std::path::Path;
use std::time::Duration;

use atoll_backup::layout::BackupId;
use atoll_backup::settings::{Credentials, Settings};
use atoll_crds::{Tenant, tenant_crd};
use atoll_testkit::nodesim::{NodeSimConfig, workspace_binary};
use atoll_testkit::s3::TestS3;
use bytes::Bytes;
use k8s_openapi::api::apps::v1::StatefulSet;
use kube::api::{Api, PostParams};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(120);
const SOURCE: &str = "7c1d2e3f-0000-4000-8000-0000000000aa";

async fn put(store: &dyn ObjectStore, key: &str, body: &[u8]) {
    store
        .put(
            &Key::from(key),
            PutPayload::from_bytes(Bytes::copy_from_slice(body)),
        )
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

/// A deleted tenant `origin` with one base backup in its catalog.
async fn put_source(s3: &TestS3) -> String {
    let config = json!({
        "endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
        "pathStyle": true, "allowHttp": true, "tenantUid": SOURCE,
    });
    let credentials = Credentials {
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
    };
    let settings = Settings::from_parts(&config.to_string(), Some(credentials), Path::new("test"))
        .expect("settings");
    let store = atoll_backup::store::open(&settings).expect("store");
    let store = store.as_ref();
    let end = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let id = BackupId::from_timestamp(end).to_string();
    let record = json!({"name": "origin", "uid": SOURCE, "mode": "Dedicated", "retention": "30d"});
    put(
        store,
        &format!("tenants/{SOURCE}/tenant.json"),
        record.to_string().as_bytes(),
    )
    .await;
    put(store, &format!("names/origin/{SOURCE}"), b"").await;
    let info = json!({
        "id": id, "beginTime": end, "endTime": end, "beginLsn": "0/2000028", "endLsn": "0/2000100",
        "beginWal": "000000010000000000000002", "endWal": "000000010000000000000002",
        "timeline": 1, "systemIdentifier": "1", "pgMajor": 15, "size": 3, "objects": [],
    });
    let base = format!("tenants/{SOURCE}/base/{id}");
    put(store, &format!("{base}/base.tar.lz4"), b"tar").await;
    put(
        store,
        &format!("{base}/backup.json"),
        info.to_string().as_bytes(),
    )
    .await;
    id
}

async fn a_restore_failing_before_its_outcome_says_so(kind: common::ClusterKind) {
    let Some(mut s3) = TestS3::start("the restore init failure test") else {
        return;
    };
    let backup = put_source(&s3).await;
    let cluster = common::start_cluster(kind).await;
    let client = cluster.client();
    common::install_crd(&client, &tenant_crd()).await;
    let operator_client = common::operator_client_as_the_chart(&cluster).await;
    common::backup::create_credentials(&client, &s3).await;
    let operator = common::backup::start_operator(&operator_client, &s3, &[]);
    let tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": "broken"}, "spec": {"restore": {"from": "origin"}},
    }))
    .expect("tenant");
    Api::<Tenant>::all(client.clone())
        .create(&PostParams::default(), &tenant)
        .await
        .expect("Tenant broken");

    // Resolved while the store is up: the restore runs from that backup.
    common::eventually("broken: the restore running", TIMEOUT, || async {
        let status = common::backup::tenant_status(&client, "broken").await?;
        (status["restore"]["phase"] == "Running").then_some(())
    })
    .await;
    let secret_key = s3.secret_access_key.clone();
    s3.stop();

    let state = tempfile::tempdir().expect("tempdir");
    let binary = workspace_binary("atoll-backup");
    assert!(
        binary.is_file(),
        "{} is not built: run `cargo build --workspace --bins`",
        binary.display()
    );
    let node = cluster
        .start_node(
            NodeSimConfig::new(state.path().join("node"))
                .postgres()
                .binary("atoll-backup", binary),
        )
        .await
        .unwrap_or_else(|e| panic!("nodesim: {e}"));

    let (status, reason, message) =
        common::eventually("broken: Restored=False", TIMEOUT, || async {
            let status = common::backup::tenant_status(&client, "broken").await?;
            let (state, reason, message) = common::backup::condition(&status, "Restored")?;
            (state == "False").then_some((status, reason, message))
        })
        .await;
    println!("broken: Restored=False {reason}: {message}");
    assert_eq!(reason, "RestoreFailed", "{message}");
    assert!(message.contains("init container \"restore\""), "{message}");
    assert!(message.contains("cannot write restore.json"), "{message}");
    assert!(!message.contains(&secret_key), "no credential in {message}");
    assert_eq!(status["restore"]["phase"], "Failed");
    assert_eq!(status["restore"]["backupId"], backup.as_str());
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), "atoll-broken");
    common::eventually("broken's database scaled to 0", TIMEOUT, || async {
        let set = sets.get_opt("database").await.ok()??;
        (set.spec?.replicas == Some(0)).then_some(())
    })
    .await;

    operator.abort();
    node.shutdown().await;
    cluster.stop().await.expect("the cluster stops");
}

atoll_testkit::on_each_cluster!(a_restore_failing_before_its_outcome_says_so);
