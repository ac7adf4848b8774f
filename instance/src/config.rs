//! Configuration from the environment, read once at start-up.
//!
//! | variable | default |
//! |---|---|
//! | `ATOLL_TENANT` | `default` |
//! | `ATOLL_LISTEN` | `127.0.0.1:8080` |
//! | `ATOLL_DATA_DIR` | `atoll-data` (holds the SQLite file) |
//! | `ATOLL_DATABASE_URL` | `sqlite:<data dir>/atoll.db`; a `postgres://` URL uses PostgreSQL |
//! | `ATOLL_PUBLIC_URL` | none |
//! | `ATOLL_IDENTITY_ISSUER` | none: auth is off, allowed on loopback only |
//! | `ATOLL_AUTH` | `disabled` turns auth off explicitly (logged as a warning) |
//! | `ATOLL_LEASE_SECONDS` | `30`: how soon another process resumes a dead one's executions |
//!
//! Each variable can also be given as `<NAME>_FILE`, naming a file that holds
//! the value (for mounted secrets such as the database URL).

/// What `atoll-instance --help` prints.
pub const USAGE: &str = "\
atoll-instance: one tenant's orchestration engine (flows, executions,
triggers) behind an HTTP API. It takes no arguments: it is configured by
its environment.

  ATOLL_TENANT            the tenant it serves (default: default)
  ATOLL_LISTEN            address to listen on (default: 127.0.0.1:8080)
  ATOLL_DATA_DIR          holds the SQLite file (default: atoll-data)
  ATOLL_DATABASE_URL      sqlite:<file> (default: <data dir>/atoll.db) or a
                          postgres:// URL
  ATOLL_PUBLIC_URL        the URL users reach it at (default: none)
  ATOLL_IDENTITY_ISSUER   identity's URL; tokens it signs are required
  ATOLL_AUTH=disabled     run without authentication (loopback only unless
                          set explicitly; logged as a warning)
  ATOLL_LEASE_SECONDS     how soon another process resumes a dead one's
                          executions (default: 30)

Each variable can also be given as <NAME>_FILE, naming a file that holds the
value (for mounted secrets such as the database URL).
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// No arguments: serve.
    Run,
    /// `-h` / `--help`.
    Help,
    /// `-V` / `--version`.
    Version,
    /// Anything else, refused.
    Unknown(String),
}

/// Reads the arguments after the program name.
pub fn invocation<I: IntoIterator<Item = String>>(args: I) -> Invocation {
    match args.into_iter().next() {
        None => Invocation::Run,
        Some(arg) => match arg.as_str() {
            "-h" | "--help" | "help" => Invocation::Help,
            "-V" | "--version" => Invocation::Version,
            _ => Invocation::Unknown(arg),
        },
    }
}

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{name} is not valid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("cannot read {name}_FILE: {reason}")]
    File { name: &'static str, reason: String },
    #[error(
        "refusing to listen on {listen} without authentication: set ATOLL_IDENTITY_ISSUER, or ATOLL_AUTH=disabled to run open on purpose"
    )]
    OpenListener { listen: SocketAddr },
}

