use super::*;

/// Logs of real PostgreSQL 15.18 recoveries (`lc_messages=C`), captured
/// by hand: target inside the archive, and target past its end.
const REACHED: &str = include_str!("testdata/pg15-target-reached.log");
const PAST_END: &str = include_str!("testdata/pg15-target-past-end.log");

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().expect("timestamp")
}

fn read(log: &str) -> RecoveryLog {
    let mut r = RecoveryLog::default();
    for line in log.lines() {
        r.feed(line);
    }
    r
}

#[test]
fn a_reached_target_is_a_promotion() {
    let r = read(REACHED);
    assert_eq!(r.stopped, Some(Some(ts("2026-12-07T11:15:13.075392Z"))));
    assert_eq!(r.last_completed, Some(ts("2026-12-07T11:15:13.047237Z")));
    assert_eq!(r.consistent_at, Some(Lsn(0x0400_0100)));
    assert_eq!(r.redo_done, Some(Lsn(0x0500_2B30)));
    assert_eq!(r.last_restored.as_deref(), Some("000000010000000000000005"));
    assert_eq!(r.new_timeline, Some(2));
    assert!(r.promoted());
    assert_eq!(
        r.verdict(),
        Verdict::Promoted {
            reached: Some(ts("2026-12-07T11:15:13.047237Z"))
        }
    );
}

#[test]
fn read_only_readiness_is_not_promotion() {
    let upto: String = REACHED
        .lines()
        .take_while(|l| !l.contains("recovery stopping"))
        .map(|l| format!("{l}\n"))
        .collect();
    let r = read(&upto);
    assert!(upto.contains("ready to accept read-only connections"));
    assert!(!r.ready && !r.promoted());
}

#[test]
fn a_target_past_the_archive_says_how_far() {
    let r = read(PAST_END);
    assert!(r.ended_before_target);
    assert!(!r.promoted());
    assert_eq!(r.fatal, None, "the known FATAL is not an unknown one");
    assert_eq!(
        r.verdict(),
        Verdict::EndOfArchive {
            reached: Some(ts("2026-12-07T11:15:13.075392Z")),
            redo_done: Some(Lsn(0x0500_2B58)),
        }
    );
}

#[test]
fn other_failures_keep_the_first_fatal() {
    let r = read(
        "2026-12-07 11:15:17.152 GMT [23144] FATAL:  invalid value for parameter \"recovery_target_time\": \"x\"\n\
         2026-12-07 11:15:17.153 GMT [23144] FATAL:  second\n",
    );
    assert_eq!(
        r.verdict(),
        Verdict::Failed(Some(
            "invalid value for parameter \"recovery_target_time\": \"x\"".to_owned()
        ))
    );
    assert_eq!(read("").verdict(), Verdict::Failed(None));
    let before = read(
        "2026-12-07 11:15:17.152 UTC [1] FATAL:  requested recovery stop point is before consistent recovery point\n",
    );
    assert_eq!(before.verdict(), Verdict::BeforeConsistent);
}

#[test]
fn log_times_with_offsets() {
    assert_eq!(
        parse_log_time("2026-12-07 11:15:13.047237+00"),
        Some(ts("2026-12-07T11:15:13.047237Z"))
    );
    assert_eq!(
        parse_log_time("2026-12-07 11:15:13+00"),
        Some(ts("2026-12-07T11:15:13Z"))
    );
    assert_eq!(
        parse_log_time("2026-12-07 12:45:13.5+01:30"),
        Some(ts("2026-12-07T11:15:13.5Z"))
    );
    assert_eq!(
        parse_log_time("2026-12-07 03:15:13-08"),
        Some(ts("2026-12-07T11:15:13Z"))
    );
    assert_eq!(parse_log_time("yesterday"), None);
}

#[test]
fn target_times_avoid_the_z_postgres_refuses() {
    let t = ts("2026-12-07T11:15:13.061764Z");
    assert_eq!(format_target_time(t), "2026-12-07 11:15:13.061764+00:00");
    assert_eq!(
        format_target_time(ts("2026-01-02T03:04:05Z")),
        "2026-01-02 03:04:05.000000+00:00"
    );
    assert_eq!(parse_log_time(&format_target_time(t)), Some(t));
}
