//! A tenant's database URL (`DATABASE_URL`, the `url` of its
//! `database-credentials` Secret) turned into libpq's environment
//! variables (`PGHOST`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`, ...)
//! for `psql`, `pg_dump` and `pg_restore`: a command line is readable by
//! every user of the machine (`/proc/<pid>/cmdline`), a process's
//! environment only by its own user. The URL and the password are never
//! printed: `Debug` hides them and [`ConnInfo::redact`] removes them from
//! any text (the programs' stderr) before it leaves the binary.

use std::fmt;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// Why a URL is not usable. Never holds the URL or a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not `postgres://` or `postgresql://`.
    #[error("the database URL does not start with postgres:// or postgresql://")]
    Scheme,
    /// A part is not valid percent-encoded UTF-8.
    #[error("the database URL's {0} is not valid percent-encoded UTF-8")]
    Encoding(&'static str),
    /// A part is missing.
    #[error("the database URL names no {0}")]
    Missing(&'static str),
    /// A port is not a number.
    #[error("the database URL has a port that is not a number")]
    Port,
    /// A query parameter libpq has no environment variable for (or unknown).
    #[error("the database URL has the unsupported parameter {0:?}")]
    Parameter(String),
}

/// Query parameters of a URL and the variable each becomes.
const PARAMETERS: &[(&str, &str)] = &[
    ("host", "PGHOST"),
    ("hostaddr", "PGHOSTADDR"),
    ("port", "PGPORT"),
    ("user", "PGUSER"),
    ("password", "PGPASSWORD"),
    ("dbname", "PGDATABASE"),
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("sslcrl", "PGSSLCRL"),
    ("sslnegotiation", "PGSSLNEGOTIATION"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("gssencmode", "PGGSSENCMODE"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("application_name", "PGAPPNAME"),
    ("options", "PGOPTIONS"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
];

/// How long a connection attempt may take unless the URL says otherwise.
const CONNECT_TIMEOUT_SECONDS: &str = "10";

/// A parsed database URL. `Debug` shows no credential.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnInfo {
    url: String,
    /// The variables, in a fixed order, without `PGPASSWORD`.
    vars: Vec<(&'static str, String)>,
    password: Option<String>,
    /// The password as written in the URL (percent-encoded), for redaction.
    raw_password: Option<String>,
}

impl fmt::Debug for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnInfo")
            .field("target", &self.to_string())
            .finish_non_exhaustive()
    }
}

/// `user@host:port/database`, for messages (no password).
impl fmt::Display for ConnInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let var = |name| self.var(name).unwrap_or("");
        write!(
            f,
            "{}@{}:{}/{}",
            var("PGUSER"),
            var("PGHOST"),
            self.var("PGPORT").unwrap_or("5432"),
            var("PGDATABASE")
        )
    }
}

fn decode(text: &str, what: &'static str) -> Result<String, UrlError> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| UrlError::Encoding(what))
}

/// Splits `host1:5432,[::1]:5433` into hosts and ports (libpq lists).
fn hosts_and_ports(spec: &str) -> Result<(Vec<String>, Vec<String>), UrlError> {
    let (mut hosts, mut ports) = (Vec::new(), Vec::new());
    for entry in spec.split(',') {
        let (host, port) = match entry.strip_prefix('[') {
            Some(rest) => {
                let (host, after) = rest.split_once(']').ok_or(UrlError::Missing("host"))?;
                (host, after.strip_prefix(':'))
            }
            None => match entry.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (entry, None),
            },
        };
        let port = port.filter(|p| !p.is_empty()).unwrap_or("5432");
        if !port.bytes().all(|b| b.is_ascii_digit()) || port.parse::<u16>().is_err() {
            return Err(UrlError::Port);
        }
        hosts.push(decode(host, "host")?);
        ports.push(port.to_owned());
    }
    Ok((hosts, ports))
}

