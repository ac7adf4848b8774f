//! Storage: every query identity makes, on SQLite or PostgreSQL.
//!
//! Built as the instance's store is (`instance/src/store`): one
//! implementation generic over `sqlx::Database`, with `dialect.rs` holding
//! what really differs (opening and migrating), and sqlx's `QueryBuilder`
//! for the one statement whose shape depends on the call (the audit
//! batch). The SQL is the common dialect of both (numbered `$n` parameters,
//! `ON CONFLICT`, `RETURNING`; times are integer seconds since the Unix
//! epoch, flags are 0/1 integers). Only the schema differs, in one embedded
//! migration set per database. [`Store`] picks the database from a URL and
//! forwards each method to it.
//!
//! By concern: users (`users.rs`), sessions and personal access tokens with
//! the token endpoint's grant query (`credentials.rs`), the tenant directory
//! and memberships (`tenants.rs`), signing keys (`signing_keys.rs`), rate
//! limits and lockouts (`throttle.rs`) and the audit log (`audit.rs`). Each
//! implements its queries in a `queries!` block (the bounds every query
//! needs, written once); `tests/store.rs` runs them all on both databases.

use std::str::FromStr;

use sqlx::{Database, Pool, Postgres, Sqlite};

use crate::keys::KeyRecord;
use crate::verify::Role;
use dialect::Dialect;

// Before the modules: they implement their queries with it.
/// The store's queries on any [`Dialect`]: an `impl SqlStore<DB>` block
/// with the bounds every query needs, written once for the concern files.
macro_rules! queries {
    ($($body:tt)*) => {
        impl<DB> $crate::store::SqlStore<DB>
        where
            DB: $crate::store::dialect::Dialect,
            DB::QueryResult: $crate::store::RowsAffected,
            for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
            DB::Arguments: sqlx::IntoArguments<DB>,
            for<'a> &'a str: sqlx::Encode<'a, DB> + sqlx::Type<DB> + sqlx::ColumnIndex<DB::Row>,
            for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
            for<'a> &'a [u8]: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
            for<'a> String: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
            for<'a> Option<String>: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
            for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
            for<'a> Option<i64>: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
            for<'a> Vec<u8>: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
        {
            $($body)*
        }
    };
}

mod audit;
mod credentials;
mod dialect;
mod signing_keys;
mod sso;
mod tenants;
mod throttle;
mod users;

pub use audit::{AuditEntry, AuditEvent};
pub use credentials::{
    Authenticated, CredentialKind, Grant, Membership, NewCredential, PatInfo, PatScope,
};
pub use sso::{AuthCode, EnteredTenant, SsoSession};
pub use tenants::{
    Member, MyTenant, OwnedElsewhere, Registered, Tenant, TenantSpec,
    derived_backchannel_logout_uri, derived_redirect_uri,
};
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

/// How many rows a statement changed, on either database.
trait RowsAffected {
    fn rows_affected(&self) -> u64;
}

impl RowsAffected for sqlx::sqlite::SqliteQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

impl RowsAffected for sqlx::postgres::PgQueryResult {
    fn rows_affected(&self) -> u64 {
        self.rows_affected()
    }
}

/// One database's store: a pool, and every query (in the concern files),
/// written once for both databases.
#[derive(Debug)]
struct SqlStore<DB: Database> {
    pool: Pool<DB>,
}

impl<DB: Database> Clone for SqlStore<DB> {
    fn clone(&self) -> Self {
        SqlStore {
            pool: self.pool.clone(),
        }
    }
}

/// [`Store`]'s methods, each forwarded to the store of the database in use.
macro_rules! forward {
    ($($(#[$meta:meta])* pub async fn $name:ident(&self $(, $arg:ident: $ty:ty)* $(,)?) -> $ret:ty;)*) => {
        impl Store {
            $(
                $(#[$meta])*
                pub async fn $name(&self $(, $arg: $ty)*) -> $ret {
                    match &self.db {
                        Db::Sqlite(store) => store.$name($($arg),*).await,
                        Db::Postgres(store) => store.$name($($arg),*).await,
                    }
                }
            )*
        }
    };
}

/// The database: a connection pool and the queries.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

#[derive(Debug, Clone)]
enum Db {
    Sqlite(SqlStore<Sqlite>),
    Postgres(SqlStore<Postgres>),
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
        let backend = Backend::of_url(url).ok_or_else(|| StoreError::UnsupportedUrl {
            scheme: url.split(':').next().unwrap_or_default().to_owned(),
        })?;
        let db = match backend {
            Backend::Sqlite => Db::Sqlite(SqlStore {
                pool: Sqlite::open(url, max_connections).await?,
            }),
            Backend::Postgres => Db::Postgres(SqlStore {
                pool: Postgres::open(url, max_connections).await?,
            }),
        };
        Ok(Store { db })
    }

    pub fn backend(&self) -> Backend {
        match &self.db {
            Db::Sqlite(_) => Sqlite::BACKEND,
            Db::Postgres(_) => Postgres::BACKEND,
        }
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(store) => store.pool.close().await,
            Db::Postgres(store) => store.pool.close().await,
        }
    }
}

queries! {
    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .ctx("ping")?;
        Ok(())
    }
}

