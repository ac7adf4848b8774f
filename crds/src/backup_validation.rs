//! Pure validation of `spec.backup`, `spec.restore` and TenantBackups: the
//! same rules as their schema and CEL rules, with the field named.

use std::sync::LazyLock;

use regex::Regex;

use crate::backup::*;
use crate::tasks::{BUCKET_PATTERN, REGION_PATTERN};
use crate::tenant::{NAME_PATTERN, Tenant, TenantSpec};
use crate::tenant_backup::TenantBackup;
use crate::validation::{Errors, FieldError, validate};

struct Patterns {
    cron: Regex,
    retention: Regex,
    endpoint: Regex,
    bucket: Regex,
    ip_shaped: Regex,
    region: Regex,
    prefix: Regex,
    source: Regex,
    backup: Regex,
    name: Regex,
}

static PATTERNS: LazyLock<Patterns> = LazyLock::new(|| {
    let compile = |p: &str| Regex::new(p).unwrap_or_else(|e| panic!("pattern {p}: {e}"));
    Patterns {
        cron: compile(CRON_PATTERN),
        retention: compile(RETENTION_PATTERN),
        endpoint: compile(OBJECT_STORE_ENDPOINT_PATTERN),
        bucket: compile(BUCKET_PATTERN),
        ip_shaped: compile("^[0-9]+[.][0-9]+[.][0-9]+[.][0-9]+$"),
        region: compile(REGION_PATTERN),
        prefix: compile(PREFIX_PATTERN),
        source: compile(RESTORE_SOURCE_PATTERN),
        backup: compile(RESTORE_BACKUP_PATTERN),
        name: compile(NAME_PATTERN),
    }
});

/// Checks `spec.backup` and `spec.restore` of a Tenant (part of
/// [`validate`]).
pub(crate) fn validate_backup_and_restore(errors: &mut Errors, spec: &TenantSpec) {
    if let Some(backup) = &spec.backup {
        validate_backup(errors, backup);
    }
    if let Some(restore) = &spec.restore {
        validate_restore(errors, restore);
    }
}

fn validate_backup(errors: &mut Errors, backup: &BackupSpec) {
    let schedule = &backup.schedule;
    if schedule.chars().count() > 128 || !PATTERNS.cron.is_match(schedule) {
        errors.push(
            "spec.backup.schedule",
            format!("{CRON_MESSAGE} (is {schedule:?})"),
        );
    }
    errors.pattern(
        "spec.backup.retention",
        &backup.retention,
        &PATTERNS.retention,
        "a retention of 1 to 9999 hours, days or weeks such as 36h, 30d or 8w",
    );
    if let Some(store) = &backup.object_store {
        validate_object_store(errors, "spec.backup.objectStore", store);
    }
}

fn validate_restore(errors: &mut Errors, restore: &RestoreSpec) {
    errors.length("spec.restore.from", &restore.from, 1, 40);
    errors.pattern(
        "spec.restore.from",
        &restore.from,
        &PATTERNS.source,
        "a Tenant name (a DNS label starting with a letter) or a Tenant uid",
    );
    errors.length("spec.restore.backup", &restore.backup, 1, 253);
    errors.pattern(
        "spec.restore.backup",
        &restore.backup,
        &PATTERNS.backup,
        "latest, a backup id (YYYYMMDDTHHMMSSZ) or a TenantBackup name",
    );
    if let Some(time) = &restore.target_time
        && parse_rfc3339(time).is_none()
    {
        errors.push(
            "spec.restore.targetTime",
            format!(
                "{time:?} is not an RFC 3339 time with an offset, such as 2026-12-07T09:30:00Z"
            ),
        );
    }
    if let Some(store) = &restore.object_store {
        validate_object_store(errors, "spec.restore.objectStore", store);
    }
}

fn validate_object_store(errors: &mut Errors, field: &str, store: &ObjectStoreSpec) {
    let endpoint = format!("{field}.endpoint");
    errors.length(&endpoint, &store.endpoint, 8, 2048);
    errors.pattern(
        &endpoint,
        &store.endpoint,
        &PATTERNS.endpoint,
        "an http(s) URL of scheme, host and optional port only (no path, query or user name)",
    );
    let bucket = format!("{field}.bucket");
    errors.pattern(
        &bucket,
        &store.bucket,
        &PATTERNS.bucket,
        "a bucket name (3-63 lower-case letters, digits, '.' and '-', starting and ending with a letter or digit)",
    );
    if store.bucket.contains("..") || PATTERNS.ip_shaped.is_match(&store.bucket) {
        errors.push(
            &bucket,
            "bucket must not contain '..' or be shaped like an IP address",
        );
    }
    let region = format!("{field}.region");
    errors.length(&region, &store.region, 1, 64);
    errors.pattern(
        &region,
        &store.region,
        &PATTERNS.region,
        "a region such as us-east-1",
    );
    if let Some(prefix) = &store.prefix {
        let prefix_field = format!("{field}.prefix");
        errors.length(&prefix_field, prefix, 1, 256);
        errors.pattern(
            &prefix_field,
            prefix,
            &PATTERNS.prefix,
            "a key prefix ('/'-separated segments of letters, digits, '.', '_' and '-', no leading or trailing '/')",
        );
        if prefix.contains("..") {
            errors.push(&prefix_field, "prefix must not contain '..'");
        }
    }
    errors.object_name(
        &format!("{field}.credentialsSecretRef.name"),
        &store.credentials_secret_ref.name,
    );
}

/// Checks a changed Tenant: every rule of [`validate`] on the new one, plus
/// the rules that compare it with the old one (the CRD's transition rules:
/// `spec.restore` is create-only).
pub fn validate_update(old: &Tenant, new: &Tenant) -> Result<(), Vec<FieldError>> {
    let mut errors = match validate(new) {
        Ok(()) => Vec::new(),
        Err(errors) => errors,
    };
    if old.spec.restore != new.spec.restore {
        errors.push(FieldError {
            field: "spec.restore".to_owned(),
            message: RESTORE_CREATE_ONLY_MESSAGE.to_owned(),
        });
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Checks a TenantBackup against every rule of its CRD that needs no old
/// object (`spec.tenant` being immutable is the API server's to enforce).
pub fn validate_tenant_backup(backup: &TenantBackup) -> Result<(), Vec<FieldError>> {
    let mut errors = Errors::default();
    let tenant = &backup.spec.tenant;
    errors.length("spec.tenant", tenant, 1, 40);
    errors.pattern(
        "spec.tenant",
        tenant,
        &PATTERNS.name,
        "a Tenant name (a DNS label starting with a letter)",
    );
    errors.into_result()
}
