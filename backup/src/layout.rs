//! Where every object lives in the bucket (contract §2), and the names that
//! may appear in keys. Every key is built here from validated parts, so no
//! tenant-controlled string can escape its tenant's prefix.
//!
//! ```text
//! <prefix>/tenants/<uid>/tenant.json
//! <prefix>/tenants/<uid>/wal/<24-hex segment>.lz4      (and <segment>.partial.lz4)
//! <prefix>/tenants/<uid>/wal/<8-hex>.history
//! <prefix>/tenants/<uid>/wal/<segment>.<8-hex>.backup
//! <prefix>/tenants/<uid>/base/<id>/base.tar.lz4
//! <prefix>/tenants/<uid>/base/<id>/backup.json
//! <prefix>/tenants/<uid>/dumps/<id>/dump.pgc
//! <prefix>/tenants/<uid>/dumps/<id>/dump.json
//! <prefix>/tenants/<uid>/restore.json
//! <prefix>/names/<tenant name>/<uid>
//! ```

use std::fmt;
use std::str::FromStr;

use object_store::path::Path;

/// A name that cannot be part of a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Not a WAL segment, timeline history, backup label or partial segment.
    #[error(
        "{0:?} is not a WAL file name (24 hex digits, 8hex.history, <segment>.<8hex>.backup or <segment>.partial)"
    )]
    WalName(String),
    /// Not a backup id.
    #[error("{0:?} is not a backup id (YYYYMMDDTHHMMSSZ, UTC)")]
    BackupId(String),
    /// Not a tenant uid.
    #[error("{0:?} is not a tenant uid (1-64 lowercase letters, digits and hyphens)")]
    Uid(String),
    /// Not a tenant name.
    #[error("{0:?} is not a tenant name (a DNS label: 1-63 lowercase letters, digits and hyphens)")]
    TenantName(String),
}

/// True for `n` upper-case hex digits (PostgreSQL writes WAL names so).
fn is_hex(s: &str, n: usize) -> bool {
    s.len() == n
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b))
}

/// The kinds of files PostgreSQL hands to `archive_command`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WalKind {
    /// `000000010000000000000001`: a 16 MB segment; stored lz4-compressed.
    Segment,
    /// `000000010000000000000001.partial`: the last, incomplete segment of
    /// the old timeline after a promotion; stored lz4-compressed.
    Partial,
    /// `00000002.history`: a timeline history; stored as is.
    History,
    /// `000000010000000000000002.00000028.backup`: a backup history file;
    /// stored as is.
    BackupLabel,
}

impl WalKind {
    /// Classifies a file name (no directory part).
    pub fn of(name: &str) -> Result<WalKind, LayoutError> {
        let err = || LayoutError::WalName(name.to_owned());
        if is_hex(name, 24) {
            return Ok(WalKind::Segment);
        }
        if let Some(seg) = name.strip_suffix(".partial") {
            return is_hex(seg, 24).then_some(WalKind::Partial).ok_or_else(err);
        }
        if let Some(tli) = name.strip_suffix(".history") {
            return is_hex(tli, 8).then_some(WalKind::History).ok_or_else(err);
        }
        if let Some(rest) = name.strip_suffix(".backup") {
            let ok = rest
                .split_once('.')
                .is_some_and(|(seg, off)| is_hex(seg, 24) && is_hex(off, 8));
            return ok.then_some(WalKind::BackupLabel).ok_or_else(err);
        }
        Err(err())
    }

    /// Whether the object is lz4-compressed (key ends in `.lz4`).
    pub fn compressed(self) -> bool {
        matches!(self, WalKind::Segment | WalKind::Partial)
    }
}

/// The object name of a WAL file: `name` plus `.lz4` when compressed.
pub fn wal_object_name(name: &str) -> Result<String, LayoutError> {
    Ok(if WalKind::of(name)?.compressed() {
        format!("{name}.lz4")
    } else {
        name.to_owned()
    })
}

/// The WAL file name of an object name under `wal/` (inverse of
/// [`wal_object_name`]); `None` for anything else.
pub fn wal_name_of_object(object: &str) -> Option<(&str, WalKind)> {
    let name = object.strip_suffix(".lz4").unwrap_or(object);
    let kind = WalKind::of(name).ok()?;
    (kind.compressed() == object.ends_with(".lz4")).then_some((name, kind))
}

/// Checks a tenant uid: 1-64 of `[a-z0-9-]` (Kubernetes uids are UUIDs).
pub fn check_uid(uid: &str) -> Result<(), LayoutError> {
    let ok = (1..=64).contains(&uid.len())
        && uid
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok.then_some(())
        .ok_or_else(|| LayoutError::Uid(uid.to_owned()))
}

