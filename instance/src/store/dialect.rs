//! What really differs between SQLite and PostgreSQL, and nothing else: how
//! a database is opened and migrated, how a writing transaction excludes
//! other writers, the claim's row lock, whether the finishing write also
//! wakes queued executions, the substring function and the retention
//! purge. Everything else is one implementation in `sql.rs`.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Database, Pool, Postgres, SqlSafeStr, Sqlite, Transaction};

use super::{StoreError, query_error};

/// A database the store runs on.
pub trait Dialect: Database {
    /// What [`super::Store::backend`] reports.
    const BACKEND: &'static str;

    /// `f(haystack, needle)`: the 1-based position of `needle`, 0 when absent.
    const POSITION: &'static str;

    /// Ends the claim's choice of a row. PostgreSQL locks the row and skips
    /// rows other claimers hold, so replicas never wait on one another;
    /// SQLite needs nothing: a writing statement holds the database's only
    /// write lock from its start.
    const PICK_LOCK: &'static str;

    /// The write that finishes an execution also wakes the queued
    /// executions of its flow, in one statement (a data-modifying `WITH`);
    /// otherwise that is a second statement.
    const WAKE_IN_SAVE: bool;

    /// Opens (SQLite: creating if needed) the database and migrates it.
    fn open(url: &str) -> impl Future<Output = Result<Pool<Self>, StoreError>> + Send;

    /// Begins a transaction that writes after reading. With `flow`, it is
    /// serialised with every other such transaction of that flow (revision
    /// changes, concurrency slots). SQLite takes its write lock up front,
    /// which serialises all of them; PostgreSQL takes an advisory lock on
    /// the flow that ends with the transaction.
    fn begin_write(
        pool: &Pool<Self>,
        flow: Option<(&str, &str)>,
        action: &'static str,
    ) -> impl Future<Output = Result<Transaction<'static, Self>, StoreError>> + Send;

