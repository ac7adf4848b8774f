use super::*;

fn shell(script: &str, dir: &Path) -> LaunchSpec {
    LaunchSpec {
        name: "sh".to_owned(),
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".to_owned(), script.to_owned()],
        env: vec![("GREETING".to_owned(), "hello".to_owned())],
        workdir: None,
        run_as: None,
        prepare: Prepare::Nothing,
        log_path: dir.join("sh.log"),
        stop_signal: Signal::TERM,
        grace: Duration::from_secs(5),
        readiness: None,
        liveness: None,
        restart: RestartPolicy::Always,
        backoff: Backoff {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(200),
            reset_after: Duration::from_secs(60),
        },
        logs_on_error: false,
    }
}

async fn wait_for(
    sup: &Supervisor,
    what: &str,
    mut cond: impl FnMut(&ContainerState) -> bool,
) -> ContainerState {
    let mut rx = sup.state.clone();
    let found = tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| cond(s))).await;
    match found {
        Ok(Ok(state)) => state.clone(),
        _ => panic!("timed out waiting for {what}; state {:?}", sup.state()),
    }
}

#[test]
fn debug_output_never_shows_env_values_or_args() {
    let mut spec = shell("echo hunter2", Path::new("/tmp"));
    spec.env.push(("PASSWORD".to_owned(), "hunter2".to_owned()));
    let shown = format!("{spec:?}");
    assert!(
        shown.contains("PASSWORD") && !shown.contains("hunter2"),
        "{shown}"
    );
}

#[test]
fn backoff_doubles_from_an_immediate_first_restart() {
    let b = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(5),
        reset_after: Duration::from_secs(10),
    };
    let delays: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
    assert_eq!(delays, [0, 1, 2, 4, 5, 5]);
}

#[tokio::test]
async fn a_crashing_container_restarts_with_backoff_and_logs_its_output() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = Supervisor::spawn(
        shell("echo \"$GREETING\"; exit 3", dir.path()),
        Arc::new(Notify::new()),
    );
    let state = wait_for(&sup, "crash loop", |s| {
        s.restart_count >= 3
            && matches!(&s.current, RunState::Waiting { reason, .. } if reason == "CrashLoopBackOff")
    })
    .await;
    assert_eq!(
        state.last_termination.as_ref().map(|t| t.exit_code),
        Some(3)
    );
    sup.stop().await;
    let log = std::fs::read_to_string(dir.path().join("sh.log")).expect("log");
    assert!(log.lines().filter(|l| *l == "hello").count() >= 3, "{log}");
}

#[tokio::test]
async fn a_failed_run_ends_with_its_logs_tail_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = shell(
        "echo run; seq 1 100; echo \"error: the store is unreachable\" >&2; exit 1",
        dir.path(),
    );
    spec.logs_on_error = true;
    let sup = Supervisor::spawn(spec, Arc::new(Notify::new()));
    let state = wait_for(&sup, "a restart", |s| s.restart_count >= 2).await;
    sup.stop().await;
    let message = state
        .last_termination
        .and_then(|t| t.message)
        .expect("a termination message");
    // This run's last 80 lines only: not the first lines, not the runs before.
    assert!(
        message.ends_with("error: the store is unreachable"),
        "{message}"
    );
    assert_eq!(message.lines().count(), 80, "{message}");
    assert!(!message.contains("run"), "{message}");
}

#[tokio::test]
async fn stop_terminates_the_whole_group_and_escalates_to_sigkill() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The shell ignores SIGTERM and has a child; both must go.
    let mut spec = shell("trap '' TERM; sleep 600 & wait", dir.path());
    spec.grace = Duration::from_millis(300);
    let sup = Supervisor::spawn(spec, Arc::new(Notify::new()));
    let state = wait_for(&sup, "running", |s| {
        matches!(s.current, RunState::Running { .. })
    })
    .await;
    let RunState::Running { pid, .. } = state.current else {
        unreachable!()
    };
    assert!(group_alive(pid));
    sup.stop().await;
    assert!(!group_alive(pid), "process group {pid} survived stop");
}

#[tokio::test]
async fn dropping_the_supervisor_kills_the_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sup = Supervisor::spawn(
        shell("sleep 600 & wait", dir.path()),
        Arc::new(Notify::new()),
    );
    let state = wait_for(&sup, "running", |s| {
        matches!(s.current, RunState::Running { .. })
    })
    .await;
    let RunState::Running { pid, .. } = state.current else {
        unreachable!()
    };
    drop(sup);
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_alive(pid) {
        assert!(Instant::now() < deadline, "group {pid} survived drop");
        tokio::task::yield_now().await;
    }
}
