//! Browser sessions, sign-ins under way and the back-channel logout tokens
//! already accepted (tables `browser_sessions`, `pending_logins`,
//! `logout_tokens_seen`). Rows are found by the SHA-256 of a cookie's value,
//! never by the value; what they mean is `crate::session`'s business.

use jiff::Timestamp;
use sqlx::Row;

use super::dialect::Dialect;
use super::query::{from_micros, micros};
use super::sql::SqlRepository;
use super::{Store, StoreError, query_error};

/// One browser session. Holds the tenant's tokens: never shown, never logged
/// (its `Debug` leaves them out).
#[derive(Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// SHA-256 (hex) of the session cookie's value.
    pub id_hash: String,
    pub subject: String,
    pub email: String,
    /// The role the current access token carries, by name.
    pub role: String,
    /// Identity's SSO session id (the id_token's `sid`).
    pub sid: Option<String>,
    pub access_token: String,
    pub access_expires: Timestamp,
    pub refresh_token: Option<String>,
    /// Sent back to identity as `id_token_hint` at logout.
    pub id_token: String,
    pub csrf_token: String,
    pub created: Timestamp,
    pub last_used: Timestamp,
    /// The absolute end of the session, whatever its use.
    pub expires: Timestamp,
}

impl std::fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionRecord")
            .field("subject", &self.subject)
            .field("role", &self.role)
            .field("sid", &self.sid)
            .field("access_expires", &self.access_expires)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// A sign-in under way: what the callback must find again.
#[derive(Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// SHA-256 (hex) of the `atoll_login` cookie's value.
    pub id_hash: String,
    pub state: String,
    pub nonce: String,
    pub code_verifier: String,
    /// The local path to go to once signed in.
    pub return_to: String,
    pub expires: Timestamp,
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field("return_to", &self.return_to)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

/// The tokens a refresh brings.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshedTokens {
    pub access_token: String,
    pub access_expires: Timestamp,
    pub refresh_token: Option<String>,
    pub role: String,
}

impl std::fmt::Debug for RefreshedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RefreshedTokens")
            .field("access_expires", &self.access_expires)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

const INSERT_SESSION: &str = "INSERT INTO browser_sessions (id_hash, subject, email, role, sid,
         access_token, access_expires_at, refresh_token, id_token, csrf_token, created_at,
         last_used_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

const GET_SESSION: &str = "SELECT id_hash, subject, email, role, sid, access_token,
         access_expires_at, refresh_token, id_token, csrf_token, created_at, last_used_at,
         expires_at
     FROM browser_sessions WHERE id_hash = $1 AND expires_at > $2";

/// Which sessions [`SqlRepository::sessions_delete_where`] ends.
#[derive(Debug, Clone, Copy)]
enum SessionsOf {
    Id,
    Sid,
    Subject,
}

impl SessionsOf {
    fn delete(self) -> &'static str {
        match self {
            SessionsOf::Id => "DELETE FROM browser_sessions WHERE id_hash = $1",
            SessionsOf::Sid => "DELETE FROM browser_sessions WHERE sid = $1",
            SessionsOf::Subject => "DELETE FROM browser_sessions WHERE subject = $1",
        }
    }
}

const PURGE: [&str; 3] = [
    "DELETE FROM browser_sessions WHERE expires_at <= $1",
    "DELETE FROM pending_logins WHERE expires_at <= $1",
    "DELETE FROM logout_tokens_seen WHERE expires_at <= $1",
];

