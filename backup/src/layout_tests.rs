//! Unit tests of `layout`.

use super::*;

const UID: &str = "6f0c2a6e-93b4-4c1e-9a53-0d3f1c1b2a77";

#[test]
fn wal_names_are_classified() {
    assert_eq!(
        WalKind::of("000000010000000000000001"),
        Ok(WalKind::Segment)
    );
    assert_eq!(
        WalKind::of("00000001000000000000002A.partial"),
        Ok(WalKind::Partial)
    );
    assert_eq!(WalKind::of("00000002.history"), Ok(WalKind::History));
    assert_eq!(
        WalKind::of("000000010000000000000002.00000028.backup"),
        Ok(WalKind::BackupLabel)
    );
    for bad in [
        "",
        "00000001000000000000000",
        "0000000100000000000000001",
        "00000001000000000000002a",
        "00000001000000000000000G",
        "../../00000001000000000000",
        "0000001.history",
        "00000002.history.lz4",
        "000000010000000000000002.0000028.backup",
        "000000010000000000000002.backup",
        "RECOVERYXLOG",
        "000000010000000000000001/x",
    ] {
        assert!(WalKind::of(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn segments_and_partials_are_compressed_objects() {
    assert!(WalKind::Segment.compressed());
    assert!(WalKind::Partial.compressed());
    assert!(!WalKind::History.compressed());
    assert!(!WalKind::BackupLabel.compressed());
    assert_eq!(
        wal_object_name("000000010000000000000001").as_deref(),
        Ok("000000010000000000000001.lz4")
    );
    assert_eq!(
        wal_object_name("00000002.history").as_deref(),
        Ok("00000002.history")
    );
    assert_eq!(
        wal_name_of_object("000000010000000000000001.lz4"),
        Some(("000000010000000000000001", WalKind::Segment))
    );
    assert_eq!(
        wal_name_of_object("00000002.history"),
        Some(("00000002.history", WalKind::History))
    );
    // A segment must be compressed, a history must not be.
    assert_eq!(wal_name_of_object("000000010000000000000001"), None);
    assert_eq!(wal_name_of_object("00000002.history.lz4"), None);
    assert_eq!(wal_name_of_object("switched-x.json"), None);
}

#[test]
fn every_key_of_the_contract() {
    let id: BackupId = "20261207T093000Z".parse().expect("id");
    let l = Layout::new(Some("atoll"));
    let t = format!("atoll/tenants/{UID}");
    let key = |p: Result<Path, LayoutError>| p.expect("key").to_string();
    assert_eq!(key(l.tenant_json(UID)), format!("{t}/tenant.json"));
    assert_eq!(key(l.tenant_dir(UID)), t);
    assert_eq!(l.tenants_dir().to_string(), "atoll/tenants");
    assert_eq!(key(l.wal_dir(UID)), format!("{t}/wal"));
    assert_eq!(
        key(l.wal(UID, "00000001000000000000002A")),
        format!("{t}/wal/00000001000000000000002A.lz4")
    );
    assert_eq!(
        key(l.wal(UID, "00000002.history")),
        format!("{t}/wal/00000002.history")
    );
    assert_eq!(
        key(l.wal(UID, "000000010000000000000002.00000028.backup")),
        format!("{t}/wal/000000010000000000000002.00000028.backup")
    );
    assert_eq!(key(l.base_dir(UID)), format!("{t}/base"));
    assert_eq!(
        key(l.base_tar(UID, id)),
        format!("{t}/base/20261207T093000Z/base.tar.lz4")
    );
    assert_eq!(
        key(l.backup_json(UID, id)),
        format!("{t}/base/20261207T093000Z/backup.json")
    );
    assert_eq!(key(l.dumps_dir(UID)), format!("{t}/dumps"));
    assert_eq!(
        key(l.dump(UID, id)),
        format!("{t}/dumps/20261207T093000Z/dump.pgc")
    );
    assert_eq!(
        key(l.dump_json(UID, id)),
        format!("{t}/dumps/20261207T093000Z/dump.json")
    );
    assert_eq!(key(l.restore_json(UID)), format!("{t}/restore.json"));
    assert_eq!(key(l.names_dir("acme")), "atoll/names/acme");
    assert_eq!(
        key(l.name_marker("acme", UID)),
        format!("atoll/names/acme/{UID}")
    );
}

#[test]
fn no_prefix_and_nested_prefix() {
    assert_eq!(
        Layout::new(None)
            .tenant_json("u1")
            .expect("key")
            .to_string(),
        "tenants/u1/tenant.json"
    );
    assert_eq!(
        Layout::new(Some(""))
            .tenant_json("u1")
            .expect("key")
            .to_string(),
        "tenants/u1/tenant.json"
    );
    assert_eq!(
        Layout::new(Some("a/b"))
            .tenant_json("u1")
            .expect("key")
            .to_string(),
        "a/b/tenants/u1/tenant.json"
    );
}

#[test]
fn parts_that_could_escape_are_refused() {
    let l = Layout::new(None);
    for uid in ["", "..", "a/b", "A", "a b", &"a".repeat(65)] {
        assert_eq!(l.wal_dir(uid), Err(LayoutError::Uid(uid.to_owned())));
    }
    for name in ["", "-a", "a-", "A", "a.b", "a/b", &"a".repeat(64)] {
        assert!(l.names_dir(name).is_err(), "{name:?} accepted");
    }
    assert!(l.wal(UID, "../x").is_err());
    assert!(l.name_marker("acme", "../x").is_err());
}

#[test]
fn backup_ids_format_parse_and_sort() {
    let t: jiff::Timestamp = "2026-12-07T09:30:05.75Z".parse().expect("time");
    let id = BackupId::from_timestamp(t);
    assert_eq!(id.to_string(), "20261207T093005Z");
    assert_eq!("20261207T093005Z".parse::<BackupId>(), Ok(id));
    assert_eq!(id.timestamp().to_string(), "2026-12-07T09:30:05Z");
    let later: BackupId = "20261207T100000Z".parse().expect("id");
    assert!(id < later);
    assert!(id.to_string() < later.to_string());
    for bad in [
        "",
        "20261207T093005",
        "20261207 093005Z",
        "20261307T093005Z",
        "20261207T253005Z",
        "2026-12-07T09:30:05Z",
        "+0261207T093005Z",
        "20261207T093005Z/",
    ] {
        assert_eq!(
            bad.parse::<BackupId>(),
            Err(LayoutError::BackupId(bad.to_owned())),
            "{bad:?}"
        );
    }
}
