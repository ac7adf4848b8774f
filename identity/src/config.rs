//! Configuration, read once at start-up from the environment.
//!
//! Every variable may instead be given as `<NAME>_FILE`, the path of a file
//! holding the value (a mounted Kubernetes Secret); setting both is an error.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

pub use crate::ip_range::IpRange;
use crate::keys::KeyPolicy;

pub const LISTEN: &str = "ATOLL_IDENTITY_LISTEN";
pub const DATABASE_URL: &str = "ATOLL_IDENTITY_DATABASE_URL";
pub const ISSUER: &str = "ATOLL_IDENTITY_ISSUER";
pub const ADMIN_EMAIL: &str = "ATOLL_IDENTITY_ADMIN_EMAIL";
pub const ADMIN_PASSWORD: &str = "ATOLL_IDENTITY_ADMIN_PASSWORD";
pub const SERVICE_TOKEN: &str = "ATOLL_IDENTITY_SERVICE_TOKEN";
pub const SERVICE_CLUSTER: &str = "ATOLL_IDENTITY_SERVICE_CLUSTER";
pub const CLUSTER_TOKENS_DIR: &str = "ATOLL_IDENTITY_CLUSTER_TOKENS_DIR";
pub const PAT_MAX_DAYS: &str = "ATOLL_IDENTITY_PAT_MAX_DAYS";
pub const TRUSTED_PROXIES: &str = "ATOLL_IDENTITY_TRUSTED_PROXIES";
pub const TOKEN_TTL: &str = "ATOLL_IDENTITY_TOKEN_TTL_SECONDS";
pub const SESSION_TTL: &str = "ATOLL_IDENTITY_SESSION_TTL_SECONDS";
pub const ARGON2_MEMORY: &str = "ATOLL_IDENTITY_ARGON2_MEMORY_KIB";
pub const ARGON2_ITERATIONS: &str = "ATOLL_IDENTITY_ARGON2_ITERATIONS";
pub const ARGON2_PARALLELISM: &str = "ATOLL_IDENTITY_ARGON2_PARALLELISM";
pub const LOGIN_ATTEMPTS_PER_MINUTE: &str = "ATOLL_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE";
pub const LOCKOUT_AFTER: &str = "ATOLL_IDENTITY_LOCKOUT_AFTER_FAILURES";
pub const LOCKOUT_SECONDS: &str = "ATOLL_IDENTITY_LOCKOUT_SECONDS";
pub const KEY_ROTATION_DAYS: &str = "ATOLL_IDENTITY_KEY_ROTATION_DAYS";
pub const TRUST_FORWARDED_FOR: &str = "ATOLL_IDENTITY_TRUST_FORWARDED_FOR";
pub const DB_MAX_CONNECTIONS: &str = "ATOLL_IDENTITY_DB_MAX_CONNECTIONS";
pub const KEY_ENCRYPTION_KEY: &str = "ATOLL_IDENTITY_KEY_ENCRYPTION_KEY";

/// The longest tenant-token lifetime that may be configured.
pub const MAX_TOKEN_TTL_SECONDS: u64 = 3600;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7800";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://atoll-identity.db?mode=rwc";
pub const DEFAULT_ADMIN_EMAIL: &str = "admin@atoll.localhost";
/// The cluster `ATOLL_IDENTITY_SERVICE_TOKEN` belongs to unless
/// `ATOLL_IDENTITY_SERVICE_CLUSTER` names another.
pub const DEFAULT_SERVICE_CLUSTER: &str = "default";
/// The shortest cluster credential accepted.
pub const MIN_CLUSTER_TOKEN_LEN: usize = 32;
/// Personal access tokens live at most this many days unless configured.
pub const DEFAULT_PAT_MAX_DAYS: u32 = 90;

/// What `atoll-identity --help` prints.
pub const USAGE: &str = "\
atoll-identity: Atoll's global identity service (users, the tenant directory,
tenant-scoped tokens, JWKS). It takes no arguments and is configured by its
environment; each variable may instead be given as <NAME>_FILE, the path of a
file holding the value (a mounted Secret; a trailing newline is dropped).