    /// Deletes at most `limit` executions that ended before `before` (in
    /// microseconds), with their logs, in one transaction; returns how many.
    fn purge_executions(
        pool: &Pool<Self>,
        before: i64,
        limit: i64,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// The embedded migrations of one database, same versions and names on both.
fn migrator(sql: [&'static str; 7]) -> Migrator {
    let names = [
        "init",
        "triggers",
        "retention",
        "kv",
        "trigger_controls",
        "pause",
        "sessions",
    ];
    Migrator::with_migrations(
        (1..)
            .zip(names)
            .zip(sql)
            .map(|((version, name), sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// SQLite: the embedded default, a file in the data directory. Writers
/// take the write lock with `BEGIN IMMEDIATE`, so two claimers never read
/// the same free row.
impl Dialect for Sqlite {
    const BACKEND: &'static str = "sqlite";
    const POSITION: &'static str = "instr";
    const PICK_LOCK: &'static str = "";
    const WAKE_IN_SAVE: bool = false;

    async fn open(url: &str) -> Result<Pool<Self>, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(StoreError::Connect)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // WAL + NORMAL survives a killed process; only a power loss can
            // drop the last transactions.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(StoreError::Connect)?;
        migrator([
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_triggers.sql"),
            include_str!("../../migrations/sqlite/0003_retention.sql"),
            include_str!("../../migrations/sqlite/0004_kv.sql"),
            include_str!("../../migrations/sqlite/0005_trigger_controls.sql"),
            include_str!("../../migrations/sqlite/0006_pause.sql"),
            include_str!("../../migrations/sqlite/0007_sessions.sql"),
        ])
        .run(&pool)
        .await
        .map_err(StoreError::Migrate)?;
        Ok(pool)
    }

    async fn begin_write(
        pool: &Pool<Self>,
        _flow: Option<(&str, &str)>,
        action: &'static str,
    ) -> Result<Transaction<'static, Self>, StoreError> {
        pool.begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(query_error(action))
    }

    async fn purge_executions(
        pool: &Pool<Self>,
        before: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        let action = "purge executions";
        let mut tx = Self::begin_write(pool, None, action).await?;
        // One batch: the same rows for both statements, as the transaction
        // holds the write lock.
        sqlx::query(
            "DELETE FROM logs WHERE execution_id IN (
                 SELECT id FROM executions WHERE finished = TRUE AND updated_at < $1
                 ORDER BY updated_at, id LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(query_error(action))?;
        let deleted = sqlx::query(
            "DELETE FROM executions WHERE id IN (
                 SELECT id FROM executions WHERE finished = TRUE AND updated_at < $1
                 ORDER BY updated_at, id LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&mut *tx)
        .await
        .map_err(query_error(action))?
        .rows_affected();
        tx.commit().await.map_err(query_error(action))?;
        Ok(deleted)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// How long a PostgreSQL connection may sit idle and still be used
/// without first checking that it is alive.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// A name that can be written as an SQL literal as it is.
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// PostgreSQL: the tenant's dedicated database.
impl Dialect for Postgres {
    const BACKEND: &'static str = "postgres";
    const POSITION: &'static str = "strpos";
    const PICK_LOCK: &'static str = " FOR UPDATE SKIP LOCKED";
    const WAKE_IN_SAVE: bool = true;

    async fn open(url: &str) -> Result<Pool<Self>, StoreError> {
        let options = PgConnectOptions::from_str(url).map_err(StoreError::Connect)?;
        let pool = connect_waiting(options).await?;
        migrator([
            include_str!("../../migrations/postgres/0001_init.sql"),
            include_str!("../../migrations/postgres/0002_triggers.sql"),
            include_str!("../../migrations/postgres/0003_retention.sql"),
            include_str!("../../migrations/postgres/0004_kv.sql"),
            include_str!("../../migrations/postgres/0005_trigger_controls.sql"),
            include_str!("../../migrations/postgres/0006_pause.sql"),
            include_str!("../../migrations/postgres/0007_sessions.sql"),
        ])
        .run(&pool)
        .await
        .map_err(StoreError::Migrate)?;
        Ok(pool)
    }

    async fn begin_write(
        pool: &Pool<Self>,
        flow: Option<(&str, &str)>,
        action: &'static str,
    ) -> Result<Transaction<'static, Self>, StoreError> {
        if let Some((namespace, id)) = flow
            && plain(namespace)
            && plain(id)
        {
            // One round trip for both: names of letters, digits, `.`, `_`
            // and `-` are safe as literals whatever the server's settings.
            let begin = format!(
                "BEGIN; SELECT pg_advisory_xact_lock(hashtext('{namespace}' || '/' || '{id}'))"
            );
            return pool
                .begin_with(sqlx::AssertSqlSafe(begin))
                .await
                .map_err(query_error(action));
        }
        let mut tx = pool.begin().await.map_err(query_error(action))?;
        if let Some((namespace, id)) = flow {
            sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1 || '/' || $2))")
                .bind(namespace)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(query_error("lock flow"))?;
        }
        Ok(tx)
    }

    async fn purge_executions(
        pool: &Pool<Self>,
        before: i64,
        limit: i64,
    ) -> Result<u64, StoreError> {
        // One statement, so one transaction: the batch's logs and the
        // executions go together; rows another process holds are skipped.
        let deleted = sqlx::query(
            "WITH doomed AS (
                 SELECT id FROM executions WHERE finished AND updated_at < $1
                 ORDER BY updated_at, id LIMIT $2 FOR UPDATE SKIP LOCKED
             ), gone_logs AS (
                 DELETE FROM logs WHERE execution_id IN (SELECT id FROM doomed)
             )
             DELETE FROM executions WHERE id IN (SELECT id FROM doomed)",
        )
        .bind(before)
        .bind(limit)
        .execute(pool)
        .await
        .map_err(query_error("purge executions"))?
        .rows_affected();
        Ok(deleted)
    }

    fn rows_affected(result: &Self::QueryResult) -> u64 {
        result.rows_affected()
    }
}

/// How long the instance waits at start-up for its PostgreSQL to accept
/// connections: a waking tenant's database starts beside it (#20), and a
/// retry here costs 50 ms where a crash costs the kubelet's restart
/// back-off (10 s and more). Past it the process ends with the error,
/// before the kubelet's liveness probe (first at 10 s, 3 failures 10 s
/// apart) would kill it without one.
const DATABASE_WAIT: Duration = Duration::from_secs(25);
const DATABASE_RETRY: Duration = Duration::from_millis(50);

/// The pool, once the server accepts connections; errors other than "not
/// there yet" (refused, or the server starting or stopping) end at once.
async fn connect_waiting(options: PgConnectOptions) -> Result<Pool<Postgres>, StoreError> {
    let pool_options = PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(10))
        // A connection is checked (one round trip) before use only when
        // it sat idle long enough for the server to have gone away; a
        // busy one is not, as that would double the round trips of
        // every statement outside a transaction.
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= IDLE_CHECK {
                    sqlx::Connection::ping(conn).await?;
                }
                Ok(true)
            })
        });
    let started = std::time::Instant::now();
    let mut said = false;
    loop {
        let pool = pool_options.clone().connect_with(options.clone()).await;
        match pool {
            Ok(pool) => return Ok(pool),
            Err(error) if not_there_yet(&error) && started.elapsed() < DATABASE_WAIT => {
                if !said {
                    said = true;
                    tracing::info!(%error, "waiting for the database to accept connections");
                }
                tokio::time::sleep(DATABASE_RETRY).await;
            }
            Err(error) => return Err(StoreError::Connect(error)),
        }
    }
}

/// The server is not listening yet, or says it is starting up or shutting
/// down (SQLSTATE 57P03 and 57P01).
fn not_there_yet(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(e) => e.code().is_some_and(|c| c == "57P03" || c == "57P01"),
        _ => false,
    }
}
