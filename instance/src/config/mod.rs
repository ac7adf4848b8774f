//! Configuration from the environment, read once at start-up.
//!
//! The variables the operator renders are named by the shared contract
//! (`atoll_crds::contract`); this module reads every one of them through
//! those constants, so the two sides cannot spell a name differently.
//!
//! | variable | default |
//! |---|---|
//! | `ATOLL_TENANT` | `default` |
//! | `ATOLL_TENANT_UID` | none; required with `ATOLL_IDENTITY_ISSUER`: tokens must carry it (`tenant_uid`) |
//! | `ATOLL_LISTEN` | `127.0.0.1:8080` |
//! | `ATOLL_METRICS_LISTEN` | none: no metrics listener; else where `/metrics` (and `/healthz`) are served, apart from the API |
//! | `ATOLL_DATA_DIR` | `atoll-data` (holds the SQLite file) |
//! | `ATOLL_DATABASE_URL` | `sqlite:<data dir>/atoll.db`; a `postgres://` URL uses PostgreSQL |
//! | `ATOLL_PUBLIC_URL` | none: no browser sign-in; else where people reach it (identity sends them back to `<url>/auth/callback`; https makes its cookies Secure) |
//! | `ATOLL_IDENTITY_ISSUER` | none: auth is off, allowed on loopback only |
//! | `ATOLL_AUTH` | `disabled` turns auth off explicitly (logged as a warning) |
//! | `ATOLL_LOG_LEVEL` | `info` (`error`, `warn`, `info`, `debug`, `trace`); `RUST_LOG`, when set, wins |
//! | `ATOLL_MAX_CONCURRENT_TASK_RUNS` | `256`: task runs executing at once |
//! | `ATOLL_EXECUTION_RETENTION_DAYS` | none: keep forever; else ended executions (with logs and outputs) older than this are deleted |
//! | `ATOLL_HTTP_ALLOW_PRIVATE` | `false`: HTTP tasks may not reach private, loopback, link-local or metadata addresses |
//! | `ATOLL_LEASE_SECONDS` | `30`: how soon another process resumes a dead one's executions |
//! | `ATOLL_NAMESPACE` | none: the tenant's namespace (task pods run there) |
//! | `ATOLL_INSTANCE_IMAGE` | none: the image of task pods' file helper containers |
//! | `ATOLL_TASK_API_URL` | none: where task pods reach this API |
//! | `ATOLL_TASK_RUNNER` | `Process` (or `Kubernetes`): the default runner of script tasks |
//! | `ATOLL_TASK_IMAGE` | none: each task type's own default image |
//! | `ATOLL_TASK_RESOURCES` | none: JSON `{"requests":{...},"limits":{...}}` for task pods |
//! | `ATOLL_TASK_MAX_PODS` | `4`: task pods at once; more wait |
//! | `ATOLL_TASK_ALLOWED_IMAGES` | none: any image; else comma-separated patterns |
//! | `ATOLL_TASK_TIMEOUT` | none: a task pod's longest run (ISO-8601) unless the task sets `timeout` |
//! | `ATOLL_SECRETS_DIR` | none: no secrets; else one file per secret |
//! | `ATOLL_STORAGE_DIR` | `<data dir>/storage`: internal storage on a volume |
//! | `ATOLL_STORAGE_S3_ENDPOINT` | none; with `_BUCKET`, `_REGION`, `_ACCESS_KEY_ID`, `_SECRET_ACCESS_KEY`: internal storage in an S3-compatible store |
//!
//! Each variable can also be given as `<NAME>_FILE`, naming a file that holds
//! the value (for mounted secrets such as the database URL).
//!
//! (Over 600 lines with its tests: one reader per variable, each with its
//! checks, and a test per rule; none of it is worth a module of its own.)

mod tasks;

use atoll_crds::contract;

pub use tasks::{
    DEFAULT_MAX_TASK_PODS, RunnerKind, S3Settings, StorageSettings, TaskSettings, iso_duration,
};

