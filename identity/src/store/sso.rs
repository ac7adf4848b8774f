//! Single sign-on: SSO sessions (password sessions presented as a cookie),
//! the tenants each entered, authorization codes and refresh tokens. Codes
//! and refresh tokens are stored as SHA-256 only, and go with their session
//! (`ON DELETE CASCADE`): ending a session ends everything it granted.

use sqlx::Row;

use super::credentials::Membership;
use super::users::{User, user_of};
use super::{QueryContext, RowsAffected, StoreError, role_of};

/// A live SSO session: a `session` credential and its enabled user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoSession {
    /// The credential's id: the `sid` of ID and logout tokens (never the
    /// cookie value).
    pub id: String,
    pub user: User,
    /// When the person logged in: the ID token's `auth_time`.
    pub auth_time: i64,
    pub expires_at: i64,
}

/// An authorization code as stored (its hash) and what it is bound to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthCode {
    pub code_hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub nonce: String,
    pub user_id: String,
    pub session_id: String,
    pub auth_time: i64,
    pub expires_at: i64,
}

/// Where a session's back-channel logout goes, per tenant it entered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnteredTenant {
    pub name: String,
    pub url: String,
    pub backchannel_logout_uri: String,
}

queries! {
    /// The SSO session behind a session token's hash, if live and its user
    /// enabled. Access tokens are never SSO sessions.
    pub async fn sso_session(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<SsoSession>, StoreError> {
        const OP: &str = "find SSO session";
        let row = sqlx::query(
            "SELECT u.id, u.email, u.display_name, u.is_admin, u.disabled, u.created_at,
                    c.id AS session_id, c.created_at AS auth_time, c.expires_at
             FROM credentials c JOIN users u ON u.id = c.user_id
             WHERE c.token_hash = $1 AND c.kind = 'session' AND c.expires_at > $2
               AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx(OP)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SsoSession {
            id: row.try_get("session_id").ctx(OP)?,
            user: user_of(&row).ctx(OP)?,
            auth_time: row.try_get("auth_time").ctx(OP)?,
            expires_at: row.try_get("expires_at").ctx(OP)?,
        }))
    }

    /// The SSO session with this id, if live and its user enabled.
    pub async fn sso_session_by_id(
        &self,
        id: &str,
        now: i64,
    ) -> Result<Option<SsoSession>, StoreError> {
        const OP: &str = "find SSO session by id";
        let row = sqlx::query(
            "SELECT u.id, u.email, u.display_name, u.is_admin, u.disabled, u.created_at,
                    c.id AS session_id, c.created_at AS auth_time, c.expires_at
             FROM credentials c JOIN users u ON u.id = c.user_id
             WHERE c.id = $1 AND c.kind = 'session' AND c.expires_at > $2 AND u.disabled = 0",
        )
        .bind(id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx(OP)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(SsoSession {
            id: row.try_get("session_id").ctx(OP)?,
            user: user_of(&row).ctx(OP)?,
            auth_time: row.try_get("auth_time").ctx(OP)?,
            expires_at: row.try_get("expires_at").ctx(OP)?,
        }))
    }

    /// The membership of `email` in `tenant`, if any.
    pub async fn membership(
        &self,
        email: &str,
        tenant: &str,
    ) -> Result<Option<Membership>, StoreError> {
        const OP: &str = "find membership";
        let row = sqlx::query(
            "SELECT t.id AS tenant_id, t.uid AS tenant_uid, t.cluster, m.role
             FROM memberships m JOIN tenants t ON t.name = m.tenant
             WHERE m.email = $1 AND m.tenant = $2",
        )
        .bind(email)
        .bind(tenant)
        .fetch_optional(&self.pool)
        .await
        .ctx(OP)?;
        let Some(row) = row else { return Ok(None) };
        let role: String = row.try_get("role").ctx(OP)?;
        Ok(Some(Membership {
            tenant_id: row.try_get("tenant_id").ctx(OP)?,
            tenant_uid: row.try_get("tenant_uid").ctx(OP)?,
            cluster: row.try_get("cluster").ctx(OP)?,
            role: role_of(OP, &role)?,
        }))
    }

    /// Records that a session entered a tenant (idempotent).
    pub async fn enter_tenant(&self, session_id: &str, tenant: &str) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sso_entered (session_id, tenant) VALUES ($1, $2)
             ON CONFLICT (session_id, tenant) DO NOTHING",
        )
        .bind(session_id)
        .bind(tenant)
        .execute(&self.pool)
        .await
        .ctx("record entered tenant")?;
        Ok(())
    }

    /// The registered tenants a session entered.
    pub async fn entered_tenants(&self, session_id: &str) -> Result<Vec<EnteredTenant>, StoreError> {
        const OP: &str = "list entered tenants";
        let rows = sqlx::query(
            "SELECT t.name, t.url, t.backchannel_logout_uri
             FROM sso_entered e JOIN tenants t ON t.name = e.tenant
             WHERE e.session_id = $1 ORDER BY t.name",
        )
        .bind(session_id)
        .fetch_all(&self.pool)
        .await
        .ctx(OP)?;
        rows.iter()
            .map(|row| {
                let url: String = row.try_get("url").ctx(OP)?;
                let uri: String = row.try_get("backchannel_logout_uri").ctx(OP)?;
                Ok(EnteredTenant {
                    name: row.try_get("name").ctx(OP)?,
                    backchannel_logout_uri: if uri.is_empty() && !url.is_empty() {
                        super::derived_backchannel_logout_uri(&url)
                    } else {
                        uri
                    },
                    url,
                })
            })
            .collect()
    }

    /// Ends an SSO session: its credential, and with it (cascade) its
    /// codes, refresh tokens and entered tenants. Returns whether it existed.
    pub async fn end_sso_session(&self, session_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM credentials WHERE id = $1 AND kind = 'session'")
            .bind(session_id)
            .execute(&self.pool)
            .await
            .ctx("end SSO session")?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_auth_code(&self, code: &AuthCode) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO auth_codes (code_hash, client_id, redirect_uri, code_challenge, nonce,
                                     user_id, session_id, auth_time, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&code.code_hash)
        .bind(&code.client_id)
        .bind(&code.redirect_uri)
        .bind(&code.code_challenge)
        .bind(&code.nonce)
        .bind(&code.user_id)
        .bind(&code.session_id)
        .bind(code.auth_time)
        .bind(code.expires_at)
        .execute(&self.pool)
        .await
        .ctx("store authorization code")?;
        Ok(())
    }

    /// Takes a code: deletes it and returns what it was bound to, in one
    /// statement, so that it is consumed on first use whatever follows.
    pub async fn take_auth_code(&self, code_hash: &str) -> Result<Option<AuthCode>, StoreError> {
        const OP: &str = "take authorization code";
        let row = sqlx::query(
            "DELETE FROM auth_codes WHERE code_hash = $1
             RETURNING code_hash, client_id, redirect_uri, code_challenge, nonce, user_id,
                       session_id, auth_time, expires_at",
        )
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await
        .ctx(OP)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some(AuthCode {
            code_hash: row.try_get("code_hash").ctx(OP)?,
            client_id: row.try_get("client_id").ctx(OP)?,
            redirect_uri: row.try_get("redirect_uri").ctx(OP)?,
            code_challenge: row.try_get("code_challenge").ctx(OP)?,
            nonce: row.try_get("nonce").ctx(OP)?,
            user_id: row.try_get("user_id").ctx(OP)?,
            session_id: row.try_get("session_id").ctx(OP)?,
            auth_time: row.try_get("auth_time").ctx(OP)?,
            expires_at: row.try_get("expires_at").ctx(OP)?,
        }))
    }

    pub async fn delete_expired_auth_codes(&self, now: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM auth_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .ctx("purge authorization codes")?;
        Ok(done.rows_affected())
    }

    pub async fn insert_refresh_token(
        &self,
        token_hash: &str,
        session_id: &str,
        client_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, client_id, created_at)
             VALUES ($1, $2, $3, $4)",
        )
        .bind(token_hash)
        .bind(session_id)
        .bind(client_id)
        .bind(now)
        .execute(&self.pool)
        .await
        .ctx("store refresh token")?;
        Ok(())
    }

    /// The live session and client a refresh token is bound to.
    pub async fn refresh_grant(
        &self,
        token_hash: &str,
        now: i64,
    ) -> Result<Option<(SsoSession, String)>, StoreError> {
        const OP: &str = "find refresh token";
        let row = sqlx::query(
            "SELECT u.id, u.email, u.display_name, u.is_admin, u.disabled, u.created_at,
                    c.id AS session_id, c.created_at AS auth_time, c.expires_at, r.client_id
             FROM refresh_tokens r
             JOIN credentials c ON c.id = r.session_id
             JOIN users u ON u.id = c.user_id
             WHERE r.token_hash = $1 AND c.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .ctx(OP)?;
        let Some(row) = row else { return Ok(None) };
        Ok(Some((
            SsoSession {
                id: row.try_get("session_id").ctx(OP)?,
                user: user_of(&row).ctx(OP)?,
                auth_time: row.try_get("auth_time").ctx(OP)?,
                expires_at: row.try_get("expires_at").ctx(OP)?,
            },
            row.try_get("client_id").ctx(OP)?,
        )))
    }
}
