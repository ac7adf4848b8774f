//! The tenant's data: executions in the instance's own tables. One real
//! execution of a small order flow is run through the instance's API; its
//! row in `executions` (Kestra's JSON in `body`) and its rows in `logs` are
//! the template, cloned server-side with `generate_series` under fresh
//! ids (the execution's, its task runs') and a random customer, one second
//! apart going back in time, until the database reaches the size asked
//! for.

use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::{Connection, Row};

use super::platform::{Sandbox, until};

/// The flow the template execution runs: an input, two log lines, an
/// output.
pub const FLOW: &str = r#"id: orders
namespace: bench
inputs:
  - id: customer
    type: STRING
    defaults: customer-template
tasks:
  - id: received
    type: io.kestra.plugin.core.log.Log
    message: "order received from {{ inputs.customer }}"
  - id: total
    type: io.kestra.plugin.core.debug.Return
    format: "{{ inputs.customer }}: 3 items, 42.50 EUR"
  - id: done
    type: io.kestra.plugin.core.log.Log
    message: "order of {{ inputs.customer }} shipped"
"#;

/// The input's default, replaced by a random customer in each clone.
const CUSTOMER: &str = "customer-template";

/// Executions cloned per statement (one transaction each).
const BATCH: i64 = 20_000;

/// The template execution and the columns of the tables it is copied in.
pub struct Template {
    pub id: String,
    task_runs: Vec<String>,
    execution_columns: Vec<String>,
    log_columns: Vec<String>,
    /// The size of its JSON.
    pub body_bytes: usize,
    /// Its log rows.
    pub log_rows: i64,
}