/// What `atoll-instance --help` prints.
pub const USAGE: &str = "\
atoll-instance: one tenant's orchestration engine (flows, executions,
triggers) behind an HTTP API. It takes no arguments: it is configured by
its environment. (`atoll-instance task-files` is a task pod's file helper.)

  ATOLL_TENANT            the tenant it serves (default: default)
  ATOLL_TENANT_UID        the Tenant's uid; required with
                          ATOLL_IDENTITY_ISSUER: only tokens carrying it
                          are accepted
  ATOLL_LISTEN            address to listen on (default: 127.0.0.1:8080)
  ATOLL_METRICS_LISTEN    address of a second listener serving only
                          /metrics and /healthz (default: none, no metrics)
  ATOLL_DATA_DIR          holds the SQLite file (default: atoll-data)
  ATOLL_DATABASE_URL      sqlite:<file> (default: <data dir>/atoll.db) or a
                          postgres:// URL
  ATOLL_PUBLIC_URL        the URL users reach it at; with an issuer, turns
                          on browser sign-in (default: none)
  ATOLL_IDENTITY_ISSUER   identity's URL; tokens it signs are required
  ATOLL_AUTH=disabled     run without authentication (loopback only unless
                          set explicitly; logged as a warning)
  ATOLL_LOG_LEVEL         error, warn, info, debug or trace (default: info);
                          RUST_LOG, when set, wins over it
  ATOLL_MAX_CONCURRENT_TASK_RUNS
                          task runs executing at once (default: 256)
  ATOLL_EXECUTION_RETENTION_DAYS
                          delete ended executions, with their logs and
                          outputs, older than this many days (default: keep)
  ATOLL_HTTP_ALLOW_PRIVATE=true
                          let HTTP tasks reach private, loopback, link-local
                          and cloud metadata addresses (default: refused)
  ATOLL_LEASE_SECONDS     how soon another process resumes a dead one's
                          executions (default: 30)

Script tasks, files and secrets:
  ATOLL_TASK_RUNNER       Process (default) or Kubernetes: where script
                          tasks run unless a task sets taskRunner
  ATOLL_NAMESPACE         the namespace task pods are created in
  ATOLL_INSTANCE_IMAGE    this image, for task pods' file helpers
  ATOLL_TASK_API_URL      where task pods reach this API
  ATOLL_TASK_IMAGE        default image of script tasks
  ATOLL_TASK_RESOURCES    task pods' resources as JSON
                          (requests and limits, e.g. cpu 100m)
  ATOLL_TASK_MAX_PODS     task pods at once; more wait (default: 4)
  ATOLL_TASK_ALLOWED_IMAGES
                          comma-separated image patterns (python:*,...);
                          default: any image
  ATOLL_TASK_TIMEOUT      a task pod's longest run, ISO-8601 (PT1H)
  ATOLL_SECRETS_DIR       one file per secret for secret('NAME')
  ATOLL_STORAGE_DIR       internal storage directory
                          (default: <data dir>/storage)
  ATOLL_STORAGE_S3_ENDPOINT, _BUCKET, _REGION, _ACCESS_KEY_ID,
  _SECRET_ACCESS_KEY      internal storage in an S3-compatible store

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
    /// `task-files ...`: a task pod's file helper (the arguments after it).
    TaskFiles(Vec<String>),
    /// Anything else, refused.
    Unknown(String),
}

