//! `POST /oauth2/token`: codes and refresh tokens for tenant tokens.
//!
//! Public clients (the tenants) authenticate with PKCE only. Every refusal
//! is RFC 6749 §5.2 JSON, 400: `invalid_request` for a missing parameter,
//! `invalid_grant` for a code that is unknown, expired, used, another
//! client's, for another redirect URI or whose verifier does not match, and
//! for a refresh token whose session ended or whose person left the tenant.
//! A code is consumed on first use, whatever follows.

use std::collections::HashMap;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::super::tokens::tenant_claims;
use super::super::*;
use crate::sso_tokens::IdClaims;
use crate::store::{AuthCode, SsoSession};

/// The prefix of refresh tokens.
pub const REFRESH_PREFIX: &str = "atoll_rt_";

/// An RFC 6749 §5.2 error.
#[derive(Debug)]
pub(in crate::api) struct OAuthError {
    error: &'static str,
    description: &'static str,
}

fn invalid_request(description: &'static str) -> OAuthError {
    OAuthError {
        error: "invalid_request",
        description,
    }
}

fn invalid_grant(description: &'static str) -> OAuthError {
    OAuthError {
        error: "invalid_grant",
        description,
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "error_description": self.description});
        (
            StatusCode::BAD_REQUEST,
            [(CACHE_CONTROL, "no-store")],
            Json(body),
        )
            .into_response()
    }
}

impl From<AppError> for OAuthError {
    fn from(error: AppError) -> Self {
        // Logged by AppError's own response; the client learns nothing more.
        let _ = error.into_response();
        OAuthError {
            error: "server_error",
            description: "internal error",
        }
    }
}

fn param<'a>(form: &'a HashMap<String, String>, name: &'static str) -> Result<&'a str, OAuthError> {
    form.get(name)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or(OAuthError {
            error: "invalid_request",
            description: match name {
                "code" => "code is required",
                "redirect_uri" => "redirect_uri is required",
                "client_id" => "client_id is required",
                "code_verifier" => "code_verifier is required",
                "refresh_token" => "refresh_token is required",
                _ => "a required parameter is missing",
            },
        })
}

/// Whether `verifier` (RFC 7636: 43 to 128 unreserved characters) hashes
/// to `challenge`, compared in constant time.
fn pkce_matches(verifier: &str, challenge: &str) -> bool {
    let shaped = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    let computed = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    shaped && sessions::secrets_equal(computed.as_bytes(), challenge.as_bytes())
}

pub(in crate::api) async fn token(
    State(state): State<AppState>,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let Ok(axum::Form(form)) = form else {
        return invalid_request("expected an application/x-www-form-urlencoded body")
            .into_response();
    };
    let result = match form.get("grant_type").map(String::as_str) {
        Some("authorization_code") => exchange_code(&state, &form).await,
        Some("refresh_token") => refresh(&state, &form).await,
        Some(_) => Err(OAuthError {
            error: "unsupported_grant_type",
            description: "grant_type must be authorization_code or refresh_token",
        }),
        None => Err(invalid_request("grant_type is required")),
    };
    match result {
        Ok(body) => (
            [
                (CACHE_CONTROL, "no-store"),
                (axum::http::header::PRAGMA, "no-cache"),
            ],
            Json(body),
        )
            .into_response(),
        Err(error) => error.into_response(),
    }
}

async fn exchange_code(
    state: &AppState,
    form: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    let inner = &state.inner;
    let code = param(form, "code")?;
    // Taken (deleted) before anything else is checked: single use.
    let taken = inner
        .store
        .take_auth_code(&sessions::token_hash(code))
        .await
        .map_err(AppError::from)?;
    let redirect_uri = param(form, "redirect_uri")?;
    let client_id = param(form, "client_id")?;
    let verifier = param(form, "code_verifier")?;
    let now = now();
    let Some(code) = taken else {
        return Err(invalid_grant("the code is unknown or was used already"));
    };
    let refusal = if code.expires_at <= now {
        Some("the code has expired")
    } else if code.client_id != client_id {
        Some("the code was issued to another client")
    } else if code.redirect_uri != redirect_uri {
        Some("redirect_uri is not the one the code was issued for")
    } else if !pkce_matches(verifier, &code.code_challenge) {
        Some("code_verifier does not match the code_challenge")
    } else {
        None
    };
    if let Some(description) = refusal {
        audit_token(inner, &code.user_id, client_id, Outcome::Denied).await;
        return Err(invalid_grant(description));
    }
    let session = inner
        .store
        .sso_session_by_id(&code.session_id, now)
        .await
        .map_err(AppError::from)?;
    let Some(session) = session.filter(|s| s.user.id == code.user_id) else {
        return Err(invalid_grant(
            "the session has ended or the account is disabled",
        ));
    };
    let mut body = tenant_token(inner, &session, client_id, now).await?;
    body["id_token"] = id_token(inner, &session, &code, now)?.into();
    let refresh_token = sessions::new_token(REFRESH_PREFIX).map_err(AppError::from)?;
    inner
        .store
        .insert_refresh_token(
            &sessions::token_hash(refresh_token.expose()),
            &session.id,
            client_id,
            now,
        )
        .await
        .map_err(AppError::from)?;
    body["refresh_token"] = refresh_token.expose().into();
    audit_token(inner, &session.user.id, client_id, Outcome::Success).await;
    Ok(body)
}