/// Saves [`FLOW`] through the tenant's instance, runs it once, waits for
/// its end, and reads it back from the database.
pub async fn template(sandbox: &Sandbox, tenant: &str, db: &mut sqlx::PgConnection) -> Template {
    let limit = Duration::from_secs(120);
    until("the flow saved through the instance", limit, || async {
        let body = Some(("application/x-yaml", FLOW.to_owned()));
        let (status, _) = sandbox
            .call(tenant, reqwest::Method::POST, "/api/v1/flows", body)
            .await?;
        (200..300).contains(&status).then_some(())
    })
    .await;
    let (status, body) = sandbox
        .call(
            tenant,
            reqwest::Method::POST,
            "/api/v1/executions/bench/orders",
            None,
        )
        .await
        .expect("the instance answers");
    assert!(
        (200..300).contains(&status),
        "run bench/orders: {status} {body}"
    );
    let started: Value = serde_json::from_str(&body).expect("an execution");
    let id = started["id"].as_str().expect("an execution id").to_owned();
    let path = format!("/api/v1/executions/{id}");
    let state = until(&format!("execution {id} to end"), limit, || async {
        let (_, body) = sandbox
            .call(tenant, reqwest::Method::GET, &path, None)
            .await?;
        let execution: Value = serde_json::from_str(&body).ok()?;
        let state = execution["state"]["current"].as_str()?.to_owned();
        ["SUCCESS", "FAILED", "WARNING", "KILLED"]
            .contains(&state.as_str())
            .then_some(state)
    })
    .await;
    assert_eq!(state, "SUCCESS", "the template execution {id}");

    let body: String = sqlx::query_scalar("SELECT body FROM executions WHERE id = $1")
        .bind(&id)
        .fetch_one(&mut *db)
        .await
        .expect("the template execution's row");
    let json: Value = serde_json::from_str(&body).expect("the execution's JSON");
    let task_runs = json["taskRunList"]
        .as_array()
        .expect("taskRunList")
        .iter()
        .filter_map(|t| t["id"].as_str().map(str::to_owned))
        .collect();
    // Its two log lines may be flushed after its end.
    let deadline = Instant::now() + Duration::from_secs(30);
    let log_rows = loop {
        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM logs WHERE execution_id = $1")
            .bind(&id)
            .fetch_one(&mut *db)
            .await
            .expect("the template's logs");
        if rows >= 2 {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "execution {id} has {rows} log rows in the database, not 2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Template {
        task_runs,
        execution_columns: columns(db, "executions").await,
        log_columns: columns(db, "logs").await,
        body_bytes: body.len(),
        log_rows,
        id,
    }
}

async fn columns(db: &mut sqlx::PgConnection, table: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(db)
    .await
    .unwrap_or_else(|e| panic!("the columns of {table}: {e}"))
}

/// A SQL string literal.
fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Template {
    /// One statement cloning the template once per row of `generate_series
    /// (from, to)`, each clone's id given by `id` (an SQL expression of
    /// `g`): its executions row and its log rows.
    fn clone_sql(&self, from: i64, to: i64, id: &str) -> String {
        let template = literal(&self.id);
        // Fresh ids as long as the template's (at most md5's 32 digits).
        let task_run = |k: usize| {
            let length = self.task_runs[k].len().min(32);
            format!("substr(md5(n.id || ':{k}'), 1, {length})")
        };
        let mut body = format!("replace(t.body, {template}, n.id)");
        for (k, run) in self.task_runs.iter().enumerate() {
            body = format!("replace({body}, {}, {})", literal(run), task_run(k));
        }
        body = format!("replace({body}, {}, n.customer)", literal(CUSTOMER));
        let executions: Vec<String> = self
            .execution_columns
            .iter()
            .map(|c| match c.as_str() {
                "id" => "n.id".to_owned(),
                "body" => body.clone(),
                "created_at" | "updated_at" => format!("t.{c} - n.g * 1000000"),
                other => format!("t.\"{other}\""),
            })
            .collect();
        let mut task_run_case = String::from("CASE l.task_run_id");
        for (k, run) in self.task_runs.iter().enumerate() {
            task_run_case.push_str(&format!(" WHEN {} THEN {}", literal(run), task_run(k)));
        }
        task_run_case.push_str(" ELSE l.task_run_id END");
        let log_columns: Vec<&String> = self.log_columns.iter().filter(|c| *c != "seq").collect();
        let logs: Vec<String> = log_columns
            .iter()
            .map(|c| match c.as_str() {
                "execution_id" => "n.id".to_owned(),
                "task_run_id" => task_run_case.clone(),
                "message" => format!("replace(l.message, {}, n.customer)", literal(CUSTOMER)),
                "ts" => "l.ts - n.g * 1000000".to_owned(),
                other => format!("l.\"{other}\""),
            })
            .collect();
        let quoted = |columns: &[&String]| {
            columns
                .iter()
                .map(|c| format!("\"{c}\""))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let execution_columns: Vec<&String> = self.execution_columns.iter().collect();
        format!(
            "WITH n AS MATERIALIZED (
               SELECT g, {id} AS id, 'customer-' || (random() * 100000)::int AS customer
               FROM generate_series({from}::bigint, {to}::bigint) g
             ), e AS (
               INSERT INTO executions ({ecols}) SELECT {evals}
               FROM executions t CROSS JOIN n WHERE t.id = {template}
             )
             INSERT INTO logs ({lcols}) SELECT {lvals}
             FROM logs l CROSS JOIN n WHERE l.execution_id = {template}",
            ecols = quoted(&execution_columns),
            evals = executions.join(", "),
            lcols = quoted(&log_columns),
            lvals = logs.join(", "),
        )
    }
}

/// Clones the template in batches until `pg_database_size` reaches
/// `target` bytes; returns how long that took.
pub async fn fill(db: &mut sqlx::PgConnection, template: &Template, target: u64) -> Duration {
    let started = Instant::now();
    let mut next = 1;
    loop {
        let size = database_size(db).await;
        if size >= target {
            break;
        }
        if next > 1 && (next / BATCH) % 5 == 1 {
            println!(
                "  filled {:>6.0} MB of {:.0} MB ({} executions, {:.0} s)",
                mb(size),
                mb(target),
                next - 1,
                started.elapsed().as_secs_f64()
            );
        }
        let to = next + BATCH - 1;
        let id = format!(
            "substr(md5(g::text || ':' || random()::text), 1, {})",
            template.id.len().min(32)
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(template.clone_sql(next, to, &id)))
            .execute(&mut *db)
            .await
            .unwrap_or_else(|e| panic!("cloning executions {next}..{to}: {e}"));
        next = to + 1;
    }
    started.elapsed()
}

/// One more execution, `id`, committed; returns when the commit returned
/// and the WAL segment holding it.
pub async fn commit_one(
    db: &mut sqlx::PgConnection,
    template: &Template,
    id: &str,
) -> (Instant, String) {
    let sql = template.clone_sql(0, 0, &literal(id));
    let mut tx = db.begin().await.expect("BEGIN");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut *tx)
        .await
        .unwrap_or_else(|e| panic!("inserting execution {id}: {e}"));
    tx.commit().await.expect("COMMIT");
    let committed = Instant::now();
    // The commit record ends before the current insert position.
    let segment: String = sqlx::query_scalar("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")
        .fetch_one(&mut *db)
        .await
        .expect("the current WAL segment");
    (committed, segment)
}

