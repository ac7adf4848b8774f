//! What differs between SQLite and PostgreSQL for identity, and nothing
//! else: how a database is opened and migrated. Every query is one
//! implementation, in the concern files.

use std::borrow::Cow;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Database, Pool, Postgres, Sqlite};

use super::{Backend, StoreError};

/// A database the store runs on.
pub(super) trait Dialect: Database {
    /// What [`super::Store::backend`] reports.
    const BACKEND: Backend;

    /// Connects and runs the embedded migrations.
    fn open(
        url: &str,
        max_connections: u32,
    ) -> impl Future<Output = Result<Pool<Self>, StoreError>> + Send;
}

/// The embedded migrations of one database, same versions and names on both.
fn migrator(sql: [&'static str; 3]) -> Migrator {
    let names = ["init", "clusters and scopes", "single sign-on"];
    Migrator::with_migrations(
        (1..)
            .zip(names)
            .zip(sql)
            .map(|((version, name), sql)| {
                Migration::new(
                    version,
                    Cow::Borrowed(name),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}

/// SQLite: foreign keys on, a busy writer waited for, and the write-ahead
/// log (readers do not block the writer; persistent in the file).
impl Dialect for Sqlite {
    const BACKEND: Backend = Backend::Sqlite;

    async fn open(url: &str, max_connections: u32) -> Result<Pool<Self>, StoreError> {
        let connect = |source| StoreError::Connect {
            backend: Backend::Sqlite,
            source,
        };
        let options = SqliteConnectOptions::from_str(url)
            .map_err(connect)?
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10))
            .synchronous(SqliteSynchronous::Normal)
            .journal_mode(SqliteJournalMode::Wal);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(connect)?;
        migrator([
            include_str!("../../migrations/sqlite/0001_init.sql"),
            include_str!("../../migrations/sqlite/0002_clusters_and_scopes.sql"),
            include_str!("../../migrations/sqlite/0003_single_sign_on.sql"),
        ])
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate {
            backend: Backend::Sqlite,
            source,
        })?;
        Ok(pool)
    }
}

impl Dialect for Postgres {
    const BACKEND: Backend = Backend::Postgres;

    async fn open(url: &str, max_connections: u32) -> Result<Pool<Self>, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                backend: Backend::Postgres,
                source,
            })?;
        migrator([
            include_str!("../../migrations/postgres/0001_init.sql"),
            include_str!("../../migrations/postgres/0002_clusters_and_scopes.sql"),
            include_str!("../../migrations/postgres/0003_single_sign_on.sql"),
        ])
        .run(&pool)
        .await
        .map_err(|source| StoreError::Migrate {
            backend: Backend::Postgres,
            source,
        })?;
        Ok(pool)
    }
}
