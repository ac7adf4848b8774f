//! `GET /oauth2/authorize`: the authorization code flow's front door.
//!
//! In this order: an unknown client or a redirect URI that is not exactly
//! the registered one gets an HTML error page (400), never a redirect; a
//! protocol error goes back to the client (`error=invalid_request`); no SSO
//! session gets the login page (which returns here); a person who is not a
//! member gets the "not a member" page (403, no code); a member gets a
//! single-use code (256 random bits, only its SHA-256 stored, 60 s, bound to
//! client, redirect URI, PKCE challenge, nonce, user and session).

use axum::extract::RawQuery;

use super::super::pages::layout::{error_page, redirect};
use super::super::pages::login::login_page;
use super::super::pages::tenants::not_a_member_page;
use super::super::sso::{Browser, with_query};
use super::super::*;
use crate::store::{AuthCode, SsoSession};

/// How long an authorization code is valid.
pub const CODE_TTL_SECS: i64 = 60;

/// Longest `state` or `nonce` accepted.
const MAX_PARAM_LEN: usize = 512;

#[derive(Deserialize, Default)]
pub(in crate::api) struct AuthorizeParams {
    response_type: Option<String>,
    client_id: Option<String>,
    redirect_uri: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    nonce: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

/// A PKCE S256 challenge: 43 base64url characters (a SHA-256).
pub(super) fn is_s256_challenge(challenge: &str) -> bool {
    challenge.len() == 43
        && challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// What is wrong with a request from a known client, if anything.
fn protocol_error(params: &AuthorizeParams) -> Option<&'static str> {
    fn filled(v: &Option<String>) -> Option<&str> {
        v.as_deref().filter(|s| !s.is_empty())
    }
    if params.response_type.as_deref() != Some("code") {
        return Some("response_type must be code");
    }
    if !filled(&params.scope).is_some_and(|s| s.split(' ').any(|s| s == "openid")) {
        return Some("scope must contain openid");
    }
    if filled(&params.state).is_none_or(|s| s.len() > MAX_PARAM_LEN) {
        return Some("state is required (at most 512 characters)");
    }
    if filled(&params.nonce).is_none_or(|s| s.len() > MAX_PARAM_LEN) {
        return Some("nonce is required (at most 512 characters)");
    }
    if params.code_challenge_method.as_deref() != Some("S256") {
        return Some("PKCE is required: code_challenge_method must be S256");
    }
    if !params
        .code_challenge
        .as_deref()
        .is_some_and(is_s256_challenge)
    {
        return Some("code_challenge must be 43 base64url characters (S256)");
    }
    None
}

/// The unknown-client page: the request cannot be answered to any client.
fn bad_client_page(message: &str) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "This sign-in link is not valid",
        message,
        None,
    )
}

pub(in crate::api) async fn authorize(
    State(state): State<AppState>,
    browser: Browser,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
    params: Result<Query<AuthorizeParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, AppError> {
    let Ok(Query(params)) = params else {
        return Ok(bad_client_page("The sign-in request is malformed."));
    };
    if let Some(refusal) = check_client(&state, &params).await? {
        return Ok(refusal);
    }
    let issuer = state.inner.config.issuer.as_str();
    let redirect_uri = params.redirect_uri.as_deref().unwrap_or_default();
    if let Some(description) = protocol_error(&params) {
        let mut query = vec![
            ("error", "invalid_request"),
            ("error_description", description),
        ];
        if let Some(s) = params.state.as_deref().filter(|s| !s.is_empty()) {
            query.push(("state", s));
        }
        query.push(("iss", issuer));
        return Ok(redirect(
            StatusCode::FOUND,
            &with_query(redirect_uri, &query),
        ));
    }
    let Some(session) = &browser.session else {
        let here = format!("/oauth2/authorize?{}", raw.unwrap_or_default());
        return login_page(&state, &headers, StatusCode::OK, &here, "", None);
    };
    let client_id = params.client_id.as_deref().unwrap_or_default();
    let member = state
        .inner
        .store
        .membership(&session.user.email, client_id)
        .await?
        .is_some();
    audit(&state, session, client_id, member).await;
    if !member {
        return not_a_member_page(&state, &browser, client_id).await;
    }
    let code = issue_code(&state, session, &params).await?;
    let location = with_query(
        redirect_uri,
        &[
            ("code", &code),
            ("state", params.state.as_deref().unwrap_or_default()),
            ("iss", issuer),
        ],
    );
    Ok(redirect(StatusCode::FOUND, &location))
}

/// The 400 page for an unknown client or a redirect URI that is not
/// exactly the registered one; `None` when both are right.
async fn check_client(
    state: &AppState,
    params: &AuthorizeParams,
) -> Result<Option<Response>, AppError> {
    let client_id = params.client_id.as_deref().unwrap_or_default();
    let tenant = if is_dns_label(client_id) {
        state.inner.store.tenant(client_id).await?
    } else {
        None
    };
    let Some(tenant) = tenant else {
        return Ok(Some(bad_client_page(
            "The application asking you to sign in is not registered here.",
        )));
    };
    let redirect_uri = params.redirect_uri.as_deref().unwrap_or_default();
    if tenant.redirect_uri.is_empty() || redirect_uri != tenant.redirect_uri {
        return Ok(Some(bad_client_page(
            "The address this sign-in would return to is not the one registered for the application.",
        )));
    }
    Ok(None)
}

async fn audit(state: &AppState, session: &SsoSession, client_id: &str, member: bool) {
    let outcome = if member {
        Outcome::Success
    } else {
        Outcome::Denied
    };
    state
        .inner
        .audit
        .record(
            now(),
            Some(&session.user.id),
            "sso.authorize",
            Some(client_id),
            outcome,
            None,
        )
        .await;
}

/// A new code for `session` at the client of `params` (stored as its
/// hash); the session records that it entered the tenant.
async fn issue_code(
    state: &AppState,
    session: &SsoSession,
    params: &AuthorizeParams,
) -> Result<String, AppError> {
    let code = sessions::random_token(32)?;
    let client_id = params.client_id.clone().unwrap_or_default();
    let store = &state.inner.store;
    store
        .insert_auth_code(&AuthCode {
            code_hash: sessions::token_hash(&code),
            client_id: client_id.clone(),
            redirect_uri: params.redirect_uri.clone().unwrap_or_default(),
            code_challenge: params.code_challenge.clone().unwrap_or_default(),
            nonce: params.nonce.clone().unwrap_or_default(),
            user_id: session.user.id.clone(),
            session_id: session.id.clone(),
            auth_time: session.auth_time,
            expires_at: now().saturating_add(CODE_TTL_SECS),
        })
        .await?;
    store.enter_tenant(&session.id, &client_id).await?;
    Ok(code)
}
