use super::*;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

/// A backup of day `day` of December 2026, beginning in segment `seg`.
fn backup(day: u32, seg: u32) -> BackupInfo {
    BackupInfo {
        id: format!("202612{day:02}T030000Z"),
        tenant_backup: None,
        begin_time: ts(&format!("2026-12-{day:02}T03:00:00Z")),
        end_time: ts(&format!("2026-12-{day:02}T03:05:00Z")),
        begin_lsn: "0/4000028".into(),
        end_lsn: "0/4000100".into(),
        begin_wal: format!("00000001000000000000{seg:04X}"),
        end_wal: format!("00000001000000000000{seg:04X}"),
        timeline: 1,
        system_identifier: "7716518971410737218".into(),
        pg_major: 15,
        size: 1234,
        objects: vec![],
    }
}

#[test]
fn retention_counts_hours_days_and_weeks() {
    assert_eq!(parse_retention("36h"), Ok(SignedDuration::from_hours(36)));
    assert_eq!(parse_retention("30d"), Ok(SignedDuration::from_hours(720)));
    assert_eq!(parse_retention("2w"), Ok(SignedDuration::from_hours(336)));
    assert_eq!(
        parse_retention("9999w"),
        Ok(SignedDuration::from_hours(9999 * 168))
    );
    for bad in ["", "d", "0d", "01d", "10000d", "3m", "3 d", "-1d", "3é"] {
        let error = parse_retention(bad).expect_err(bad);
        assert!(error.to_string().contains("30d"), "{error}");
    }
}

#[test]
fn keeps_the_window_and_the_newest_backup_before_it() {
    let backups = vec![backup(1, 2), backup(3, 5), backup(5, 9), backup(6, 0xC)];
    // Window of 2 days at Dec 6 04:00: cutoff Dec 4 04:00. Day 3 ended
    // before it but is the newest such: it keeps Dec 4 04:00 recoverable.
    let plan = plan(
        &backups,
        SignedDuration::from_hours(48),
        ts("2026-12-06T04:00:00Z"),
    );
    assert_eq!(plan.delete, vec!["20261201T030000Z"]);
    assert_eq!(
        plan.keep,
        vec!["20261203T030000Z", "20261205T030000Z", "20261206T030000Z"]
    );
    assert_eq!(plan.wal_before.as_deref(), Some("000000010000000000000005"));
}

#[test]
fn never_deletes_the_newest_backup() {
    let backups = vec![backup(1, 2), backup(2, 4)];
    let plan = plan(
        &backups,
        SignedDuration::from_hours(1),
        ts("2026-12-30T00:00:00Z"),
    );
    assert_eq!(plan.delete, vec!["20261201T030000Z"]);
    assert_eq!(plan.keep, vec!["20261202T030000Z"]);
    assert_eq!(plan.wal_before.as_deref(), Some("000000010000000000000004"));
}

#[test]
fn everything_inside_the_window_is_kept() {
    let backups = vec![backup(5, 2), backup(6, 4)];
    let plan = plan(
        &backups,
        SignedDuration::from_hours(720),
        ts("2026-12-07T00:00:00Z"),
    );
    assert!(plan.delete.is_empty());
    assert_eq!(plan.keep.len(), 2);
    assert_eq!(plan.wal_before.as_deref(), Some("000000010000000000000002"));
}

#[test]
fn no_backups_keep_all_wal() {
    let plan = plan(
        &[],
        SignedDuration::from_hours(1),
        ts("2026-12-07T00:00:00Z"),
    );
    assert_eq!(plan, Plan::default());
}

#[test]
fn wal_before_the_oldest_kept_backup_goes_histories_stay() {
    let objects = [
        "000000010000000000000003.lz4",
        "000000010000000000000004.lz4",
        "000000010000000000000004.00000028.backup",
        "000000010000000000000003.00000028.backup",
        "000000010000000000000002.partial.lz4",
        "00000001.history",
        "00000002.history",
        "000000020000000000000001.lz4",
        "000000010000000000000003",
        "notes.txt",
    ];
    let gone = wal_to_delete(&objects, "000000010000000000000004");
    assert_eq!(
        gone,
        vec![
            "000000010000000000000003.lz4",
            "000000010000000000000003.00000028.backup",
            "000000010000000000000002.partial.lz4",
        ]
    );
}