/// The ID token of `session` for the code's client, with the code's nonce.
fn id_token(
    inner: &Inner,
    session: &SsoSession,
    code: &AuthCode,
    now: i64,
) -> Result<String, OAuthError> {
    let issued_at = u64::try_from(now).unwrap_or_default();
    let claims = IdClaims {
        iss: inner.config.issuer.clone(),
        sub: session.user.id.clone(),
        aud: code.client_id.clone(),
        exp: issued_at + inner.config.token_ttl.as_secs(),
        iat: issued_at,
        auth_time: u64::try_from(code.auth_time).unwrap_or_default(),
        nonce: code.nonce.clone(),
        sid: session.id.clone(),
        email: session.user.email.clone(),
    };
    Ok(inner
        .keys
        .sign(&claims, "JWT", now)
        .map_err(AppError::from)?)
}

async fn refresh(
    state: &AppState,
    form: &HashMap<String, String>,
) -> Result<serde_json::Value, OAuthError> {
    let inner = &state.inner;
    let refresh_token = param(form, "refresh_token")?;
    let client_id = param(form, "client_id")?;
    let now = now();
    let found = if refresh_token.starts_with(REFRESH_PREFIX) && refresh_token.len() <= 200 {
        inner
            .store
            .refresh_grant(&sessions::token_hash(refresh_token), now)
            .await
            .map_err(AppError::from)?
    } else {
        None
    };
    let Some((session, bound_client)) = found else {
        return Err(invalid_grant(
            "the refresh token is unknown or its session has ended",
        ));
    };
    if bound_client != client_id {
        return Err(invalid_grant(
            "the refresh token was issued to another client",
        ));
    }
    let mut body = tenant_token(inner, &session, client_id, now).await?;
    body["refresh_token"] = refresh_token.into();
    Ok(body)
}

/// The tenant token of a member, as JSON; `invalid_grant` for anyone else.
async fn tenant_token(
    inner: &Inner,
    session: &SsoSession,
    client_id: &str,
    now: i64,
) -> Result<serde_json::Value, OAuthError> {
    let membership = inner
        .store
        .membership(&session.user.email, client_id)
        .await
        .map_err(AppError::from)?;
    let Some(membership) = membership else {
        audit_token(inner, &session.user.id, client_id, Outcome::Denied).await;
        return Err(invalid_grant("the person is not a member of this tenant"));
    };
    let claims = tenant_claims(inner, &session.user, client_id, membership, now);
    let access_token = inner.keys.mint(&claims, now).map_err(AppError::from)?;
    Ok(serde_json::json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": inner.config.token_ttl.as_secs(),
        "scope": "openid email",
    }))
}

async fn audit_token(inner: &Inner, user_id: &str, client_id: &str, outcome: Outcome) {
    inner
        .audit
        .record(
            now(),
            Some(user_id),
            "sso.token",
            Some(client_id),
            outcome,
            None,
        )
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verifier_matches_its_s256_challenge_only() {
        // Computed independently (Python's hashlib and base64).
        let challenge = "1zx8JSmhdERDHTXM1OQ_u0f4t1FrahJpgml7dTtY9Ms";
        assert!(pkce_matches(
            "dBjftJeZ4CK-3ynl8WbZHYQyT6x8ywn9aY2pcLcEjXk",
            challenge
        ));
        assert!(!pkce_matches(
            "dBjftJeZ4CK-3ynl8WbZHYQyT6x8ywn9aY2pcLcEjXl",
            challenge
        ));
        assert!(!pkce_matches("short", challenge));
    }
}