/// Checks a tenant name: a DNS label (1-63, `[a-z0-9-]`, alphanumeric ends).
pub fn check_tenant_name(name: &str) -> Result<(), LayoutError> {
    let ok = (1..=63).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    ok.then_some(())
        .ok_or_else(|| LayoutError::TenantName(name.to_owned()))
}

/// A backup id: the UTC start time to the second, `YYYYMMDDTHHMMSSZ`, so
/// ids sort by time as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId(jiff::Timestamp);

impl BackupId {
    /// The id of a backup started at `time` (sub-seconds dropped).
    pub fn from_timestamp(time: jiff::Timestamp) -> BackupId {
        let secs = time.as_second();
        BackupId(jiff::Timestamp::from_second(secs).unwrap_or(time))
    }

    /// The id for now.
    pub fn now() -> BackupId {
        BackupId::from_timestamp(jiff::Timestamp::now())
    }

    /// The start time it encodes.
    pub fn timestamp(self) -> jiff::Timestamp {
        self.0
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0.strftime("%Y%m%dT%H%M%SZ"))
    }
}

impl FromStr for BackupId {
    type Err = LayoutError;

    fn from_str(s: &str) -> Result<BackupId, LayoutError> {
        let err = || LayoutError::BackupId(s.to_owned());
        let b = s.as_bytes();
        let shape = b.len() == 16
            && b[8] == b'T'
            && b[15] == b'Z'
            && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
        if !shape {
            return Err(err());
        }
        let civil = jiff::civil::DateTime::strptime("%Y%m%dT%H%M%SZ", s).map_err(|_| err())?;
        let ts = civil.to_zoned(jiff::tz::TimeZone::UTC).map_err(|_| err())?;
        Ok(BackupId(ts.timestamp()))
    }
}

/// Key builder for one bucket prefix. Every method takes already-validated
/// parts or validates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: String,
}

impl Layout {
    /// The layout under `prefix` (validated by the settings; `None` = the
    /// bucket's root).
    pub fn new(prefix: Option<&str>) -> Layout {
        let root = prefix
            .map(|p| p.trim_matches('/'))
            .filter(|p| !p.is_empty())
            .map(|p| format!("{p}/"))
            .unwrap_or_default();
        Layout { root }
    }

    fn key(&self, rest: &str) -> Path {
        Path::from(format!("{}{rest}", self.root))
    }

    /// `tenants/<uid>/`: everything of one tenant (for listing).
    pub fn tenant_dir(&self, uid: &str) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}")))
    }

    /// `tenants/`: every tenant (for the retention sweep).
    pub fn tenants_dir(&self) -> Path {
        self.key("tenants")
    }

    /// `tenants/<uid>/tenant.json`.
    pub fn tenant_json(&self, uid: &str) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/tenant.json")))
    }

    /// `tenants/<uid>/wal/`.
    pub fn wal_dir(&self, uid: &str) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/wal")))
    }

    /// `tenants/<uid>/wal/<name>[.lz4]` for a WAL file name.
    pub fn wal(&self, uid: &str, name: &str) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        let object = wal_object_name(name)?;
        Ok(self.key(&format!("tenants/{uid}/wal/{object}")))
    }

    /// `tenants/<uid>/base/`.
    pub fn base_dir(&self, uid: &str) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/base")))
    }

    /// `tenants/<uid>/base/<id>/base.tar.lz4`.
    pub fn base_tar(&self, uid: &str, id: BackupId) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/base/{id}/base.tar.lz4")))
    }

    /// `tenants/<uid>/base/<id>/backup.json` (written last).
    pub fn backup_json(&self, uid: &str, id: BackupId) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/base/{id}/backup.json")))
    }

    /// `tenants/<uid>/dumps/`.
    pub fn dumps_dir(&self, uid: &str) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/dumps")))
    }

    /// `tenants/<uid>/dumps/<id>/dump.pgc`.
    pub fn dump(&self, uid: &str, id: BackupId) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/dumps/{id}/dump.pgc")))
    }

    /// `tenants/<uid>/dumps/<id>/dump.json` (written last).
    pub fn dump_json(&self, uid: &str, id: BackupId) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/dumps/{id}/dump.json")))
    }

    /// `tenants/<uid>/restore.json`: the outcome of the restore INTO `uid`.
    pub fn restore_json(&self, uid: &str) -> Result<Path, LayoutError> {
        check_uid(uid)?;
        Ok(self.key(&format!("tenants/{uid}/restore.json")))
    }

    /// `names/<name>/`: the uids a tenant name has had.
    pub fn names_dir(&self, name: &str) -> Result<Path, LayoutError> {
        check_tenant_name(name)?;
        Ok(self.key(&format!("names/{name}")))
    }

    /// `names/<name>/<uid>`: empty marker.
    pub fn name_marker(&self, name: &str, uid: &str) -> Result<Path, LayoutError> {
        check_tenant_name(name)?;
        check_uid(uid)?;
        Ok(self.key(&format!("names/{name}/{uid}")))
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
