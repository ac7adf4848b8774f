//! Process groups: signalling a container's whole group, knowing when it
//! is gone, and killing it when its supervisor goes away.

use std::time::Duration;

use rustix::process::{Pid, Signal};

/// Kills a process group when dropped, unless disarmed.
pub(super) struct GroupGuard(pub(super) Option<u32>);

impl GroupGuard {
    pub(super) fn signal(&self, signal: Signal) {
        if let Some(pid) = self.0 {
            signal_group(pid, signal);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::KILL);
    }
}

/// Sends `signal` to the process group led by `pid`.
pub fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// Whether any process of the group led by `pid` is alive (zombies, which
/// only wait to be reaped, do not count).
pub fn group_alive(pid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            return false;
        };
        // Fields after the command name, which is in parentheses and may
        // contain spaces: state, ppid, pgrp, ...
        let Some(rest) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
            return false;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<u32>().ok());
        pgrp == Some(pid) && !matches!(state, Some("Z" | "X"))
    })
}

/// Waits until no process of the group led by `pid` is alive, polling
/// `/proc`, for at most `limit`.
pub(super) async fn wait_group_gone(pid: u32, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while group_alive(pid) && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// True while process `pid` runs: it exists and is not a zombie (a process
/// that exited but was not reaped yet counts as gone).
pub fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            // The state follows the command name, which may hold spaces and
            // parentheses: split at the last ')'.
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}