/// Reads the arguments after the program name.
pub fn invocation<I: IntoIterator<Item = String>>(args: I) -> Invocation {
    let mut args = args.into_iter();
    match args.next() {
        None => Invocation::Run,
        Some(arg) => match arg.as_str() {
            "-h" | "--help" | "help" => Invocation::Help,
            "-V" | "--version" => Invocation::Version,
            "task-files" => Invocation::TaskFiles(args.collect()),
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
    #[error("{name} is required: {reason}")]
    Missing { name: &'static str, reason: String },
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
    /// Bearer tokens from this identity issuer, audience = the tenant's
    /// name, `tenant_uid` = the Tenant's uid.
    Identity { issuer: String, tenant_uid: String },
    /// Everyone is an Admin. For local, single-user use.
    Disabled { explicit: bool },
}

/// Task runs executing at once unless configured.
pub const DEFAULT_MAX_CONCURRENT_TASK_RUNS: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub tenant: String,
    pub listen: SocketAddr,
    /// Where `/metrics` is served, apart from the API; `None`: nowhere.
    pub metrics_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub database_url: String,
    pub public_url: Option<String>,
    pub auth: AuthMode,
    pub lease: Duration,
    /// The level of the instance's own logs (`RUST_LOG` wins when set).
    pub log_level: tracing::Level,
    /// Task runs executing at once.
    pub max_concurrent_task_runs: usize,
    /// Ended executions older than this are deleted; `None` keeps them.
    pub execution_retention: Option<Duration>,
    /// HTTP tasks may reach private, loopback, link-local and metadata addresses.
    pub http_allow_private: bool,
    /// How script tasks run (runners, images, pods).
    pub tasks: TaskSettings,
    /// Where files (execution files, namespace files) are kept.
    pub storage: StorageSettings,
}

impl Default for Config {
    /// What an empty environment gives: local SQLite on loopback, no auth.
    fn default() -> Self {
        let data_dir = PathBuf::from("atoll-data");
        Config {
            tenant: "default".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            metrics_listen: None,
            database_url: format!("sqlite:{}", data_dir.join("atoll.db").display()),
            data_dir,
            public_url: None,
            auth: AuthMode::Disabled { explicit: false },
            lease: Duration::from_secs(30),
            log_level: tracing::Level::INFO,
            max_concurrent_task_runs: DEFAULT_MAX_CONCURRENT_TASK_RUNS,
            execution_retention: None,
            http_allow_private: false,
            tasks: TaskSettings {
                max_pods: DEFAULT_MAX_TASK_PODS,
                ..TaskSettings::default()
            },
            storage: StorageSettings::Dir(PathBuf::from("atoll-data").join("storage")),
        }
    }
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// The log filter: `RUST_LOG` when given (non-empty), else the configured level.
    pub fn log_filter(&self, rust_log: Option<&str>) -> String {
        match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
            Some(filter) => filter.to_owned(),
            None => self.log_level.as_str().to_ascii_lowercase(),
        }
    }

    /// Builds the configuration from a variable lookup (pure, for tests).
    /// Variables are checked in a fixed order; the first bad one is reported.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let env = Env(lookup);
        let defaults = Config::default();
        let (tenant, tenant_uid) = tenant(&env)?;
        let (listen, metrics_listen) = listeners(&env, defaults.listen)?;
        let data_dir = env
            .get("ATOLL_DATA_DIR")?
            .map(PathBuf::from)
            .unwrap_or(defaults.data_dir);
        let database_url = database_url(&env, &data_dir)?;
        let public_url = public_url(&env)?;
        let auth = auth(&env, tenant_uid, listen)?;
        let storage = tasks::storage(&env, &data_dir)?;
        Ok(Config {
            tenant,
            listen,
            metrics_listen,
            data_dir,
            database_url,
            public_url,
            auth,
            lease: lease(&env)?.unwrap_or(defaults.lease),
            log_level: log_level(&env)?.unwrap_or(defaults.log_level),
            max_concurrent_task_runs: max_task_runs(&env)?
                .unwrap_or(defaults.max_concurrent_task_runs),
            execution_retention: retention(&env)?.or(defaults.execution_retention),
            http_allow_private: http_allow_private(&env)?.unwrap_or(defaults.http_allow_private),
            tasks: tasks::tasks(&env)?,
            storage,
        })
    }
}

/// The variables, each also readable from the file `<NAME>_FILE` names.
struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// The variable's value; an empty one counts as unset.
    fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        if let Some(value) = (self.0)(name).filter(|v| !v.is_empty()) {
            return Ok(Some(value));
        }
        match (self.0)(&format!("{name}_FILE")).filter(|v| !v.is_empty()) {
            Some(path) => std::fs::read_to_string(&path)
                .map(|v| Some(v.trim().to_owned()))
                .map_err(|e| ConfigError::File {
                    name,
                    reason: e.kind().to_string(),
                }),
            None => Ok(None),
        }
    }
}

fn invalid(name: &'static str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        name,
        reason: reason.into(),
    }
}

/// The tenant's name and (when given) uid.
fn tenant<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<(String, Option<String>), ConfigError> {
    let tenant = env
        .get(contract::TENANT)?
        .unwrap_or_else(|| Config::default().tenant);
    if !is_dns_label(&tenant) {
        return Err(invalid(
            contract::TENANT,
            "must be a DNS label (lowercase letters, digits and '-', at most 63)",
        ));
    }
    let tenant_uid = env.get(contract::TENANT_UID)?;
    if let Some(uid) = &tenant_uid
        && (uid.len() > 128 || !uid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(invalid(
            contract::TENANT_UID,
            "expected a Kubernetes uid (letters, digits and '-')",
        ));
    }
    Ok((tenant, tenant_uid))
}

