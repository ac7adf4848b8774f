//! Backup and restore of a 1 GB tenant database (#19), in the sandbox's
//! cluster (kubesim, nodesim running PostgreSQL 15, the instance and the
//! backup agent as local processes, s3s-fs as the platform's store, the
//! operator in process). Not a test: it prints figures and asserts only
//! that the data came back.
//!
//! 1. A Dedicated Tenant with `spec.backup` becomes Ready (its first base
//!    backup, of the empty database, taken at once, completes).
//! 2. Its database is filled with executions (the instance's own tables,
//!    cloned server-side from one real execution, see `data`) until
//!    `pg_database_size` reaches `BENCH_BACKUP_BYTES` (default 1 GB); the
//!    WAL of the fill is archived as it is written.
//! 3. A TenantBackup: **base backup time** (created → `Completed`, as a
//!    user watching it sees it) and its size in the store.
//! 4. **RPO**: one more execution is committed; the RPO is the time from
//!    that commit until the WAL segment holding it is in the store
//!    (PostgreSQL's archiver reports it archived): the committed work a
//!    primary lost at the commit's moment would take with it. Measured
//!    once as it happens by itself (bounded by `archive_timeout` = 60 s
//!    plus the upload) and once with the backup agent's `POST /switch-wal`
//!    right after the commit.
//! 5. **RTO**: a new Tenant with `spec.restore {from, backup: latest}`:
//!    applied → `Restored=True` → phase `Ready` → its instance answering
//!    through the ingress; its database holds every execution, the last
//!    commit included, and its API counts them.
//!
//! `cargo build --release -p atoll-backup -p atoll-instance && cargo bench
//! -p atoll-operator --bench backup_restore` (`BENCH_BACKUP_BYTES` for
//! another size; needs PostgreSQL 15's binaries and s3s-fs, as the
//! operator's cluster tests do). Everything lives in temporary
//! directories, removed at the end.

mod data;
mod platform;

use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_crds::TenantBackup;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};

use data::{Counts, mb};
use platform::{Sandbox, until};

const SOURCE: &str = "bench";
const COPY: &str = "bench-restored";
/// The longest any one step may take.
const LIMIT: Duration = Duration::from_secs(900);

