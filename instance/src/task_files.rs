//! `atoll-instance task-files fetch|upload`: the file helpers of a task pod
//! (see `runner::kubernetes::pod`). `fetch` downloads the attempt's input
//! files from the instance's API into the working directory before the
//! script runs; `upload` sends the files matching the task's `outputFiles`
//! patterns back after it succeeded. Both address one attempt
//! ([`URL_ENV`]) with its token ([`TOKEN_ENV`]); nothing else is reachable
//! with it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::runner::check_relative;
use crate::runner::glob::matches as path_matches;

/// The attempt's base URL (`.../api/v1/task-attempts/<key>`).
pub const URL_ENV: &str = "ATOLL_TASK_FILES_URL";
/// The attempt's token.
pub const TOKEN_ENV: &str = "ATOLL_TASK_FILES_TOKEN";

/// What `atoll-instance task-files --help` prints.
pub const USAGE: &str = "\
atoll-instance task-files fetch --dir DIR
atoll-instance task-files upload --dir DIR [--pattern GLOB]...

The file helpers of a task pod: fetch downloads the attempt's input files
into DIR; upload sends the files of DIR matching the patterns. The attempt
is named by ATOLL_TASK_FILES_URL and opened by ATOLL_TASK_FILES_TOKEN.
";

/// Tries of one request before giving up (the instance may be briefly
/// unreachable while the pod's network comes up).
const TRIES: u32 = 6;

/// What the command line asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Fetch { dir: PathBuf },
    Upload { dir: PathBuf, patterns: Vec<String> },
}

/// Reads the arguments after `task-files`.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Command, String> {
    let mut args = args.into_iter();
    let verb = args.next().ok_or("expected fetch or upload")?;
    let (mut dir, mut patterns) = (None, Vec::new());
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value()?)),
            "--pattern" => patterns.push(value()?),
            _ => return Err(format!("unexpected argument {arg:?}")),
        }
    }
    let dir = dir.ok_or("--dir is required")?;
    match verb.as_str() {
        "fetch" if patterns.is_empty() => Ok(Command::Fetch { dir }),
        "fetch" => Err("fetch takes no --pattern".into()),
        "upload" => Ok(Command::Upload { dir, patterns }),
        other => Err(format!("expected fetch or upload, not {other:?}")),
    }
}

