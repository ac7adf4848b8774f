use super::*;

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().expect("timestamp")
}

fn backup(id: &str, begin: &str, end: &str, end_lsn: &str) -> BackupInfo {
    BackupInfo {
        id: id.to_owned(),
        tenant_backup: None,
        begin_time: ts(begin),
        end_time: ts(end),
        begin_lsn: "0/4000028".into(),
        end_lsn: end_lsn.into(),
        begin_wal: "000000010000000000000004".into(),
        end_wal: "000000010000000000000004".into(),
        timeline: 1,
        system_identifier: "1".into(),
        pg_major: 15,
        size: 1,
        objects: vec![],
    }
}

fn catalog() -> Vec<BackupInfo> {
    vec![
        backup(
            "20261207T100000Z",
            "2026-12-07T10:00:00Z",
            "2026-12-07T10:00:05Z",
            "0/4000100",
        ),
        backup(
            "20261207T120000Z",
            "2026-12-07T12:00:00Z",
            "2026-12-07T12:00:05Z",
            "0/9000100",
        ),
    ]
}

#[test]
fn promotion_is_success_with_the_last_transaction() {
    let all = catalog();
    let v = Verdict::Promoted {
        reached: Some(ts("2026-12-07T11:15:13.047237Z")),
    };
    let j = judge(
        &v,
        "src",
        &all[0],
        Some(ts("2026-12-07T11:15:13.061764Z")),
        &all,
    );
    let Judgement::Done { reached, message } = j else {
        panic!("{j:?}")
    };
    assert_eq!(reached, ts("2026-12-07T11:15:13.047237Z"));
    assert!(
        message.contains("base backup 20261207T100000Z"),
        "{message}"
    );
    // No transaction after the backup: the backup's end is what was reached.
    let none = judge(
        &Verdict::Promoted { reached: None },
        "src",
        &all[0],
        None,
        &all,
    );
    assert!(matches!(none, Judgement::Done { reached, .. } if reached == all[0].end_time));
}

#[test]
fn past_the_archive_fails_naming_how_far() {
    let all = catalog();
    let v = Verdict::EndOfArchive {
        reached: Some(ts("2026-12-07T12:30:00Z")),
        redo_done: Some(Lsn(0x0A00_0000)),
    };
    let j = judge(&v, "src", &all[1], Some(ts("2026-12-07T13:00:00Z")), &all);
    let Judgement::Failed { reached, message } = j else {
        panic!("{j:?}")
    };
    assert_eq!(reached, Some(ts("2026-12-07T12:30:00Z")));
    assert!(
        message.contains("could reach only 2026-12-07T12:30:00Z"),
        "{message}"
    );
    assert!(message.contains("tenant src"), "{message}");
}

#[test]
fn a_quiet_tail_is_accepted_only_with_proof() {
    let all = catalog();
    let target = Some(ts("2026-12-07T11:00:00Z"));
    let quiet = |lsn: u64| Verdict::EndOfArchive {
        reached: Some(ts("2026-12-07T10:30:00Z")),
        redo_done: Some(Lsn(lsn)),
    };
    // Backup 12:00 began after the target and replay went past its end.
    let j = judge(&quiet(0x0A00_0000), "src", &all[0], target, &all);
    assert!(
        matches!(&j, Judgement::RecoverToEnd { message } if message.contains("20261207T120000Z")),
        "{j:?}"
    );
    // Replay stopped before that backup's end: a gap in the archive.
    let j = judge(&quiet(0x0800_0000), "src", &all[0], target, &all);
    assert!(matches!(j, Judgement::Failed { .. }), "{j:?}");
    // No backup began after the target: no proof.
    let late = Some(ts("2026-12-07T12:30:00Z"));
    let j = judge(&quiet(0x0A00_0000), "src", &all[1], late, &all);
    assert!(matches!(j, Judgement::Failed { .. }), "{j:?}");
}

#[test]
fn other_failures_are_named() {
    let all = catalog();
    let j = judge(
        &Verdict::BeforeConsistent,
        "src",
        &all[0],
        Some(ts("2026-12-07T10:00:01Z")),
        &all,
    );
    assert!(
        matches!(&j, Judgement::Failed { message, .. } if message.contains("before base backup")),
        "{j:?}"
    );
    let j = judge(
        &Verdict::Failed(Some("could not locate a valid checkpoint record".into())),
        "src",
        &all[0],
        None,
        &all,
    );
    assert!(
        matches!(&j, Judgement::Failed { message, .. } if message.contains("valid checkpoint")),
        "{j:?}"
    );
}

#[test]
fn outcome_json_is_camel_case() {
    let outcome = RestoreOutcome {
        source_uid: "u".into(),
        backup_id: Some("20261207T100000Z".into()),
        target_time: Some(ts("2026-12-07T11:00:00Z")),
        reached_time: None,
        ok: false,
        message: "m".into(),
    };
    let json = serde_json::to_value(&outcome).expect("json");
    for key in [
        "sourceUid",
        "backupId",
        "targetTime",
        "reachedTime",
        "ok",
        "message",
    ] {
        assert!(json.get(key).is_some(), "{key} in {json}");
    }
}

#[test]
fn pgdata_must_be_empty_or_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fresh = dir.path().join("a/pgdata");
    prepare_pgdata(&fresh).expect("created");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&fresh)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o700);
    prepare_pgdata(&fresh).expect("empty is fine");
    std::fs::write(fresh.join("PG_VERSION"), "15").expect("write");
    let err = prepare_pgdata(&fresh).expect_err("not empty");
    assert!(err.to_string().contains("not empty"), "{err}");
}

#[test]
fn wipe_empties_but_keeps_the_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pgdata = dir.path().join("pgdata");
    std::fs::create_dir_all(pgdata.join("base/1")).expect("mkdir");
    std::fs::write(pgdata.join("PG_VERSION"), "15").expect("write");
    std::fs::write(pgdata.join("base/1/123"), "x").expect("write");
    wipe(&pgdata).expect("wiped");
    assert!(pgdata.is_dir());
    prepare_pgdata(&pgdata).expect("empty now");
    wipe(&dir.path().join("absent")).expect("nothing to wipe");
}

#[test]
fn drop_takes_plain_names_that_are_not_postgresql_files() {
    assert_eq!(
        parse_drop("atoll-roles-layout").as_deref(),
        Ok("atoll-roles-layout")
    );
    for bad in [
        "",
        ".",
        "..",
        "../x",
        "a/b",
        "/etc/passwd",
        "PG_VERSION",
        "pg_wal",
        "global",
        "postgresql.auto.conf",
        "backup_label",
    ] {
        assert!(parse_drop(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn remove_files_removes_what_is_there_and_ignores_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("marker"), b"1").expect("write");
    std::fs::write(dir.path().join("keep"), b"1").expect("write");
    remove_files(dir.path(), &["marker", "absent"]).expect("removed");
    assert!(!dir.path().join("marker").exists());
    assert!(dir.path().join("keep").exists());
}
