use super::*;

const SOURCE: &str = "0b7d3c52-1f6e-4d0a-9c1e-5a2f8e9b7c31";
const DUMP: &str = "20261202T030000Z";

fn marker(source: &str, dump: &str, state: &str) -> Marker {
    Marker {
        source_uid: source.into(),
        dump_id: dump.into(),
        state: state.into(),
    }
}

fn contents(names: &[&str]) -> Contents {
    Contents {
        count: names.len() as u64,
        sample: names.iter().map(|n| (*n).to_owned()).collect(),
    }
}

fn decided(marker: Option<Marker>, names: &[&str]) -> Decision {
    decide("atoll_new", marker.as_ref(), &contents(names), SOURCE, DUMP)
}

#[test]
fn an_empty_database_is_restored() {
    assert_eq!(decided(None, &[]), Decision::Restore);
    // An earlier attempt that failed (its transaction rolled back).
    assert_eq!(
        decided(Some(marker(SOURCE, DUMP, "restoring")), &[]),
        Decision::Restore
    );
    assert_eq!(
        decided(Some(marker(SOURCE, "20261201T030000Z", "restoring")), &[]),
        Decision::Restore
    );
}

#[test]
fn the_same_restore_is_idempotent() {
    let tables = ["public.t (table)"];
    assert_eq!(
        decided(Some(marker(SOURCE, DUMP, "done")), &tables),
        Decision::AlreadyDone
    );
    // pg_restore committed, the process died before marking it done.
    assert_eq!(
        decided(Some(marker(SOURCE, DUMP, "restoring")), &tables),
        Decision::MarkDone
    );
}

#[test]
fn other_databases_are_refused() {
    let Decision::Refuse(why) = decided(None, &["public.ft (foreign table)"]) else {
        panic!("a database with a foreign table must be refused");
    };
    assert!(why.contains("public.ft (foreign table)"), "{why}");
    assert!(why.contains("atoll_new is not empty"), "{why}");
    let other = marker(SOURCE, "20261201T030000Z", "done");
    let Decision::Refuse(why) = decided(Some(other), &["public.t (table)"]) else {
        panic!("another dump must not be restored over a restored one");
    };
    assert!(why.contains("already holds dump 20261201T030000Z"), "{why}");
    let other = marker("another-uid", DUMP, "restoring");
    assert!(matches!(
        decided(Some(other), &["public.t (table)"]),
        Decision::Refuse(_)
    ));
}

fn info(server_major: u32, pg_dump_major: u32) -> DumpInfo {
    DumpInfo {
        id: DUMP.into(),
        tenant_backup: None,
        time: "2026-12-02T03:00:00Z".parse().expect("time"),
        end_time: "2026-12-02T03:00:09Z".parse().expect("time"),
        server_version: format!("{server_major}.4"),
        server_major,
        pg_dump_version: format!("{pg_dump_major}.2"),
        pg_dump_major,
        size: 1,
        objects: vec![],
    }
}

fn v(text: &str, major: u32) -> Version {
    Version {
        text: text.into(),
        major,
    }
}

#[test]
fn older_servers_and_tools_are_refused() {
    assert!(check_versions(&info(15, 15), &v("15.18", 15), &v("15.1", 15)).is_ok());
    assert!(check_versions(&info(15, 16), &v("17.0", 17), &v("16.1", 16)).is_ok());
    let err =
        check_versions(&info(16, 16), &v("16.4", 16), &v("15.18", 15)).expect_err("older server");
    assert_eq!(
        err.to_string(),
        "the target server runs PostgreSQL 15.18, older than the server dump 20261202T030000Z was taken from (16.4): restore into a server of major version 16 or newer"
    );
    let err = check_versions(&info(15, 16), &v("15.18", 15), &v("16.1", 16)).expect_err("old tool");
    assert!(
        err.to_string().contains("pg_restore 15.18 is older"),
        "{err}"
    );
}
