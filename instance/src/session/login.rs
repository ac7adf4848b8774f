//! Signing in and out: the pending sign-in, the callback's checks and the
//! new session, RP-initiated logout and back-channel logout.

use axum::http::HeaderMap;
use jiff::Timestamp;

use super::claims::{self, IdClaims, LogoutClaims};
use super::oidc::TokenError;
use super::{LOGIN_LIFETIME, SESSION_LIFETIME, Sessions, access_expiry, cookie, later, secret};
use crate::auth::{AuthError, Verifier};
use crate::store::{PendingLogin, SessionRecord};

/// Most sign-ins under way at once: beyond, new ones wait for old ones to
/// expire (a stranger cannot fill the database through `/auth/login`).
const MAX_PENDING_LOGINS: i64 = 10_000;
/// Longest `return_to` kept.
const MAX_RETURN_TO: usize = 2048;

/// Why a sign-in failed, as the error page says it (never with a token or
/// code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum LoginProblem {
    #[error("too many sign-ins are under way; try again in a few minutes")]
    Busy,
    #[error(
        "this sign-in was not started in this browser, was already used, or has expired (10 minutes)"
    )]
    NoPendingLogin,
    #[error("the sign-in's state does not match the one this browser started")]
    WrongState,
    #[error("the answer names another identity issuer")]
    WrongIssuer,
    #[error("identity refused the sign-in ({0})")]
    Refused(String),
    #[error("identity sent no authorization code")]
    MissingCode,
    #[error("identity refused the authorization code ({0})")]
    CodeRefused(String),
    #[error("identity could not be reached to finish the sign-in")]
    Unavailable,
    #[error("identity's ID token was refused: {0}")]
    BadIdToken(&'static str),
    #[error("the tenant token identity gave is not valid for this tenant")]
    BadAccessToken,
    #[error("the sign-in could not be stored; try again")]
    Internal,
}

/// A sign-in started: the `atoll_login` cookie's value and where to send
/// the browser.
pub(super) struct Started {
    pub(super) login_cookie: String,
    pub(super) authorize_url: String,
}

/// A session created: its cookie's value and the local path to go to.
pub(super) struct SignedIn {
    pub(super) session_cookie: String,
    pub(super) return_to: String,
}

/// The callback's query.
#[derive(Debug, Default)]
pub(super) struct CallbackQuery {
    pub(super) code: Option<String>,
    pub(super) state: Option<String>,
    pub(super) iss: Option<String>,
    pub(super) error: Option<String>,
}

/// `return_to` when it is a path of this host; `/` otherwise (absolute
/// URLs, `//host`, `/\host`, control characters), so the sign-in cannot
/// be made to send the browser elsewhere.
pub(super) fn local_path(return_to: Option<&str>) -> String {
    match return_to {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && path.len() <= MAX_RETURN_TO
                && !path.chars().any(|c| c.is_control() || c == '\\') =>
        {
            path.to_owned()
        }
        _ => "/".to_owned(),
    }
}

impl Sessions {
    /// Whether cookies are Secure (the public URL is https).
    pub(super) fn secure(&self) -> bool {
        self.secure
    }

    /// Starts a sign-in that ends at `return_to`: `state`, `nonce` and the
    /// PKCE verifier are stored, bound to a new `atoll_login` cookie.
    pub(super) async fn begin_login(&self, return_to: &str) -> Result<Started, LoginProblem> {
        let live = self.store.pending_logins_live().await.map_err(internal)?;
        if live >= MAX_PENDING_LOGINS {
            self.purge().await;
            return Err(LoginProblem::Busy);
        }
        let random = || secret::random().map_err(|_| LoginProblem::Internal);
        let (login_cookie, state, nonce, verifier) = (random()?, random()?, random()?, random()?);
        let pending = PendingLogin {
            id_hash: secret::hash(&login_cookie),
            state,
            nonce,
            code_verifier: verifier,
            return_to: return_to.to_owned(),
            expires: later(Timestamp::now(), LOGIN_LIFETIME.as_secs() as i64),
        };
        self.store
            .pending_login_insert(&pending)
            .await
            .map_err(internal)?;
        let challenge = secret::pkce_challenge(&pending.code_verifier);
        Ok(Started {
            login_cookie,
            authorize_url: self
                .oidc
                .authorize_url(&pending.state, &pending.nonce, &challenge),
        })
    }

