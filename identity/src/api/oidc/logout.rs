//! RP-initiated logout (`GET|POST /oauth2/logout`, OpenID Connect
//! RP-Initiated Logout 1.0) and the logout form of identity's own pages
//! (`POST /logout`, CSRF-checked).
//!
//! Ending the SSO session deletes its record (and with it its codes,
//! refresh tokens and the list of tenants it entered), clears the cookie
//! and sends back-channel logout to every tenant it entered. Then the
//! browser goes to `post_logout_redirect_uri` if that is exactly
//! `<registered tenant url>/` of the `id_token_hint`'s audience or of a
//! tenant the session entered, or sees the "You are logged out" page.

use maud::html;

use super::super::pages::layout::{
    csrf_refused, html_response, page, redirect, see_other, with_cookie,
};
use super::super::sso::{Browser, csrf_matches, set_cookie, sso_cookie_name, with_query};
use super::super::*;
use crate::sso_tokens::{IdClaims, decode_signed};
use crate::verify::KeySet;

#[derive(Deserialize, Default)]
pub(in crate::api) struct LogoutParams {
    #[serde(default)]
    id_token_hint: Option<String>,
    #[serde(default)]
    post_logout_redirect_uri: Option<String>,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize, Default)]
pub(in crate::api) struct LogoutForm {
    #[serde(default, rename = "_csrf")]
    csrf: Option<String>,
}

/// `GET /oauth2/logout`.
pub(in crate::api) async fn end_session_get(
    State(state): State<AppState>,
    browser: Browser,
    Query(params): Query<LogoutParams>,
) -> Result<Response, AppError> {
    end_session(&state, browser, params).await
}

/// `POST /oauth2/logout`.
pub(in crate::api) async fn end_session_post(
    State(state): State<AppState>,
    browser: Browser,
    axum::Form(params): axum::Form<LogoutParams>,
) -> Result<Response, AppError> {
    end_session(&state, browser, params).await
}

/// `POST /logout`: the header's "Log out" button.
pub(in crate::api) async fn logout_form(
    State(state): State<AppState>,
    browser: Browser,
    axum::Form(form): axum::Form<LogoutForm>,
) -> Result<Response, AppError> {
    if browser.session.is_none() {
        return Ok(see_other("/login"));
    }
    if !csrf_matches(&browser.csrf, form.csrf.as_deref()) {
        return Ok(csrf_refused(None));
    }
    end_session(&state, browser, LogoutParams::default()).await
}

/// The tenant the hint was issued to, if it is an ID token we signed
/// (expired ones included: a hint is often older than its lifetime).
fn hint_audience(state: &AppState, hint: Option<&str>) -> Option<String> {
    let hint = hint.filter(|h| !h.is_empty() && h.len() <= 8192)?;
    let jwks = state.inner.keys.jwks(now());
    let keys = KeySet::from_json(jwks.to_string().as_bytes()).ok()?;
    let claims: IdClaims = decode_signed(&keys, hint, "JWT").ok()?;
    (claims.iss == state.inner.config.issuer).then_some(claims.aud)
}

async fn end_session(
    state: &AppState,
    browser: Browser,
    params: LogoutParams,
) -> Result<Response, AppError> {
    let inner = &state.inner;
    let mut allowed: Vec<String> = Vec::new();
    if let Some(session) = &browser.session {
        let entered = inner.store.entered_tenants(&session.id).await?;
        allowed.extend(entered.iter().map(|t| t.url.clone()));
        inner.store.end_sso_session(&session.id).await?;
        inner
            .audit
            .record(
                now(),
                Some(&session.user.id),
                "logout",
                None,
                Outcome::Success,
                None,
            )
            .await;
        super::backchannel::notify(inner, &session.id, &session.user.id, entered).await;
    }
    if let Some(tenant) = hint_audience(state, params.id_token_hint.as_deref())
        && let Some(tenant) = inner.store.tenant(&tenant).await?
    {
        allowed.push(tenant.url);
    }
    let target = params.post_logout_redirect_uri.as_deref().filter(|uri| {
        allowed
            .iter()
            .any(|url| !url.is_empty() && format!("{}/", url.trim_end_matches('/')) == *uri)
    });
    let response = match target {
        Some(uri) => {
            let location = match params
                .state
                .as_deref()
                .filter(|s| !s.is_empty() && s.len() <= 512)
            {
                Some(s) => with_query(uri, &[("state", s)]),
                None => uri.to_owned(),
            };
            redirect(StatusCode::FOUND, &location)
        }
        None => {
            let body = html! {
                main.narrow {
                    div.card {
                        h1 { "You are logged out" }
                        p { "You are logged out of Atoll and of every tenant you opened with this login." }
                        p { a href="/login" { "Log in again" } }
                    }
                }
            };
            html_response(StatusCode::OK, page("Logged out", None, body))
        }
    };
    let cleared = set_cookie(state, sso_cookie_name(state), "", "Lax", 0);
    Ok(with_cookie(response, cleared))
}