/// The last segment PostgreSQL's archiver reports archived (the store
/// holds it: `archive_command` succeeded).
pub async fn last_archived(db: &mut sqlx::PgConnection) -> Option<String> {
    sqlx::query_scalar("SELECT last_archived_wal FROM pg_stat_archiver")
        .fetch_one(db)
        .await
        .expect("pg_stat_archiver")
}

/// Whether the archiver's `last` proves `segment` archived: a segment at or
/// after it, or a backup history file (`<segment>.<offset>.backup`,
/// archived before its segment ends) of a later segment.
pub fn archived(last: Option<&str>, segment: &str) -> bool {
    match last {
        Some(last) if last.len() == segment.len() => last >= segment,
        Some(last) => last.get(..segment.len()).is_some_and(|s| s > segment),
        None => false,
    }
}

/// Waits (checking every 50 ms) until the archiver proves `segment`
/// archived.
pub async fn wait_archived(db: &mut sqlx::PgConnection, segment: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !archived(last_archived(db).await.as_deref(), segment) {
        assert!(
            Instant::now() < deadline,
            "segment {segment} not archived within {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (checking every 100 ms) until no WAL file waits for the archiver.
pub async fn wait_caught_up(db: &mut sqlx::PgConnection, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let pending = pending_segments(db).await;
        if pending == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} WAL files still wait for the archiver after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// WAL files waiting for the archiver (`.ready` in `pg_wal/archive_status`).
pub async fn pending_segments(db: &mut sqlx::PgConnection) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'")
        .fetch_one(db)
        .await
        .expect("pg_ls_archive_statusdir()")
}

/// `pg_database_size` of the current database.
pub async fn database_size(db: &mut sqlx::PgConnection) -> u64 {
    let size: i64 = sqlx::query_scalar("SELECT pg_database_size(current_database())")
        .fetch_one(db)
        .await
        .expect("pg_database_size");
    u64::try_from(size).unwrap_or(0)
}

/// The database's size and its executions and log rows, and whether each
/// of `ids` is there.
pub struct Counts {
    pub bytes: u64,
    pub executions: i64,
    pub logs: i64,
    pub present: Vec<bool>,
}

pub async fn counts(db: &mut sqlx::PgConnection, ids: &[&str]) -> Counts {
    let row = sqlx::query("SELECT (SELECT count(*) FROM executions), (SELECT count(*) FROM logs)")
        .fetch_one(&mut *db)
        .await
        .expect("counting executions and logs");
    let mut present = Vec::new();
    for id in ids {
        let found: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM executions WHERE id = $1)")
                .bind(*id)
                .fetch_one(&mut *db)
                .await
                .expect("looking up an execution");
        present.push(found);
    }
    Counts {
        bytes: database_size(db).await,
        executions: row.get(0),
        logs: row.get(1),
        present,
    }
}

/// Bytes as (decimal) megabytes.
pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