/// Runs `task-files` with its arguments; errors go to stderr (the pod's
/// termination message).
pub async fn main<I: IntoIterator<Item = String>>(args: I) -> ExitCode {
    let command = match parse(args) {
        Ok(command) => command,
        Err(err) => {
            eprintln!("atoll-instance task-files: {err}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let (Ok(url), Ok(token)) = (std::env::var(URL_ENV), std::env::var(TOKEN_ENV)) else {
        eprintln!("atoll-instance task-files: {URL_ENV} and {TOKEN_ENV} are required");
        return ExitCode::from(2);
    };
    let client = Client::new(url, token);
    let done = match &command {
        Command::Fetch { dir } => fetch(&client, dir).await,
        Command::Upload { dir, patterns } => upload(&client, dir, patterns).await,
    };
    match done {
        Ok(count) => {
            let verb = match command {
                Command::Fetch { .. } => "fetched",
                Command::Upload { .. } => "uploaded",
            };
            println!("{verb} {count} file(s)");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("atoll-instance task-files: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The attempt's routes, with its token.
#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    /// A client of the attempt at `base` (`.../task-attempts/<key>`).
    pub fn new(base: String, token: String) -> Client {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .build()
            .unwrap_or_default();
        Client {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    /// Sends the request `make` builds, again on connection errors and
    /// 5xx answers; any other answer than 2xx is an error with its body.
    async fn send(
        &self,
        what: &str,
        make: impl Fn() -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        let mut wait = Duration::from_millis(250);
        for attempt in 1..=TRIES {
            let last = attempt == TRIES;
            match make().bearer_auth(&self.token).send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if !response.status().is_server_error() || last => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    return Err(format!("{what}: {status}: {}", body.trim()));
                }
                Err(err) if last => return Err(format!("{what}: {err}")),
                _ => {}
            }
            tokio::time::sleep(wait).await;
            wait *= 2;
        }
        Err(format!("{what}: no answer"))
    }
}

/// Percent-encodes each segment of a relative path.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(|s| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[derive(serde::Deserialize)]
struct InputList {
    files: Vec<InputEntry>,
}

#[derive(serde::Deserialize)]
struct InputEntry {
    path: String,
}

/// Downloads every input file into `dir`; the number of files.
pub async fn fetch(client: &Client, dir: &Path) -> Result<usize, String> {
    let list_url = format!("{}/inputs", client.base);
    let list: InputList = client
        .send("listing the input files", || client.http.get(&list_url))
        .await?
        .json()
        .await
        .map_err(|e| format!("listing the input files: {e}"))?;
    for entry in &list.files {
        check_relative(&entry.path)
            .map_err(|e| format!("input file {:?} refused: {e}", entry.path))?;
        let url = format!("{}/inputs/{}", client.base, encode_path(&entry.path));
        let what = format!("fetching {}", entry.path);
        let content = client
            .send(&what, || client.http.get(&url))
            .await?
            .bytes()
            .await
            .map_err(|e| format!("{what}: {e}"))?;
        let target = dir.join(&entry.path);
        if let Some(parent) = target.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(|e| format!("creating {}: {e}", parent.display()))?;
        }
        tokio::fs::write(&target, &content)
            .await
            .map_err(|e| format!("writing {}: {e}", target.display()))?;
    }
    Ok(list.files.len())
}

/// Uploads the regular files of `dir` matching `patterns` (symbolic links
/// are not followed); the number of files.
pub async fn upload(client: &Client, dir: &Path, patterns: &[String]) -> Result<usize, String> {
    let files = matching_files(dir, patterns)?;
    for path in &files {
        let source = dir.join(path);
        let content = tokio::fs::read(&source)
            .await
            .map_err(|e| format!("reading {}: {e}", source.display()))?;
        let url = format!("{}/outputs/{}", client.base, encode_path(path));
        let what = format!("uploading {path}");
        client
            .send(&what, || client.http.put(&url).body(content.clone()))
            .await?;
    }
    Ok(files.len())
}

/// The relative paths of the regular files under `dir` matching a
/// pattern, sorted; symbolic links (to files or folders) are skipped.
pub fn matching_files(dir: &Path, patterns: &[String]) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    while let Some((folder, prefix)) = pending.pop() {
        let entries =
            std::fs::read_dir(&folder).map_err(|e| format!("reading {}: {e}", folder.display()))?;
        for entry in entries {
            let entry = entry.map_err(|e| format!("reading {}: {e}", folder.display()))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let relative = format!("{prefix}{name}");
            let kind = entry
                .file_type()
                .map_err(|e| format!("reading {relative}: {e}"))?;
            if kind.is_dir() {
                pending.push((entry.path(), format!("{relative}/")));
            } else if kind.is_file()
                && check_relative(&relative).is_ok()
                && patterns.iter().any(|p| path_matches(p, &relative))
            {
                found.push(relative);
            }
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_read() {
        let args = |a: &[&str]| parse(a.iter().map(|s| (*s).to_owned()));
        assert_eq!(
            args(&["fetch", "--dir", "/work"]),
            Ok(Command::Fetch {
                dir: "/work".into()
            })
        );
        assert_eq!(
            args(&[
                "upload",
                "--dir",
                "/w",
                "--pattern",
                "*.csv",
                "--pattern",
                "o/**"
            ]),
            Ok(Command::Upload {
                dir: "/w".into(),
                patterns: vec!["*.csv".into(), "o/**".into()]
            })
        );
        assert!(args(&["fetch"]).is_err());
        assert!(args(&["delete", "--dir", "/w"]).is_err());
        assert!(args(&["upload", "--dir"]).is_err());
    }

    #[test]
    fn only_matching_regular_files_are_uploaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        std::fs::create_dir_all(root.join("out/deep")).expect("mkdir");
        std::fs::write(root.join("a.csv"), "1").expect("write");
        std::fs::write(root.join("b.txt"), "2").expect("write");
        std::fs::write(root.join("out/deep/c.csv"), "3").expect("write");
        #[cfg(unix)]
        std::os::unix::fs::symlink("/etc/hostname", root.join("leak.csv")).expect("symlink");
        let found = matching_files(root, &["*.csv".into(), "out/**".into()]).expect("walk");
        assert_eq!(found, ["a.csv", "out/deep/c.csv"]);
    }
}
