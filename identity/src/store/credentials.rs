//! Sessions and personal access tokens, stored as hashes only, and the
//! token endpoint's one query that authenticates and finds a membership.

use sqlx::Row;

use super::users::{User, user_of};
use super::{QueryContext, RowsAffected, StoreError, role_of};
use crate::verify::Role;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    Session,
    Pat,
}

impl CredentialKind {
    fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Session => "session",
            CredentialKind::Pat => "pat",
        }
    }
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

queries! {
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
}
