//! The leader's retention sweep of the platform store (#19), with the
//! operator in process as the chart's service account (kubesim, or the
//! real control plane with `ATOLL_TEST_CLUSTER`) and s3s-fs as the
//! platform's store. Tenants deleted long ago lose every object (backups,
//! WAL, `tenant.json` and the `names/` marker); a freshly deleted one keeps
//! what its retention covers (its old backups beyond the window go); a
//! record without a retention is left alone.

mod common;

use std::path::Path;
use std::time::Duration;

use atoll_backup::layout::BackupId;
use atoll_backup::settings::{Credentials, Settings};
use atoll_crds::tenant_crd;
use atoll_testkit::s3::TestS3;
use bytes::Bytes;
use jiff::{SignedDuration, Timestamp};
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::json;
use std::sync::Arc;

const GONE: &str = "6b0f4c1e-0000-4000-8000-00000000000a";
const FRESH: &str = "6b0f4c1e-0000-4000-8000-00000000000b";
const UNKNOWN: &str = "6b0f4c1e-0000-4000-8000-00000000000c";

fn store_of(s3: &TestS3) -> Arc<dyn ObjectStore> {
    let config = json!({
        "endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
        "pathStyle": true, "allowHttp": true, "tenantUid": GONE,
    });
    let credentials = Credentials {
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
    };
    let settings = Settings::from_parts(&config.to_string(), Some(credentials), Path::new("test"))
        .expect("settings");
    atoll_backup::store::open(&settings).expect("store")
}

async fn put(store: &dyn ObjectStore, key: &str, body: &[u8]) {
    store
        .put(
            &Key::from(key),
            PutPayload::from_bytes(Bytes::copy_from_slice(body)),
        )
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

fn ago(days: i64) -> Timestamp {
    Timestamp::now() - SignedDuration::from_hours(24 * days)
}

/// A tenant's record, deleted `deleted_days` ago.
async fn put_record(
    store: &dyn ObjectStore,
    uid: &str,
    name: &str,
    deleted_days: i64,
    retention: Option<&str>,
) {
    let mut record = json!({
        "name": name, "uid": uid, "mode": "Dedicated",
        "createdAt": ago(60), "deletedAt": ago(deleted_days),
    });
    if let Some(retention) = retention {
        record["retention"] = json!(retention);
    }
    put(
        store,
        &format!("tenants/{uid}/tenant.json"),
        record.to_string().as_bytes(),
    )
    .await;
    put(store, &format!("names/{name}/{uid}"), b"").await;
}

/// A complete backup that ended `days_ago` days ago, in segment `seg`,
/// with that segment archived; its id.
async fn put_backup(store: &dyn ObjectStore, uid: &str, days_ago: i64, seg: u32) -> String {
    let end = ago(days_ago);
    let id = BackupId::from_timestamp(end).to_string();
    let wal = format!("0000000100000000{seg:08X}");
    let info = json!({
        "id": id, "beginTime": end, "endTime": end, "beginLsn": "0/2000028", "endLsn": "0/2000100",
        "beginWal": wal, "endWal": wal, "timeline": 1, "systemIdentifier": "1",
        "pgMajor": 15, "size": 3, "objects": [],
    });
    let base = format!("tenants/{uid}/base/{id}");
    put(store, &format!("{base}/base.tar.lz4"), b"tar").await;
    put(
        store,
        &format!("{base}/backup.json"),
        info.to_string().as_bytes(),
    )
    .await;
    put(store, &format!("tenants/{uid}/wal/{wal}.lz4"), b"wal").await;
    id
}

async fn the_sweep_expires_deleted_tenants(kind: common::ClusterKind) {
    let Some(s3) = TestS3::start("the retention sweep") else {
        return;
    };
    let store = store_of(&s3);
    let store = store.as_ref();
    // Deleted 10 days ago with 3 days of retention: nothing restorable.
    put_record(store, GONE, "gone", 10, Some("3d")).await;
    put_backup(store, GONE, 20, 2).await;
    put_backup(store, GONE, 12, 4).await;
    put(store, &format!("tenants/{GONE}/wal/00000002.history"), b"h").await;
    // Deleted yesterday with 3 days: the window (from now) starts 3 days
    // ago; the backup of 10 days ago is the newest before it and stays.
    put_record(store, FRESH, "fresh", 1, Some("3d")).await;
    let fresh_expired = put_backup(store, FRESH, 20, 2).await;
    let fresh_anchor = put_backup(store, FRESH, 10, 4).await;
    let fresh_newest = put_backup(store, FRESH, 2, 6).await;
    // An old record without a retention: left alone.
    put_record(store, UNKNOWN, "unknown", 100, None).await;
    let unknown_backup = put_backup(store, UNKNOWN, 100, 2).await;

    let cluster = common::start_cluster(kind).await;
    let client = cluster.client();
    common::install_crd(&client, &tenant_crd()).await;
    let operator_client = common::operator_client_as_the_chart(&cluster).await;
    common::backup::create_credentials(&client, &s3).await;
    let operator = common::backup::start_operator(
        &operator_client,
        &s3,
        &["--backup-retention-sweep-seconds", "2"],
    );

    // A sweep deletes a tenant's expired backups, then the WAL before the
    // oldest kept one: wait for both (the sweep runs every 2 s).
    common::eventually(
        "the sweep to expire gone's objects, fresh's oldest backup and its WAL",
        Duration::from_secs(60),
        || async {
            let gone = s3.list_keys(&format!("tenants/{GONE}/"));
            let marker = s3.list_keys("names/gone/");
            let fresh = s3.list_keys(&format!("tenants/{FRESH}/"));
            (gone.is_empty()
                && marker.is_empty()
                && !fresh.iter().any(|k| k.contains(&fresh_expired))
                && !fresh
                    .iter()
                    .any(|k| k.contains("/wal/000000010000000000000002")))
            .then_some(())
        },
    )
    .await;

    let fresh = s3.list_keys(&format!("tenants/{FRESH}/"));
    for kept in [&fresh_anchor, &fresh_newest] {
        assert_eq!(
            fresh.iter().filter(|k| k.contains(kept.as_str())).count(),
            2,
            "{kept} kept: {fresh:?}"
        );
    }
    assert!(
        fresh.iter().any(|k| k.ends_with("/tenant.json")),
        "{fresh:?}"
    );
    // WAL before the oldest kept backup (segment 4) went; the rest stays.
    let wal: Vec<&String> = fresh.iter().filter(|k| k.contains("/wal/")).collect();
    assert_eq!(wal.len(), 2, "{wal:?}");
    assert!(!wal.iter().any(|k| k.contains("000000010000000000000002")));
    assert_eq!(
        s3.list_keys("names/fresh/"),
        vec![format!("names/fresh/{FRESH}")]
    );
    let unknown = s3.list_keys(&format!("tenants/{UNKNOWN}/"));
    assert!(
        unknown.iter().any(|k| k.contains(&unknown_backup)),
        "{unknown:?}"
    );
    assert_eq!(s3.list_keys("names/unknown/").len(), 1);

    operator.abort();
    cluster.stop().await.expect("the cluster stops");
}

atoll_testkit::on_each_cluster!(the_sweep_expires_deleted_tenants);
