//! Atoll end to end: the chart installed into a cluster, tenants applied
//! from YAML with kubectl, people logging in to identity once and working
//! in their tenants through the ingress.
//!
//! The cluster: kubesim, the real control plane (realkube) or both, as
//! `ATOLL_TEST_CLUSTER=kubesim|realkube|both` selects (`scripts/test`:
//! both), nodesim as the node; or the cluster of `ATOLL_E2E_KUBECONFIG`.
//! The whole suite runs once per cluster.
//!
//! One installed platform is shared by every scenario; each scenario has
//! its own users and tenants and deletes them, so scenarios stay
//! independent. Run one or a few by name:
//! `cargo test -p atoll-testkit --test e2e -- isolation`.
//!
//! With both clusters the two runs go one after the other;
//! `ATOLL_E2E_PARALLEL=1` runs them side by side (each its own cluster,
//! node and platform), some 4 minutes sooner on 2 cores but with every
//! scenario slower (a schedule's wake took up to 14 s), so CI keeps them
//! apart. Figure lines are marked with their cluster. The summary at the
//! end names each run's cluster and its Kubernetes version and prints, per
//! scenario, what it checked and its figures.
//!
//! Long scenarios that mostly wait ([`BACKGROUND`]: ten minutes of a
//! schedule) run beside the others, on the last cluster of the run only,
//! and end before `secrets` scans what every scenario left.

mod attacks;
mod browser;
mod cookies;
mod endpoints;
mod harness;
mod restore_drills;
mod scenarios;
mod sleep_wake;
mod task_pods;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use harness::{Platform, Target};

/// Figures one scenario reports for the summary.
#[derive(Debug, Default)]
pub struct Report {
    /// The cluster the scenario runs on, marking its printed lines.
    cluster: String,
    lines: std::sync::Mutex<Vec<String>>,
}

impl Report {
    fn new(cluster: &str) -> Report {
        Report {
            cluster: cluster.to_owned(),
            lines: std::sync::Mutex::default(),
        }
    }