/// How API callers are authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// Bearer tokens from this identity issuer, audience = the tenant.
    Identity { issuer: String },
    /// Everyone is an Admin. For local, single-user use.
    Disabled { explicit: bool },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub tenant: String,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub public_url: Option<String>,
    pub auth: AuthMode,
    pub lease: Duration,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from a variable lookup (pure, for tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &'static str| -> Result<Option<String>, ConfigError> {
            if let Some(value) = lookup(name).filter(|v| !v.is_empty()) {
                return Ok(Some(value));
            }
            match lookup(&format!("{name}_FILE")).filter(|v| !v.is_empty()) {
                Some(path) => std::fs::read_to_string(&path)
                    .map(|v| Some(v.trim().to_owned()))
                    .map_err(|e| ConfigError::File {
                        name,
                        reason: e.kind().to_string(),
                    }),
                None => Ok(None),
            }
        };
        let tenant = get("ATOLL_TENANT")?.unwrap_or_else(|| "default".into());
        if !is_dns_label(&tenant) {
            return Err(ConfigError::Invalid {
                name: "ATOLL_TENANT",
                reason: "must be a DNS label (lowercase letters, digits and '-', at most 63)"
                    .into(),
            });
        }
        let listen_text = get("ATOLL_LISTEN")?.unwrap_or_else(|| "127.0.0.1:8080".into());
        let listen: SocketAddr = listen_text.parse().map_err(|_| ConfigError::Invalid {
            name: "ATOLL_LISTEN",
            reason: "expected an address and port such as 127.0.0.1:8080".into(),
        })?;
        let data_dir = PathBuf::from(get("ATOLL_DATA_DIR")?.unwrap_or_else(|| "atoll-data".into()));
        let database_url = match get("ATOLL_DATABASE_URL")? {
            Some(url) => {
                let known = ["sqlite:", "postgres:", "postgresql:"];
                if !known.iter().any(|p| url.starts_with(p)) {
                    // The URL may hold a password: never echo it.
                    return Err(ConfigError::Invalid {
                        name: "ATOLL_DATABASE_URL",
                        reason: "expected a sqlite: or postgres:// URL".into(),
                    });
                }
                url
            }
            None => format!("sqlite:{}", data_dir.join("atoll.db").display()),
        };
        let public_url = get("ATOLL_PUBLIC_URL")?;
        let issuer = get("ATOLL_IDENTITY_ISSUER")?;
        let auth_disabled = match get("ATOLL_AUTH")?.as_deref() {
            None | Some("enabled") => false,
            Some("disabled") => true,
            Some(_) => {
                return Err(ConfigError::Invalid {
                    name: "ATOLL_AUTH",
                    reason: "expected `enabled` or `disabled`".into(),
                });
            }
        };
        let auth = match (issuer, auth_disabled) {
            (_, true) => AuthMode::Disabled { explicit: true },
            (Some(issuer), false) => {
                if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                    return Err(ConfigError::Invalid {
                        name: "ATOLL_IDENTITY_ISSUER",
                        reason: "expected an http(s) URL".into(),
                    });
                }
                AuthMode::Identity {
                    issuer: issuer.trim_end_matches('/').to_owned(),
                }
            }
            (None, false) => {
                if !listen.ip().is_loopback() {
                    return Err(ConfigError::OpenListener { listen });
                }
                AuthMode::Disabled { explicit: false }
            }
        };
        let lease_seconds = match get("ATOLL_LEASE_SECONDS")? {
            Some(text) => text
                .parse::<u64>()
                .ok()
                .filter(|s| (1..=3600).contains(s))
                .ok_or(ConfigError::Invalid {
                    name: "ATOLL_LEASE_SECONDS",
                    reason: "expected whole seconds between 1 and 3600".into(),
                })?,
            None => 30,
        };
        Ok(Config {
            tenant,
            listen,
            data_dir,
            database_url,
            public_url,
            auth,
            lease: Duration::from_secs(lease_seconds),
        })
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_local_sqlite_on_loopback_without_auth() {
        let c = config(&[]).expect("defaults");
        assert_eq!(c.tenant, "default");
        assert!(c.listen.ip().is_loopback());
        assert_eq!(c.database_url, "sqlite:atoll-data/atoll.db");
        assert_eq!(c.auth, AuthMode::Disabled { explicit: false });
    }

    #[test]
    fn open_listener_without_identity_is_refused_unless_explicit() {
        let err = config(&[("ATOLL_LISTEN", "0.0.0.0:8080")]).expect_err("refused");
        assert!(matches!(err, ConfigError::OpenListener { .. }));
        let c = config(&[("ATOLL_LISTEN", "0.0.0.0:8080"), ("ATOLL_AUTH", "disabled")])
            .expect("explicit");
        assert_eq!(c.auth, AuthMode::Disabled { explicit: true });
        let c = config(&[
            ("ATOLL_LISTEN", "0.0.0.0:8080"),
            ("ATOLL_IDENTITY_ISSUER", "https://id.example.test/"),
        ])
        .expect("with identity");
        assert_eq!(
            c.auth,
            AuthMode::Identity {
                issuer: "https://id.example.test".into()
            }
        );
    }

    #[test]
    fn bad_values_are_named_and_secrets_not_echoed() {
        let err = config(&[("ATOLL_DATABASE_URL", "mysql://u:s3cret@h/db")]).expect_err("bad");
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(err.to_string().contains("ATOLL_DATABASE_URL"));
        assert!(config(&[("ATOLL_TENANT", "Not_A_Label")]).is_err());
        assert!(config(&[("ATOLL_LEASE_SECONDS", "0")]).is_err());
    }

    #[test]
    fn values_can_come_from_files() {
        let dir = std::env::temp_dir().join(format!("atoll-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("url");
        std::fs::write(&file, "postgres://u:p@127.0.0.1/db\n").expect("write");
        let path = file.display().to_string();
        let c = config(&[("ATOLL_DATABASE_URL_FILE", path.as_str())]).expect("file");
        assert_eq!(c.database_url, "postgres://u:p@127.0.0.1/db");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_command_line_asks_for_help_version_or_nothing() {
        let args = |a: &[&str]| invocation(a.iter().map(|s| (*s).to_owned()));
        assert_eq!(args(&[]), Invocation::Run);
        assert_eq!(args(&["--help"]), Invocation::Help);
        assert_eq!(args(&["-V"]), Invocation::Version);
        assert_eq!(
            args(&["--listen", "x"]),
            Invocation::Unknown("--listen".into())
        );
    }
}
