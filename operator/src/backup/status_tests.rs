use atoll_backup::status::PushStatus;
use atoll_crds::{TenantBackupSpec, TenantBackupStatus};

use super::*;
use crate::backup::agent_client::Archiver;

fn ts(s: &str) -> Timestamp {
    s.parse().expect("timestamp")
}

fn info(id: &str, end: &str) -> BackupInfo {
    BackupInfo {
        id: id.to_owned(),
        tenant_backup: None,
        begin_time: ts(end),
        end_time: ts(end),
        begin_lsn: "0/4000028".into(),
        end_lsn: "0/4000100".into(),
        begin_wal: "000000010000000000000004".into(),
        end_wal: "000000010000000000000004".into(),
        timeline: 1,
        system_identifier: "1".into(),
        pg_major: 15,
        size: 10,
        objects: vec![],
    }
}

fn tb(
    name: &str,
    phase: BackupPhase,
    stopped: Option<&str>,
    message: Option<&str>,
) -> TenantBackup {
    let mut tb = TenantBackup::new(
        name,
        TenantBackupSpec {
            tenant: "acme".into(),
        },
    );
    tb.status = Some(TenantBackupStatus {
        phase: Some(phase),
        stopped_at: stopped.map(|s| Time(ts(s))),
        message: message.map(str::to_owned),
        ..TenantBackupStatus::default()
    });
    tb
}

fn healthy() -> AgentStatus {
    AgentStatus {
        archiver: Some(Archiver {
            archived_count: 5,
            last_archived_wal: Some("000000010000000000000005".into()),
            last_archived_time: Some(ts("2026-12-07T10:00:00Z")),
            ..Archiver::default()
        }),
        pending_segments: Some(0),
        pending_bytes: Some(0),
        ..AgentStatus::default()
    }
}

const SECRET: &str = "s3cr3t-value";

fn observation<'a>(
    catalog: Result<&'a [BackupInfo], &'a str>,
    agent: Result<Option<&'a AgentStatus>, &'a str>,
    backups: &'a [TenantBackup],
) -> Observation<'a> {
    Observation {
        catalog,
        agent,
        backups,
        next_due: Some(ts("2026-12-08T03:00:00Z")),
    }
}

fn assert_actionable(v: &Verdict) {
    assert!(!v.message.contains(SECRET), "{}", v.message);
    assert!(v.message.len() > 30, "{}", v.message);
    assert!(
        v.reason.chars().all(|c| c.is_ascii_alphabetic()),
        "{}",
        v.reason
    );
}

#[test]
fn absent_backup_spec_has_no_status_and_no_conditions() {
    let previous = BackupStatus::default();
    let report = report(&Situation::Absent, Some(&previous));
    assert_eq!(report.status, None);
    assert_eq!(report.backup_ready, None);
    assert_eq!(report.archiving, None);
}

#[test]
fn completed_backups_and_archiving_make_both_true() {
    let catalog = [
        info("20261206T030000Z", "2026-12-06T03:05:00Z"),
        info("20261207T030000Z", "2026-12-07T03:05:00Z"),
    ];
    let agent = healthy();
    let r = report(
        &Situation::Wired(observation(Ok(&catalog), Ok(Some(&agent)), &[])),
        None,
    );
    let status = r.status.expect("status");
    assert_eq!(
        status.first_recoverability_point,
        Some(Time(ts("2026-12-06T03:05:00Z")))
    );
    assert_eq!(
        status.last_successful_backup,
        Some(Time(ts("2026-12-07T03:05:00Z")))
    );
    assert_eq!(
        status.last_archived_wal.as_deref(),
        Some("000000010000000000000005")
    );
    let ready = r.backup_ready.expect("BackupReady");
    assert_eq!(
        (ready.status, ready.reason),
        (Some(true), "BackupsCompleted")
    );
    assert!(
        ready.message.contains("20261207T030000Z")
            && ready.message.contains("2026-12-08T03:00:00Z"),
        "{}",
        ready.message
    );
    let archiving = r.archiving.expect("ContinuousArchiving");
    assert_eq!(
        (archiving.status, archiving.reason),
        (Some(true), "Archiving")
    );
}

