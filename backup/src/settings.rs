//! The binary's configuration: one directory (a Secret volume, mounted at
//! `/etc/atoll-backup`) holding `config.json` (no secrets) and the files
//! `accessKeyId` and `secretAccessKey`. Never argv, never the environment:
//! `archive_command` text and process listings are visible to others.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::layout;

/// The file with the secret-free settings.
pub const CONFIG_FILE: &str = "config.json";
/// The file with the access key id.
pub const ACCESS_KEY_ID_FILE: &str = "accessKeyId";
/// The file with the secret access key.
pub const SECRET_ACCESS_KEY_FILE: &str = "secretAccessKey";

/// What is wrong with the configuration directory. Names the file and the
/// field, never a credential's value.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// `config.json` is not the expected JSON.
    #[error("{path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The reason (serde's message names the field).
        source: serde_json::Error,
    },
    /// A field has a value that is not allowed.
    #[error("{path}: field `{field}`: {problem}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The field (camelCase, as in the file).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// Only one of the two credential files is present, or one is empty.
    #[error("{path}: {problem}")]
    Credentials {
        /// The file that is missing or empty.
        path: PathBuf,
        /// What is wrong.
        problem: &'static str,
    },
}

/// An access key pair. `Debug` shows neither value.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Credentials { <redacted> }")
    }
}

/// The loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `http(s)://host[:port]`, without a path, query or user info.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region (`us-east-1` when absent).
    pub region: String,
    /// Path-style requests (`endpoint/bucket/key`) instead of virtual-hosted.
    pub path_style: bool,
    /// Optional key prefix in the bucket.
    pub prefix: Option<String>,
    /// Whether an `http://` endpoint is allowed (tests, in-cluster stores).
    pub allow_http: bool,
    /// The uid of the tenant this configuration belongs to (its prefix).
    pub tenant_uid: String,
    /// The tenant's name, when known.
    pub tenant_name: Option<String>,
    /// `None` = anonymous requests (tests only).
    pub credentials: Option<Credentials>,
}

/// `config.json` as written by the operator.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ConfigFile {
    endpoint: String,
    bucket: String,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    path_style: bool,
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    allow_http: bool,
    tenant_uid: String,
    #[serde(default)]
    tenant_name: Option<String>,
}

/// The region when the file names none.
pub const DEFAULT_REGION: &str = "us-east-1";

impl Settings {
    /// Reads and validates `dir/config.json` and the credential files.
    pub fn load(dir: &Path) -> Result<Settings, SettingsError> {
        let path = dir.join(CONFIG_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| SettingsError::Read {
            path: path.clone(),
            source,
        })?;
        let file: ConfigFile =
            serde_json::from_str(&text).map_err(|source| SettingsError::Parse {
                path: path.clone(),
                source,
            })?;
        let mut settings = Settings::from_file(file, &path)?;
        settings.credentials = load_credentials(dir)?;
        Ok(settings)
    }

    /// Validates `config.json`'s text with the given credentials, as
    /// [`Settings::load`] does from files (the operator reads both from the
    /// tenant's `backup-object-store` Secret). `origin` names the source in
    /// errors.
    pub fn from_parts(
        config_json: &str,
        credentials: Option<Credentials>,
        origin: &Path,
    ) -> Result<Settings, SettingsError> {
        let file: ConfigFile =
            serde_json::from_str(config_json).map_err(|source| SettingsError::Parse {
                path: origin.to_owned(),
                source,
            })?;
        let mut settings = Settings::from_file(file, origin)?;
        settings.credentials = credentials;
        Ok(settings)
    }

