//! Running PostgreSQL's client programs (`psql`, `pg_dump`, `pg_restore`)
//! against a tenant's database as child processes: never through a shell,
//! connection settings in their environment ([`ConnInfo::apply`]), stdin
//! closed unless piped, killed when dropped, and every message they print
//! passed through [`ConnInfo::redact`] before it goes anywhere.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;

use crate::conninfo::{self, ConnInfo};

/// How long one `psql` statement or `--version` may take.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How many stderr lines an error keeps.
const TAIL_LINES: usize = 10;
/// How many characters of a program's output an error keeps (a failed
/// COPY quotes rows; status messages need the reason, not the data).
const MESSAGE_CHARS: usize = 1000;

/// A client program failed. The message is already redacted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{program}: {message}")]
pub struct ToolError {
    /// The program (`psql`, `pg_dump`, `pg_restore`).
    pub program: String,
    /// What went wrong (its last stderr lines, redacted).
    pub message: String,
}

/// A program's version: `15.18` and its major 15.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// As printed (`15.18`, `17devel`).
    pub text: String,
    /// The major version.
    pub major: u32,
}

/// The major version of a `15.18` / `17devel` / `16beta1` version text.
fn major_of(text: &str) -> Option<u32> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&m| m >= 10)
}

/// Parses `pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)`.
pub fn parse_program_version(output: &str) -> Option<Version> {
    let after = output.split_once("(PostgreSQL)")?.1;
    let text = after.split_whitespace().next()?.to_owned();
    let major = major_of(&text)?;
    Some(Version { text, major })
}

/// Parses `server_version` (`15.18 (Debian 15.18-0+deb12u1)`) with
/// `server_version_num` (150018).
pub fn parse_server_version(version: &str, version_num: u32) -> Option<Version> {
    let text = version.split_whitespace().next()?.to_owned();
    let major = version_num / 10000;
    (major >= 10).then_some(Version { text, major })
}

/// The client programs of one bin directory, for one database.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Where the programs are; `None` = the PATH.
    pub bindir: Option<PathBuf>,
    /// The database.
    pub conn: ConnInfo,
}

impl Tools {
    /// A command for `program`, connected to the database by environment.
    pub fn command(&self, program: &str) -> Command {
        let path = self
            .bindir
            .as_ref()
            .map_or_else(|| PathBuf::from(program), |dir| dir.join(program));
        let mut cmd = Command::new(path);
        self.conn.apply(&mut cmd);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// The `-d` argument naming the database (no secret in it).
    pub fn dbname_arg(&self) -> String {
        conninfo::dbname_arg(self.conn.database())
    }

    /// An error of `program`, redacted, then cut at [`MESSAGE_CHARS`].
    pub fn error(&self, program: &str, message: &str) -> ToolError {
        ToolError {
            program: program.to_owned(),
            message: clip(&self.conn.redact(message), MESSAGE_CHARS),
        }
    }

    /// `program --version`.
    pub async fn version(&self, program: &str) -> Result<Version, ToolError> {
        let out = self.command(program).arg("--version").output();
        let out = tokio::time::timeout(QUERY_TIMEOUT, out)
            .await
            .map_err(|_| self.error(program, "--version gave no answer"))?
            .map_err(|e| self.error(program, &format!("cannot run it: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        parse_program_version(&text)
            .ok_or_else(|| self.error(program, &format!("unexpected version {:?}", text.trim())))
    }

    /// Runs `sql` (one implicit transaction) with `psql`; returns its
    /// unaligned, tuples-only output.
    pub async fn psql(&self, sql: &str) -> Result<String, ToolError> {
        let out = self
            .command("psql")
            .args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(self.dbname_arg())
            .args(["-c", sql])
            .output();
        let out = tokio::time::timeout(QUERY_TIMEOUT, out)
            .await
            .map_err(|_| self.error("psql", "no answer within 60 s"))?
            .map_err(|e| self.error("psql", &format!("cannot run it: {e}")))?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = stderr.lines().map(|l| unprefixed("psql", l)).collect();
            return Err(self.error("psql", &lines.join(" ")));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }

    /// Runs a query returning one JSON value and parses it.
    pub async fn query_json<T: DeserializeOwned>(&self, sql: &str) -> Result<T, ToolError> {
        let text = self.psql(sql).await?;
        serde_json::from_str(&text)
            .map_err(|e| self.error("psql", &format!("unexpected answer ({e})")))
    }

    /// The server's version.
    pub async fn server_version(&self) -> Result<Version, ToolError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            version: String,
            num: String,
        }
        let answer: Answer = self
            .query_json(
                "select json_build_object('version', current_setting('server_version'), \
                 'num', current_setting('server_version_num'))",
            )
            .await?;
        answer
            .num
            .parse()
            .ok()
            .and_then(|num| parse_server_version(&answer.version, num))
            .ok_or_else(|| {
                self.error(
                    "psql",
                    &format!("unexpected server version {:?}", answer.version),
                )
            })
    }
}

/// A line of `program`'s stderr without its `program: ` prefix (the error
/// names the program already).
fn unprefixed<'a>(program: &str, line: &'a str) -> &'a str {
    let line = line.trim();
    line.strip_prefix(program)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(line)
}

/// `text` cut at `max` characters (marked with `...`).
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_owned(),
    }
}

/// Reads the stderr of `program` to its end; returns its last lines,
/// joined. Redact before showing.
pub fn collect_tail<R: AsyncRead + Unpin + Send + 'static>(
    program: &'static str,
    stream: R,
) -> tokio::task::JoinHandle<String> {
    tokio::spawn(async move {
        let mut lines = BufReader::new(stream).lines();
        let mut tail = std::collections::VecDeque::new();
        while let Ok(Some(line)) = lines.next_line().await {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(unprefixed(program, &line).to_owned());
        }
        Vec::from(tail).join(" ")
    })
}

/// `sql` quoted as a string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_versions() {
        let v = parse_program_version("pg_dump (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)\n");
        assert_eq!(
            v,
            Some(Version {
                text: "15.18".into(),
                major: 15
            })
        );
        let v = parse_program_version("pg_restore (PostgreSQL) 17devel");
        assert_eq!(v.map(|v| v.major), Some(17));
        assert_eq!(parse_program_version("pg_dump 15.1"), None);
        assert_eq!(parse_program_version("pg_dump (PostgreSQL) 9.6.24"), None);
    }

    #[test]
    fn server_versions() {
        assert_eq!(
            parse_server_version("16.4 (Debian 16.4-1.pgdg120+1)", 160004),
            Some(Version {
                text: "16.4".into(),
                major: 16
            })
        );
        assert_eq!(parse_server_version("9.6.1", 90601), None);
        assert_eq!(parse_server_version("", 150000), None);
    }

    #[test]
    fn program_prefixes_are_dropped() {
        assert_eq!(
            unprefixed("pg_dump", "pg_dump: error: query failed "),
            "error: query failed"
        );
        assert_eq!(unprefixed("psql", "FATAL: x"), "FATAL: x");
        assert_eq!(clip("éé", 2), "éé");
        assert_eq!(clip("ééé", 2), "éé...");
    }

    #[test]
    fn literals_are_quoted() {
        assert_eq!(literal("a'b"), "'a''b'");
    }
}