impl<DB> SqlRepository<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str:
        sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB> + sqlx::ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<String>: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
{
    fn session_record(row: &DB::Row) -> SessionRecord {
        SessionRecord {
            id_hash: row.get("id_hash"),
            subject: row.get("subject"),
            email: row.get("email"),
            role: row.get("role"),
            sid: row.get("sid"),
            access_token: row.get("access_token"),
            access_expires: from_micros(row.get("access_expires_at")),
            refresh_token: row.get("refresh_token"),
            id_token: row.get("id_token"),
            csrf_token: row.get("csrf_token"),
            created: from_micros(row.get("created_at")),
            last_used: from_micros(row.get("last_used_at")),
            expires: from_micros(row.get("expires_at")),
        }
    }

    async fn session_insert(&self, s: &SessionRecord) -> Result<(), StoreError> {
        sqlx::query(INSERT_SESSION)
            .bind(s.id_hash.as_str())
            .bind(s.subject.as_str())
            .bind(s.email.as_str())
            .bind(s.role.as_str())
            .bind(s.sid.as_deref())
            .bind(s.access_token.as_str())
            .bind(micros(s.access_expires))
            .bind(s.refresh_token.as_deref())
            .bind(s.id_token.as_str())
            .bind(s.csrf_token.as_str())
            .bind(micros(s.created))
            .bind(micros(s.last_used))
            .bind(micros(s.expires))
            .execute(&self.pool)
            .await
            .map_err(query_error("create browser session"))?;
        Ok(())
    }

    async fn session_get(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(GET_SESSION)
            .bind(id_hash)
            .bind(micros(Timestamp::now()))
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read browser session"))?;
        Ok(row.as_ref().map(Self::session_record))
    }

    async fn session_refreshed(
        &self,
        id_hash: &str,
        tokens: &RefreshedTokens,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE browser_sessions SET access_token = $1, access_expires_at = $2,
                 refresh_token = COALESCE($3, refresh_token), role = $4
             WHERE id_hash = $5",
        )
        .bind(tokens.access_token.as_str())
        .bind(micros(tokens.access_expires))
        .bind(tokens.refresh_token.as_deref())
        .bind(tokens.role.as_str())
        .bind(id_hash)
        .execute(&self.pool)
        .await
        .map_err(query_error("store refreshed session tokens"))?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn session_touch(&self, id_hash: &str, at: Timestamp) -> Result<(), StoreError> {
        sqlx::query("UPDATE browser_sessions SET last_used_at = $1 WHERE id_hash = $2")
            .bind(micros(at))
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(query_error("mark browser session used"))?;
        Ok(())
    }

    /// Deletes the sessions `of` names by `value`.
    async fn sessions_delete_where(&self, of: SessionsOf, value: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(of.delete())
            .bind(value)
            .execute(&self.pool)
            .await
            .map_err(query_error("end browser sessions"))?;
        Ok(DB::rows_affected(&done))
    }

    async fn pending_login_insert(&self, p: &PendingLogin) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO pending_logins (id_hash, state, nonce, code_verifier, return_to, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(p.id_hash.as_str())
        .bind(p.state.as_str())
        .bind(p.nonce.as_str())
        .bind(p.code_verifier.as_str())
        .bind(p.return_to.as_str())
        .bind(micros(p.expires))
        .execute(&self.pool)
        .await
        .map_err(query_error("start sign-in"))?;
        Ok(())
    }

    async fn pending_logins_live(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM pending_logins WHERE expires_at > $1")
            .bind(micros(Timestamp::now()))
            .fetch_one(&self.pool)
            .await
            .map_err(query_error("count sign-ins under way"))?;
        Ok(row.get("n"))
    }

    async fn pending_login_take(&self, id_hash: &str) -> Result<Option<PendingLogin>, StoreError> {
        let row = sqlx::query(
            "DELETE FROM pending_logins WHERE id_hash = $1
             RETURNING id_hash, state, nonce, code_verifier, return_to, expires_at",
        )
        .bind(id_hash)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("take sign-in"))?;
        let Some(row) = row else { return Ok(None) };
        let pending = PendingLogin {
            id_hash: row.get("id_hash"),
            state: row.get("state"),
            nonce: row.get("nonce"),
            code_verifier: row.get("code_verifier"),
            return_to: row.get("return_to"),
            expires: from_micros(row.get("expires_at")),
        };
        Ok((pending.expires > Timestamp::now()).then_some(pending))
    }

    async fn logout_jti_remember(&self, jti: &str, until: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO logout_tokens_seen (jti, expires_at) VALUES ($1, $2)
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(micros(until))
        .execute(&self.pool)
        .await
        .map_err(query_error("remember logout token"))?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn sessions_purge(&self, now: Timestamp) -> Result<u64, StoreError> {
        let mut purged = 0;
        for statement in PURGE {
            let done = sqlx::query(statement)
                .bind(micros(now))
                .execute(&self.pool)
                .await
                .map_err(query_error("purge expired sessions"))?;
            purged += DB::rows_affected(&done);
        }
        Ok(purged)
    }
}

