use super::*;

/// The history file PostgreSQL 15.18 archived for a `pg_basebackup -X none`.
const HISTORY: &str = "START WAL LOCATION: 0/4000028 (file 000000010000000000000004)
STOP WAL LOCATION: 0/4000100 (file 000000010000000000000004)
CHECKPOINT LOCATION: 0/4000060
BACKUP METHOD: streamed
BACKUP FROM: primary
START TIME: 2026-12-07 11:15:08 UTC
LABEL: atoll-test2
START TIMELINE: 1
STOP TIME: 2026-12-07 11:15:08 UTC
STOP TIMELINE: 1
";

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().expect("timestamp")
}

#[test]
fn lsn_round_trips() {
    let lsn: Lsn = "0/4000028".parse().expect("lsn");
    assert_eq!(lsn, Lsn(0x0400_0028));
    assert_eq!(lsn.to_string(), "0/4000028");
    let high: Lsn = "1A/FF".parse().expect("lsn");
    assert_eq!(high, Lsn((0x1A << 32) | 0xFF));
    assert_eq!(high.to_string(), "1A/FF");
    for bad in ["", "0", "0/", "/1", "0/xyz", "123456789/0", "0/4000028 "] {
        assert!(bad.parse::<Lsn>().is_err(), "{bad:?}");
    }
}

#[test]
fn wal_names_follow_postgres() {
    let seg = 16 * 1024 * 1024;
    assert_eq!(
        wal_file_name(1, Lsn(0x0400_0028), seg),
        "000000010000000000000004"
    );
    assert_eq!(
        wal_file_name(2, Lsn((0x1A << 32) | 0xFF00_0000), seg),
        "000000020000001A000000FF"
    );
    // 64 MB segments: 64 per 4 GB "xlogid".
    assert_eq!(
        wal_file_name(1, Lsn((3 << 32) | 0x0C00_0000), 64 << 20),
        "000000010000000300000003"
    );
    assert_eq!(
        backup_history_name("000000010000000000000004", Lsn(0x0400_0028), seg),
        "000000010000000000000004.00000028.backup"
    );
}

#[test]
fn history_file_is_parsed() {
    let label = parse_label(HISTORY).expect("label");
    assert_eq!(label.start_lsn, Lsn(0x0400_0028));
    assert_eq!(label.start_wal, "000000010000000000000004");
    assert_eq!(label.stop_lsn, Some(Lsn(0x0400_0100)));
    assert_eq!(label.stop_wal.as_deref(), Some("000000010000000000000004"));
    assert_eq!(label.timeline, 1);
    assert_eq!(label.start_time, Some(ts("2026-12-07T11:15:08Z")));
    assert_eq!(label.stop_time, Some(ts("2026-12-07T11:15:08Z")));
    assert_eq!(label.label.as_deref(), Some("atoll-test2"));
}

#[test]
fn backup_label_has_no_stop() {
    let text: String = HISTORY
        .lines()
        .filter(|l| !l.starts_with("STOP"))
        .map(|l| format!("{l}\n"))
        .collect();
    let label = parse_label(&text).expect("label");
    assert_eq!(label.stop_lsn, None);
    assert_eq!(label.stop_time, None);
}

#[test]
fn broken_labels_are_refused() {
    assert_eq!(
        parse_label("LABEL: x\n"),
        Err(LabelError::Missing("START WAL LOCATION"))
    );
    let bad = HISTORY.replace("(file 000000010000000000000004)", "(file 4)");
    assert!(matches!(parse_label(&bad), Err(LabelError::Malformed(..))));
    let no_tli = HISTORY.replace("START TIMELINE: 1\n", "");
    assert_eq!(
        parse_label(&no_tli),
        Err(LabelError::Missing("START TIMELINE"))
    );
}

#[test]
fn only_utc_times_are_trusted() {
    assert_eq!(
        parse_label_time("2026-12-07 11:15:08 GMT"),
        Some(ts("2026-12-07T11:15:08Z"))
    );
    assert_eq!(parse_label_time("2026-12-07 11:15:08 CET"), None);
    assert_eq!(parse_label_time("garbage"), None);
}

/// A tar header for `name` with `size` bytes, as pg_basebackup writes it.
fn header(name: &str, size: usize) -> Vec<u8> {
    let mut h = vec![0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    let size = format!("{size:011o}\0");
    h[124..136].copy_from_slice(size.as_bytes());
    h
}

fn tar_with_label(label: &str) -> Vec<u8> {
    let mut tar = header("backup_label", label.len());
    tar.extend_from_slice(label.as_bytes());
    tar.resize(tar.len().div_ceil(512) * 512, 0);
    tar.extend(header("tablespace_map", 0));
    tar.extend(vec![0u8; 4096]);
    tar
}

#[test]
fn sniffer_finds_the_label_in_any_chunking() {
    let tar = tar_with_label(HISTORY);
    for chunk in [1, 7, 511, 512, 513, 4096, tar.len()] {
        let mut sniffer = LabelSniffer::new();
        for part in tar.chunks(chunk) {
            sniffer.feed(part);
        }
        assert_eq!(
            sniffer.label().as_deref(),
            Some(HISTORY),
            "chunks of {chunk}"
        );
    }
}

#[test]
fn sniffer_ignores_other_streams() {
    let mut sniffer = LabelSniffer::new();
    let mut tar = header("PG_VERSION", 3);
    tar.extend(b"15\n");
    sniffer.feed(&tar);
    assert_eq!(sniffer.label(), None);
    let mut short = LabelSniffer::new();
    short.feed(&tar_with_label(HISTORY)[..600]);
    assert_eq!(short.label(), None, "an incomplete label is no label");
}
