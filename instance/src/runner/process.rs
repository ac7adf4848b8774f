//! The `Process` runner: a script task's attempt as a local process of the
//! instance, in a fresh working directory of its own (removed afterwards)
//! and an environment that holds nothing of the instance's.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use bytes::Bytes;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};

use super::{Lines, ScriptJob, ScriptOutcome, Stream, check_relative, glob};

/// Longest line passed on; a longer one is cut into pieces of this size (a
/// script printing without newlines cannot fill the instance's memory).
pub const MAX_LINE: usize = 64 * 1024;

/// Most bytes of output files collected from one attempt.
pub const MAX_OUTPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Most output files collected from one attempt.
pub const MAX_OUTPUT_FILES: usize = 10_000;

/// Runs one attempt: writes the input files, runs the interpreter with the
/// script, passes on each line as it is written, and collects the output
/// files once the script exited with 0. Dropping the future kills the
/// script and everything it started, and removes the working directory.
pub async fn run(job: &ScriptJob, lines: Lines<'_>) -> Result<ScriptOutcome, String> {
    let workdir = WorkDir::create()?;
    for (name, content) in &job.input_files {
        write_input(workdir.path(), name, content).await?;
    }
    let mut command = command(job)?;
    command.current_dir(workdir.path());
    let program = job.interpreter.first().map_or("", String::as_str);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start `{program}`: {}", e.kind()))?;
    // Its own process group: killing it stops what the script started too.
    let _group = child.id().map(KillGroupOnDrop);
    let stdout = child
        .stdout
        .take()
        .ok_or("the script's stdout is missing")?;
    let stderr = child
        .stderr
        .take()
        .ok_or("the script's stderr is missing")?;
    let streamed = async {
        tokio::join!(
            forward(stdout, Stream::Stdout, lines),
            forward(stderr, Stream::Stderr, lines)
        );
        child.wait().await
    };
    let status = match job.timeout {
        Some(limit) => tokio::time::timeout(limit, streamed)
            .await
            .map_err(|_| format!("timed out after {}", super::duration_text(limit)))?,
        None => streamed.await,
    }
    .map_err(|e| format!("waiting for `{program}` failed: {}", e.kind()))?;
    let exit_code = exit_code(status);
    let output_files = if exit_code == 0 {
        collect_outputs(workdir.path(), &job.output_files).await?
    } else {
        Default::default()
    };
    Ok(ScriptOutcome {
        exit_code,
        output_files,
    })
}

/// The process to start: the interpreter given the script, in an
/// environment of its own.
fn command(job: &ScriptJob) -> Result<tokio::process::Command, String> {
    let (program, args) = job
        .interpreter
        .split_first()
        .ok_or("the interpreter is empty")?;
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .arg(&job.script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    // The script starts from an empty environment: nothing of the
    // instance's (its database URL, secrets mapped into it) is inherited,
    // only a few harmless variables and what the task declares.
    command.env_clear();
    for (key, value) in inherited_env(|name| std::env::var_os(name)) {
        command.env(key, value);
    }
    command.envs(&job.env);
    Ok(command)
}

/// A signal's death reads as 128 + the signal, as a shell reports it.
fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| 128 + s))
        .unwrap_or(-1)
}

/// Passes on each line of `reader` (cut at [`MAX_LINE`]).
async fn forward(reader: impl AsyncRead + Unpin, stream: Stream, lines: Lines<'_>) {
    let mut reader = BufReader::new(reader);
    let mut line = Vec::new();
    loop {
        line.clear();
        match read_line_capped(&mut reader, &mut line, MAX_LINE).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(line.last(), Some(b'\n' | b'\r')) {
                    line.pop();
                }
                lines(stream, String::from_utf8_lossy(&line).into_owned());
            }
        }
    }
}

/// Reads up to and including the next newline, or `max` bytes, whichever
/// comes first; the number of bytes read (0 at the end).
async fn read_line_capped(
    reader: &mut (impl AsyncBufReadExt + Unpin),
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    let mut read = 0;
    loop {
        let available = reader.fill_buf().await?;
        if available.is_empty() {
            return Ok(read);
        }
        let room = max - line.len();
        let (take, done) = match available.iter().take(room).position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => {
                let take = available.len().min(room);
                (take, line.len() + take >= max)
            }
        };
        line.extend_from_slice(&available[..take]);
        reader.consume(take);
        read += take;
        if done {
            return Ok(read);
        }
    }
}

/// Writes one input file (its name checked relative, inside the directory).
async fn write_input(dir: &Path, name: &str, content: &Bytes) -> Result<(), String> {
    check_relative(name).map_err(|reason| format!("input file `{name}`: {reason}"))?;
    let file = dir.join(name);
    if let Some(parent) = file.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(|e| {
            format!(
                "cannot create the folder of input file `{name}`: {}",
                e.kind()
            )
        })?;
    }
    tokio::fs::write(&file, content)
        .await
        .map_err(|e| format!("cannot write input file `{name}`: {}", e.kind()))
}

