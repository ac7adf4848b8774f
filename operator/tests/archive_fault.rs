//! The object store unavailable for a while (#19), with the operator in
//! process as the chart's service account against kubesim (and the real
//! control plane with `ATOLL_TEST_CLUSTER`), nodesim running the database
//! pod (PostgreSQL 15, the workspace's `atoll-backup` as the backup image)
//! and s3s-fs as the platform's object store, stopped and started again.
//!
//! A Tenant with backups (BackupReady=True, ContinuousArchiving=True) keeps
//! being written to, with WAL switches, while the store is down: every
//! write succeeds; the Tenant shows ContinuousArchiving=False, reason
//! ArchiveFailing, naming the segment and what to check and no credential;
//! the agent counts the segments waiting in `pg_wal` and the operator's
//! `atoll_operator_wal_archive_lag_seconds` grows. Once the store is back,
//! archiving catches up (ContinuousArchiving=True, nothing waiting, the
//! archive's segments contiguous) and a Tenant restored from it at the end
//! of the archive has every row, those written during the outage included.
//! The durations are printed (`--nocapture`).

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use atoll_crds::tenant_crd;
use atoll_testkit::nodesim::NodeSim;
use atoll_testkit::s3::TestS3;
use common::backup::{
    condition, create_credentials, create_tenant, database_pod, eventually, restored, secret_value,
    socket, start_node, start_operator, tenant_status,
};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use serde_json::{Value, json};
use tokio::sync::Mutex;

const SOURCE: &str = "steady";
const NAMESPACE: &str = "atoll-steady";
const COPY: &str = "steady-copy";
/// Rows per write.
const ROWS: i64 = 100;
/// One write at most this often while waiting on the Tenant.
const WRITE_EVERY: Duration = Duration::from_secs(1);
/// One WAL switch (a new segment to archive) at most this often.
const SWITCH_EVERY: Duration = Duration::from_secs(10);
/// The outage lasts at least until the lag metric shows this much (all
/// WAL was archived just before it).
const OUTAGE_LAG_SECONDS: f64 = 45.0;

/// Someone using the tenant's database: the rows written per batch.
struct Writer {
    db: sqlx::PgConnection,
    rows: BTreeMap<i32, i64>,
    last_write: Option<Instant>,
    last_switch: Option<Instant>,
    /// The server's clock just before the last write (it committed after).
    before_last: Option<Timestamp>,
    switches: u32,
}

impl Writer {
    async fn new(node_dir: &std::path::Path, pod_uid: &str) -> Writer {
        let mut db = eventually("the database over its socket", || {
            socket(node_dir, pod_uid, "atoll")
        })
        .await;
        sqlx::raw_sql("CREATE TABLE probe (batch int, i int)")
            .execute(&mut db)
            .await
            .expect("create table");
        Writer {
            db,
            rows: BTreeMap::new(),
            last_write: None,
            last_switch: None,
            before_last: None,
            switches: 0,
        }
    }

    /// Writes a batch now, and switches WAL when it is time; panics when
    /// the database refuses: it must keep serving whatever the store does.
    async fn write(&mut self) {
        let batch = i32::try_from(self.rows.len()).expect("batches");
        let clock: String = sqlx::query_scalar(
            "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
        )
        .fetch_one(&mut self.db)
        .await
        .expect("the database answers");
        sqlx::query("INSERT INTO probe (batch, i) SELECT $1, g FROM generate_series(1, $2) g")
            .bind(batch)
            .bind(ROWS)
            .execute(&mut self.db)
            .await
            .unwrap_or_else(|e| panic!("write {batch} refused: the database stopped serving: {e}"));
        self.rows.insert(batch, ROWS);
        self.before_last = Some(clock.parse().expect("clock"));
        self.last_write = Some(Instant::now());
        if self.last_switch.is_none_or(|t| t.elapsed() >= SWITCH_EVERY) {
            sqlx::query("SELECT pg_switch_wal()::text")
                .execute(&mut self.db)
                .await
                .expect("pg_switch_wal");
            self.switches += 1;
            self.last_switch = Some(Instant::now());
        }
    }

    /// [`Writer::write`] when [`WRITE_EVERY`] has passed since the last.
    async fn keep_writing(&mut self) {
        if self.last_write.is_none_or(|t| t.elapsed() >= WRITE_EVERY) {
            self.write().await;
        }
    }
}