#[test]
fn no_base_backup_yet_says_what_happens() {
    let agent = healthy();
    let running = [tb("acme-first", BackupPhase::Running, None, None)];
    let r = report(
        &Situation::Wired(observation(Ok(&[]), Ok(Some(&agent)), &running)),
        None,
    );
    let ready = r.backup_ready.expect("BackupReady");
    assert_eq!(
        (ready.status, ready.reason),
        (Some(false), "NoBaseBackupYet")
    );
    assert!(ready.message.contains("acme-first"), "{}", ready.message);
    let failed = [tb(
        "acme-first",
        BackupPhase::Failed,
        Some("2026-12-07T10:00:00Z"),
        Some("pg_basebackup exited 1"),
    )];
    let r = report(
        &Situation::Wired(observation(Ok(&[]), Ok(None), &failed)),
        None,
    );
    let ready = r.backup_ready.expect("BackupReady");
    assert_eq!(ready.reason, "NoBaseBackupYet");
    assert!(
        ready.message.contains("pg_basebackup exited 1") && ready.message.contains("retried"),
        "{}",
        ready.message
    );
    assert_eq!(
        r.status.and_then(|s| s.last_failed_backup),
        Some(Time(ts("2026-12-07T10:00:00Z")))
    );
    assert_eq!(r.archiving.map(|a| a.reason), Some("DatabaseNotReady"));
}

#[test]
fn a_failure_after_the_last_success_is_reported() {
    let catalog = [info("20261206T030000Z", "2026-12-06T03:05:00Z")];
    let failed = [tb(
        "acme-20261207t030000z",
        BackupPhase::Failed,
        Some("2026-12-07T03:01:00Z"),
        Some("the store refused the upload"),
    )];
    let r = report(
        &Situation::Wired(observation(Ok(&catalog), Ok(None), &failed)),
        None,
    );
    let ready = r.backup_ready.expect("BackupReady");
    assert_eq!((ready.status, ready.reason), (Some(false), "BackupFailed"));
    assert!(
        ready.message.contains("the store refused the upload")
            && ready.message.contains("20261206T030000Z"),
        "{}",
        ready.message
    );
    assert_actionable(&ready);
}

#[test]
fn an_unreachable_store_keeps_what_was_known() {
    let previous = BackupStatus {
        last_successful_backup: Some(Time(ts("2026-12-06T03:05:00Z"))),
        ..BackupStatus::default()
    };
    let r = report(
        &Situation::Wired(observation(
            Err("connection refused (http://10.0.0.1:9000)"),
            Err("the backup agent at http://10.1.0.5:9187 did not answer GET /status: timed out"),
            &[],
        )),
        Some(&previous),
    );
    assert_eq!(
        r.status.and_then(|s| s.last_successful_backup),
        previous.last_successful_backup
    );
    let ready = r.backup_ready.expect("BackupReady");
    assert_eq!(ready.reason, "ObjectStoreUnreachable");
    assert!(
        ready.message.contains("credentials are valid"),
        "{}",
        ready.message
    );
    let archiving = r.archiving.expect("ContinuousArchiving");
    assert_eq!(
        (archiving.status, archiving.reason),
        (None, "AgentUnreachable")
    );
    assert!(
        archiving.message.contains("backup-agent container"),
        "{}",
        archiving.message
    );
}

#[test]
fn failing_archiving_names_segment_since_error_and_backlog() {
    let mut agent = healthy();
    if let Some(a) = agent.archiver.as_mut() {
        a.failed_count = 3;
        a.last_failed_wal = Some("000000010000000000000006".into());
        a.last_failed_time = Some(ts("2026-12-07T10:05:00Z"));
    }
    agent.pending_segments = Some(4);
    agent.pending_bytes = Some(64 * 1024 * 1024);
    agent.last_push = Some(PushStatus {
        segment: "000000010000000000000006".into(),
        time: ts("2026-12-07T10:05:00Z"),
        ok: false,
        error: Some("store request failed: connection refused".into()),
    });
    let v = archiving(&agent);
    assert_eq!((v.status, v.reason), (Some(false), "ArchiveFailing"));
    for part in [
        "000000010000000000000006",
        "2026-12-07T10:00:00Z",
        "4 segment(s), 64 MiB",
        "connection refused",
        "reachable",
    ] {
        assert!(v.message.contains(part), "{part}: {}", v.message);
    }
    assert_actionable(&v);
}

#[test]
fn a_backlog_without_failures_is_lagging() {
    let mut agent = healthy();
    agent.pending_segments = Some(3);
    let v = archiving(&agent);
    assert_eq!((v.status, v.reason), (Some(false), "ArchiveLagging"));
    agent.pending_segments = Some(2);
    assert_eq!(archiving(&agent).status, Some(true));
}

#[test]
fn a_success_after_a_failure_is_archiving_again() {
    let mut agent = healthy();
    if let Some(a) = agent.archiver.as_mut() {
        a.failed_count = 3;
        a.last_failed_time = Some(ts("2026-12-07T09:00:00Z"));
    }
    assert_eq!(archiving(&agent).status, Some(true));
    let fresh = AgentStatus {
        archiver: Some(Archiver::default()),
        ..AgentStatus::default()
    };
    assert_eq!(archiving(&fresh).reason, "NoSegmentYet");
    let silent = AgentStatus {
        error: Some("psql: connection refused".into()),
        ..AgentStatus::default()
    };
    assert_eq!(archiving(&silent).reason, "DatabaseNotAnswering");
}