/// The regular files under `dir` whose relative paths match one of
/// `patterns` (symbolic links are not followed: a script cannot hand out a
/// file of the instance's).
async fn collect_outputs(
    dir: &Path,
    patterns: &[String],
) -> Result<std::collections::BTreeMap<String, Bytes>, String> {
    let mut out = std::collections::BTreeMap::new();
    if patterns.is_empty() {
        return Ok(out);
    }
    let mut total = 0u64;
    for (rel, path, size) in regular_files(dir).await? {
        if !patterns.iter().any(|p| glob::matches(p, &rel)) {
            continue;
        }
        total += size;
        if total > MAX_OUTPUT_BYTES || out.len() >= MAX_OUTPUT_FILES {
            return Err(format!(
                "the output files exceed {} MiB or {MAX_OUTPUT_FILES} files",
                MAX_OUTPUT_BYTES / (1024 * 1024)
            ));
        }
        let content = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("cannot read output file `{rel}`: {}", e.kind()))?;
        out.insert(rel, Bytes::from(content));
    }
    Ok(out)
}

/// Every regular file under `dir`: its `/`-separated relative path, its
/// path and size.
async fn regular_files(dir: &Path) -> Result<Vec<(String, PathBuf, u64)>, String> {
    let failed = |e: std::io::Error| format!("cannot list the working directory: {}", e.kind());
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(folder) = stack.pop() {
        let mut entries = tokio::fs::read_dir(&folder).await.map_err(failed)?;
        while let Some(entry) = entries.next_entry().await.map_err(failed)? {
            let meta = tokio::fs::symlink_metadata(entry.path())
                .await
                .map_err(failed)?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                let path = entry.path();
                let Some(rel) = path.strip_prefix(dir).ok().and_then(Path::to_str) else {
                    continue; // not UTF-8: cannot be named in outputs
                };
                files.push((rel.to_owned(), path.clone(), meta.len()));
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Variables a script inherits from the instance; nothing else is.
const INHERITED_ENV: &[&str] = &["PATH", "HOME", "LANG", "TZ"];

/// `PATH` when the instance has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The environment a script starts with, from the instance's own.
fn inherited_env(lookup: impl Fn(&str) -> Option<OsString>) -> Vec<(&'static str, OsString)> {
    let mut env: Vec<_> = INHERITED_ENV
        .iter()
        .filter_map(|&name| lookup(name).map(|value| (name, value)))
        .collect();
    if !env.iter().any(|(name, _)| *name == "PATH") {
        env.push(("PATH", DEFAULT_PATH.into()));
    }
    env
}

/// A fresh directory only the instance's user may enter, removed when
/// dropped (also when the attempt is aborted).
struct WorkDir(PathBuf);

impl WorkDir {
    fn create() -> Result<WorkDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let dir =
            std::env::temp_dir().join(format!("atoll-task-{}", uuid::Uuid::new_v4().simple()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create the working directory: {}", e.kind()))?;
        Ok(WorkDir(dir))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Kills a process group when dropped: the script and whatever it started
/// in the background (it has ended already when the script did and left
/// nothing).
struct KillGroupOnDrop(u32);

impl Drop for KillGroupOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = i32::try_from(self.0)
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_inherit_only_harmless_variables() {
        let instance = |name: &str| match name {
            "PATH" => Some("/opt/bin:/usr/bin".into()),
            "HOME" => Some("/home/atoll".into()),
            "ATOLL_DATABASE_URL" => Some("postgres://u:secret@db/x".into()),
            "AWS_SECRET_ACCESS_KEY" => Some("secret".into()),
            _ => None,
        };
        let env = inherited_env(instance);
        let names: Vec<&str> = env.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, ["PATH", "HOME"]);
        // Without a PATH of its own, scripts still find the usual programs.
        let env = inherited_env(|_| None);
        assert_eq!(env, vec![("PATH", DEFAULT_PATH.into())]);
    }

    #[tokio::test]
    async fn long_lines_are_cut() {
        let text = format!("{}\nshort\r\n", "x".repeat(10));
        let mut reader = BufReader::with_capacity(3, text.as_bytes());
        let mut pieces = Vec::new();
        let mut line = Vec::new();
        while read_line_capped(&mut reader, &mut line, 4)
            .await
            .expect("read")
            > 0
        {
            pieces.push(String::from_utf8_lossy(&line).into_owned());
            line.clear();
        }
        assert_eq!(pieces, ["xxxx", "xxxx", "xx\n", "shor", "t\r\n"]);
    }
}
