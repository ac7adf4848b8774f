//! The OpenID Connect client side: identity's endpoints (derived from the
//! issuer), the authorization request, and the token endpoint's two grants
//! (`authorization_code` with the PKCE verifier, `refresh_token`), called
//! server to server. Tokens are never logged; errors carry identity's
//! error code only.

use std::time::Duration;

use serde::Deserialize;

use super::form;

/// How long one call to identity's token endpoint may take.
const TOKEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Identity's endpoints and this tenant's client registration.
#[derive(Debug, Clone)]
pub(super) struct Client {
    http: reqwest::Client,
    /// Identity's issuer URL (no trailing slash): the expected `iss`.
    pub(super) issuer: String,
    authorize: String,
    token: String,
    end_session: String,
    /// The tenant's name.
    pub(super) client_id: String,
    /// `<public url>/auth/callback`.
    pub(super) redirect_uri: String,
}

/// What the token endpoint answered. Holds tokens: no `Debug`.
pub(super) struct Tokens {
    pub(super) access_token: String,
    pub(super) expires_in: Option<u64>,
    pub(super) id_token: Option<String>,
    pub(super) refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    token_type: String,
    expires_in: Option<u64>,
    id_token: Option<String>,
    refresh_token: Option<String>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
}

/// Why the token endpoint gave no tokens.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum TokenError {
    /// Identity refused the grant (RFC 6749 §5.2's `error`, e.g.
    /// `invalid_grant`): the code or refresh token is no good.
    #[error("identity refused the grant ({0})")]
    Refused(String),
    /// Identity could not be reached or failed (worth retrying later).
    #[error("identity's token endpoint could not be used: {0}")]
    Unavailable(String),
}

impl Client {
    /// The client of tenant `client_id`, whose public URL is `public_url`,
    /// at identity `issuer`.
    pub(super) fn new(issuer: &str, client_id: &str, public_url: &str) -> Client {
        let issuer = issuer.trim_end_matches('/').to_owned();
        let http = reqwest::Client::builder()
            .timeout(TOKEN_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Client {
            http,
            authorize: format!("{issuer}/oauth2/authorize"),
            token: format!("{issuer}/oauth2/token"),
            end_session: format!("{issuer}/oauth2/logout"),
            issuer,
            client_id: client_id.to_owned(),
            redirect_uri: format!("{}/auth/callback", public_url.trim_end_matches('/')),
        }
    }

    /// Identity's authorization URL for one sign-in.
    pub(super) fn authorize_url(&self, state: &str, nonce: &str, challenge: &str) -> String {
        let query = form::encode(&[
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", &self.redirect_uri),
            ("scope", "openid email"),
            ("state", state),
            ("nonce", nonce),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
        ]);
        format!("{}?{query}", self.authorize)
    }

    /// Identity's end-session URL (RP-initiated logout), sending the
    /// browser back to `post_logout` afterwards.
    pub(super) fn end_session_url(&self, id_token_hint: Option<&str>, post_logout: &str) -> String {
        let mut pairs = Vec::new();
        if let Some(hint) = id_token_hint {
            pairs.push(("id_token_hint", hint));
        }
        pairs.push(("post_logout_redirect_uri", post_logout));
        format!("{}?{}", self.end_session, form::encode(&pairs))
    }

    /// Exchanges an authorization code, proving the sign-in with `verifier`.
    pub(super) async fn exchange_code(
        &self,
        code: &str,
        verifier: &str,
    ) -> Result<Tokens, TokenError> {
        self.grant(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &self.redirect_uri),
            ("client_id", &self.client_id),
            ("code_verifier", verifier),
        ])
        .await
    }

    /// A new access token for a session's refresh token.
    pub(super) async fn refresh(&self, refresh_token: &str) -> Result<Tokens, TokenError> {
        self.grant(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.client_id),
        ])
        .await
    }

    async fn grant(&self, pairs: &[(&str, &str)]) -> Result<Tokens, TokenError> {
        let response = self
            .http
            .post(&self.token)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form::encode(pairs))
            .send()
            .await
            .map_err(|e| TokenError::Unavailable(request_failure(&e)))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| TokenError::Unavailable(request_failure(&e)))?;
        if status.is_success() {
            let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
                TokenError::Unavailable(
                    "the token endpoint's answer is not a token response".into(),
                )
            })?;
            if !answer.token_type.eq_ignore_ascii_case("bearer") {
                return Err(TokenError::Unavailable(
                    "the token type is not Bearer".into(),
                ));
            }
            return Ok(Tokens {
                access_token: answer.access_token,
                expires_in: answer.expires_in,
                id_token: answer.id_token,
                refresh_token: answer.refresh_token,
            });
        }
        match serde_json::from_slice::<ErrorAnswer>(&body) {
            Ok(error) if status.is_client_error() => {
                Err(TokenError::Refused(error_code(&error.error)))
            }
            _ => Err(TokenError::Unavailable(format!("it answered {status}"))),
        }
    }
}

/// Identity's error code, kept to what an error code can hold (it is shown
/// on the error page, escaped).
pub(super) fn error_code(text: &str) -> String {
    text.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(64)
        .collect()
}

/// What failed in a request, without the URL (it may hold a code).
fn request_failure(error: &reqwest::Error) -> String {
    if error.is_timeout() {
        "timed out".into()
    } else if error.is_connect() {
        "connection failed".into()
    } else {
        "request failed".into()
    }
}