#[test]
fn a_deleted_tenant_keeps_its_window_from_now_until_deletion_plus_retention() {
    let backups = vec![backup(1, 2), backup(3, 5), backup(5, 9)];
    let week = SignedDuration::from_hours(7 * 24);
    let deleted = ts("2026-12-06T00:00:00Z");
    // Two days after the deletion: like a live tenant, nothing older than
    // the window's anchor goes, the newest stays.
    let early = sweep(&backups, week, ts("2026-12-08T00:00:00Z"), Some(deleted));
    assert_eq!(
        early,
        Sweep::Plan(plan(&backups, week, ts("2026-12-08T00:00:00Z")))
    );
    // Six days after: the window starts on Dec 6, after every backup: only
    // the newest stays (it covers what was left at the deletion).
    let Sweep::Plan(late) = sweep(&backups, week, ts("2026-12-12T23:00:00Z"), Some(deleted)) else {
        panic!("still within deletion + retention");
    };
    assert_eq!(late.keep, vec!["20261205T030000Z"]);
    assert_eq!(late.delete, vec!["20261201T030000Z", "20261203T030000Z"]);
    // Once deletion + retention has passed: everything goes.
    assert_eq!(
        sweep(&backups, week, ts("2026-12-13T00:00:00Z"), Some(deleted)),
        Sweep::Forget
    );
    assert_eq!(
        sweep(&[], week, ts("2027-01-01T00:00:00Z"), Some(deleted)),
        Sweep::Forget
    );
}

#[test]
fn a_live_tenant_is_never_forgotten_and_keeps_its_only_backup() {
    let backups = vec![backup(1, 2)];
    let swept = sweep(
        &backups,
        SignedDuration::from_hours(1),
        ts("2027-06-01T00:00:00Z"),
        None,
    );
    let Sweep::Plan(plan) = swept else {
        panic!("a live tenant is never forgotten");
    };
    assert!(plan.delete.is_empty());
    assert_eq!(plan.keep, vec!["20261201T030000Z"]);
}

/// A dump of day `day` of December 2026.
fn dump(day: u32) -> DumpInfo {
    DumpInfo {
        id: format!("202612{day:02}T030000Z"),
        tenant_backup: None,
        time: ts(&format!("2026-12-{day:02}T03:00:00Z")),
        end_time: ts(&format!("2026-12-{day:02}T03:01:00Z")),
        server_version: "15.18".into(),
        server_major: 15,
        pg_dump_version: "15.18".into(),
        pg_dump_major: 15,
        size: 10,
        objects: vec![],
    }
}

#[test]
fn dumps_expire_like_backups_by_the_time_they_hold() {
    let dumps = [dump(5), dump(1), dump(3), dump(7)];
    let plan = plan_dumps(
        &dumps,
        SignedDuration::from_hours(72),
        ts("2026-12-07T12:00:00Z"),
    );
    // The window starts 12-04T12: dump 3 still covers its start.
    assert_eq!(plan.delete, vec!["20261201T030000Z"]);
    assert_eq!(
        plan.keep,
        vec!["20261203T030000Z", "20261205T030000Z", "20261207T030000Z"]
    );
    assert_eq!(plan.wal_before, None, "dumps have no WAL");
    let late = plan_dumps(
        &dumps,
        SignedDuration::from_hours(1),
        ts("2027-01-01T00:00:00Z"),
    );
    assert_eq!(
        late.keep,
        vec!["20261207T030000Z"],
        "the newest is always kept"
    );
    assert_eq!(
        plan_dumps(
            &[],
            SignedDuration::from_hours(1),
            ts("2027-01-01T00:00:00Z")
        ),
        Plan::default()
    );
}
