//! Browser sessions: the instance is the backend for its web UI's
//! frontend. A person signs in through identity (OpenID Connect, code flow
//! with PKCE); the tenant token stays here, server-side, and the browser
//! holds only a host-only HttpOnly cookie naming its session.
//!
//! - [`Sessions`] finds the session of a request's cookie and its caller,
//!   refreshing an expired access token with the session's refresh token
//!   (a refused refresh ends the session);
//! - `login.rs`: starting a sign-in, the callback, logout and back-channel
//!   logout; `routes.rs` their HTTP endpoints under `/auth`;
//! - `csrf.rs`: the CSRF check of cookie-authenticated unsafe requests;
//! - `oidc.rs` the token endpoint client, `claims.rs` the id_token and
//!   logout token checks, `cookie.rs`, `secret.rs`, `form.rs` the pieces.
//!
//! Rows are in the instance's own database (`store::sessions`), found by
//! the SHA-256 of the cookie value; expired rows are purged periodically.

mod claims;
pub mod cookie;
mod csrf;
mod form;
mod login;
mod oidc;
mod page;
mod routes;
mod secret;

use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use jiff::{SignedDuration, Timestamp};
use tokio_util::sync::CancellationToken;

pub use csrf::{check_csrf, is_unsafe};
pub(crate) use form::encode as query;
pub use routes::routes;

use crate::auth::{AuthError, IdentityVerifier, Principal, Verifier};
use crate::store::{RefreshedTokens, SessionRecord, Store};

/// The CSRF token of the caller's browser session, left in the request's
/// extensions by authentication when the caller came with the session
/// cookie (absent for bearer tokens, which need none). Pages put it in
/// every form (`_csrf`) and scripts send it as `X-CSRF-Token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfToken(pub String);

/// A session's absolute lifetime, however it is used.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long a sign-in may take between `/auth/login` and the callback.
pub const LOGIN_LIFETIME: Duration = Duration::from_secs(600);
/// An access token this close to its expiry is refreshed first.
const REFRESH_MARGIN: i64 = 30;
/// A session's `last_used` is written at most this often.
const TOUCH_EVERY: i64 = 60;
/// How often expired sessions, sign-ins and logout `jti`s are purged.
const PURGE_EVERY: Duration = Duration::from_secs(600);

/// The caller a session cookie stands for.
#[derive(Debug, Clone)]
pub struct SessionCaller {
    pub principal: Principal,
    pub csrf: CsrfToken,
    /// The user's e-mail address, for display.
    pub email: String,
}

/// Browser sign-in and sessions for one tenant.
#[derive(Debug)]
pub struct Sessions {
    oidc: oidc::Client,
    store: Store,
    verifier: Arc<IdentityVerifier>,
    /// The public URL, no trailing slash.
    public_url: String,
    /// The public URL is https: cookies are Secure (and `__Host-`).
    secure: bool,
    /// Serialises refreshes, so two requests of one session do not both
    /// spend its refresh token.
    refreshing: tokio::sync::Mutex<()>,
}

impl Sessions {
    /// Sessions of tenant `tenant` reached at `public_url`, signed in at
    /// identity `issuer`, stored in `store`; tokens are verified with
    /// `verifier` (the API's own).
    pub fn new(
        tenant: &str,
        public_url: &str,
        issuer: &str,
        store: Store,
        verifier: Arc<IdentityVerifier>,
    ) -> Sessions {
        let public_url = public_url.trim_end_matches('/').to_owned();
        Sessions {
            oidc: oidc::Client::new(issuer, tenant, &public_url),
            secure: public_url.starts_with("https://"),
            public_url,
            store,
            verifier,
            refreshing: tokio::sync::Mutex::new(()),
        }
    }

    /// Identity's issuer URL (no trailing slash): where people sign in
    /// and switch tenants (the web UI links its `/tenants` page).
    pub fn issuer(&self) -> &str {
        &self.oidc.issuer
    }

