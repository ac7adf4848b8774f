//! Storage: every query identity makes, on SQLite or PostgreSQL.
//!
//! One code path serves both databases through sqlx's `Any` driver: the SQL
//! below is the common dialect of both (numbered `$n` parameters, `ON
//! CONFLICT`, `RETURNING`; times are integer seconds since the Unix epoch,
//! flags are 0/1 integers). Only the schema differs, in one embedded
//! migration set per database.

use std::borrow::Cow;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::{AnyPool, Row};

use crate::keys::KeyRecord;
use crate::verify::Role;

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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub is_admin: bool,
    pub disabled: bool,
    pub created_at: i64,
}

/// A user with the stored password hash, for login only.
#[derive(Clone)]
pub struct UserCredentials {
    pub user: User,
    pub password_hash: String,
}

impl std::fmt::Debug for UserCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCredentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Session,
    Pat,
}

/// What a personal access token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PatScope {
    /// Read: tenant tokens minted with it carry at most the Viewer role.
    Read,
    /// Everything the user may do, except minting more access tokens.
    Full,
}

impl PatScope {
    pub fn as_str(self) -> &'static str {
        match self {
            PatScope::Read => "read",
            PatScope::Full => "full",
        }
    }

    fn of(op: &'static str, value: Option<&str>) -> Result<Option<PatScope>, StoreError> {
        match value {
            None => Ok(None),
            Some("read") => Ok(Some(PatScope::Read)),
            Some("full") => Ok(Some(PatScope::Full)),
            Some(other) => Err(StoreError::Corrupt {
                op,
                reason: format!("unknown access-token scope {other:?}"),
            }),
        }
    }
}

impl CredentialKind {
    fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::Pat => "pat",
        }
    }
}

/// A session or personal access token as stored: the token's hash only.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub id: String,
    pub token_hash: String,
    pub user_id: String,
    pub kind: CredentialKind,
    pub name: Option<String>,
    /// Set for personal access tokens only.
    pub scope: Option<PatScope>,
    pub created_at: i64,
    pub expires_at: i64,
}

/// What a listing shows of a personal access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatInfo {
    pub id: String,
    pub name: String,
    pub scope: PatScope,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The caller behind a valid bearer token.
#[derive(Debug, Clone)]
pub struct Authenticated {
    pub user: User,
    pub credential_id: String,
    pub kind: CredentialKind,
    /// The access token's scope; `None` for a session.
    pub scope: Option<PatScope>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub email: String,
    pub role: Role,
}

/// A tenant as an operator registers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    pub name: String,
    pub display_name: String,
    pub url: String,
    pub phase: String,
    /// The cluster whose credential registered it (never from the body).
    pub cluster: String,
    /// The Tenant object's Kubernetes `metadata.uid`.
    pub uid: String,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tenant {
    pub name: String,
    pub id: String,
    pub display_name: String,
    pub url: String,
    pub phase: String,
    pub cluster: String,
    pub uid: String,
    pub members: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    Updated,
}

/// Another cluster already registered this tenant name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedElsewhere {
    pub owner: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MyTenant {
    pub name: String,
    pub display_name: String,
    pub role: Role,
    pub url: String,
    pub phase: String,
}

/// What the token endpoint learns from one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// No valid session or access token.
    Unauthenticated,
    /// Authenticated, but no member of the tenant (or no such tenant).
    NotMember { user: User },
    Member {
        user: User,
        membership: Membership,
        /// The access token's scope; `None` for a session.
        scope: Option<PatScope>,
    },
}

/// What a tenant token needs about one membership.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub tenant_id: String,
    /// The Tenant's Kubernetes uid (empty for a record registered before
    /// uids were).
    pub tenant_uid: String,
    pub cluster: String,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    pub at: i64,
    pub actor: Option<String>,
    pub action: String,
    pub subject: Option<String>,
    pub outcome: String,
    pub client_ip: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub id: i64,
    pub event: AuditEvent,
}