Usage: atoll-identity            run the service
       atoll-identity --help     print this and exit (also -h)
       atoll-identity --version  print the version and exit (also -V)

Environment:
  ATOLL_IDENTITY_LISTEN                  address to listen on (127.0.0.1:7800)
  ATOLL_IDENTITY_DATABASE_URL            sqlite://... or postgres://... (sqlite://atoll-identity.db?mode=rwc)
  ATOLL_IDENTITY_ISSUER                  public URL, the tokens' iss (http://<listen>)
  ATOLL_IDENTITY_ADMIN_EMAIL             first admin, created when no user exists (admin@atoll.localhost)
  ATOLL_IDENTITY_ADMIN_PASSWORD          first admin's password, at least 12 characters
  ATOLL_IDENTITY_CLUSTER_TOKENS_DIR      directory of cluster credentials: each file is named after
                                         a cluster (a DNS label) and holds that cluster's operator
                                         token (at least 32 characters). Identity takes the cluster
                                         from the credential, never from a request, and scopes every
                                         tenant directory write to it. Re-read on use, at most every
                                         5 s: adding or removing a cluster needs no restart.
  ATOLL_IDENTITY_SERVICE_TOKEN           one cluster's credential (single-cluster and development
                                         setups), at least 32 characters
  ATOLL_IDENTITY_SERVICE_CLUSTER         the cluster ATOLL_IDENTITY_SERVICE_TOKEN belongs to (default)
  ATOLL_IDENTITY_KEY_ENCRYPTION_KEY      32 bytes, base64 or hex: seals the signing keys in the
                                         database (AES-256-GCM); keys stored in the clear are sealed
                                         at start-up; a key that does not open them stops the start.
                                         Without it keys are stored unencrypted (warned).
  ATOLL_IDENTITY_TOKEN_TTL_SECONDS       tenant token lifetime, 60-3600 (900)
  ATOLL_IDENTITY_SESSION_TTL_SECONDS     login session lifetime (43200)
  ATOLL_IDENTITY_PAT_MAX_DAYS            longest personal access token lifetime, and the lifetime of
                                         one created without expiresInDays, 1-3650 (90)
  ATOLL_IDENTITY_ARGON2_MEMORY_KIB       Argon2id memory (19456)
  ATOLL_IDENTITY_ARGON2_ITERATIONS       Argon2id iterations (2)
  ATOLL_IDENTITY_ARGON2_PARALLELISM      Argon2id lanes (1)
  ATOLL_IDENTITY_LOGIN_ATTEMPTS_PER_MINUTE  login attempts per client address per minute (30)
  ATOLL_IDENTITY_LOCKOUT_AFTER_FAILURES  failures for one account from one address that lock that
                                         address out of the account (5)
  ATOLL_IDENTITY_LOCKOUT_SECONDS         how long such a lockout lasts (900)
  ATOLL_IDENTITY_TRUSTED_PROXIES         comma-separated CIDR ranges of proxies (the ingress
                                         controller) whose X-Forwarded-For is believed (none)
  ATOLL_IDENTITY_TRUST_FORWARDED_FOR     believe X-Forwarded-For from any peer (false; legacy)
  ATOLL_IDENTITY_KEY_ROTATION_DAYS       signing key rotation period, 1-365 (30)
  ATOLL_IDENTITY_DB_MAX_CONNECTIONS      database connections (8)
  RUST_LOG                               log filter (info); logs go to stderr, JSON off a terminal
";

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    Run,
    Help,
    Version,
    /// An argument that is not documented: refused.
    Unknown(String),
}

/// Reads the command line (without the program name).
pub fn invocation(mut args: impl Iterator<Item = String>) -> Invocation {
    match args.next().as_deref() {
        None => Invocation::Run,
        Some("--help" | "-h" | "help") => Invocation::Help,
        Some("--version" | "-V") => Invocation::Version,
        Some(other) => Invocation::Unknown(other.to_owned()),
    }
}