impl ConnInfo {
    /// Parses `postgres[ql]://[user[:password]@][host[:port][,...]][/dbname][?param=value&...]`.
    pub fn parse(url: &str) -> Result<ConnInfo, UrlError> {
        let url = url.trim();
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or(UrlError::Scheme)?;
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostspec) = match authority.rsplit_once('@') {
            Some((userinfo, hostspec)) => (Some(userinfo), hostspec),
            None => (None, authority),
        };
        let mut vars: Vec<(&'static str, String)> = Vec::new();
        let (mut password, mut raw_password) = (None, None);
        if !hostspec.is_empty() {
            let (hosts, ports) = hosts_and_ports(hostspec)?;
            vars.push(("PGHOST", hosts.join(",")));
            vars.push(("PGPORT", ports.join(",")));
        }
        if let Some(userinfo) = userinfo {
            let (user, pass) = match userinfo.split_once(':') {
                Some((user, pass)) => (user, Some(pass)),
                None => (userinfo, None),
            };
            vars.push(("PGUSER", decode(user, "user name")?));
            password = pass.map(|p| decode(p, "password")).transpose()?;
            raw_password = pass.map(str::to_owned);
        }
        if !path.is_empty() {
            vars.push(("PGDATABASE", decode(path, "database name")?));
        }
        let mut info = ConnInfo {
            url: url.to_owned(),
            vars,
            password,
            raw_password,
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, raw) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name, "parameter name")?;
            let value = decode(raw, "parameter value")?;
            info.set_parameter(&name, value)?;
            if name == "password" {
                info.raw_password = Some(raw.to_owned());
            }
        }
        for required in [
            ("PGHOST", "host"),
            ("PGUSER", "user"),
            ("PGDATABASE", "database"),
        ] {
            if info.var(required.0).is_none_or(str::is_empty) {
                return Err(UrlError::Missing(required.1));
            }
        }
        Ok(info)
    }

    fn set_parameter(&mut self, name: &str, value: String) -> Result<(), UrlError> {
        let var = PARAMETERS
            .iter()
            .find(|(param, _)| *param == name)
            .map(|(_, var)| *var)
            .ok_or_else(|| UrlError::Parameter(name.to_owned()))?;
        if var == "PGPASSWORD" {
            self.password = Some(value);
            return Ok(());
        }
        self.vars.retain(|(v, _)| *v != var);
        self.vars.push((var, value));
        Ok(())
    }

    /// A variable's value (never `PGPASSWORD`).
    pub fn var(&self, name: &str) -> Option<&str> {
        self.vars
            .iter()
            .find(|(v, _)| *v == name)
            .map(|(_, value)| value.as_str())
    }

    /// The database name.
    pub fn database(&self) -> &str {
        self.var("PGDATABASE").unwrap_or("")
    }

    /// Every variable a client program needs, the password included, plus
    /// a connect timeout and an application name unless the URL sets them.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = self.vars.clone();
        if let Some(password) = &self.password {
            env.push(("PGPASSWORD", password.clone()));
        }
        if self.var("PGCONNECT_TIMEOUT").is_none() {
            env.push(("PGCONNECT_TIMEOUT", CONNECT_TIMEOUT_SECONDS.to_owned()));
        }
        if self.var("PGAPPNAME").is_none() {
            env.push(("PGAPPNAME", "atoll-backup".to_owned()));
        }
        env
    }

    /// Prepares `cmd` to connect: removes every inherited `PG*` variable and
    /// `DATABASE_URL`, then sets [`ConnInfo::env`].
    pub fn apply(&self, cmd: &mut tokio::process::Command) {
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("PG") {
                cmd.env_remove(&name);
            }
        }
        cmd.env_remove("DATABASE_URL");
        cmd.envs(self.env());
    }

    /// `text` with the URL and the password (as is and percent-encoded)
    /// replaced by `<redacted>`.
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.replace(&self.url, "<redacted>");
        if let Some(password) = self.password.as_deref().filter(|p| !p.is_empty()) {
            const ALL: &AsciiSet = NON_ALPHANUMERIC;
            let encoded = utf8_percent_encode(password, ALL).to_string();
            out = out.replace(password, "<redacted>");
            out = out.replace(&encoded, "<redacted>");
            out = out.replace(&encoded.to_lowercase(), "<redacted>");
        }
        if let Some(raw) = self.raw_password.as_deref().filter(|p| !p.is_empty()) {
            out = out.replace(raw, "<redacted>");
        }
        out
    }
}

/// A libpq connection string `dbname='...'` naming just the database (the
/// rest comes from the environment): what `-d` takes without any secret.
pub fn dbname_arg(database: &str) -> String {
    format!(
        "dbname='{}'",
        database.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

#[cfg(test)]
#[path = "conninfo_tests.rs"]
mod tests;