/// The API's address and the metrics' (on another port).
fn listeners<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    default: SocketAddr,
) -> Result<(SocketAddr, Option<SocketAddr>), ConfigError> {
    let address = |name: &'static str, text: String| -> Result<SocketAddr, ConfigError> {
        text.parse()
            .map_err(|_| invalid(name, "expected an address and port such as 127.0.0.1:8080"))
    };
    let listen = match env.get(contract::LISTEN)? {
        Some(text) => address(contract::LISTEN, text)?,
        None => default,
    };
    let metrics_listen = match env.get(contract::METRICS_LISTEN)? {
        Some(text) => Some(address(contract::METRICS_LISTEN, text)?),
        None => None,
    };
    if metrics_listen.is_some_and(|m| m.port() != 0 && m.port() == listen.port()) {
        return Err(ConfigError::Invalid {
            name: contract::METRICS_LISTEN,
            reason: format!("must be another port than {}", contract::LISTEN),
        });
    }
    Ok((listen, metrics_listen))
}

fn database_url<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    data_dir: &std::path::Path,
) -> Result<String, ConfigError> {
    match env.get(contract::DATABASE_URL)? {
        Some(url) => {
            let known = ["sqlite:", "postgres:", "postgresql:"];
            if !known.iter().any(|p| url.starts_with(p)) {
                // The URL may hold a password: never echo it.
                return Err(invalid(
                    contract::DATABASE_URL,
                    "expected a sqlite: or postgres:// URL",
                ));
            }
            Ok(url)
        }
        None => Ok(format!("sqlite:{}", data_dir.join("atoll.db").display())),
    }
}

fn public_url<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Option<String>, ConfigError> {
    let public_url = env.get(contract::PUBLIC_URL)?;
    if let Some(url) = &public_url
        && !(url.starts_with("https://") || url.starts_with("http://"))
    {
        return Err(invalid(contract::PUBLIC_URL, "expected an http(s) URL"));
    }
    Ok(public_url)
}

/// Identity's tokens when an issuer is set (they must carry the tenant's
/// uid), else no authentication: on loopback, or anywhere when asked for.
fn auth<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    tenant_uid: Option<String>,
    listen: SocketAddr,
) -> Result<AuthMode, ConfigError> {
    let issuer = env.get(contract::IDENTITY_ISSUER)?;
    let auth_disabled = match env.get("ATOLL_AUTH")?.as_deref() {
        None | Some("enabled") => false,
        Some("disabled") => true,
        Some(_) => return Err(invalid("ATOLL_AUTH", "expected `enabled` or `disabled`")),
    };
    match (issuer, auth_disabled) {
        (_, true) => Ok(AuthMode::Disabled { explicit: true }),
        (Some(issuer), false) => {
            if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
                return Err(invalid(
                    contract::IDENTITY_ISSUER,
                    "expected an http(s) URL",
                ));
            }
            let Some(tenant_uid) = tenant_uid else {
                return Err(ConfigError::Missing {
                    name: contract::TENANT_UID,
                    reason: format!(
                        "with {} set, tokens are accepted only for this Tenant's uid",
                        contract::IDENTITY_ISSUER
                    ),
                });
            };
            Ok(AuthMode::Identity {
                issuer: issuer.trim_end_matches('/').to_owned(),
                tenant_uid,
            })
        }
        (None, false) => {
            if !listen.ip().is_loopback() {
                return Err(ConfigError::OpenListener { listen });
            }
            Ok(AuthMode::Disabled { explicit: false })
        }
    }
}

fn lease<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Option<Duration>, ConfigError> {
    let Some(text) = env.get("ATOLL_LEASE_SECONDS")? else {
        return Ok(None);
    };
    text.parse::<u64>()
        .ok()
        .filter(|s| (1..=3600).contains(s))
        .map(|s| Some(Duration::from_secs(s)))
        .ok_or_else(|| {
            invalid(
                "ATOLL_LEASE_SECONDS",
                "expected whole seconds between 1 and 3600",
            )
        })
}

fn log_level<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<tracing::Level>, ConfigError> {
    let Some(text) = env.get(contract::LOG_LEVEL)? else {
        return Ok(None);
    };
    Ok(Some(match text.trim().to_ascii_lowercase().as_str() {
        "error" => tracing::Level::ERROR,
        "warn" | "warning" => tracing::Level::WARN,
        "info" => tracing::Level::INFO,
        "debug" => tracing::Level::DEBUG,
        "trace" => tracing::Level::TRACE,
        _ => {
            return Err(invalid(
                contract::LOG_LEVEL,
                "expected error, warn, info, debug or trace",
            ));
        }
    }))
}