forward! {
    pub async fn ping(&self) -> Result<(), StoreError>;

    // Users.
    pub async fn count_users(&self) -> Result<i64, StoreError>;
    /// Creates a user; `None` when the email is taken.
    pub async fn create_user(
        &self,
        user: &User,
        password_hash: &str,
    ) -> Result<Option<User>, StoreError>;
    pub async fn user_credentials(
        &self,
        email: &str,
    ) -> Result<Option<UserCredentials>, StoreError>;
    pub async fn user(&self, id: &str) -> Result<Option<User>, StoreError>;
    pub async fn list_users(&self) -> Result<Vec<User>, StoreError>;
    /// Returns whether the user exists.
    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError>;
    /// Disables or enables a user; disabling ends every session and token.
    /// Returns whether the user exists.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError>;

    // Sessions and personal access tokens.
    pub async fn insert_credential(&self, credential: &NewCredential) -> Result<(), StoreError>;
    /// The enabled user behind an unexpired token hash.
    pub async fn authenticate(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<Authenticated>, StoreError>;
    /// Authenticates a token and finds the caller's membership of `tenant`,
    /// in one round trip: the token endpoint's whole database work.
    pub async fn token_grant(
        &self,
        token_hash: &str,
        now: i64,
        tenant: &str,
    ) -> Result<Grant, StoreError>;
    /// Deletes one credential of a user; returns whether it existed.
    pub async fn delete_credential(
        &self,
        user_id: &str,
        id: &str,
        kind: CredentialKind,
    ) -> Result<bool, StoreError>;
    /// Ends every session and token of a user (after a password reset).
    pub async fn delete_credentials_of(&self, user_id: &str) -> Result<u64, StoreError>;
    pub async fn list_pats(&self, user_id: &str, now: i64) -> Result<Vec<PatInfo>, StoreError>;
    pub async fn delete_expired_credentials(&self, now: i64) -> Result<u64, StoreError>;

    // The tenant directory.
    /// Registers or updates a tenant and replaces its members, unless another
    /// cluster owns the name.
    pub async fn register_tenant(
        &self,
        spec: &TenantSpec,
        new_id: &str,
        now: i64,
    ) -> Result<Result<Registered, OwnedElsewhere>, StoreError>;
    /// Deletes `cluster`'s tenant `name` and its memberships; `Ok(false)`
    /// when it did not exist; a record another cluster owns is left alone.
    pub async fn delete_tenant(
        &self,
        name: &str,
        cluster: &str,
    ) -> Result<Result<bool, OwnedElsewhere>, StoreError>;
    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError>;
    pub async fn tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError>;
    pub async fn tenants_of(&self, email: &str) -> Result<Vec<MyTenant>, StoreError>;

    // Single sign-on.
    /// The SSO session behind a session token's hash, if live.
    pub async fn sso_session(&self, token_hash: &str, now: i64) -> Result<Option<SsoSession>, StoreError>;
    /// The SSO session with this id, if live.
    pub async fn sso_session_by_id(&self, id: &str, now: i64) -> Result<Option<SsoSession>, StoreError>;
    pub async fn membership(&self, email: &str, tenant: &str) -> Result<Option<Membership>, StoreError>;
    /// Records that a session entered a tenant (idempotent).
    pub async fn enter_tenant(&self, session_id: &str, tenant: &str) -> Result<(), StoreError>;
    pub async fn entered_tenants(&self, session_id: &str) -> Result<Vec<EnteredTenant>, StoreError>;
    /// Ends an SSO session and everything it granted.
    pub async fn end_sso_session(&self, session_id: &str) -> Result<bool, StoreError>;
    pub async fn insert_auth_code(&self, code: &AuthCode) -> Result<(), StoreError>;
    /// Deletes a code and returns it: consumed on first use.
    pub async fn take_auth_code(&self, code_hash: &str) -> Result<Option<AuthCode>, StoreError>;
    pub async fn delete_expired_auth_codes(&self, now: i64) -> Result<u64, StoreError>;
    pub async fn insert_refresh_token(
        &self,
        token_hash: &str,
        session_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<(), StoreError>;
    /// The live session and client of a refresh token.
    pub async fn refresh_grant(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(SsoSession, String)>, StoreError>;

    // Signing keys.
    pub async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError>;
    /// Stores a key unless another replica stored one for the same start.
    pub async fn insert_signing_key(&self, key: &KeyRecord) -> Result<bool, StoreError>;
    /// Replaces a stored private key (sealing one stored in the clear),
    /// only if it still holds `old`: a replica that sealed it first wins.
    pub async fn replace_private_key(
        &self,
        kid: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError>;
    pub async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError>;

    // Rate limits and lockouts.
    /// Counts one hit on `key` in a fixed window of `window` seconds and
    /// returns the count in the current window and any lockout.
    pub async fn throttle_hit(
        &self,
        key: &str,
        window: i64,
        now: i64,
    ) -> Result<Throttle, StoreError>;
    pub async fn throttle(&self, key: &str) -> Result<Option<Throttle>, StoreError>;
    pub async fn throttle_lock(&self, key: &str, until: i64) -> Result<(), StoreError>;
    pub async fn throttle_clear(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes every counter whose key starts with `prefix`.
    pub async fn throttle_clear_prefix(&self, prefix: &str) -> Result<u64, StoreError>;
    /// Deletes counters whose window (at most `longest` seconds) and lockout
    /// have both ended.
    pub async fn purge_throttle(&self, now: i64, longest: i64) -> Result<u64, StoreError>;

    // The audit log.
    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// The newest entries first, `limit` of them, older than `before` if set.
    pub async fn audit_log(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError>;
}
