use super::*;

const UID: &str = "0b7d3c52-1f6e-4d0a-9c1e-5a2f8e9b7c31";

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().expect("timestamp")
}

fn dump(id: &str, time: &str, name: Option<&str>) -> DumpInfo {
    DumpInfo {
        id: id.to_owned(),
        tenant_backup: name.map(str::to_owned),
        time: ts(time),
        end_time: ts(time)
            .checked_add(jiff::SignedDuration::from_secs(30))
            .expect("time"),
        server_version: "15.18".into(),
        server_major: 15,
        pg_dump_version: "15.18".into(),
        pg_dump_major: 15,
        size: 4321,
        objects: vec![],
    }
}

fn three() -> Vec<DumpInfo> {
    vec![
        dump("20261201T030000Z", "2026-12-01T03:00:00Z", None),
        dump(
            "20261202T030000Z",
            "2026-12-02T03:00:00Z",
            Some("before-migration"),
        ),
        dump("20261203T030000Z", "2026-12-03T03:00:00Z", None),
    ]
}

fn picked(choice: &str, target: Option<&str>) -> Result<String, DumpPickError> {
    let dumps = three();
    pick(UID, &dumps, &Choice::parse(choice), target.map(ts)).map(|d| d.id.clone())
}

#[test]
fn latest_and_newest_before_the_target() {
    assert_eq!(picked("latest", None), Ok("20261203T030000Z".into()));
    assert_eq!(
        picked("latest", Some("2026-12-02T12:00:00Z")),
        Ok("20261202T030000Z".into())
    );
    // A dump taken exactly at the target is the state at the target.
    assert_eq!(
        picked("", Some("2026-12-02T03:00:00Z")),
        Ok("20261202T030000Z".into())
    );
    assert_eq!(
        picked("latest", Some("2027-01-01T00:00:00Z")),
        Ok("20261203T030000Z".into())
    );
}

#[test]
fn by_id_or_tenant_backup_name() {
    assert_eq!(
        picked("20261201T030000Z", None),
        Ok("20261201T030000Z".into())
    );
    assert_eq!(
        picked("before-migration", None),
        Ok("20261202T030000Z".into())
    );
    assert_eq!(
        picked("before-migration", Some("2026-12-05T00:00:00Z")),
        Ok("20261202T030000Z".into())
    );
    assert_eq!(
        picked("nightly", None),
        Err(DumpPickError::NotFound {
            uid: UID.into(),
            name: "nightly".into()
        })
    );
    let err = picked("before-migration", Some("2026-12-01T12:00:00Z")).expect_err("too early");
    assert!(
        matches!(err, DumpPickError::TargetBeforeDump { ref id, .. } if id == "20261202T030000Z"),
        "{err}"
    );
}

#[test]
fn a_target_before_the_first_dump_names_the_first_recoverability_point() {
    let err = picked("latest", Some("2026-11-30T00:00:00Z")).expect_err("too early");
    assert_eq!(
        err,
        DumpPickError::BeforeFirst {
            uid: UID.into(),
            target: ts("2026-11-30T00:00:00Z"),
            first: ts("2026-12-01T03:00:00Z"),
        }
    );
    assert!(
        err.to_string().contains("2026-12-01T03:00:00Z"),
        "the message names the point: {err}"
    );
    assert_eq!(
        first_recoverability_point(&three()),
        Some(ts("2026-12-01T03:00:00Z"))
    );
}

#[test]
fn no_dumps() {
    let err = pick(UID, &[], &Choice::Latest, None).expect_err("empty");
    assert_eq!(err, DumpPickError::NoDumps { uid: UID.into() });
    assert_eq!(first_recoverability_point(&[]), None);
    assert_eq!(latest(&[]), None);
}

#[tokio::test]
async fn only_complete_dumps_are_listed() {
    use object_store::memory::InMemory;
    use object_store::{ObjectStoreExt, PutPayload};
    let store = InMemory::new();
    let layout = Layout::new(Some("p"));
    let all = three();
    for d in &all {
        let id: BackupId = d.id.parse().expect("id");
        let data = layout.dump(UID, id).expect("key");
        store
            .put(&data, PutPayload::from_static(b"PGDMP"))
            .await
            .expect("put");
        let json = serde_json::to_vec(d).expect("json");
        let key = layout.dump_json(UID, id).expect("key");
        store.put(&key, PutPayload::from(json)).await.expect("put");
    }
    // Running: its dump.pgc is there, its dump.json not yet.
    let running: BackupId = "20261204T030000Z".parse().expect("id");
    let data = layout.dump(UID, running).expect("key");
    store
        .put(&data, PutPayload::from_static(b"PGDMP partial"))
        .await
        .expect("put");
    // Another tenant's dump and a base backup's info are not listed.
    let other = layout.dump_json("other-uid", running).expect("key");
    let json = serde_json::to_vec(&all[0]).expect("json");
    store
        .put(&other, PutPayload::from(json))
        .await
        .expect("put");

    assert_eq!(list(&store, &layout, UID).await.expect("list"), all);
    let one = get(
        &store,
        &layout,
        UID,
        "20261202T030000Z".parse().expect("id"),
    )
    .await;
    assert_eq!(one.expect("get"), Some(all[1].clone()));
    assert_eq!(get(&store, &layout, UID, running).await.expect("get"), None);

    let bad = layout.dump_json(UID, running).expect("key");
    store
        .put(&bad, PutPayload::from_static(b"{"))
        .await
        .expect("put");
    let err = list(&store, &layout, UID).await.expect_err("damaged");
    assert!(err.to_string().contains("dump.json"), "{err}");
}
