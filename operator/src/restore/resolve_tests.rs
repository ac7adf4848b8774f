use super::*;
use atoll_backup::catalog::BackupInfo;
use atoll_crds::TenantSpec;
use object_store::memory::InMemory;
use object_store::{ObjectStoreExt, PutPayload, path::Path};

const OWN: &str = "0a0a0a0a-0000-4000-8000-000000000001";
const OLD: &str = "0b0b0b0b-0000-4000-8000-000000000001";
const OLDER: &str = "0c0c0c0c-0000-4000-8000-000000000001";
const OWN2: &str = "0d0d0d0d-0000-4000-8000-000000000001";

fn tenant(name: &str, uid: &str) -> Arc<Tenant> {
    let mut t = Tenant::new(name, TenantSpec::default());
    t.metadata.uid = Some(uid.to_owned());
    Arc::new(t)
}

fn spec(from: &str, target: Option<&str>) -> RestoreSpec {
    RestoreSpec {
        from: from.into(),
        backup: "latest".into(),
        target_time: target.map(str::to_owned),
        object_store: None,
    }
}

fn info(id: &str, end: &str) -> BackupInfo {
    BackupInfo {
        id: id.into(),
        tenant_backup: None,
        begin_time: end.parse().expect("time"),
        end_time: end.parse().expect("time"),
        begin_lsn: "0/4000028".into(),
        end_lsn: "0/4000100".into(),
        begin_wal: "000000010000000000000004".into(),
        end_wal: "000000010000000000000004".into(),
        timeline: 1,
        system_identifier: "1".into(),
        pg_major: 15,
        size: 1,
        objects: vec![],
    }
}

async fn put(store: &InMemory, key: String, body: Vec<u8>) {
    store
        .put(&Path::from(key), PutPayload::from(body))
        .await
        .expect("put");
}

#[test]
fn uids_live_tenants_and_markers() {
    assert!(is_uid(OWN));
    assert!(!is_uid("acme") && !is_uid(&OWN.to_uppercase()));
    let live = [tenant("acme", OLD), tenant("copy", OWN)];
    assert_eq!(live_source("acme", OWN, &live).as_deref(), Some(OLD));
    // The new Tenant is never its own source.
    assert_eq!(live_source("copy", OWN, &live), None);
    let markers = vec![
        (OLDER.to_owned(), 1),
        (OLD.to_owned(), 2),
        (OWN.to_owned(), 3),
    ];
    assert_eq!(newest_marker(markers, OWN).as_deref(), Some(OLD));
    assert_eq!(newest_marker(Vec::<(String, u8)>::new(), OWN), None);
}