/// A Tenant's spec with a Dedicated database with room for the data and
/// its WAL (the default volume is 1Gi, the default quota 10Gi), plus
/// `extra`.
fn spec(extra: Value) -> Value {
    let mut spec = json!({
        "database": {"mode": "Dedicated", "dedicated": {"storage": {"size": "10Gi"}}},
        "quota": {"storage": "20Gi"},
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    spec
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let target: u64 = std::env::var("BENCH_BACKUP_BYTES")
        .ok()
        .map(|v| v.parse().expect("BENCH_BACKUP_BYTES: a number of bytes"))
        .unwrap_or(1_000_000_000);
    let started = Instant::now();
    let sandbox = Arc::new(Sandbox::start().await);
    // Measured in a task so that a failure still stops the sandbox.
    let measured = tokio::spawn(measure(sandbox.clone(), target)).await;
    match Arc::try_unwrap(sandbox) {
        Ok(sandbox) => sandbox.stop().await,
        Err(_) => eprintln!("the sandbox is still in use; its processes end with this one"),
    }
    let (size, rows) = match measured {
        Ok(figures) => figures,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => panic!("the benchmark's task: {e}"),
    };
    println!(
        "\nBackup and restore of a {:.0} MB tenant database (sandbox: kubesim + nodesim, PostgreSQL 15, s3s-fs; {} CPUs)\n",
        mb(size),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (figure, value) in &rows {
        println!("  {figure:<width$}  {value}");
    }
    println!("\n  total run: {}", secs(started.elapsed()));
}

/// Steps 1 to 5; returns the database's size and the figures.
async fn measure(sandbox: Arc<Sandbox>, target: u64) -> (u64, Vec<(String, String)>) {
    let started = Instant::now();
    let mut rows: Vec<(String, String)> = Vec::new();
    let uid = sandbox
        .create_tenant(SOURCE, spec(json!({"backup": {}})))
        .await;
    sandbox.wait_ready(SOURCE, LIMIT).await;
    until("the first base backup", LIMIT, || async {
        let status = sandbox.tenant_status(SOURCE).await?;
        status["backup"]["lastSuccessfulBackup"]
            .is_string()
            .then_some(())
    })
    .await;
    println!(
        "Tenant {SOURCE} Ready with its first base backup ({})",
        secs(started.elapsed())
    );

    let mut db = sandbox.database(SOURCE).await;
    let template = data::template(&sandbox, SOURCE, &mut db).await;
    println!(
        "template execution {}: {} bytes of JSON, {} log rows; filling to {:.0} MB",
        template.id,
        template.body_bytes,
        template.log_rows,
        mb(target)
    );
    let filled = data::fill(&mut db, &template, target).await;
    let fill_end = Instant::now();
    data::wait_caught_up(&mut db, LIMIT).await;
    let catch_up = fill_end.elapsed();
    let counts = data::counts(&mut db, &[]).await;
    let size = counts.bytes;
    let (wal_bytes, wal_files) = sandbox.stored(&format!("tenants/{uid}/wal/"));
    rows.push((
        "database (pg_database_size)".into(),
        format!(
            "{:.0} MB: {} executions, {} log rows",
            mb(size),
            counts.executions,
            counts.logs
        ),
    ));
    rows.push((
        "fill (generate_series; WAL archived meanwhile)".into(),
        format!(
            "{} ({:.1} MB/s); the archive caught up {} after",
            secs(filled),
            mb(size) / filled.as_secs_f64(),
            secs(catch_up)
        ),
    ));
    rows.push((
        "WAL in the store after the fill".into(),
        format!("{wal_files} files, {:.0} MB (lz4)", mb(wal_bytes)),
    ));
    println!("filled: {} in {}", rows[0].1, secs(filled));

    base_backup(&sandbox, &uid, size, &mut rows).await;
    rpo(&sandbox, &template, &mut db, &mut rows).await;
    let source = data::counts(&mut db, &["bench-rpo-passive", "bench-rpo-switched"]).await;
    drop(db);
    restore(&sandbox, &source, &mut rows).await;
    (size, rows)
}

/// Step 3: a TenantBackup, timed from its creation to `Completed`.
async fn base_backup(sandbox: &Sandbox, uid: &str, size: u64, rows: &mut Vec<(String, String)>) {
    let backups: Api<TenantBackup> = Api::all(sandbox.client.clone());
    let backup: TenantBackup = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "TenantBackup",
        "metadata": {"name": "bench-base"}, "spec": {"tenant": SOURCE},
    }))
    .expect("a TenantBackup");
    let created = Instant::now();
    backups
        .create(&PostParams::default(), &backup)
        .await
        .expect("creating the TenantBackup");
    let status = until("TenantBackup bench-base to complete", LIMIT, || async {
        let status = serde_json::to_value(backups.get("bench-base").await.ok()?.status?).ok()?;
        assert_ne!(
            status["phase"], "Failed",
            "TenantBackup bench-base: {status}"
        );
        (status["phase"] == "Completed").then_some(status)
    })
    .await;
    let took = created.elapsed();
    let id = status["backupId"].as_str().expect("backupId");
    let (stored, _) = sandbox.stored(&format!("tenants/{uid}/base/{id}/"));
    let agent = match (
        status["startedAt"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
        status["stoppedAt"]
            .as_str()
            .and_then(|t| t.parse::<jiff::Timestamp>().ok()),
    ) {
        (Some(start), Some(stop)) => format!("{:.0} s", stop.duration_since(start).as_secs_f64()),
        _ => "?".into(),
    };
    println!("base backup {id}: {}", secs(took));
    rows.push((
        "BASE BACKUP: TenantBackup created -> Completed".into(),
        format!(
            "{} ({:.1} MB/s of database)",
            secs(took),
            mb(size) / took.as_secs_f64()
        ),
    ));
    rows.push((
        "  the agent's own (status startedAt -> stoppedAt, 1 s steps)".into(),
        agent,
    ));
    rows.push((
        "  size in the store (base.tar.lz4 + backup.json)".into(),
        format!(
            "{:.0} MB ({:.0} % of the database)",
            mb(stored),
            100.0 * stored as f64 / size as f64
        ),
    ));
}

/// Step 4: commit → the segment holding it archived, by itself and with
/// a forced switch.
async fn rpo(
    sandbox: &Sandbox,
    template: &data::Template,
    db: &mut sqlx::PgConnection,
    rows: &mut Vec<(String, String)>,
) {
    let (committed, segment) = data::commit_one(db, template, "bench-rpo-passive").await;
    data::wait_archived(db, &segment, LIMIT).await;
    let passive = committed.elapsed();
    println!("RPO by itself: {} (segment {segment})", secs(passive));

    let (committed, segment) = data::commit_one(db, template, "bench-rpo-switched").await;
    let switched = sandbox.switch_wal(SOURCE).await;
    let forced = committed.elapsed();
    let last = data::last_archived(db).await;
    assert!(
        data::archived(last.as_deref(), &segment),
        "after POST /switch-wal ({switched}) the archiver reports {last:?}, not {segment}"
    );
    println!("RPO with POST /switch-wal: {}", secs(forced));
    rows.push((
        "RPO: last commit -> its WAL segment in the store (archive_timeout=60 s)".into(),
        secs(passive),
    ));
    rows.push((
        "  with the agent's POST /switch-wal right after the commit".into(),
        secs(forced),
    ));
}

/// `(status, reason, message)` of a condition of a status.
fn condition(status: &Value, type_: &str) -> Option<(String, String, String)> {
    let c = status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?;
    let text = |k: &str| c[k].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// Step 5: a new Tenant restored at `latest`, timed to each milestone,
/// its data compared with `source`'s.
async fn restore(sandbox: &Sandbox, source: &Counts, rows: &mut Vec<(String, String)>) {
    let applied = Instant::now();
    sandbox
        .create_tenant(
            COPY,
            spec(json!({"restore": {"from": SOURCE, "backup": "latest"}})),
        )
        .await;
    let mut restored = None;
    let status = loop {
        let status = sandbox.tenant_status(COPY).await.unwrap_or(Value::Null);
        match condition(&status, "Restored") {
            Some((s, reason, message)) if s == "False" => {
                panic!("{COPY}: Restored=False {reason}: {message}")
            }
            Some((s, _, _)) if s == "True" && restored.is_none() => {
                restored = Some(applied.elapsed());
            }
            _ => {}
        }
        if status["phase"] == "Ready" {
            break status;
        }
        assert!(
            applied.elapsed() < LIMIT,
            "{COPY} not Ready within {LIMIT:?}: {status}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let ready = applied.elapsed();
    until("the restored instance to answer", LIMIT, || async {
        let (code, _) = sandbox
            .call(COPY, reqwest::Method::GET, "/healthz", None)
            .await?;
        (code == 200).then_some(())
    })
    .await;
    let answering = applied.elapsed();
    let restored = restored.unwrap_or(ready);
    println!(
        "restored: {} to Ready, {} to answering",
        secs(ready),
        secs(answering)
    );

    let mut db = sandbox.database(COPY).await;
    let copy = data::counts(&mut db, &["bench-rpo-passive", "bench-rpo-switched"]).await;
    drop(db);
    let (code, body) = sandbox
        .call(
            COPY,
            reqwest::Method::GET,
            "/api/v1/executions/search?size=1",
            None,
        )
        .await
        .expect("the restored instance answers");
    let total = serde_json::from_str::<Value>(&body).unwrap_or(Value::Null)["total"].as_i64();
    assert_eq!(code, 200, "search executions in {COPY}: {body}");
    assert_eq!(
        (copy.executions, copy.logs, &copy.present),
        (source.executions, source.logs, &source.present),
        "the restored database's executions, logs and last commits match the source's"
    );
    assert_eq!(copy.present, [true, true], "both last commits restored");
    assert_eq!(
        total,
        Some(copy.executions),
        "the restored instance counts every execution"
    );
    rows.push((
        "RTO: restored Tenant applied -> Restored=True".into(),
        secs(restored),
    ));
    rows.push(("  -> phase Ready".into(), secs(ready)));
    rows.push((
        "  -> its instance answering (GET /healthz through the ingress)".into(),
        secs(answering),
    ));
    rows.push((
        "restored database".into(),
        format!(
            "{:.0} MB (source {:.0} MB), {} executions and {} log rows = the source's, last commit in, API total {}",
            mb(copy.bytes),
            mb(source.bytes),
            copy.executions,
            copy.logs,
            total.unwrap_or(0)
        ),
    ));
    if let Some(reached) = status["restore"]["reachedTime"].as_str() {
        rows.push(("  status.restore.reachedTime".into(), reached.to_owned()));
    }
}
