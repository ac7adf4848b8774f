use std::path::PathBuf;

use bytes::Bytes;
use object_store::memory::InMemory;

use super::*;
use crate::base::ServerArgs;
use crate::settings::Credentials;

const UID: &str = "0b7d3c52-1f6e-4d0a-9c1e-5a2f8e9b7c31";

fn settings() -> Settings {
    Settings {
        endpoint: "http://127.0.0.1:1".into(),
        bucket: "b".into(),
        region: "us-east-1".into(),
        path_style: true,
        prefix: Some("p".into()),
        allow_http: true,
        tenant_uid: UID.into(),
        tenant_name: None,
        credentials: Some(Credentials {
            access_key_id: "AKID-visible".into(),
            secret_access_key: "SECRET-visible".into(),
        }),
    }
}

fn runner(store: Arc<dyn ObjectStore>) -> Arc<Backups> {
    let args = BaseBackupArgs {
        config: PathBuf::from("/nonexistent"),
        id: None,
        name: None,
        server: ServerArgs {
            host: "/nonexistent".into(),
            port: 5432,
            user: "postgres".into(),
            bindir: None,
        },
        timeout: 60,
    };
    let config = BackupConfig {
        settings: Arc::new(settings()),
        args,
    };
    Arc::new(Backups::new(config, store))
}

fn info(id: &str, end_second: i64) -> BackupInfo {
    let t = |s| jiff::Timestamp::from_second(s).expect("time");
    BackupInfo {
        id: id.into(),
        tenant_backup: None,
        begin_time: t(end_second - 5),
        end_time: t(end_second),
        begin_lsn: "0/4000028".into(),
        end_lsn: "0/4000100".into(),
        begin_wal: "000000010000000000000004".into(),
        end_wal: "000000010000000000000004".into(),
        timeline: 1,
        system_identifier: "7716518971410737218".into(),
        pg_major: 15,
        size: 1234,
        objects: vec![],
    }
}

fn id(text: &str) -> BackupId {
    text.parse().expect("backup id")
}

#[tokio::test]
async fn the_store_is_the_truth_for_completed_backups() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let backups = runner(store.clone());
    let known = id("20261207T101500Z");
    assert_eq!(backups.view(known).await, Ok(None));

    let key = Layout::new(Some("p")).backup_json(UID, known).expect("key");
    let stored = info("20261207T101500Z", 1_796_641_000);
    let body = serde_json::to_vec(&stored).expect("json");
    crate::store::put_create_or_same(store.as_ref(), &key, Bytes::from(body))
        .await
        .expect("put");
    let got = backups.view(known).await.expect("view").expect("known");
    assert_eq!(got.phase, Phase::Completed);
    assert_eq!(got.info, Some(stored));
    let json = serde_json::to_value(&got).expect("json");
    assert_eq!(json["phase"], "Completed");
    assert!(json.get("message").is_none(), "{json}");
}

#[tokio::test]
async fn failures_are_remembered_and_reported() {
    let backups = runner(Arc::new(InMemory::new()));
    let failed = id("20261207T101500Z");
    backups.finish(failed, Err("pg_basebackup: connection refused".into()));
    let got = backups.view(failed).await.expect("view").expect("known");
    assert_eq!(got.phase, Phase::Failed);
    assert_eq!(
        got.message.as_deref(),
        Some("pg_basebackup: connection refused")
    );
    let summary = backups.summary();
    assert_eq!(summary.running, None);
    let last_error = summary.last_error.expect("last error");
    assert_eq!(last_error.id, "20261207T101500Z");
    let json = serde_json::to_value(backups.summary()).expect("json");
    assert!(json.get("lastError").is_some(), "{json}");
    assert!(json["last"].is_null(), "{json}");
}

#[tokio::test]
async fn a_completed_backup_removed_from_the_store_is_unknown() {
    let backups = runner(Arc::new(InMemory::new()));
    let done = id("20261207T101500Z");
    backups.finish(done, Ok(info("20261207T101500Z", 1_796_641_000)));
    assert_eq!(backups.view(done).await, Ok(None));
    assert_eq!(
        backups.summary().last.map(|l| l.id),
        Some("20261207T101500Z".into())
    );
}

#[tokio::test]
async fn unreadable_store_errors_are_redacted() {
    // A store that refuses connections; memory does not know the id.
    let settings = settings();
    let store = crate::store::open(&settings).expect("store");
    let backups = runner(store);
    let err = backups
        .view(id("20261207T101500Z"))
        .await
        .expect_err("store down");
    assert!(
        !err.contains("SECRET-visible") && !err.contains("AKID-visible"),
        "{err}"
    );
    assert!(err.contains("backup.json"), "{err}");
}

#[test]
fn the_newest_backup_is_kept_as_last() {
    let mut last = None;
    note_last(&mut last, &info("20261207T101500Z", 1_796_641_000));
    note_last(&mut last, &info("20261206T101500Z", 1_796_540_000));
    assert_eq!(
        last.as_ref().map(|l| l.id.as_str()),
        Some("20261207T101500Z")
    );
    note_last(&mut last, &info("20261208T101500Z", 1_796_741_000));
    assert_eq!(last.map(|l| l.id), Some("20261208T101500Z".into()));
}

#[test]
fn tenant_backup_names() {
    for good in ["acme-20261207t101500z", "a", "acme.before-migration", "0ab"] {
        assert!(valid_name(good), "{good}");
    }
    let long = "a".repeat(254);
    for bad in [
        "",
        "-acme",
        "acme-",
        "Acme",
        "acme_x",
        "acme/x",
        "../x",
        long.as_str(),
    ] {
        assert!(!valid_name(bad), "{bad}");
    }
}
