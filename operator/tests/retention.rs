//! Retention's executor against a real S3 server (s3s-fs) and kubesim
//! (#19): expired base backups go (`backup.json` and the tar), the newest
//! one before the window stays with everything after it, WAL before the
//! oldest kept backup goes while timeline histories stay, and the
//! scheduled TenantBackup of a deleted backup is deleted while an
//! on-demand one stays.

use std::path::Path;
use std::sync::Arc;

use atoll_backup::settings::{Credentials, Settings};
use atoll_crds::{BackupPhase, TenantBackup, TenantBackupStatus, tenant_backup_crd};
use atoll_operator::backup::access::TenantStore;
use atoll_operator::backup::{SCHEDULED_ANNOTATION, retention};
use atoll_testkit::kubesim::KubeSim;
use atoll_testkit::s3::TestS3;
use bytes::Bytes;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt, PutPayload};
use serde_json::json;

const UID: &str = "0b7c0c4e-2f55-4a8e-9d0e-6f6e2f0e1a01";

fn store_of(s3: &TestS3) -> TenantStore {
    let config = json!({
        "endpoint": s3.endpoint, "bucket": s3.bucket, "region": s3.region,
        "pathStyle": true, "allowHttp": true, "tenantUid": UID, "tenantName": "acme",
    });
    let credentials = Credentials {
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
    };
    let settings = Settings::from_parts(&config.to_string(), Some(credentials), Path::new("test"))
        .expect("settings");
    TenantStore {
        store: atoll_backup::store::open(&settings).expect("store"),
        layout: atoll_backup::layout::Layout::new(None),
        settings: Arc::new(settings),
    }
}

/// A complete backup of `days_ago` days ago, beginning in segment `seg`.
async fn put_backup(store: &TenantStore, days_ago: i64, seg: u32) -> String {
    let end = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days_ago);
    let id = atoll_backup::layout::BackupId::from_timestamp(end).to_string();
    let info = json!({
        "id": id, "beginTime": end, "endTime": end, "beginLsn": "0/2000028", "endLsn": "0/2000100",
        "beginWal": format!("0000000100000000{seg:08X}"), "endWal": format!("0000000100000000{seg:08X}"),
        "timeline": 1, "systemIdentifier": "1", "pgMajor": 15, "size": 3, "objects": [],
    });
    put(
        store,
        &format!("tenants/{UID}/base/{id}/base.tar.lz4"),
        b"tar",
    )
    .await;
    put(
        store,
        &format!("tenants/{UID}/base/{id}/backup.json"),
        info.to_string().as_bytes(),
    )
    .await;
    id
}

async fn put(store: &TenantStore, key: &str, body: &[u8]) {
    store
        .store
        .put(
            &Key::from(key),
            PutPayload::from_bytes(Bytes::copy_from_slice(body)),
        )
        .await
        .unwrap_or_else(|e| panic!("put {key}: {e}"));
}

async fn tenant_backup(
    client: &kube::Client,
    name: &str,
    id: &str,
    scheduled: bool,
) -> TenantBackup {
    let api: Api<TenantBackup> = Api::all(client.clone());
    let mut backup: TenantBackup = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "TenantBackup",
        "metadata": {"name": name}, "spec": {"tenant": "acme"},
    }))
    .expect("TenantBackup");
    if scheduled {
        backup.metadata.annotations =
            Some([(SCHEDULED_ANNOTATION.to_owned(), "true".to_owned())].into());
    }
    api.create(&PostParams::default(), &backup)
        .await
        .expect("created");
    let status = TenantBackupStatus {
        phase: Some(BackupPhase::Completed),
        tenant_uid: Some(UID.to_owned()),
        backup_id: Some(id.to_owned()),
        ..TenantBackupStatus::default()
    };
    let patch = json!({"status": status});
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("status")
}

#[tokio::test]
async fn retention_deletes_expired_backups_their_wal_and_scheduled_tenant_backups() {
    let Some(s3) = TestS3::start("retention_deletes_expired_backups") else {
        return;
    };
    let store = store_of(&s3);
    let oldest = put_backup(&store, 10, 2).await;
    let older = put_backup(&store, 9, 4).await;
    let anchor = put_backup(&store, 5, 6).await;
    let newest = put_backup(&store, 1, 8).await;
    let wal = format!("tenants/{UID}/wal/");
    for name in [
        "000000010000000000000003.lz4",
        "000000010000000000000005.lz4",
        "000000010000000000000005.00000028.backup",
        "000000010000000000000006.lz4",
        "000000010000000000000009.lz4",
        "00000002.history",
    ] {
        put(&store, &format!("{wal}{name}"), b"x").await;
    }
    let sim = KubeSim::new();
    let client = sim.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &tenant_backup_crd())
        .await
        .expect("CRD");
    let backups = vec![
        tenant_backup(&client, "acme-scheduled", &oldest, true).await,
        tenant_backup(&client, "acme-manual", &older, false).await,
    ];

    // A window of 3 days: the backup of 5 days ago is the newest before it.
    let swept = retention::enforce(
        &store,
        "3d",
        retention::Kind::BaseBackups,
        &client,
        &backups,
    )
    .await
    .expect("retention");
    assert_eq!(swept.backups, vec![oldest.clone(), older.clone()]);
    assert_eq!(swept.wal, 3);
    assert_eq!(swept.tenant_backups, vec!["acme-scheduled".to_owned()]);

    let base = s3.list_keys(&format!("tenants/{UID}/base/"));
    for gone in [&oldest, &older] {
        assert!(
            !base.iter().any(|k| k.contains(gone.as_str())),
            "{gone} deleted: {base:?}"
        );
    }
    for kept in [&anchor, &newest] {
        assert_eq!(
            base.iter().filter(|k| k.contains(kept.as_str())).count(),
            2,
            "{kept} kept: {base:?}"
        );
    }
    let names: Vec<String> = s3
        .list_keys(&wal)
        .iter()
        .map(|k| k[wal.len()..].to_owned())
        .collect();
    assert_eq!(
        names,
        vec![
            "000000010000000000000006.lz4",
            "000000010000000000000009.lz4",
            "00000002.history",
        ]
    );
    let api: Api<TenantBackup> = Api::all(client.clone());
    assert!(api.get_opt("acme-scheduled").await.expect("get").is_none());
    assert!(
        api.get_opt("acme-manual").await.expect("get").is_some(),
        "on-demand ones stay"
    );

    // Again: nothing more to delete, and the newest backup always stays.
    let again = retention::enforce(&store, "1h", retention::Kind::BaseBackups, &client, &[])
        .await
        .expect("retention");
    assert_eq!(again.backups, vec![anchor]);
    assert_eq!(s3.list_keys(&format!("tenants/{UID}/base/")).len(), 2);
}