fn max_task_runs<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<usize>, ConfigError> {
    let Some(text) = env.get(contract::MAX_CONCURRENT_TASK_RUNS)? else {
        return Ok(None);
    };
    text.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (1..=100_000).contains(n))
        .map(Some)
        .ok_or_else(|| {
            invalid(
                contract::MAX_CONCURRENT_TASK_RUNS,
                "expected a whole number between 1 and 100000",
            )
        })
}

fn retention<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Option<Duration>, ConfigError> {
    let Some(text) = env.get(contract::EXECUTION_RETENTION_DAYS)? else {
        return Ok(None);
    };
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=36_500).contains(n))
        .map(|days| Some(DAY * days))
        .ok_or_else(|| {
            invalid(
                contract::EXECUTION_RETENTION_DAYS,
                "expected whole days between 1 and 36500",
            )
        })
}

fn http_allow_private<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<Option<bool>, ConfigError> {
    let Some(text) = env.get(contract::HTTP_ALLOW_PRIVATE)? else {
        return Ok(None);
    };
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Ok(Some(true)),
        "false" | "0" | "no" => Ok(Some(false)),
        _ => Err(invalid(
            contract::HTTP_ALLOW_PRIVATE,
            "expected true or false",
        )),
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
            ("ATOLL_TENANT_UID", "0f6c3b9e-1d2a-4c1e-9a57-3f0e5d1c2b7a"),
        ])
        .expect("with identity");
        assert_eq!(
            c.auth,
            AuthMode::Identity {
                issuer: "https://id.example.test".into(),
                tenant_uid: "0f6c3b9e-1d2a-4c1e-9a57-3f0e5d1c2b7a".into(),
            }
        );
    }

    #[test]
    fn identity_auth_requires_the_tenant_uid() {
        let err = config(&[
            ("ATOLL_LISTEN", "0.0.0.0:8080"),
            ("ATOLL_IDENTITY_ISSUER", "https://id.example.test/"),
        ])
        .expect_err("no uid");
        assert!(matches!(err, ConfigError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("ATOLL_TENANT_UID"), "{err}");
        assert!(config(&[("ATOLL_TENANT_UID", "not a uid!")]).is_err());
    }

    #[test]
    fn an_empty_environment_gives_the_defaults() {
        assert_eq!(config(&[]).expect("defaults"), Config::default());
    }

    /// A value for each contract variable that differs from its default
    /// (or from its value beside), and the variables it needs beside it. A name added to the contract
    /// fails here until the instance reads it.
    fn contract_sample(name: &str) -> (&'static str, &'static [(&'static str, &'static str)]) {
        const UID: &[(&str, &str)] = &[(contract::TENANT_UID, "uid-1")];
        const S3: &[(&str, &str)] = &[
            (contract::STORAGE_S3_BUCKET, "atoll"),
            (contract::STORAGE_S3_ACCESS_KEY_ID, "AKID"),
            (contract::STORAGE_S3_SECRET_ACCESS_KEY, "sk"),
        ];
        const S3_ENDPOINT: &[(&str, &str)] = &[
            (contract::STORAGE_S3_ENDPOINT, "http://127.0.0.1:9000"),
            (contract::STORAGE_S3_BUCKET, "atoll"),
            (contract::STORAGE_S3_ACCESS_KEY_ID, "AKID"),
            (contract::STORAGE_S3_SECRET_ACCESS_KEY, "sk"),
        ];
        match name {
            contract::TENANT => ("globex", &[]),
            contract::TENANT_UID => (
                "uid-2",
                &[
                    (contract::IDENTITY_ISSUER, "https://id.test"),
                    (contract::TENANT_UID, "uid-1"),
                ],
            ),
            contract::DATABASE_URL => ("postgres://u:p@127.0.0.1:5432/db", &[]),
            contract::LISTEN => ("127.0.0.1:9999", &[]),
            contract::METRICS_LISTEN => ("0.0.0.0:9090", &[]),
            contract::PUBLIC_URL => ("https://acme.example.test", &[]),
            contract::IDENTITY_ISSUER => ("https://id.example.test", UID),
            contract::LOG_LEVEL => ("debug", &[]),
            contract::MAX_CONCURRENT_TASK_RUNS => ("7", &[]),
            contract::EXECUTION_RETENTION_DAYS => ("30", &[]),
            contract::HTTP_ALLOW_PRIVATE => ("true", &[]),
            contract::NAMESPACE => ("atoll-acme", &[]),
            contract::INSTANCE_IMAGE => ("atoll/atoll-instance:0.1.0", &[]),
            contract::TASK_API_URL => ("http://instance.atoll-acme.svc:8080", &[]),
            contract::TASK_RUNNER => ("Kubernetes", &[]),
            contract::TASK_IMAGE => ("python:3.12-slim", &[]),
            contract::TASK_RESOURCES => (r#"{"limits":{"memory":"256Mi"}}"#, &[]),
            contract::TASK_MAX_PODS => ("9", &[]),
            contract::TASK_ALLOWED_IMAGES => ("python:*,alpine:*", &[]),
            contract::TASK_TIMEOUT => ("PT10M", &[]),
            contract::SECRETS_DIR => ("/var/run/atoll/secrets", &[]),
            contract::STORAGE_DIR => ("/var/lib/atoll/storage", &[]),
            contract::STORAGE_S3_ENDPOINT => ("http://127.0.0.1:9000", S3),
            contract::STORAGE_S3_BUCKET => ("other", S3_ENDPOINT),
            contract::STORAGE_S3_REGION => ("eu-west-1", S3_ENDPOINT),
            contract::STORAGE_S3_ACCESS_KEY_ID => ("AKID2", S3_ENDPOINT),
            contract::STORAGE_S3_SECRET_ACCESS_KEY => ("sk2", S3_ENDPOINT),
            other => panic!("the instance does not read contract variable {other}"),
        }
    }

    #[test]
    fn every_contract_variable_is_read_and_changes_the_config() {
        for &name in contract::ALL {
            let (value, beside) = contract_sample(name);
            let base = config(beside).unwrap_or_else(|e| panic!("{name}: base: {e}"));
            let mut vars = beside.to_vec();
            vars.push((name, value));
            let set = config(&vars).unwrap_or_else(|e| panic!("{name}={value}: {e}"));
            assert_ne!(set, base, "{name} is accepted but changes nothing");
            // The same value from a file (mounted secrets) gives the same config.
            let dir = tempfile_dir(name);
            let file = dir.join("value");
            std::fs::write(&file, format!("{value}\n")).expect("write");
            let path = file.display().to_string();
            let file_name = format!("{name}_FILE");
            let mut from_file: Vec<_> =
                beside.iter().copied().filter(|(n, _)| *n != name).collect();
            from_file.push((file_name.as_str(), path.as_str()));
            assert_eq!(config(&from_file).as_ref(), Ok(&set), "{file_name}");
            let _ = std::fs::remove_dir_all(dir);
            // A bad value is refused, naming the variable.
            let mut bad = beside.to_vec();
            bad.push((name, "\u{1}bad value"));
            let err = config(&bad).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    fn tempfile_dir(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("atoll-config-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        dir
    }

    #[test]
    fn contract_values_are_parsed() {
        let c = config(&[
            (contract::LOG_LEVEL, "WARN"),
            (contract::MAX_CONCURRENT_TASK_RUNS, "3"),
            (contract::EXECUTION_RETENTION_DAYS, "2"),
            (contract::HTTP_ALLOW_PRIVATE, "true"),
            (contract::METRICS_LISTEN, "127.0.0.1:9090"),
        ])
        .expect("valid");
        assert_eq!(c.log_level, tracing::Level::WARN);
        assert_eq!(c.log_filter(None), "warn");
        assert_eq!(
            c.log_filter(Some("atoll=trace")),
            "atoll=trace",
            "RUST_LOG wins"
        );
        assert_eq!(c.max_concurrent_task_runs, 3);
        assert_eq!(
            c.execution_retention,
            Some(Duration::from_secs(2 * 24 * 3600))
        );
        assert!(c.http_allow_private);
        assert_eq!(
            c.metrics_listen,
            Some(SocketAddr::from(([127, 0, 0, 1], 9090)))
        );
        for (name, bad) in [
            (contract::LOG_LEVEL, "loud"),
            (contract::MAX_CONCURRENT_TASK_RUNS, "0"),
            (contract::EXECUTION_RETENTION_DAYS, "-1"),
            (contract::HTTP_ALLOW_PRIVATE, "maybe"),
            (contract::METRICS_LISTEN, "127.0.0.1:8080"),
            (contract::PUBLIC_URL, "ftp://x"),
        ] {
            let err = config(&[(name, bad)]).expect_err(name);
            assert!(err.to_string().contains(name), "{err}");
        }
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
            args(&["task-files", "fetch", "--dir", "/work"]),
            Invocation::TaskFiles(vec!["fetch".into(), "--dir".into(), "/work".into()])
        );
        assert_eq!(
            args(&["--listen", "x"]),
            Invocation::Unknown("--listen".into())
        );
    }
}
