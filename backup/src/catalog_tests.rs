use super::*;

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().expect("timestamp")
}

fn backup(id: &str, begin: &str, end: &str, name: Option<&str>) -> BackupInfo {
    BackupInfo {
        id: id.to_owned(),
        tenant_backup: name.map(str::to_owned),
        begin_time: ts(begin),
        end_time: ts(end),
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

fn three() -> Vec<BackupInfo> {
    vec![
        backup(
            "20261201T030000Z",
            "2026-12-01T03:00:00Z",
            "2026-12-01T03:05:00Z",
            None,
        ),
        backup(
            "20261202T030000Z",
            "2026-12-02T03:00:00Z",
            "2026-12-02T03:05:00Z",
            Some("before-migration"),
        ),
        backup(
            "20261203T030000Z",
            "2026-12-03T03:00:00Z",
            "2026-12-03T03:05:00Z",
            None,
        ),
    ]
}

#[test]
fn backup_json_is_camel_case_and_round_trips() {
    let b = backup(
        "20261201T030000Z",
        "2026-12-01T03:00:00Z",
        "2026-12-01T03:05:00Z",
        Some("x"),
    );
    let json = serde_json::to_value(&b).expect("json");
    for key in [
        "id",
        "tenantBackup",
        "beginTime",
        "endTime",
        "beginLsn",
        "endLsn",
        "beginWal",
        "endWal",
        "timeline",
        "systemIdentifier",
        "pgMajor",
        "size",
        "objects",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
    assert_eq!(json["endTime"], "2026-12-01T03:05:00Z");
    let back: BackupInfo = serde_json::from_value(json).expect("parse");
    assert_eq!(back, b);
}

#[test]
fn latest_without_target_is_the_newest() {
    let all = three();
    assert_eq!(
        pick("u", &all, &Choice::Latest, None).map(|b| b.id.as_str()),
        Ok("20261203T030000Z")
    );
    assert_eq!(
        first_recoverability_point(&all),
        Some(ts("2026-12-01T03:05:00Z"))
    );
    assert_eq!(first_recoverability_point(&[]), None);
}

#[test]
fn latest_with_target_is_the_newest_ending_before_it() {
    let all = three();
    let at = |t: &str| pick("u", &all, &Choice::Latest, Some(ts(t))).map(|b| b.id.clone());
    assert_eq!(at("2026-12-02T12:00:00Z"), Ok("20261202T030000Z".into()));
    assert_eq!(
        at("2026-12-02T03:05:00Z"),
        Ok("20261202T030000Z".into()),
        "the end itself counts"
    );
    assert_eq!(
        at("2026-12-02T03:04:59Z"),
        Ok("20261201T030000Z".into()),
        "running at T: the one before"
    );
    assert_eq!(at("2027-01-01T00:00:00Z"), Ok("20261203T030000Z".into()));
    assert_eq!(
        at("2026-12-01T03:01:00Z"),
        Err(PickError::BeforeFirst {
            uid: "u".into(),
            target: ts("2026-12-01T03:01:00Z"),
            first: ts("2026-12-01T03:05:00Z"),
        })
    );
}

#[test]
fn named_backups_by_id_or_tenant_backup() {
    let all = three();
    let named = |n: &str, t: Option<&str>| {
        pick("u", &all, &Choice::parse(n), t.map(ts)).map(|b| b.id.clone())
    };
    assert_eq!(
        named("before-migration", None),
        Ok("20261202T030000Z".into())
    );
    assert_eq!(
        named("20261201T030000Z", Some("2026-12-02T12:00:00Z")),
        Ok("20261201T030000Z".into())
    );
    assert!(matches!(
        named("nope", None),
        Err(PickError::NotFound { .. })
    ));
    let err =
        named("20261203T030000Z", Some("2026-12-02T12:00:00Z")).expect_err("target before end");
    assert!(matches!(err, PickError::TargetBeforeBackupEnd { .. }));
    assert!(err.to_string().contains("2026-12-03T03:05:00Z"), "{err}");
}

#[test]
fn no_backups_is_said_so() {
    assert_eq!(
        pick("u", &[], &Choice::Latest, None),
        Err(PickError::NoBackups { uid: "u".into() })
    );
    assert_eq!(Choice::parse("latest"), Choice::Latest);
    assert_eq!(Choice::parse(""), Choice::Latest);
}

#[test]
fn coverage_proof_is_the_first_backup_begun_after_the_target() {
    let all = three();
    let proof = |t: &str| coverage_proof(&all, ts(t)).map(|b| b.id.clone());
    assert_eq!(
        proof("2026-12-01T12:00:00Z"),
        Some("20261202T030000Z".into())
    );
    assert_eq!(
        proof("2026-12-03T03:00:00Z"),
        Some("20261203T030000Z".into())
    );
    assert_eq!(proof("2026-12-03T03:00:01Z"), None);
}

#[tokio::test]
async fn only_complete_backups_are_listed() {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    let store = InMemory::new();
    let layout = Layout::new(Some("p"));
    let uid = "0b7d3c52-1f6e-4d0a-9c1e-5a2f8e9b7c31";
    let all = three();
    for b in &all {
        let id: BackupId = b.id.parse().expect("id");
        let tar = layout.base_tar(uid, id).expect("key");
        store
            .put(&tar, PutPayload::from_static(b"tar"))
            .await
            .expect("put");
        let json = serde_json::to_vec(b).expect("json");
        let key = layout.backup_json(uid, id).expect("key");
        store.put(&key, PutPayload::from(json)).await.expect("put");
    }
    // Running: its tar is there, its backup.json not yet.
    let running: BackupId = "20261204T030000Z".parse().expect("id");
    let tar = layout.base_tar(uid, running).expect("key");
    store
        .put(&tar, PutPayload::from_static(b"partial"))
        .await
        .expect("put");
    // Another tenant's backup is not listed.
    let other_id: BackupId = "20261205T030000Z".parse().expect("id");
    let other = layout.backup_json("other-uid", other_id).expect("key");
    let json = serde_json::to_vec(&all[0]).expect("json");
    store
        .put(&other, PutPayload::from(json))
        .await
        .expect("put");

    let listed = list(&store, &layout, uid).await.expect("list");
    assert_eq!(listed, all);
    let one = get(
        &store,
        &layout,
        uid,
        "20261202T030000Z".parse().expect("id"),
    )
    .await;
    assert_eq!(one.expect("get"), Some(all[1].clone()));
    assert_eq!(get(&store, &layout, uid, running).await.expect("get"), None);

    let bad = layout.backup_json(uid, running).expect("key");
    store
        .put(&bad, PutPayload::from_static(b"{"))
        .await
        .expect("put");
    let err = list(&store, &layout, uid)
        .await
        .expect_err("a damaged backup.json");
    assert!(err.to_string().contains("backup.json"), "{err}");
}