#[tokio::test]
async fn resolves_a_deleted_tenant_by_name_and_picks_the_backup() {
    let store = InMemory::new();
    let layout = Layout::new(Some("atoll"));
    put(&store, format!("atoll/names/acme/{OLDER}"), vec![]).await;
    put(&store, format!("atoll/names/acme/{OLD}"), vec![]).await;
    // A Tenant re-created as "acme" (the one restoring) has a marker too.
    put(&store, format!("atoll/names/acme/{OWN}"), vec![]).await;
    for (id, end) in [
        ("20261207T090000Z", "2026-12-07T09:00:05Z"),
        ("20261207T100000Z", "2026-12-07T10:00:05Z"),
    ] {
        let body = serde_json::to_vec(&info(id, end)).expect("json");
        put(
            &store,
            format!("atoll/tenants/{OLD}/base/{id}/backup.json"),
            body,
        )
        .await;
    }
    let live = [tenant("acme", OWN)];
    let at = spec("acme", Some("2026-12-07T09:30:00Z"));
    let resolved = resolve(&at, OWN, &live, &store, &layout, DatabaseMode::Dedicated)
        .await
        .expect("resolved");
    assert_eq!(resolved.source_uid, OLD);
    assert_eq!(resolved.backup_id, "20261207T090000Z");
    let latest = resolve(
        &spec(OLD, None),
        OWN,
        &[],
        &store,
        &layout,
        DatabaseMode::Dedicated,
    )
    .await
    .expect("by uid");
    assert_eq!(latest.backup_id, "20261207T100000Z");

    let early = spec("acme", Some("2026-12-07T08:00:00Z"));
    let err = resolve(&early, OWN, &live, &store, &layout, DatabaseMode::Dedicated)
        .await
        .expect_err("before the first backup");
    assert_eq!(err.reason(), reasons::NO_BACKUP);
    assert!(
        err.to_string().contains("first recoverability point"),
        "{err}"
    );

    let err = resolve(
        &spec("nobody", None),
        OWN,
        &[],
        &store,
        &layout,
        DatabaseMode::Dedicated,
    )
    .await
    .expect_err("unknown");
    assert_eq!(err.reason(), reasons::SOURCE_UNAVAILABLE);
    let err = resolve(
        &spec(OWN, None),
        OWN,
        &[],
        &store,
        &layout,
        DatabaseMode::Dedicated,
    )
    .await
    .expect_err("itself");
    assert!(matches!(err, ResolveError::SameTenant));
    let err = resolve(
        &spec(OLDER, None),
        OWN,
        &[],
        &store,
        &layout,
        DatabaseMode::Dedicated,
    )
    .await
    .expect_err("no backups");
    assert!(err.to_string().contains("no complete base backup"), "{err}");
}

fn dump_json(id: &str, time: &str) -> Vec<u8> {
    serde_json::to_vec(&atoll_backup::dump_catalog::DumpInfo {
        id: id.to_owned(),
        tenant_backup: Some(format!("acme-{id}")),
        time: time.parse().expect("time"),
        end_time: time.parse().expect("time"),
        server_version: "15.18".into(),
        server_major: 15,
        pg_dump_version: "15.18".into(),
        pg_dump_major: 15,
        size: 10,
        objects: vec![],
    })
    .expect("json")
}

#[tokio::test]
async fn an_external_tenant_restores_from_dumps_and_refuses_base_backups() {
    let store = InMemory::new();
    let layout = Layout::new(None);
    for (id, time) in [
        ("20261207T090000Z", "2026-12-07T09:00:00Z"),
        ("20261207T100000Z", "2026-12-07T10:00:00Z"),
    ] {
        let key = format!("tenants/{OLD}/dumps/{id}/dump.json");
        put(&store, key, dump_json(id, time)).await;
    }
    let at = spec(OLD, Some("2026-12-07T09:30:00Z"));
    let resolved = resolve(&at, OWN, &[], &store, &layout, DatabaseMode::External)
        .await
        .expect("resolved");
    assert_eq!(resolved.backup_id, "20261207T090000Z");
    let err = resolve(&at, OWN, &[], &store, &layout, DatabaseMode::Dedicated)
        .await
        .expect_err("dumps into Dedicated");
    assert_eq!(err.reason(), reasons::OTHER_MODE);
    assert!(
        err.to_string().contains("spec.database.mode External"),
        "{err}"
    );

    let body = serde_json::to_vec(&info("20261207T090000Z", "2026-12-07T09:00:05Z")).expect("json");
    let key = format!("tenants/{OLDER}/base/20261207T090000Z/backup.json");
    put(&store, key, body).await;
    let err = resolve(
        &spec(OLDER, None),
        OWN,
        &[],
        &store,
        &layout,
        DatabaseMode::External,
    )
    .await
    .expect_err("base backups into External");
    assert_eq!(err.reason(), reasons::OTHER_MODE);
    assert!(
        err.to_string().contains("spec.database.mode Dedicated"),
        "{err}"
    );
    let err = resolve(
        &spec(OWN2, None),
        OWN,
        &[],
        &store,
        &layout,
        DatabaseMode::External,
    )
    .await
    .expect_err("nothing at all");
    assert_eq!(err.reason(), reasons::NO_BACKUP);
    assert!(err.to_string().contains("no complete dump"), "{err}");
}