    /// The session cookie's name: `__Host-atoll_session` over https,
    /// `atoll_session` over http.
    pub fn cookie_name(&self) -> &'static str {
        if self.secure {
            cookie::SESSION_SECURE
        } else {
            cookie::SESSION_PLAIN
        }
    }

    /// The caller of the request's session cookie, if it names a live
    /// session whose tenant token is (or, refreshed, becomes) valid.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Option<SessionCaller> {
        for value in cookie::values(headers, self.cookie_name()) {
            if let Some(session) = self.find(value).await
                && let Some(caller) = self.caller(session).await
            {
                return Some(caller);
            }
        }
        None
    }

    /// The live session named by a cookie value.
    async fn find(&self, value: &str) -> Option<SessionRecord> {
        if !secret::well_formed(value) {
            return None;
        }
        match self.store.session_get(&secret::hash(value)).await {
            Ok(session) => session,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read browser sessions");
                None
            }
        }
    }

    /// The session's caller, from its access token (refreshed when it has
    /// expired or is no longer accepted).
    async fn caller(&self, session: SessionRecord) -> Option<SessionCaller> {
        let now = Timestamp::now();
        let mut principal = None;
        if session.access_expires > later(now, REFRESH_MARGIN) {
            principal = match self.verifier.verify(&session.access_token).await {
                Ok(principal) => Some(principal),
                // Identity's keys are not loaded yet: no refresh would help.
                Err(AuthError::KeysUnavailable) => return None,
                Err(_) => None,
            };
        }
        let (principal, session) = match principal {
            Some(principal) => (principal, session),
            None => self.refresh(session).await?,
        };
        if principal.subject != session.subject {
            self.end(&session.id_hash, "the token names another user")
                .await;
            return None;
        }
        if now.as_second() - session.last_used.as_second() >= TOUCH_EVERY
            && let Err(err) = self.store.session_touch(&session.id_hash, now).await
        {
            tracing::warn!(error = %err, "cannot mark a browser session used");
        }
        Some(SessionCaller {
            principal,
            csrf: CsrfToken(session.csrf_token),
            email: session.email,
        })
    }

    /// A new access token for the session through identity's token
    /// endpoint. Identity's refusal ends the session; identity being
    /// unreachable only fails this request.
    async fn refresh(&self, session: SessionRecord) -> Option<(Principal, SessionRecord)> {
        let _one_at_a_time = self.refreshing.lock().await;
        // Another request may have refreshed it while this one waited.
        let current = self.store.session_get(&session.id_hash).await.ok()??;
        if current.access_token != session.access_token
            && let Ok(principal) = self.verifier.verify(&current.access_token).await
        {
            return Some((principal, current));
        }
        let Some(refresh_token) = current.refresh_token.clone() else {
            self.end(
                &current.id_hash,
                "its access token expired and it has no refresh token",
            )
            .await;
            return None;
        };
        let tokens = match self.oidc.refresh(&refresh_token).await {
            Ok(tokens) => tokens,
            Err(oidc::TokenError::Refused(code)) => {
                tracing::info!(error = %code, "identity refused to refresh a browser session");
                self.end(&current.id_hash, "identity refused the refresh")
                    .await;
                return None;
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot refresh a browser session now");
                return None;
            }
        };
        let Ok(principal) = self.verifier.verify(&tokens.access_token).await else {
            self.end(&current.id_hash, "the refreshed token is not valid")
                .await;
            return None;
        };
        let refreshed = RefreshedTokens {
            access_expires: access_expiry(Timestamp::now(), tokens.expires_in),
            access_token: tokens.access_token,
            refresh_token: tokens.refresh_token,
            role: principal.role.as_str().to_owned(),
        };
        match self
            .store
            .session_refreshed(&current.id_hash, &refreshed)
            .await
        {
            Ok(true) => {}
            Ok(false) => return None,
            Err(err) => {
                tracing::warn!(error = %err, "cannot store a refreshed browser session");
                return None;
            }
        }
        let session = SessionRecord {
            access_token: refreshed.access_token,
            access_expires: refreshed.access_expires,
            role: refreshed.role,
            ..current
        };
        Some((principal, session))
    }

    /// Ends a session, saying why in the log (never with its tokens).
    async fn end(&self, id_hash: &str, why: &str) {
        tracing::info!(reason = why, "browser session ended");
        if let Err(err) = self.store.session_delete(id_hash).await {
            tracing::warn!(error = %err, "cannot end a browser session");
        }
    }

    /// Deletes expired sessions, sign-ins and remembered logout tokens now.
    pub async fn purge(&self) {
        match self.store.sessions_purge(Timestamp::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(rows = n, "expired sessions purged"),
            Err(err) => tracing::warn!(error = %err, "cannot purge expired sessions"),
        }
    }

    /// Purges expired rows every few minutes until `shutdown`.
    pub fn spawn_purge(self: &Arc<Self>, shutdown: CancellationToken) {
        let sessions = self.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PURGE_EVERY);
            loop {
                tokio::select! {
                    _ = every.tick() => sessions.purge().await,
                    () = shutdown.cancelled() => return,
                }
            }
        });
    }
}

/// `now` plus `seconds` (saturating).
fn later(now: Timestamp, seconds: i64) -> Timestamp {
    now.checked_add(SignedDuration::from_secs(seconds))
        .unwrap_or(Timestamp::MAX)
}

/// When an access token given `expires_in` seconds ago expires (5 minutes
/// when identity did not say).
fn access_expiry(now: Timestamp, expires_in: Option<u64>) -> Timestamp {
    let seconds = expires_in.unwrap_or(300).min(i64::MAX as u64) as i64;
    later(now, seconds)
}
