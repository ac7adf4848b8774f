//! PostgreSQL's backup label and backup history file (`backup_label` in
//! a base backup's tar, `<segment>.<offset>.backup` in the WAL archive),
//! LSNs and WAL file names: pure parsing, no I/O.
//!
//! A label looks like this (PostgreSQL 15):
//!
//! ```text
//! START WAL LOCATION: 0/4000028 (file 000000010000000000000004)
//! STOP WAL LOCATION: 0/4000100 (file 000000010000000000000004)
//! CHECKPOINT LOCATION: 0/4000060
//! BACKUP METHOD: streamed
//! BACKUP FROM: primary
//! START TIME: 2026-12-07 11:15:08 UTC
//! LABEL: atoll-20261207T111508Z
//! START TIMELINE: 1
//! STOP TIME: 2026-12-07 11:15:08 UTC
//! STOP TIMELINE: 1
//! ```
//!
//! (`backup_label` has no STOP lines; the history file has both.)

use std::fmt;
use std::str::FromStr;

/// A label that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// A required line is missing.
    #[error("the backup label has no {0:?} line")]
    Missing(&'static str),
    /// A line does not have the expected shape.
    #[error("the backup label's {0:?} line is malformed: {1:?}")]
    Malformed(&'static str, String),
    /// Not an LSN (`X/Y`, hex).
    #[error("{0:?} is not an LSN (hex X/Y)")]
    Lsn(String),
}

/// A WAL location (log sequence number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(pub u64);

impl FromStr for Lsn {
    type Err = LabelError;

    fn from_str(s: &str) -> Result<Lsn, LabelError> {
        let err = || LabelError::Lsn(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(err)?;
        let part = |p: &str| {
            (!p.is_empty() && p.len() <= 8)
                .then(|| u32::from_str_radix(p, 16).ok())
                .flatten()
                .ok_or_else(err)
        };
        Ok(Lsn((u64::from(part(hi)?) << 32) | u64::from(part(lo)?)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

/// The WAL file name holding `lsn` on `timeline` with segments of
/// `segment_size` bytes (a power of two, 1 MB to 1 GB).
pub fn wal_file_name(timeline: u32, lsn: Lsn, segment_size: u64) -> String {
    let size = segment_size.max(1);
    let segno = lsn.0 / size;
    let per_id = 0x1_0000_0000 / size;
    format!("{timeline:08X}{:08X}{:08X}", segno / per_id, segno % per_id)
}

/// The name PostgreSQL gives the backup history file of a backup that
/// started at `start_lsn` in WAL file `start_wal`:
/// `<start_wal>.<offset of start_lsn in its segment, 8 hex>.backup`.
pub fn backup_history_name(start_wal: &str, start_lsn: Lsn, segment_size: u64) -> String {
    let offset = start_lsn.0 % segment_size.max(1);
    format!("{start_wal}.{offset:08X}.backup")
}

/// What a backup label or backup history file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    /// `START WAL LOCATION`.
    pub start_lsn: Lsn,
    /// The file of `START WAL LOCATION`.
    pub start_wal: String,
    /// `START TIME` when written in UTC (`None` for other zones).
    pub start_time: Option<jiff::Timestamp>,
    /// `START TIMELINE`.
    pub timeline: u32,
    /// `STOP WAL LOCATION` (history file only).
    pub stop_lsn: Option<Lsn>,
    /// The file of `STOP WAL LOCATION`.
    pub stop_wal: Option<String>,
    /// `STOP TIME` when written in UTC.
    pub stop_time: Option<jiff::Timestamp>,
    /// `LABEL`.
    pub label: Option<String>,
}

/// Parses a label or history file.
pub fn parse_label(text: &str) -> Result<Label, LabelError> {
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key).and_then(|r| r.strip_prefix(": ")))
            .map(str::trim)
    };
    let (start_lsn, start_wal) = location(
        "START WAL LOCATION",
        field("START WAL LOCATION").ok_or(LabelError::Missing("START WAL LOCATION"))?,
    )?;
    let stop = field("STOP WAL LOCATION")
        .map(|v| location("STOP WAL LOCATION", v))
        .transpose()?;
    let timeline = field("START TIMELINE")
        .ok_or(LabelError::Missing("START TIMELINE"))?
        .parse::<u32>()
        .map_err(|_| {
            LabelError::Malformed(
                "START TIMELINE",
                field("START TIMELINE").unwrap_or_default().into(),
            )
        })?;
    Ok(Label {
        start_lsn,
        start_wal,
        start_time: field("START TIME").and_then(parse_label_time),
        timeline,
        stop_lsn: stop.as_ref().map(|s| s.0),
        stop_wal: stop.map(|s| s.1),
        stop_time: field("STOP TIME").and_then(parse_label_time),
        label: field("LABEL").map(str::to_owned),
    })
}

/// `0/4000028 (file 000000010000000000000004)`.
fn location(key: &'static str, value: &str) -> Result<(Lsn, String), LabelError> {
    let bad = || LabelError::Malformed(key, value.to_owned());
    let (lsn, rest) = value.split_once(' ').ok_or_else(bad)?;
    let file = rest
        .strip_prefix("(file ")
        .and_then(|r| r.strip_suffix(')'))
        .filter(|f| f.len() == 24 && f.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(bad)?;
    Ok((lsn.parse()?, file.to_owned()))
}

/// `2026-12-07 11:15:08 UTC` (the server's `log_timezone`; only UTC/GMT
/// are trusted: other abbreviations are ambiguous).
pub fn parse_label_time(value: &str) -> Option<jiff::Timestamp> {
    let (civil, zone) = value.rsplit_once(' ')?;
    if !matches!(zone, "UTC" | "GMT" | "Etc/UTC") {
        return None;
    }
    let dt = jiff::civil::DateTime::strptime("%Y-%m-%d %H:%M:%S", civil).ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp())
}

/// Reads the first member of a tar stream as it passes by and keeps it
/// when it is `backup_label` (pg_basebackup writes it first). Feed every
/// chunk in order; costs nothing after the first member.
#[derive(Debug, Default)]
pub struct LabelSniffer {
    head: Vec<u8>,
    done: bool,
}

/// A tar header block.
const BLOCK: usize = 512;
/// More than any backup label; a larger first member is not a label.
const MAX_LABEL: usize = 64 * 1024;

impl LabelSniffer {
    /// A sniffer at the start of the stream.
    pub fn new() -> LabelSniffer {
        LabelSniffer::default()
    }

    /// Looks at the next bytes of the stream.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if self.done {
            return;
        }
        if self.head.len() < BLOCK {
            let take = (BLOCK - self.head.len()).min(chunk.len());
            self.head.extend_from_slice(&chunk[..take]);
            chunk = &chunk[take..];
            if self.head.len() < BLOCK {
                return;
            }
        }
        match self.wanted() {
            None => self.done = true,
            Some(want) => {
                let take = want.saturating_sub(self.head.len()).min(chunk.len());
                self.head.extend_from_slice(&chunk[..take]);
                self.done = self.head.len() >= want;
            }
        }
    }

    /// Bytes needed to hold the header and the member (once the header is
    /// in); `None` when the first member is not a usable `backup_label`.
    fn wanted(&self) -> Option<usize> {
        let header = self.head.get(..BLOCK)?;
        let name_end = header[..100].iter().position(|&b| b == 0).unwrap_or(100);
        if &header[..name_end] != b"backup_label" {
            return None;
        }
        let size = tar_size(&header[124..136])?;
        (size <= MAX_LABEL).then_some(BLOCK + size)
    }

    /// The label's text, when the stream began with a complete one.
    pub fn label(&self) -> Option<String> {
        let want = self.wanted()?;
        let body = self.head.get(BLOCK..want)?;
        String::from_utf8(body.to_vec()).ok()
    }
}

/// A tar size field: octal digits, NUL/space terminated.
fn tar_size(field: &[u8]) -> Option<usize> {
    let digits: String = field
        .iter()
        .take_while(|&&b| b != 0 && b != b' ')
        .map(|&b| b as char)
        .collect();
    usize::from_str_radix(digits.trim(), 8).ok()
}

#[cfg(test)]
#[path = "label_tests.rs"]
mod tests;