/// The backup agent of the source's database pod.
struct Agent {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Agent {
    async fn status(&self) -> Option<Value> {
        let response = self
            .http
            .get(format!("{}/status", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .ok()?;
        response.json().await.ok()
    }

    /// `POST /switch-wal`: 200 proves all WAL written before it archived.
    async fn switch_wal_archived(&self) -> bool {
        self.http
            .post(format!("{}/switch-wal", self.base))
            .bearer_auth(&self.token)
            .timeout(Duration::from_secs(90))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }
}

/// The largest `atoll_operator_wal_archive_lag_seconds` over the phases.
async fn archive_lag(metrics: SocketAddr) -> Option<f64> {
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .filter(|l| l.starts_with("atoll_operator_wal_archive_lag_seconds{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .reduce(f64::max)
}

/// `ContinuousArchiving` of the source: `(status, reason, message)`.
async fn archiving(client: &Client) -> Option<(String, String, String)> {
    condition(&tenant_status(client, SOURCE).await?, "ContinuousArchiving")
}

async fn the_database_outlives_an_object_store_outage(kind: common::ClusterKind) {
    let Some(mut s3) = TestS3::start("the operator's archive fault test") else {
        return;
    };
    let cluster = common::start_cluster(kind).await;
    common::install_crd(&cluster.client(), &tenant_crd()).await;
    let operator_client = common::operator_client_as_the_chart(&cluster).await;
    let client = cluster.client();
    create_credentials(&client, &s3).await;
    let state = tempfile::tempdir().expect("tempdir");
    let node = start_node(&cluster, state.path(), false).await;
    let node_dir = state.path().join("node");
    let metrics = common::backup::free_addr();
    let operator = start_operator(
        &operator_client,
        &s3,
        &["--metrics-addr", &metrics.to_string()],
    );

    let uid = create_tenant(&client, SOURCE, json!({"backup": {}})).await;
    let (pod_uid, ip) = database_pod(&client, &node, NAMESPACE).await;
    let writer = Mutex::new(Writer::new(&node_dir, &pod_uid).await);
    let agent = Agent {
        http: reqwest::Client::new(),
        base: format!("http://{ip}:9187"),
        token: secret_value(&client, NAMESPACE, "backup-agent", "token").await,
    };
    eventually("BackupReady=True and ContinuousArchiving=True", || async {
        let status = tenant_status(&client, SOURCE).await?;
        let ready = condition(&status, "BackupReady")?.0 == "True";
        let archiving = condition(&status, "ContinuousArchiving")?.0 == "True";
        (ready && archiving).then_some(())
    })
    .await;
    // Archived up to now: the lag from here on is the outage's.
    writer.lock().await.write().await;
    eventually("a WAL switch archived before the outage", || async {
        agent.switch_wal_archived().await.then_some(())
    })
    .await;

    let (outage_lag, outage_batches) =
        outage(&client, &node, &mut s3, &writer, &agent, metrics).await;
    catch_up(&client, &mut s3, &writer, &agent, metrics, outage_lag).await;
    no_segment_missing(&s3, &uid);
    let writer = writer.into_inner();
    restore_reaches_the_last_write(&client, &node, &node_dir, &writer, outage_batches).await;

    common::backup::assert_no_credential_in_logs(&node, &s3);
    operator.abort();
    node.shutdown().await;
    cluster.stop().await.expect("the cluster stops");
}

/// The store stopped while the database is written to: every write
/// succeeds, ContinuousArchiving=False says why, the backlog and the lag
/// metric grow. Returns the lag shown and the batches written meanwhile.
async fn outage(
    client: &Client,
    node: &NodeSim,
    s3: &mut TestS3,
    writer: &Mutex<Writer>,
    agent: &Agent,
    metrics: SocketAddr,
) -> (f64, usize) {
    let before = writer.lock().await.rows.len();
    let stopped = Instant::now();
    s3.stop();
    let (_, reason, message) = eventually("ContinuousArchiving=False (ArchiveFailing)", || async {
        writer.lock().await.keep_writing().await;
        let found = archiving(client).await?;
        (found.0 == "False" && found.1 == "ArchiveFailing").then_some(found)
    })
    .await;
    println!(
        "store stopped: ContinuousArchiving=False after {:.1} s: {reason}: {message}",
        stopped.elapsed().as_secs_f64()
    );
    for part in [
        "archiving WAL segment 0000",
        "object store is reachable",
        "pg_wal",
    ] {
        assert!(message.contains(part), "{part:?} in {message}");
    }
    for secret in [&s3.secret_access_key, &s3.access_key_id] {
        assert!(
            !message.contains(secret.as_str()),
            "credential in {message}"
        );
    }
    let status = tenant_status(client, SOURCE).await.expect("status");
    assert!(
        status["backup"]["lastFailedArchiveTime"].is_string(),
        "{status}"
    );
    database_pod(client, node, NAMESPACE).await;

    let lag = eventually("the archive lag metric to show the outage", || async {
        writer.lock().await.keep_writing().await;
        archive_lag(metrics)
            .await
            .filter(|lag| *lag >= OUTAGE_LAG_SECONDS)
    })
    .await;
    let waiting = agent.status().await.expect("the agent answers");
    assert!(
        waiting["archiver"]["failedCount"].as_u64() >= Some(1),
        "{waiting}"
    );
    assert_eq!(waiting["lastPush"]["ok"], false, "{waiting}");
    let pending = waiting["pendingSegments"].as_u64().unwrap_or_default();
    assert!(pending >= 1, "{waiting}");
    let mut writer = writer.lock().await;
    writer.write().await;
    let batches = writer.rows.len() - before;
    println!(
        "store down for {:.1} s: {batches} writes of {ROWS} rows all succeeded, {} WAL switches, {pending} segment(s) waiting in pg_wal, atoll_operator_wal_archive_lag_seconds {lag:.0}",
        stopped.elapsed().as_secs_f64(),
        writer.switches,
    );
    (lag, batches)
}

/// The store back: ContinuousArchiving=True, nothing waiting in pg_wal, a
/// switch proves all WAL archived, the lag metric falls.
async fn catch_up(
    client: &Client,
    s3: &mut TestS3,
    writer: &Mutex<Writer>,
    agent: &Agent,
    metrics: SocketAddr,
    outage_lag: f64,
) {
    s3.restart();
    let back = Instant::now();
    let message = eventually("ContinuousArchiving=True again", || async {
        writer.lock().await.keep_writing().await;
        let (status, _, message) = archiving(client).await?;
        (status == "True").then_some(message)
    })
    .await;
    println!(
        "store back: ContinuousArchiving=True after {:.1} s: {message}",
        back.elapsed().as_secs_f64()
    );
    writer.lock().await.write().await;
    eventually("a WAL switch archived (all WAL before it is)", || async {
        agent.switch_wal_archived().await.then_some(())
    })
    .await;
    let status = eventually("no segment waiting in pg_wal", || async {
        let status = agent.status().await?;
        (status["pendingSegments"] == 0).then_some(status)
    })
    .await;
    assert_eq!(status["lastPush"]["ok"], true, "{status}");
    println!(
        "store back: the backlog archived after {:.1} s",
        back.elapsed().as_secs_f64()
    );
    eventually(
        "ContinuousArchiving=True with the backlog archived",
        || async { (archiving(client).await?.0 == "True").then_some(()) },
    )
    .await;
    let lag = eventually("the archive lag metric to fall", || async {
        archive_lag(metrics).await.filter(|lag| *lag < outage_lag)
    })
    .await;
    println!("store back: atoll_operator_wal_archive_lag_seconds {lag:.0} (was {outage_lag:.0})");
}

/// The number of a WAL segment file name (16 MiB segments, one timeline).
fn segment_number(name: &str) -> Option<u64> {
    let log = u64::from_str_radix(name.get(8..16)?, 16).ok()?;
    let seg = u64::from_str_radix(name.get(16..24)?, 16).ok()?;
    Some(log * 0x100 + seg)
}

/// The archive holds every segment from its first to its last.
fn no_segment_missing(s3: &TestS3, uid: &str) {
    let prefix = format!("tenants/{uid}/wal/");
    let names: Vec<String> = s3
        .list_keys(&prefix)
        .iter()
        .filter_map(|k| k.strip_prefix(&prefix)?.strip_suffix(".lz4"))
        .filter(|n| n.len() == 24 && n.chars().all(|c| c.is_ascii_hexdigit()))
        .map(str::to_owned)
        .collect();
    let numbers: Vec<u64> = names.iter().filter_map(|n| segment_number(n)).collect();
    assert!(numbers.len() >= 2, "archived: {names:?}");
    let gaps: Vec<(u64, u64)> = numbers
        .windows(2)
        .filter(|w| w[1] != w[0] + 1)
        .map(|w| (w[0], w[1]))
        .collect();
    assert!(
        gaps.is_empty(),
        "segments missing between {gaps:?} in {names:?}"
    );
    println!(
        "the archive holds {} contiguous segments, {} to {}",
        names.len(),
        names[0],
        names[names.len() - 1]
    );
}

/// A Tenant restored from the source at the end of its archive has every
/// row written, those of the outage included.
async fn restore_reaches_the_last_write(
    client: &Client,
    node: &NodeSim,
    node_dir: &std::path::Path,
    writer: &Writer,
    outage_batches: usize,
) {
    let asked = Instant::now();
    create_tenant(client, COPY, json!({"restore": {"from": SOURCE}})).await;
    let (status, reason, message) = restored(client, node, COPY, "True").await;
    assert_eq!(reason, "Restored", "{message}");
    let reached: Timestamp = status["restore"]["reachedTime"]
        .as_str()
        .expect("reachedTime")
        .parse()
        .expect("time");
    // Status times have whole seconds.
    let last = writer.before_last.expect("written");
    let last = Timestamp::from_second(last.as_second()).expect("time");
    assert!(
        reached >= last,
        "reached {reached}, last write after {last}"
    );
    let (pod_uid, _) = database_pod(client, node, &format!("atoll-{COPY}")).await;
    let mut db = eventually("the copy's database over its socket", || {
        socket(node_dir, &pod_uid, "atoll")
    })
    .await;
    let rows: BTreeMap<i32, i64> =
        sqlx::query_as::<_, (i32, i64)>("SELECT batch, count(*) FROM probe GROUP BY 1")
            .fetch_all(&mut db)
            .await
            .expect("count the copy's rows")
            .into_iter()
            .collect();
    assert_eq!(rows, writer.rows, "every batch written, with all its rows");
    println!(
        "restored {COPY} at the end of the archive in {:.1} s: {} batches of {ROWS} rows ({outage_batches} written during the outage), the last transaction at {reached}: {message}",
        asked.elapsed().as_secs_f64(),
        rows.len(),
    );
}

atoll_testkit::on_each_cluster!(the_database_outlives_an_object_store_outage);