/// A rate-limit window or lockout counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub hits: i64,
    pub locked_until: Option<i64>,
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
            ("init", include_str!("../migrations/sqlite/0001_init.sql")),
            (
                "clusters and scopes",
                include_str!("../migrations/sqlite/0002_clusters_and_scopes.sql"),
            ),
        ],
        Backend::Postgres => [
            ("init", include_str!("../migrations/postgres/0001_init.sql")),
            (
                "clusters and scopes",
                include_str!("../migrations/postgres/0002_clusters_and_scopes.sql"),
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

fn user_of(row: &AnyRow) -> Result<User, sqlx::Error> {
    Ok(User {
        id: row.try_get("id")?,
        email: row.try_get("email")?,
        display_name: row.try_get("display_name")?,
        is_admin: row.try_get::<i64, _>("is_admin")? != 0,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn tenant_of(row: &AnyRow) -> Result<Tenant, sqlx::Error> {
    Ok(Tenant {
        name: row.try_get("name")?,
        id: row.try_get("id")?,
        display_name: row.try_get("display_name")?,
        url: row.try_get("url")?,
        phase: row.try_get("phase")?,
        cluster: row.try_get("cluster")?,
        uid: row.try_get("uid")?,
        members: row.try_get("members")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
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

    // Users.

    pub async fn count_users(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await
            .ctx("count users")?;
        row.try_get("n").ctx("count users")
    }

    /// Creates a user; `None` when the email is taken.
    pub async fn create_user(
        &self,
        user: &User,
        password_hash: &str,
    ) -> Result<Option<User>, StoreError> {
        let result = sqlx::query(
            "INSERT INTO users (id, email, display_name, password_hash, is_admin, disabled, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&user.id)
        .bind(&user.email)
        .bind(&user.display_name)
        .bind(password_hash)
        .bind(i64::from(user.is_admin))
        .bind(i64::from(user.disabled))
        .bind(user.created_at)
        .execute(&self.pool)
        .await;
        match result {
            Ok(_) => Ok(Some(user.clone())),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(e).ctx("create user"),
        }
    }

    pub async fn user_credentials(
        &self,
        email: &str,
    ) -> Result<Option<UserCredentials>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, display_name, is_admin, disabled, created_at, password_hash
             FROM users WHERE email = $1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .ctx("find user")?;
        row.map(|row| {
            Ok(UserCredentials {
                user: user_of(&row)?,
                password_hash: row.try_get("password_hash")?,
            })
        })
        .transpose()
        .ctx("find user")
    }

    pub async fn user(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row = sqlx::query(
            "SELECT id, email, display_name, is_admin, disabled, created_at FROM users WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .ctx("get user")?;
        row.as_ref().map(user_of).transpose().ctx("get user")
    }

    pub async fn list_users(&self) -> Result<Vec<User>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, email, display_name, is_admin, disabled, created_at FROM users ORDER BY email",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("list users")?;
        rows.iter()
            .map(user_of)
            .collect::<Result<_, _>>()
            .ctx("list users")
    }

    /// Returns whether the user exists.
    pub async fn set_password_hash(&self, id: &str, hash: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(hash)
            .bind(id)
            .execute(&self.pool)
            .await
            .ctx("set password")?;
        Ok(done.rows_affected() == 1)
    }

    /// Disables or enables a user; disabling ends every session and token.
    /// Returns whether the user exists.
    pub async fn set_disabled(&self, id: &str, disabled: bool) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await.ctx("disable user")?;
        let done = sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
            .bind(i64::from(disabled))
            .bind(id)
            .execute(&mut *tx)
            .await
            .ctx("disable user")?;
        if disabled {
            sqlx::query("DELETE FROM credentials WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await
                .ctx("disable user")?;
        }
        tx.commit().await.ctx("disable user")?;
        Ok(done.rows_affected() == 1)
    }

    // Sessions and personal access tokens.

    pub async fn insert_credential(&self, credential: &NewCredential) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO credentials (id, token_hash, user_id, kind, name, created_at, expires_at, scope)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&credential.id)
        .bind(&credential.token_hash)
        .bind(&credential.user_id)
        .bind(credential.kind.as_str())
        .bind(credential.name.as_deref())
        .bind(credential.created_at)
        .bind(credential.expires_at)
        .bind(credential.scope.map(PatScope::as_str))
        .execute(&self.pool)
        .await
        .ctx("store credential")?;
        Ok(())
    }

    /// The enabled user behind an unexpired token hash.
    pub async fn authenticate(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<Authenticated>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.email, u.display_name, u.is_admin, u.disabled, u.created_at,
                    c.id AS credential_id, c.kind, c.scope
             FROM credentials c JOIN users u ON u.id = c.user_id
             WHERE c.token_hash = $1 AND c.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx("authenticate")?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get("kind").ctx("authenticate")?;
        let scope: Option<String> = row.try_get("scope").ctx("authenticate")?;
        Ok(Some(Authenticated {
            scope: PatScope::of("authenticate", scope.as_deref())?,
            user: user_of(&row).ctx("authenticate")?,
            credential_id: row.try_get("credential_id").ctx("authenticate")?,
            kind: if kind == "pat" {
                CredentialKind::Pat
            } else {
                CredentialKind::Session
            },
        }))
    }

    /// Authenticates a token and finds the caller's membership of `tenant`,
    /// in one round trip: the token endpoint's whole database work.
    pub async fn token_grant(
        &self,
        token_hash: &str,
        now: i64,
        tenant: &str,
    ) -> Result<Grant, StoreError> {
        const OP: &str = "authorize tenant token";
        let row = sqlx::query(
            "SELECT u.id, u.email, u.display_name, u.is_admin, u.disabled, u.created_at,
                    t.id AS tenant_id, t.uid AS tenant_uid, t.cluster, m.role, c.scope
             FROM credentials c
             JOIN users u ON u.id = c.user_id
             LEFT JOIN memberships m ON m.email = u.email AND m.tenant = $3
             LEFT JOIN tenants t ON t.name = m.tenant
             WHERE c.token_hash = $1 AND c.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
        .ctx(OP)?;
        let Some(row) = row else {
            return Ok(Grant::Unauthenticated);
        };
        let user = user_of(&row).ctx(OP)?;
        let tenant_id: Option<String> = row.try_get("tenant_id").ctx(OP)?;
        let role: Option<String> = row.try_get("role").ctx(OP)?;
        let scope: Option<String> = row.try_get("scope").ctx(OP)?;
        Ok(match (tenant_id, role) {
            (Some(tenant_id), Some(role)) => Grant::Member {
                user,
                membership: Membership {
                    tenant_id,
                    tenant_uid: row
                        .try_get::<Option<String>, _>("tenant_uid")
                        .ctx(OP)?
                        .unwrap_or_default(),
                    cluster: row
                        .try_get::<Option<String>, _>("cluster")
                        .ctx(OP)?
                        .unwrap_or_default(),
                    role: role_of(OP, &role)?,
                },
                scope: PatScope::of(OP, scope.as_deref())?,
            },
            _ => Grant::NotMember { user },
        })
    }

    /// Deletes one credential of a user; returns whether it existed.
    pub async fn delete_credential(
        &self,
        user_id: &str,
        id: &str,
        kind: CredentialKind,
    ) -> Result<bool, StoreError> {
        let done =
            sqlx::query("DELETE FROM credentials WHERE id = $1 AND user_id = $2 AND kind = $3")
                .bind(id)
                .bind(user_id)
                .bind(kind.as_str())
                .execute(&self.pool)
                .await
                .ctx("revoke credential")?;
        Ok(done.rows_affected() == 1)
    }

    /// Ends every session and token of a user (after a password reset).
    pub async fn delete_credentials_of(&self, user_id: &str) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM credentials WHERE user_id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await
            .ctx("revoke credentials")?;
        Ok(done.rows_affected())
    }

    pub async fn list_pats(&self, user_id: &str, now: i64) -> Result<Vec<PatInfo>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, name, scope, created_at, expires_at FROM credentials
             WHERE user_id = $1 AND kind = 'pat' AND expires_at > $2 ORDER BY created_at, id",
        )
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .ctx("list tokens")?;
        rows.iter()
            .map(|row| {
                let scope: Option<String> = row.try_get("scope").ctx("list tokens")?;
                Ok(PatInfo {
                    id: row.try_get("id").ctx("list tokens")?,
                    name: row
                        .try_get::<Option<String>, _>("name")
                        .ctx("list tokens")?
                        .unwrap_or_default(),
                    scope: PatScope::of("list tokens", scope.as_deref())?.unwrap_or(PatScope::Full),
                    created_at: row.try_get("created_at").ctx("list tokens")?,
                    expires_at: row.try_get("expires_at").ctx("list tokens")?,
                })
            })
            .collect()
    }

    pub async fn delete_expired_credentials(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM credentials WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx("purge credentials")?;
        Ok(done.rows_affected())
    }

    // The tenant directory.

    /// Registers or updates a tenant and replaces its members, unless another
    /// cluster owns the name.
    pub async fn register_tenant(
        &self,
        spec: &TenantSpec,
        new_id: &str,
        now: i64,
    ) -> Result<Result<Registered, OwnedElsewhere>, StoreError> {
        const OP: &str = "register tenant";
        let mut tx = self.pool.begin().await.ctx(OP)?;
        let inserted = sqlx::query(
            "INSERT INTO tenants (name, id, display_name, url, phase, cluster, created_at, updated_at, uid)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(&spec.name)
        .bind(new_id)
        .bind(&spec.display_name)
        .bind(&spec.url)
        .bind(&spec.phase)
        .bind(&spec.cluster)
        .bind(now)
        .bind(&spec.uid)
        .execute(&mut *tx)
        .await
        .ctx(OP)?
        .rows_affected()
            == 1;
        let outcome = if inserted {
            Registered::Created
        } else {
            let owner: String = sqlx::query("SELECT cluster FROM tenants WHERE name = $1")
                .bind(&spec.name)
                .fetch_one(&mut *tx)
                .await
                .ctx(OP)?
                .try_get("cluster")
                .ctx(OP)?;
            if owner != spec.cluster {
                return Ok(Err(OwnedElsewhere { owner }));
            }
            // Scoped to the owner in the statement too: the record is only
            // ever written by the cluster that registered it.
            sqlx::query(
                "UPDATE tenants SET display_name = $2, url = $3, phase = $4, updated_at = $5, uid = $6
                 WHERE name = $1 AND cluster = $7",
            )
            .bind(&spec.name)
            .bind(&spec.display_name)
            .bind(&spec.url)
            .bind(&spec.phase)
            .bind(now)
            .bind(&spec.uid)
            .bind(&spec.cluster)
            .execute(&mut *tx)
            .await
            .ctx(OP)?;
            sqlx::query("DELETE FROM memberships WHERE tenant = $1")
                .bind(&spec.name)
                .execute(&mut *tx)
                .await
                .ctx(OP)?;
            Registered::Updated
        };
        for member in &spec.members {
            sqlx::query(
                "INSERT INTO memberships (tenant, email, role) VALUES ($1, $2, $3)
                 ON CONFLICT (tenant, email) DO UPDATE SET role = excluded.role",
            )
            .bind(&spec.name)
            .bind(&member.email)
            .bind(member.role.as_str())
            .execute(&mut *tx)
            .await
            .ctx(OP)?;
        }
        tx.commit().await.ctx(OP)?;
        Ok(Ok(outcome))
    }

    /// Deletes `cluster`'s tenant `name` and its memberships; `Ok(false)`
    /// when it did not exist; a record another cluster owns is left alone.
    pub async fn delete_tenant(
        &self,
        name: &str,
        cluster: &str,
    ) -> Result<Result<bool, OwnedElsewhere>, StoreError> {
        const OP: &str = "delete tenant";
        // One statement (memberships go by ON DELETE CASCADE): on SQLite a
        // read-then-write transaction could not take the write lock while
        // another connection writes.
        let deleted = sqlx::query("DELETE FROM tenants WHERE name = $1 AND cluster = $2")
            .bind(name)
            .bind(cluster)
            .execute(&self.pool)
            .await
            .ctx(OP)?
            .rows_affected();
        if deleted == 1 {
            return Ok(Ok(true));
        }
        let owner = sqlx::query("SELECT cluster FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .ctx(OP)?;
        match owner {
            Some(row) => Ok(Err(OwnedElsewhere {
                owner: row.try_get("cluster").ctx(OP)?,
            })),
            None => Ok(Ok(false)),
        }
    }

    pub async fn list_tenants(&self) -> Result<Vec<Tenant>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.name, t.id, t.display_name, t.url, t.phase, t.cluster, t.uid, t.created_at, t.updated_at,
                    (SELECT COUNT(*) FROM memberships m WHERE m.tenant = t.name) AS members
             FROM tenants t ORDER BY t.name",
        )
        .fetch_all(&self.pool)
        .await
        .ctx("list tenants")?;
        rows.iter()
            .map(tenant_of)
            .collect::<Result<_, _>>()
            .ctx("list tenants")
    }

    pub async fn tenant(&self, name: &str) -> Result<Option<Tenant>, StoreError> {
        let row = sqlx::query(
            "SELECT t.name, t.id, t.display_name, t.url, t.phase, t.cluster, t.uid, t.created_at, t.updated_at,
                    (SELECT COUNT(*) FROM memberships m WHERE m.tenant = t.name) AS members
             FROM tenants t WHERE t.name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .ctx("get tenant")?;
        row.as_ref().map(tenant_of).transpose().ctx("get tenant")
    }

    pub async fn tenants_of(&self, email: &str) -> Result<Vec<MyTenant>, StoreError> {
        const OP: &str = "list my tenants";
        let rows = sqlx::query(
            "SELECT t.name, t.display_name, t.url, t.phase, m.role
             FROM memberships m JOIN tenants t ON t.name = m.tenant
             WHERE m.email = $1 ORDER BY t.name",
        )
        .bind(email)
        .fetch_all(&self.pool)
        .await
        .ctx(OP)?;
        rows.iter()
            .map(|row| {
                let role: String = row.try_get("role").ctx(OP)?;
                Ok(MyTenant {
                    name: row.try_get("name").ctx(OP)?,
                    display_name: row.try_get("display_name").ctx(OP)?,
                    url: row.try_get("url").ctx(OP)?,
                    phase: row.try_get("phase").ctx(OP)?,
                    role: role_of(OP, &role)?,
                })
            })
            .collect()
    }

    // Signing keys.

    pub async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        const OP: &str = "load signing keys";
        let rows = sqlx::query(
            "SELECT kid, private_pkcs8, public_key, created_at, not_before
             FROM signing_keys ORDER BY not_before",
        )
        .fetch_all(&self.pool)
        .await
        .ctx(OP)?;
        rows.iter()
            .map(|row| {
                Ok(KeyRecord {
                    kid: row.try_get("kid")?,
                    private_pkcs8: row.try_get("private_pkcs8")?,
                    public_key: row.try_get("public_key")?,
                    created_at: row.try_get("created_at")?,
                    not_before: row.try_get("not_before")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(OP)
    }

    /// Stores a key unless another replica stored one for the same start.
    pub async fn insert_signing_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, private_pkcs8, public_key, created_at, not_before)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.private_pkcs8)
        .bind(&key.public_key)
        .bind(key.created_at)
        .bind(key.not_before)
        .execute(&self.pool)
        .await
        .ctx("store signing key")?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a stored private key (sealing one stored in the clear),
    /// only if it still holds `old`: a replica that sealed it first wins.
    pub async fn replace_private_key(
        &self,
        kid: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET private_pkcs8 = $3 WHERE kid = $1 AND private_pkcs8 = $2",
        )
        .bind(kid)
        .bind(old)
        .bind(new)
        .execute(&self.pool)
        .await
        .ctx("seal signing key")?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .execute(&self.pool)
            .await
            .ctx("delete signing key")?;
        Ok(())
    }

    // Rate limits and lockouts.

    /// Counts one hit on `key` in a fixed window of `window` seconds and
    /// returns the count in the current window and any lockout.
    pub async fn throttle_hit(
        &self,
        key: &str,
        window: i64,
        now: i64,
    ) -> Result<Throttle, StoreError> {
        const OP: &str = "count rate limit";
        let row = sqlx::query(
            "INSERT INTO throttle (key, hits, window_start, locked_until) VALUES ($1, 1, $2, NULL)
             ON CONFLICT (key) DO UPDATE SET
               hits = CASE WHEN throttle.window_start + $3 <= $2 THEN 1 ELSE throttle.hits + 1 END,
               window_start = CASE WHEN throttle.window_start + $3 <= $2 THEN $2 ELSE throttle.window_start END
             RETURNING hits, locked_until",
        )
        .bind(key)
        .bind(now)
        .bind(window)
        .fetch_one(&self.pool)
        .await
        .ctx(OP)?;
        Ok(Throttle {
            hits: row.try_get("hits").ctx(OP)?,
            locked_until: row.try_get("locked_until").ctx(OP)?,
        })
    }

    pub async fn throttle(&self, key: &str) -> Result<Option<Throttle>, StoreError> {
        const OP: &str = "read rate limit";
        let row = sqlx::query("SELECT hits, locked_until FROM throttle WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .ctx(OP)?;
        row.map(|row| {
            Ok(Throttle {
                hits: row.try_get("hits")?,
                locked_until: row.try_get("locked_until")?,
            })
        })
        .transpose()
        .ctx(OP)
    }

    pub async fn throttle_lock(&self, key: &str, until: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE throttle SET locked_until = $2 WHERE key = $1")
            .bind(key)
            .bind(until)
            .execute(&self.pool)
            .await
            .ctx("lock account")?;
        Ok(())
    }

    pub async fn throttle_clear(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM throttle WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .ctx("clear rate limit")?;
        Ok(())
    }

    /// Deletes every counter whose key starts with `prefix`.
    pub async fn throttle_clear_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut pattern = String::with_capacity(prefix.len() + 1);
        for c in prefix.chars() {
            if matches!(c, '\\' | '%' | '_') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let done = sqlx::query("DELETE FROM throttle WHERE key LIKE $1 ESCAPE '\\'")
            .bind(pattern)
            .execute(&self.pool)
            .await
            .ctx("clear rate limits")?;
        Ok(done.rows_affected())
    }

    /// Deletes counters whose window (at most `longest` seconds) and lockout
    /// have both ended.
    pub async fn purge_throttle(&self, now: i64, longest: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM throttle WHERE window_start + $2 <= $1
               AND (locked_until IS NULL OR locked_until <= $1)",
        )
        .bind(now)
        .bind(longest)
        .execute(&self.pool)
        .await
        .ctx("purge rate limits")?;
        Ok(done.rows_affected())
    }

    // The audit log (append-only; the schema refuses updates and deletes).

    pub async fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        const OP: &str = "append audit log";
        // Many rows per statement: one round trip to the database for a
        // whole batch of token issuances.
        const ROWS: usize = 100;
        const COLUMNS: usize = 6;
        for chunk in events.chunks(ROWS) {
            let mut sql = String::from(
                "INSERT INTO audit_log (at, actor, action, subject, outcome, client_ip) VALUES ",
            );
            for row in 0..chunk.len() {
                if row > 0 {
                    sql.push_str(", ");
                }
                let first = row * COLUMNS + 1;
                sql.push_str(&format!(
                    "(${}, ${}, ${}, ${}, ${}, ${})",
                    first,
                    first + 1,
                    first + 2,
                    first + 3,
                    first + 4,
                    first + 5
                ));
            }
            // Only placeholders are generated; every value is bound.
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for event in chunk {
                query = query
                    .bind(event.at)
                    .bind(event.actor.clone())
                    .bind(event.action.clone())
                    .bind(event.subject.clone())
                    .bind(event.outcome.clone())
                    .bind(event.client_ip.clone());
            }
            query.execute(&self.pool).await.ctx(OP)?;
        }
        Ok(())
    }

    /// The newest entries first, `limit` of them, older than `before` if set.
    pub async fn audit_log(
        &self,
        limit: i64,
        before: Option<i64>,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, at, actor, action, subject, outcome, client_ip FROM audit_log
             WHERE id < $1 ORDER BY id DESC LIMIT $2",
        )
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .ctx("read audit log")?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get("id")?,
                    event: AuditEvent {
                        at: row.try_get("at")?,
                        actor: row.try_get("actor")?,
                        action: row.try_get("action")?,
                        subject: row.try_get("subject")?,
                        outcome: row.try_get("outcome")?,
                        client_ip: row.try_get("client_ip")?,
                    },
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx("read audit log")
    }
}