    /// The callback: the browser's pending sign-in (taken: used once), its
    /// `state`, the code exchanged with its verifier, the id_token and the
    /// tenant token checked, then a new session.
    pub(super) async fn complete_login(
        &self,
        headers: &HeaderMap,
        query: CallbackQuery,
    ) -> Result<SignedIn, LoginProblem> {
        let pending = self.take_pending(headers).await?;
        if !query
            .state
            .as_deref()
            .is_some_and(|state| secret::equal(state, &pending.state))
        {
            return Err(LoginProblem::WrongState);
        }
        if query
            .iss
            .as_deref()
            .is_some_and(|iss| iss != self.oidc.issuer)
        {
            return Err(LoginProblem::WrongIssuer);
        }
        if let Some(error) = query.error {
            return Err(LoginProblem::Refused(super::oidc::error_code(&error)));
        }
        let code = query.code.ok_or(LoginProblem::MissingCode)?;
        let tokens = match self.oidc.exchange_code(&code, &pending.code_verifier).await {
            Ok(tokens) => tokens,
            Err(TokenError::Refused(error)) => return Err(LoginProblem::CodeRefused(error)),
            Err(err) => {
                tracing::warn!(error = %err, "cannot finish a sign-in");
                return Err(LoginProblem::Unavailable);
            }
        };
        let id_token = tokens
            .id_token
            .ok_or(LoginProblem::BadIdToken("identity sent none"))?;
        let id = self.id_claims(&id_token, &pending.nonce).await?;
        let principal = self
            .verifier
            .verify(&tokens.access_token)
            .await
            .map_err(|_| LoginProblem::BadAccessToken)?;
        if principal.subject != id.sub {
            return Err(LoginProblem::BadAccessToken);
        }
        let now = Timestamp::now();
        let value = secret::random().map_err(|_| LoginProblem::Internal)?;
        let session = SessionRecord {
            id_hash: secret::hash(&value),
            subject: id.sub,
            email: id.email.unwrap_or_default(),
            role: principal.role.as_str().to_owned(),
            sid: id.sid.filter(|s| !s.is_empty()),
            access_token: tokens.access_token,
            access_expires: access_expiry(now, tokens.expires_in),
            refresh_token: tokens.refresh_token,
            id_token,
            csrf_token: secret::random().map_err(|_| LoginProblem::Internal)?,
            created: now,
            last_used: now,
            expires: later(now, SESSION_LIFETIME.as_secs() as i64),
        };
        self.store
            .session_insert(&session)
            .await
            .map_err(internal)?;
        tracing::info!(subject = %session.subject, role = %session.role, "signed in");
        Ok(SignedIn {
            session_cookie: value,
            return_to: local_path(Some(&pending.return_to)),
        })
    }

    /// The pending sign-in the request's `atoll_login` cookie names, taken.
    async fn take_pending(&self, headers: &HeaderMap) -> Result<PendingLogin, LoginProblem> {
        for value in cookie::values(headers, cookie::LOGIN) {
            if !secret::well_formed(value) {
                continue;
            }
            let taken = self.store.pending_login_take(&secret::hash(value)).await;
            if let Some(pending) = taken.map_err(internal)? {
                return Ok(pending);
            }
        }
        Err(LoginProblem::NoPendingLogin)
    }

    /// The id_token's claims, signature and claims checked.
    async fn id_claims(&self, id_token: &str, nonce: &str) -> Result<IdClaims, LoginProblem> {
        let claims: IdClaims =
            self.verifier
                .signed_claims(id_token)
                .await
                .map_err(|err| match err {
                    AuthError::KeysUnavailable => LoginProblem::Unavailable,
                    _ => LoginProblem::BadIdToken("its signature is not identity's"),
                })?;
        let now = atoll_identity::verify::unix_now();
        claims::check_id_token(&claims, &self.oidc.issuer, &self.oidc.client_id, nonce, now)
            .map_err(LoginProblem::BadIdToken)?;
        Ok(claims)
    }

    /// Ends the request's session (if any) and returns identity's
    /// end-session URL, with the session's id_token as hint.
    pub(super) async fn logout(&self, id_hash: Option<&str>, id_token: Option<&str>) -> String {
        if let Some(id_hash) = id_hash {
            self.end(id_hash, "logout").await;
        }
        self.oidc
            .end_session_url(id_token, &format!("{}/", self.public_url))
    }

    /// The live session of the request's cookie, for logout.
    pub(super) async fn session_of(&self, headers: &HeaderMap) -> Option<SessionRecord> {
        for value in cookie::values(headers, self.cookie_name()) {
            if let Some(session) = self.find(value).await {
                return Some(session);
            }
        }
        None
    }

    /// A back-channel logout: the token checked (signature, claims, `jti`
    /// never seen), then the sessions of its `sid` (or of its `sub` when it
    /// has none) ended. Returns how many; `Err` names why it was refused.
    pub(super) async fn backchannel_logout(&self, token: &str) -> Result<u64, &'static str> {
        let typ = secret::jwt_header(token)
            .and_then(|h| h.get("typ").and_then(|t| t.as_str()).map(str::to_owned));
        let claims: LogoutClaims = self
            .verifier
            .signed_claims(token)
            .await
            .map_err(|_| "signature not identity's")?;
        let now = atoll_identity::verify::unix_now();
        let of = claims::check_logout_token(
            typ.as_deref(),
            claims,
            &self.oidc.issuer,
            &self.oidc.client_id,
            now,
        )?;
        let until = Timestamp::from_second(of.remember_until.min(i64::MAX as u64) as i64)
            .unwrap_or(Timestamp::MAX);
        match self.store.logout_jti_remember(&of.jti, until).await {
            Ok(true) => {}
            Ok(false) => return Err("replayed (jti already seen)"),
            Err(err) => {
                tracing::warn!(error = %err, "cannot remember a logout token");
                return Err("cannot be recorded");
            }
        }
        let ended = match (&of.sid, &of.sub) {
            (Some(sid), _) => self.store.sessions_delete_by_sid(sid).await,
            (None, Some(sub)) => self.store.sessions_delete_by_subject(sub).await,
            (None, None) => Ok(0),
        };
        ended.map_err(|err| {
            tracing::warn!(error = %err, "cannot end the sessions of a back-channel logout");
            "sessions cannot be ended"
        })
    }
}

fn internal(err: crate::store::StoreError) -> LoginProblem {
    tracing::warn!(error = %err, "sign-in storage failed");
    LoginProblem::Internal
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn return_to_is_a_local_path_or_the_root() {
        assert_eq!(local_path(Some("/ui/flows?q=a")), "/ui/flows?q=a");
        for bad in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil.example",
            "evil",
            "/a\nb",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