    fn from_file(file: ConfigFile, path: &Path) -> Result<Settings, SettingsError> {
        let invalid = |field: &'static str, problem: String| SettingsError::Invalid {
            path: path.to_owned(),
            field,
            problem,
        };
        check_endpoint(&file.endpoint, file.allow_http).map_err(|p| invalid("endpoint", p))?;
        check_bucket(&file.bucket).map_err(|p| invalid("bucket", p))?;
        let region = file.region.unwrap_or_else(|| DEFAULT_REGION.to_owned());
        check_region(&region).map_err(|p| invalid("region", p))?;
        let prefix = file.prefix.filter(|p| !p.is_empty());
        if let Some(prefix) = &prefix {
            check_prefix(prefix).map_err(|p| invalid("prefix", p))?;
        }
        layout::check_uid(&file.tenant_uid).map_err(|e| invalid("tenantUid", e.to_string()))?;
        if let Some(name) = &file.tenant_name {
            layout::check_tenant_name(name).map_err(|e| invalid("tenantName", e.to_string()))?;
        }
        Ok(Settings {
            endpoint: file.endpoint.trim_end_matches('/').to_owned(),
            bucket: file.bucket,
            region,
            path_style: file.path_style,
            prefix,
            allow_http: file.allow_http,
            tenant_uid: file.tenant_uid,
            tenant_name: file.tenant_name,
            credentials: None,
        })
    }

    /// `text` with every occurrence of a credential value replaced by
    /// `<redacted>`: applied to every message that leaves the binary, in
    /// case a server or library echoes one.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Some(c) = &self.credentials {
            for secret in [&c.secret_access_key, &c.access_key_id] {
                if !secret.is_empty() {
                    out = out.replace(secret.as_str(), "<redacted>");
                }
            }
        }
        out
    }

    /// An error's message followed by those of its sources (each once), with
    /// credential values redacted: what a command prints on failure.
    pub fn redact_error(&self, error: &dyn std::error::Error) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(e) = source {
            let more = e.to_string();
            if !text.contains(&more) {
                text = format!("{text}: {more}");
            }
            source = e.source();
        }
        self.redact(&text)
    }
}

/// Both files, or neither (anonymous); one alone or an empty one is an error.
fn load_credentials(dir: &Path) -> Result<Option<Credentials>, SettingsError> {
    let id = read_optional(&dir.join(ACCESS_KEY_ID_FILE))?;
    let secret = read_optional(&dir.join(SECRET_ACCESS_KEY_FILE))?;
    match (id, secret) {
        (None, None) => Ok(None),
        (Some(access_key_id), Some(secret_access_key)) => Ok(Some(Credentials {
            access_key_id,
            secret_access_key,
        })),
        (Some(_), None) => Err(SettingsError::Credentials {
            path: dir.join(SECRET_ACCESS_KEY_FILE),
            problem: "missing, but accessKeyId is present: give both or neither",
        }),
        (None, Some(_)) => Err(SettingsError::Credentials {
            path: dir.join(ACCESS_KEY_ID_FILE),
            problem: "missing, but secretAccessKey is present: give both or neither",
        }),
    }
}

/// The file's content without surrounding whitespace; `None` when absent.
fn read_optional(path: &Path) -> Result<Option<String>, SettingsError> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let value = text.trim();
            if value.is_empty() {
                return Err(SettingsError::Credentials {
                    path: path.to_owned(),
                    problem: "is empty",
                });
            }
            Ok(Some(value.to_owned()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(SettingsError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// `http(s)://host[:port]` with an optional trailing `/`.
fn check_endpoint(endpoint: &str, allow_http: bool) -> Result<(), String> {
    let rest = if let Some(rest) = endpoint.strip_prefix("https://") {
        rest
    } else if let Some(rest) = endpoint.strip_prefix("http://") {
        if !allow_http {
            return Err("an http:// endpoint needs \"allowHttp\": true".into());
        }
        rest
    } else {
        return Err("must start with https:// (or http:// with allowHttp)".into());
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() {
        return Err("has no host".into());
    }
    if authority.contains(['/', '?', '#', '@']) {
        return Err("must be scheme://host[:port], without a path, query or user info".into());
    }
    if !authority
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
    {
        return Err("the host has characters a host name cannot have".into());
    }
    Ok(())
}

/// S3 bucket naming rules: 3-63 of lowercase letters, digits, dots and
/// hyphens, starting and ending with a letter or digit.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let ok_len = (3..=63).contains(&bucket.len());
    let ok_chars = bucket
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-');
    let ok_ends = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok_len && ok_chars && ok_ends && !bucket.contains("..") {
        Ok(())
    } else {
        Err("must be 3-63 lowercase letters, digits, dots or hyphens, starting and ending with a letter or digit".into())
    }
}

fn check_region(region: &str) -> Result<(), String> {
    let ok = !region.is_empty()
        && region.len() <= 64
        && region
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err("must be lowercase letters, digits and hyphens (e.g. us-east-1)".into())
    }
}

/// Segments of `[A-Za-z0-9._-]` separated by single `/`, no `.`/`..`
/// segment, no leading or trailing `/`.
fn check_prefix(prefix: &str) -> Result<(), String> {
    if prefix.len() > 256 {
        return Err("is longer than 256 characters".into());
    }
    for segment in prefix.split('/') {
        if segment.is_empty() {
            return Err("has an empty segment (a leading, trailing or double '/')".into());
        }
        if segment == "." || segment == ".." {
            return Err("has a '.' or '..' segment".into());
        }
        if !segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            return Err("may only have letters, digits, '.', '_', '-' and '/'".into());
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "settings_tests.rs"]
mod tests;
