use super::*;

fn rows(text: &str) -> Vec<String> {
    lines(text)
}

#[test]
fn status_row_of_an_archiving_server() {
    let got = parse_status(&rows(
        "12|000000010000000000000003|1796641200123456|2|000000010000000000000002|1796641100000000|7716518971410737218|150018\n",
    ))
    .expect("parsed");
    assert_eq!(got.system_identifier, "7716518971410737218");
    assert_eq!(got.pg_major, 15);
    assert_eq!(got.archiver.archived_count, 12);
    assert_eq!(
        got.archiver.last_archived_wal.as_deref(),
        Some("000000010000000000000003")
    );
    assert_eq!(
        got.archiver.last_archived_time,
        Some(jiff::Timestamp::from_microsecond(1_796_641_200_123_456).expect("time"))
    );
    assert_eq!(got.archiver.failed_count, 2);
    assert_eq!(
        got.archiver.last_failed_time,
        Some(jiff::Timestamp::from_second(1_796_641_100).expect("time"))
    );
}

#[test]
fn status_row_of_a_fresh_server_has_nulls() {
    let got = parse_status(&rows("0|||0|||7716518971410737218|160002")).expect("parsed");
    assert_eq!(got.pg_major, 16);
    assert_eq!(got.archiver.last_archived_wal, None);
    assert_eq!(got.archiver.last_archived_time, None);
    assert_eq!(got.archiver.last_failed_wal, None);
    let json = serde_json::to_value(&got.archiver).expect("json");
    assert_eq!(
        json,
        serde_json::json!({
            "archivedCount": 0, "lastArchivedWal": null, "lastArchivedTime": null,
            "failedCount": 0, "lastFailedWal": null, "lastFailedTime": null,
        })
    );
}

#[test]
fn malformed_status_rows_are_refused() {
    for bad in [
        "",
        "0|||0|||1",
        "x|||0|||7716518971410737218|150018",
        "0||yesterday|0|||7716518971410737218|150018",
        "0|||0|||abc|150018",
        "0|||0|||1|150018\n0|||0|||1|150018",
        "0|||0|||1|150018|extra",
    ] {
        assert!(
            matches!(parse_status(&rows(bad)), Err(PsqlError::Unexpected(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn switch_output() {
    let got = parse_switch(&rows(
        "1796641200123456\n0/3000078|000000010000000000000003\n",
    ))
    .expect("parsed");
    assert_eq!(got.lsn, "0/3000078");
    assert_eq!(got.wal, "000000010000000000000003");
    assert_eq!(got.time.as_microsecond(), 1_796_641_200_123_456);
    for bad in [
        "1796641200123456",
        "\n0/3000078|000000010000000000000003",
        "now\n0/3000078|000000010000000000000003",
        "1|0/3000078|000000010000000000000003",
        "1\n0/3000078|00000001000000000000000x",
        "1\n03000078|000000010000000000000003",
    ] {
        assert!(parse_switch(&rows(bad)).is_err(), "{bad:?}");
    }
}

#[test]
fn what_proves_a_segment_archived() {
    let target = "000000010000000000000005";
    assert!(!proves_archived(None, target));
    assert!(proves_archived(Some(target), target));
    assert!(proves_archived(Some("000000010000000000000006"), target));
    assert!(!proves_archived(Some("000000010000000000000004"), target));
    // The backup history file of a backup that started in the segment is
    // ready before the segment is complete.
    assert!(!proves_archived(
        Some("000000010000000000000005.00000028.backup"),
        target
    ));
    assert!(proves_archived(
        Some("000000010000000000000006.00000028.backup"),
        target
    ));
    assert!(!proves_archived(Some("00000002.history"), target));
    assert!(!proves_archived(Some(""), target));
}

#[test]
fn stderr_is_one_bounded_line() {
    let status = std::process::Command::new("false")
        .status()
        .expect("run false");
    let text = stderr_text(
        b"psql: error: connection to server on socket \"/x/.s.PGSQL.5432\" failed:\n  No such file or directory\n",
        status,
    );
    assert_eq!(
        text,
        "psql: error: connection to server on socket \"/x/.s.PGSQL.5432\" failed:; No such file or directory"
    );
    assert!(stderr_text(b"", status).starts_with("exited with"));
    let long = "é".repeat(MAX_STDERR);
    assert!(stderr_text(long.as_bytes(), status).len() <= MAX_STDERR + '…'.len_utf8());
}

#[tokio::test]
async fn a_missing_program_is_a_clear_error() {
    let psql = Psql {
        program: PathBuf::from("/nonexistent/psql"),
        host: "/tmp".into(),
        port: 5432,
        user: "postgres".into(),
    };
    let err = psql
        .run(&["select 1"], Duration::from_secs(5))
        .await
        .expect_err("no program");
    assert!(
        matches!(&err, PsqlError::Spawn { program, .. } if program == "/nonexistent/psql"),
        "{err}"
    );
}