#[test]
fn other_situations_explain_themselves() {
    for situation in [
        Situation::Disabled,
        Situation::Unavailable(
            "Secret atoll-system/backup-store (the chart value backup.objectStore.credentialsSecret) does not exist",
        ),
    ] {
        let r = report(&situation, None);
        let ready = r.backup_ready.expect("BackupReady");
        assert_eq!(ready.status, Some(false));
        assert_actionable(&ready);
        assert_eq!(
            r.archiving.is_some(),
            matches!(situation, Situation::Unavailable(_))
        );
    }
}

#[test]
fn archiving_not_true_is_looked_at_again_sooner() {
    let calm = Duration::from_secs(60);
    let backups = [info("20261207T030000Z", "2026-12-07T03:05:00Z")];
    let look = |agent: &AgentStatus| {
        let observed = observation(Ok(&backups), Ok(Some(agent)), &[]);
        look_again_within(&report(&Situation::Wired(observed), None), calm)
    };
    assert_eq!(look(&healthy()), calm);
    let mut failing = healthy();
    if let Some(a) = failing.archiver.as_mut() {
        a.last_failed_time = Some(ts("2026-12-07T10:05:00Z"));
    }
    assert_eq!(look(&failing), RECHECK_UNSETTLED);
    let mut lagging = healthy();
    lagging.pending_segments = Some(5);
    assert_eq!(look(&lagging), RECHECK_UNSETTLED);
    // A sooner due backup is not postponed; no archiving, no hurry.
    let soon = Duration::from_secs(5);
    let observed = observation(Ok(&backups), Ok(Some(&failing)), &[]);
    assert_eq!(
        look_again_within(&report(&Situation::Wired(observed), None), soon),
        soon
    );
    assert_eq!(
        look_again_within(&report(&Situation::Disabled, None), calm),
        calm
    );
}

fn dump(id: &str, time: &str) -> DumpInfo {
    DumpInfo {
        id: id.to_owned(),
        tenant_backup: None,
        time: ts(time),
        end_time: ts(time),
        server_version: "15.18".into(),
        server_major: 15,
        pg_dump_version: "15.18".into(),
        pg_dump_major: 15,
        size: 10,
        objects: vec![],
    }
}

#[test]
fn an_external_tenant_is_ready_from_its_dumps_and_has_no_archiving() {
    let dumps = [
        dump("20261206T030000Z", "2026-12-06T03:00:00Z"),
        dump("20261207T030000Z", "2026-12-07T03:00:00Z"),
    ];
    let observe = |catalog: Result<&[DumpInfo], &str>, backups: &[TenantBackup]| {
        report(
            &Situation::Dumps(DumpObservation {
                catalog,
                backups,
                next_due: Some(ts("2026-12-08T03:00:00Z")),
            }),
            None,
        )
    };
    let r = observe(Ok(&dumps[..]), &[]);
    assert_eq!(
        r.archiving, None,
        "no WAL of its own: no ContinuousArchiving"
    );
    let ready = r.backup_ready.expect("BackupReady");
    assert_eq!(
        (ready.status, ready.reason),
        (Some(true), "BackupsCompleted")
    );
    assert!(
        ready.message.contains("the last dump 20261207T030000Z"),
        "{}",
        ready.message
    );
    assert!(
        ready.message.contains("the RPO is the schedule"),
        "{}",
        ready.message
    );
    let status = r.status.expect("status.backup");
    assert_eq!(
        status.first_recoverability_point.map(|t| t.0),
        Some(ts("2026-12-06T03:00:00Z"))
    );
    assert_eq!(
        status.last_successful_backup.map(|t| t.0),
        Some(ts("2026-12-07T03:00:00Z"))
    );

    let failed = [tb(
        "acme-x",
        BackupPhase::Failed,
        Some("2026-12-07T04:00:00Z"),
        Some("atoll-backup dump: pg_dump: error: permission denied for table probe"),
    )];
    let r = observe(Ok(&dumps[..]), &failed);
    let ready = r.backup_ready.expect("BackupReady");
    assert_eq!((ready.status, ready.reason), (Some(false), "BackupFailed"));
    assert!(
        ready.message.contains("permission denied"),
        "{}",
        ready.message
    );
    assert!(r.status.expect("status").last_failed_backup.is_some());

    let none = observe(Ok(&[]), &[]).backup_ready.expect("BackupReady");
    assert_eq!((none.status, none.reason), (Some(false), "NoDumpYet"));
    assert_actionable(&none);
    let down = observe(Err("connection refused"), &[])
        .backup_ready
        .expect("BackupReady");
    assert_eq!(down.reason, "ObjectStoreUnreachable");
}
