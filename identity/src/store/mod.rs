//! Storage: every query identity makes, on SQLite or PostgreSQL.
//!
//! One code path serves both databases through sqlx's `Any` driver: the SQL
//! is the common dialect of both (numbered `$n` parameters, `ON CONFLICT`,
//! `RETURNING`; times are integer seconds since the Unix epoch, flags are
//! 0/1 integers). Only the schema differs, in one embedded migration set
//! per database.
//!
//! Why `Any` here and a store generic over `sqlx::Database` in the instance
//! (`instance/src/store`): both crates keep one implementation for both
//! databases, and each picks the cheaper way to do so for its queries.
//! Identity's are few, static and cold next to the password hashing and
//! token signing around them; its schemas were written for the common
//! dialect (integer flags on both databases), so `Any` decodes every column;
//! and its one statement built at run time (the audit batch) writes its own
//! `$n` placeholders. The instance has the opposite on each point: a hot
//! queue, dynamic filters (`Any`'s `QueryBuilder` writes `?`, which
//! PostgreSQL rejects) and `BOOLEAN` columns. A generic identity store would
//! add a forwarding layer over some forty methods to speed up queries whose
//! cost is the hashing and signing around them.
//!
//! By concern: users (`users.rs`), sessions and personal access tokens with
//! the token endpoint's grant query (`credentials.rs`), the tenant directory
//! and memberships (`tenants.rs`), signing keys (`signing_keys.rs`), rate
//! limits and lockouts (`throttle.rs`) and the audit log (`audit.rs`). Each
//! adds its queries to the one [`Store`].

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use crate::verify::Role;

mod audit;
mod credentials;
mod signing_keys;
mod tenants;
mod throttle;
mod users;

pub use audit::{AuditEntry, AuditEvent};
pub use credentials::{
    Authenticated, CredentialKind, Grant, Membership, NewCredential, PatInfo, PatScope,
};
pub use tenants::{Member, MyTenant, OwnedElsewhere, Registered, Tenant, TenantSpec};
pub use throttle::Throttle;
pub use users::{User, UserCredentials};

/// Which database a URL points to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of_url(url: &str) -> Option<Backend> {
        if url.starts_with("sqlite:") {
            Some(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Some(Backend::Postgres)
        } else {
            None
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database URL must start with sqlite: or postgres:// (got scheme {scheme:?})")]
    UnsupportedUrl { scheme: String },
    #[error("connecting to the {backend:?} database failed")]
    Connect {
        backend: Backend,
        #[source]
        source: sqlx::Error,
    },
    #[error("migrating the {backend:?} database failed")]
    Migrate {
        backend: Backend,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    #[error("database operation {op:?} failed")]
    Query {
        op: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("stored value in {op:?} is invalid: {reason}")]
    Corrupt { op: &'static str, reason: String },
}

trait QueryContext<T> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError>;
}

impl<T> QueryContext<T> for Result<T, sqlx::Error> {
    fn ctx(self, op: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| StoreError::Query { op, source })
    }
}

fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if e.is_unique_violation())
}

/// The database: a connection pool and the queries.
#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
}

fn migrator(backend: Backend) -> Migrator {
    let sqls: [(&str, &str); 2] = match backend {
        Backend::Sqlite => [
            (
                "init",
                include_str!("../../migrations/sqlite/0001_init.sql"),
            ),
            (
                "clusters and scopes",
                include_str!("../../migrations/sqlite/0002_clusters_and_scopes.sql"),
            ),
        ],
        Backend::Postgres => [
            (
                "init",
                include_str!("../../migrations/postgres/0001_init.sql"),
            ),
            (
                "clusters and scopes",
                include_str!("../../migrations/postgres/0002_clusters_and_scopes.sql"),
            ),
        ],
    };
    Migrator::with_migrations(
        sqls.into_iter()
            .zip(1..)
            .map(|((description, sql), version)| {
                Migration::new(
                    version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(sql),
                    false,
                )
            })
            .collect(),
    )
}

fn role_of(op: &'static str, value: &str) -> Result<Role, StoreError> {
    Role::from_str(value).map_err(|e| StoreError::Corrupt {
        op,
        reason: e.to_string(),
    })
}

impl Store {
    /// Connects and runs the embedded migrations.
    pub async fn open(url: &str, max_connections: u32) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl {
            scheme: url.split(':').next().unwrap_or_default().to_owned(),
        })?;
        let mut options = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10));
        if backend == Backend::Sqlite {
            options = options.after_connect(|conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    conn.execute("PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL")
                        .await?;
                    Ok(())
                })
            });
        }
        let pool = options
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect { backend, source })?;
        if backend == Backend::Sqlite {
            // Readers do not block the writer; persistent in the file.
            sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(|source| StoreError::Connect { backend, source })?;
        }
        migrator(backend)
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate { backend, source })?;
        Ok(Store { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .ctx("ping")?;
        Ok(())
    }
}