/// A secret value: shown by `Debug` as `[redacted]`, never `Display`ed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Default for Argon2Params {
    /// OWASP's recommendation for Argon2id: 19 MiB, 2 iterations, 1 lane.
    fn default() -> Self {
        Argon2Params {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

/// Login abuse limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginLimits {
    /// Login attempts one client address may make per minute.
    pub attempts_per_minute: u32,
    /// Failures for one account from one client address that lock that
    /// address out of that account (the account stays open to its owner
    /// elsewhere).
    pub lockout_after: u32,
    /// How long a lockout lasts; also the window failures are counted in.
    pub lockout: Duration,
}

impl Default for LoginLimits {
    fn default() -> Self {
        LoginLimits {
            attempts_per_minute: 30,
            lockout_after: 5,
            lockout: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub database_url: String,
    /// Public URL of this service; the `iss` of its tokens.
    pub issuer: String,
    pub admin_email: String,
    /// First admin's password; when unset and no user exists, `main`
    /// generates one and shows it on the operator's terminal.
    pub admin_password: Option<Secret>,
    /// One cluster's credential for the tenant directory (single-cluster
    /// and development setups): the cluster is `service_cluster`.
    pub service_token: Option<Secret>,
    /// The cluster `service_token` belongs to.
    pub service_cluster: String,
    /// A directory (a mounted Secret) of cluster credentials: each file is
    /// named after a cluster and holds its token. Re-read when a presented
    /// token matches none, at most once per `cluster_tokens_reload`.
    pub cluster_tokens_dir: Option<PathBuf>,
    pub cluster_tokens_reload: Duration,
    /// Longest lifetime of a personal access token, in days; also the
    /// lifetime of one created without `expiresInDays`.
    pub pat_max_days: u32,
    /// Proxies (the ingress controller) whose `X-Forwarded-For` is believed:
    /// the client address is the right-most entry not in these ranges.
    pub trusted_proxies: Vec<IpRange>,
    pub token_ttl: Duration,
    pub session_ttl: Duration,
    pub argon2: Argon2Params,
    /// Password hashes computed at once; more wait.
    pub hashing_concurrency: usize,
    pub login_limits: LoginLimits,
    pub keys: KeyPolicy,
    /// Believe `X-Forwarded-For` from any peer (legacy; prefer
    /// `trusted_proxies`).
    pub trust_forwarded_for: bool,
    pub db_max_connections: u32,
    /// 32 bytes, base64: seals signing keys in the database (AES-256-GCM).
    pub key_encryption_key: Option<Secret>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("both {name} and {name}_FILE are set; set one")]
    Both { name: &'static str },
    #[error("reading {name}_FILE ({path}) failed")]
    ReadFile {
        name: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl Config {
    /// Defaults for everything but the database.
    pub fn with_database(database_url: impl Into<String>) -> Config {
        let listen: SocketAddr = DEFAULT_LISTEN
            .parse()
            .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7800)));
        let token_ttl = Duration::from_secs(15 * 60);
        Config {
            listen,
            database_url: database_url.into(),
            issuer: format!("http://{listen}"),
            admin_email: DEFAULT_ADMIN_EMAIL.to_owned(),
            admin_password: None,
            service_token: None,
            service_cluster: DEFAULT_SERVICE_CLUSTER.to_owned(),
            cluster_tokens_dir: None,
            cluster_tokens_reload: Duration::from_secs(5),
            pat_max_days: DEFAULT_PAT_MAX_DAYS,
            trusted_proxies: Vec::new(),
            token_ttl,
            session_ttl: Duration::from_secs(12 * 3600),
            argon2: Argon2Params::default(),
            hashing_concurrency: std::thread::available_parallelism().map_or(2, |n| n.get()),
            login_limits: LoginLimits::default(),
            // Retired keys stay published for the longest lifetime a token
            // may be configured to have, not today's setting: tokens issued
            // before a restart with a shorter TTL still verify.
            keys: KeyPolicy {
                token_ttl_max: Duration::from_secs(MAX_TOKEN_TTL_SECONDS),
                ..KeyPolicy::default()
            },
            trust_forwarded_for: false,
            db_max_connections: 8,
            key_encryption_key: None,
        }
    }

    /// Records the address actually bound (port 0 picks one); a defaulted
    /// issuer follows it.
    pub fn bound_to(&mut self, addr: SocketAddr) {
        if self.issuer == format!("http://{}", self.listen) {
            self.issuer = format!("http://{addr}");
        }
        self.listen = addr;
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|name| std::env::var_os(name).map(|v| v.to_string_lossy().into_owned()))
    }

    /// Reads configuration through `lookup` (the environment, in
    /// production; a map, in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let get = |name: &'static str| read(&lookup, name);
        let mut config = Config::with_database(
            get(DATABASE_URL)?.unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
        );
        if let Some(listen) = get(LISTEN)? {
            config.listen = parse(LISTEN, &listen)?;
        }
        config.issuer = match get(ISSUER)? {
            Some(issuer) => validate_issuer(issuer)?,
            None => format!("http://{}", config.listen),
        };
        config.read_accounts_and_clusters(&get)?;
        config.read_limits(&get)?;
        Ok(config)
    }

    /// The first admin and the clusters' credentials.
    fn read_accounts_and_clusters(
        &mut self,
        get: &impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
    ) -> Result<(), ConfigError> {
        if let Some(email) = get(ADMIN_EMAIL)? {
            self.admin_email =
                crate::users::normalize_email(&email).map_err(|e| ConfigError::Invalid {
                    name: ADMIN_EMAIL,
                    reason: e.to_string(),
                })?;
        }
        self.admin_password = get(ADMIN_PASSWORD)?.map(Secret);
        self.service_token = get(SERVICE_TOKEN)?.map(Secret);
        if let Some(token) = &self.service_token
            && token.expose().len() < MIN_CLUSTER_TOKEN_LEN
        {
            return Err(ConfigError::Invalid {
                name: SERVICE_TOKEN,
                reason: format!("must be at least {MIN_CLUSTER_TOKEN_LEN} characters"),
            });
        }
        if let Some(cluster) = get(SERVICE_CLUSTER)? {
            let cluster = cluster.trim().to_owned();
            if !crate::clusters::is_cluster_name(&cluster) {
                return Err(ConfigError::Invalid {
                    name: SERVICE_CLUSTER,
                    reason: crate::clusters::CLUSTER_NAME_RULE.into(),
                });
            }
            self.service_cluster = cluster;
        }
        if let Some(dir) = get(CLUSTER_TOKENS_DIR)? {
            let dir = PathBuf::from(dir);
            if !dir.is_dir() {
                return Err(ConfigError::Invalid {
                    name: CLUSTER_TOKENS_DIR,
                    reason: format!("{} is not a readable directory", dir.display()),
                });
            }
            self.cluster_tokens_dir = Some(dir);
        }
        Ok(())
    }

    /// Lifetimes, costs, limits and the key policy.
    fn read_limits(
        &mut self,
        get: &impl Fn(&'static str) -> Result<Option<String>, ConfigError>,
    ) -> Result<(), ConfigError> {
        if let Some(v) = get(PAT_MAX_DAYS)? {
            self.pat_max_days = parse_range(PAT_MAX_DAYS, &v, 1, 3650)?;
        }
        if let Some(v) = get(TRUSTED_PROXIES)? {
            self.trusted_proxies = v
                .split(',')
                .filter(|r| !r.trim().is_empty())
                .map(|r| {
                    r.parse().map_err(|reason| ConfigError::Invalid {
                        name: TRUSTED_PROXIES,
                        reason,
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = get(TOKEN_TTL)? {
            self.token_ttl =
                Duration::from_secs(parse_range(TOKEN_TTL, &v, 60, MAX_TOKEN_TTL_SECONDS)?);
        }
        if let Some(v) = get(SESSION_TTL)? {
            self.session_ttl = Duration::from_secs(parse_range(SESSION_TTL, &v, 60, 30 * 86400)?);
        }
        if let Some(v) = get(ARGON2_MEMORY)? {
            self.argon2.memory_kib = parse_range(ARGON2_MEMORY, &v, 8, 4 * 1024 * 1024)?;
        }
        if let Some(v) = get(ARGON2_ITERATIONS)? {
            self.argon2.iterations = parse_range(ARGON2_ITERATIONS, &v, 1, 100)?;
        }
        if let Some(v) = get(ARGON2_PARALLELISM)? {
            self.argon2.parallelism = parse_range(ARGON2_PARALLELISM, &v, 1, 64)?;
        }
        if let Some(v) = get(LOGIN_ATTEMPTS_PER_MINUTE)? {
            self.login_limits.attempts_per_minute =
                parse_range(LOGIN_ATTEMPTS_PER_MINUTE, &v, 1, 1_000_000)?;
        }
        if let Some(v) = get(LOCKOUT_AFTER)? {
            self.login_limits.lockout_after = parse_range(LOCKOUT_AFTER, &v, 1, 1000)?;
        }
        if let Some(v) = get(LOCKOUT_SECONDS)? {
            self.login_limits.lockout =
                Duration::from_secs(parse_range(LOCKOUT_SECONDS, &v, 1, 86400)?);
        }
        if let Some(v) = get(KEY_ROTATION_DAYS)? {
            self.keys.rotate_every =
                Duration::from_secs(86400 * parse_range::<u64>(KEY_ROTATION_DAYS, &v, 1, 365)?);
        }
        if let Some(v) = get(TRUST_FORWARDED_FOR)? {
            self.trust_forwarded_for = parse(TRUST_FORWARDED_FOR, &v)?;
        }
        if let Some(v) = get(KEY_ENCRYPTION_KEY)? {
            crate::keys::KeyEncryption::from_base64(&v).map_err(|e| ConfigError::Invalid {
                name: KEY_ENCRYPTION_KEY,
                reason: e.to_string(),
            })?;
            self.key_encryption_key = Some(Secret(v));
        }
        if let Some(v) = get(DB_MAX_CONNECTIONS)? {
            self.db_max_connections = parse_range(DB_MAX_CONNECTIONS, &v, 1, 1000)?;
        }
        Ok(())
    }
}

fn read(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<String>, ConfigError> {
    let direct = lookup(name).filter(|v| !v.is_empty());
    let file = lookup(&format!("{name}_FILE")).filter(|v| !v.is_empty());
    match (direct, file) {
        (Some(_), Some(_)) => Err(ConfigError::Both { name }),
        (Some(value), None) => Ok(Some(value)),
        (None, Some(path)) => {
            let path = PathBuf::from(path);
            let value = std::fs::read_to_string(&path).map_err(|source| ConfigError::ReadFile {
                name,
                path: path.clone(),
                source,
            })?;
            // Secrets written with `echo` end in a newline that is not part
            // of the value.
            Ok(Some(value.trim_end_matches(['\n', '\r']).to_owned()))
        }
        (None, None) => Ok(None),
    }
}

fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| ConfigError::Invalid {
            name,
            reason: e.to_string(),
        })
}

fn parse_range<T>(name: &'static str, value: &str, min: T, max: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    T::Err: std::fmt::Display,
{
    let v: T = parse(name, value)?;
    if v < min || v > max {
        return Err(ConfigError::Invalid {
            name,
            reason: format!("{v} is outside {min}..={max}"),
        });
    }
    Ok(v)
}

fn validate_issuer(issuer: String) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        name: ISSUER,
        reason: reason.to_owned(),
    };
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(invalid("must be an http(s) URL"));
    }
    if issuer.ends_with('/') || issuer.contains('?') || issuer.contains('#') {
        return Err(invalid("must have no trailing slash, query or fragment"));
    }
    Ok(issuer)
}

#[cfg(test)]
mod tests;