macro_rules! forward {
    ($self:ident, $repo:ident => $call:expr) => {
        match $self {
            Store::Sqlite($repo) => $call.await,
            Store::Postgres($repo) => $call.await,
        }
    };
}

impl Store {
    /// Stores a new session.
    pub async fn session_insert(&self, session: &SessionRecord) -> Result<(), StoreError> {
        forward!(self, r => r.session_insert(session))
    }

    /// The session whose cookie hashes to `id_hash`, unless it has expired.
    pub async fn session_get(&self, id_hash: &str) -> Result<Option<SessionRecord>, StoreError> {
        forward!(self, r => r.session_get(id_hash))
    }

    /// Replaces a session's tokens after a refresh (a refresh token is kept
    /// when none came); `false` when the session is gone.
    pub async fn session_refreshed(
        &self,
        id_hash: &str,
        tokens: &RefreshedTokens,
    ) -> Result<bool, StoreError> {
        forward!(self, r => r.session_refreshed(id_hash, tokens))
    }

    /// Records that the session was used at `at`.
    pub async fn session_touch(&self, id_hash: &str, at: Timestamp) -> Result<(), StoreError> {
        forward!(self, r => r.session_touch(id_hash, at))
    }

    /// Ends one session; `false` when there was none.
    pub async fn session_delete(&self, id_hash: &str) -> Result<bool, StoreError> {
        forward!(self, r => r.sessions_delete_where(SessionsOf::Id, id_hash)).map(|n| n > 0)
    }

    /// Ends every session of identity's SSO session `sid`; how many.
    pub async fn sessions_delete_by_sid(&self, sid: &str) -> Result<u64, StoreError> {
        forward!(self, r => r.sessions_delete_where(SessionsOf::Sid, sid))
    }

    /// Ends every session of the user `subject`; how many.
    pub async fn sessions_delete_by_subject(&self, subject: &str) -> Result<u64, StoreError> {
        forward!(self, r => r.sessions_delete_where(SessionsOf::Subject, subject))
    }

    /// Stores a sign-in under way.
    pub async fn pending_login_insert(&self, pending: &PendingLogin) -> Result<(), StoreError> {
        forward!(self, r => r.pending_login_insert(pending))
    }

    /// How many sign-ins are under way (not expired).
    pub async fn pending_logins_live(&self) -> Result<i64, StoreError> {
        forward!(self, r => r.pending_logins_live())
    }

    /// Takes (deletes and returns) the sign-in whose cookie hashes to
    /// `id_hash`: each is used once. `None` when absent or expired.
    pub async fn pending_login_take(
        &self,
        id_hash: &str,
    ) -> Result<Option<PendingLogin>, StoreError> {
        forward!(self, r => r.pending_login_take(id_hash))
    }

    /// Remembers a logout token's `jti` until `until`; `false` when it was
    /// already there (a replay).
    pub async fn logout_jti_remember(
        &self,
        jti: &str,
        until: Timestamp,
    ) -> Result<bool, StoreError> {
        forward!(self, r => r.logout_jti_remember(jti, until))
    }

    /// Deletes the expired sessions, sign-ins and remembered logout tokens;
    /// how many rows.
    pub async fn sessions_purge(&self, now: Timestamp) -> Result<u64, StoreError> {
        forward!(self, r => r.sessions_purge(now))
    }
}