    /// Prints a figure now and keeps it for the summary.
    pub fn figure(&self, line: impl Into<String>) {
        let line = line.into();
        println!("    [{}] {line}", self.cluster);
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(line);
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Scenarios that run beside the others (on the last cluster of the run).
const BACKGROUND: &[&str] = &["sleep_schedule_ticks"];

type ScenarioFn = fn(
    Arc<Platform>,
    Arc<Report>,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

macro_rules! scenario {
    ($name:literal, $f:path) => {
        ($name, (|p, r| Box::pin($f(p, r))) as ScenarioFn)
    };
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let scenarios: Vec<(&str, ScenarioFn)> = vec![
        scenario!("platform_story", scenarios::platform_story),
        scenario!("isolation_matrix", scenarios::isolation_matrix),
        scenario!("git_driven_change", scenarios::git_driven_change),
        scenario!("suspend_and_resume", scenarios::suspend_and_resume),
        scenario!("deletion", scenarios::deletion),
        scenario!("hostile_input", scenarios::hostile_input),
        scenario!("tenant_attacks", attacks::tenant_attacks),
        scenario!("chart_enforced", attacks::chart_enforced),
        scenario!("task_pods", task_pods::task_pods),
        scenario!("fault_identity_down", scenarios::fault_identity_down),
        scenario!("fault_instance_killed", scenarios::fault_instance_killed),
        scenario!("fault_database_killed", scenarios::fault_database_killed),
        scenario!("fault_leader_takeover", scenarios::fault_leader_takeover),
        scenario!(
            "fault_api_errors_and_operator_kills",
            scenarios::fault_api_errors_and_operator_kills
        ),
        scenario!(
            "restore_drill_point_in_time",
            restore_drills::restore_drill_point_in_time
        ),
        scenario!(
            "restore_drill_deleted",
            restore_drills::restore_drill_deleted
        ),
        scenario!(
            "restore_drill_external",
            restore_drills::restore_drill_external
        ),
        scenario!("sleep_wake", sleep_wake::sleep_wake),
        scenario!("sleep_schedule_ticks", sleep_wake::sleep_schedule_ticks),
        // Last: it scans what every other scenario left in logs and objects.
        scenario!("secrets", scenarios::secrets),
    ];
    if args.iter().any(|a| a == "--list") {
        for (name, _) in &scenarios {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected: Vec<_> = scenarios
        .into_iter()
        .filter(|(name, _)| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str())))
        .collect();
    if selected.is_empty() {
        println!("no e2e scenario matches {filters:?}");
        return ExitCode::SUCCESS;
    }

    // kubesim and nodesim's proxies run on this runtime: two workers a
    // cluster, so that one run's busy moment does not hold the other's.
    let parallel = std::env::var("ATOLL_E2E_PARALLEL").is_ok_and(|v| v == "1");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(if parallel { 4 } else { 2 })
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        // Without helm there is no chart to install (scripts/test installs
        // it, so CI never skips); any other failure to install fails.
        if let Err(why) = atoll_testkit::chart::helm() {
            println!("SKIPPED the end-to-end suite: {why}");
            return ExitCode::SUCCESS;
        }
        let targets = Target::from_env();
        let last = targets.len().saturating_sub(1);
        let suites = targets
            .iter()
            .enumerate()
            .map(|(i, target)| run_suite(target, &selected, i == last));
        let runs = if parallel {
            futures::future::join_all(suites).await
        } else {
            let mut runs = Vec::new();
            for suite in suites {
                runs.push(suite.await);
            }
            runs
        };
        println!();
        for run in &runs {
            run.print();
        }
        if runs.iter().all(Run::passed) {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        }
    })
}

/// One scenario's outcome: name, passed, duration, figures.
type Outcome = (&'static str, bool, std::time::Duration, Vec<String>);

/// One run of the suite on one cluster.
struct Run {
    cluster: String,
    took: std::time::Duration,
    /// `Err` when the platform did not install.
    results: Result<Vec<Outcome>, String>,
}

impl Run {
    fn passed(&self) -> bool {
        self.results
            .as_ref()
            .is_ok_and(|r| r.iter().all(|(_, passed, _, _)| *passed))
    }

    fn print(&self) {
        println!(
            "== e2e summary on {} ({:.1}s)",
            self.cluster,
            self.took.as_secs_f64()
        );
        let results = match &self.results {
            Ok(results) => results,
            Err(why) => {
                println!("FAILED to install the platform: {why}");
                return;
            }
        };
        for (name, passed, took, lines) in results {
            println!(
                "{} {name} ({:.1}s)",
                if *passed { "ok    " } else { "FAILED" },
                took.as_secs_f64()
            );
            for line in lines {
                println!("         {line}");
            }
        }
    }
}

/// Installs the platform on `target`, runs the scenarios, uninstalls.
/// With `background`, the [`BACKGROUND`] scenarios run beside the others;
/// without, they are left to the last cluster.
async fn run_suite(
    target: &Target,
    selected: &[(&'static str, ScenarioFn)],
    background: bool,
) -> Run {
    let started = Instant::now();
    println!("\n==== e2e on {target:?}");
    let platform = match Platform::install(target).await {
        Ok(platform) => Arc::new(platform),
        Err(why) => {
            println!("FAILED to install the platform on {target:?}: {why}");
            return Run {
                cluster: format!("{target:?}"),
                took: started.elapsed(),
                results: Err(why),
            };
        }
    };
    let cluster = platform.cluster_name().to_owned();
    println!(
        "e2e: chart installed on {cluster} in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let mut beside = Vec::new();
    for (name, run) in selected.iter().filter(|(n, _)| BACKGROUND.contains(n)) {
        if !background {
            println!("\n== scenario {name}: runs on the last cluster of this run only");
            continue;
        }
        println!("\n== scenario {name} on {cluster} (beside the others)");
        let report = Arc::new(Report::new(&cluster));
        let task = tokio::spawn(run(platform.clone(), report.clone()));
        beside.push((*name, Instant::now(), report, task));
    }
    let mut results = Vec::new();
    for (name, run) in selected.iter().filter(|(n, _)| !BACKGROUND.contains(n)) {
        if *name == "secrets" {
            finish(&mut beside, &cluster, &mut results).await;
        }
        println!("\n== scenario {name} on {cluster}");
        let report = Arc::new(Report::new(&cluster));
        let began = Instant::now();
        let outcome = tokio::spawn(run(platform.clone(), report.clone())).await;
        let passed = outcome.is_ok();
        println!(
            "== scenario {name} on {cluster}: {} in {:.1}s",
            if passed { "ok" } else { "FAILED" },
            began.elapsed().as_secs_f64()
        );
        results.push((*name, passed, began.elapsed(), report.lines()));
    }
    finish(&mut beside, &cluster, &mut results).await;
    let platform = Arc::try_unwrap(platform).expect("scenarios ended");
    platform.uninstall().await;
    Run {
        cluster,
        took: started.elapsed(),
        results: Ok(results),
    }
}

/// A scenario running beside the others.
type Beside = (
    &'static str,
    Instant,
    Arc<Report>,
    tokio::task::JoinHandle<()>,
);

/// Waits for the scenarios running beside the others.
async fn finish(beside: &mut Vec<Beside>, cluster: &str, results: &mut Vec<Outcome>) {
    for (name, began, report, task) in beside.drain(..) {
        let passed = task.await.is_ok();
        println!(
            "== scenario {name} on {cluster}: {} in {:.1}s",
            if passed { "ok" } else { "FAILED" },
            began.elapsed().as_secs_f64()
        );
        results.push((name, passed, began.elapsed(), report.lines()));
    }
}
