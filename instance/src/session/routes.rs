//! The sign-in endpoints, outside API authentication:
//!
//! - `GET /auth/login?return_to=/local/path`: a new sign-in, 302 to
//!   identity's authorization endpoint;
//! - `GET /auth/callback?code&state&iss`: identity's answer; a session and
//!   its cookie, 302 to `return_to`; any failure an HTML page (400);
//! - `POST /auth/logout` (CSRF token required): the session ended, 302 to
//!   identity's end-session endpoint;
//! - `POST /auth/backchannel-logout` (form `logout_token`): identity ends
//!   the sessions of an SSO session; 200, or 400 `{"error":"invalid_request"}`;
//! - `GET /auth/session`: who the session cookie stands for and its CSRF
//!   token, for scripts of this origin (JSON; 401 without a session). No
//!   token of identity's is ever in it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::login::{CallbackQuery, LoginProblem, local_path};
use super::{CsrfToken, LOGIN_LIFETIME, SESSION_LIFETIME, check_csrf, cookie, form, page};
use crate::api::{ApiError, AppState};

/// The `/auth/...` routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/login", get(login))
        .route("/auth/callback", get(callback))
        .route("/auth/logout", post(logout))
        .route("/auth/backchannel-logout", post(backchannel_logout))
        .route("/auth/session", get(session))
}

/// A 302 to `location`, not cached.
fn redirect(location: &str) -> Response {
    let mut response = StatusCode::FOUND.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn not_available() -> Response {
    page::problem(
        StatusCode::NOT_FOUND,
        "Sign-in is not available",
        "This instance takes part in single sign-on only with identity configured \
         (ATOLL_IDENTITY_ISSUER) and its public URL known (ATOLL_PUBLIC_URL). \
         Its API takes bearer tokens.",
    )
}

async fn login(State(state): State<AppState>, RawQuery(query): RawQuery) -> Response {
    let asked = query.as_deref().and_then(|q| form::field(q, "return_to"));
    let return_to = local_path(asked.as_deref());
    let Some(sessions) = &state.sessions else {
        // Without authentication every caller is already in.
        return match state.verifier {
            None => redirect(&return_to),
            Some(_) => not_available(),
        };
    };
    match sessions.begin_login(&return_to).await {
        Ok(started) => {
            let mut response = redirect(&started.authorize_url);
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie::set(
                    cookie::LOGIN,
                    &started.login_cookie,
                    cookie::LOGIN_PATH,
                    LOGIN_LIFETIME.as_secs() as i64,
                    sessions.secure(),
                ),
            );
            response
        }
        Err(problem) => {
            let status = match problem {
                LoginProblem::Busy => StatusCode::SERVICE_UNAVAILABLE,
                _ => StatusCode::INTERNAL_SERVER_ERROR,
            };
            page::problem(status, "Sign-in cannot start", &problem.to_string())
        }
    }
}

async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let Some(sessions) = &state.sessions else {
        return not_available();
    };
    let query = query.unwrap_or_default();
    let answer = CallbackQuery {
        code: form::field(&query, "code"),
        state: form::field(&query, "state"),
        iss: form::field(&query, "iss"),
        error: form::field(&query, "error"),
    };
    let mut response = match sessions.complete_login(&headers, answer).await {
        Ok(signed_in) => {
            let mut response = redirect(&signed_in.return_to);
            response.headers_mut().append(
                header::SET_COOKIE,
                cookie::set(
                    sessions.cookie_name(),
                    &signed_in.session_cookie,
                    "/",
                    SESSION_LIFETIME.as_secs() as i64,
                    sessions.secure(),
                ),
            );
            response
        }
        Err(problem) => {
            tracing::info!(problem = %problem, "sign-in refused");
            page::problem(
                StatusCode::BAD_REQUEST,
                "Sign-in failed",
                &problem.to_string(),
            )
        }
    };
    let headers = response.headers_mut();
    headers.append(
        header::SET_COOKIE,
        cookie::clear(cookie::LOGIN, cookie::LOGIN_PATH, sessions.secure()),
    );
    // The callback's URL holds the code: never sent on as a referrer.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn logout(State(state): State<AppState>, request: Request) -> Response {
    let Some(sessions) = &state.sessions else {
        return redirect("/");
    };
    let (id_hash, id_token) = match sessions.session_of(request.headers()).await {
        Some(session) => {
            let expected = CsrfToken(session.csrf_token.clone());
            if let Err(refused) = check_csrf(request, &expected).await {
                return refused;
            }
            (Some(session.id_hash), Some(session.id_token))
        }
        // No session here: identity's own session may still be ended.
        None => (None, None),
    };
    let location = sessions
        .logout(id_hash.as_deref(), id_token.as_deref())
        .await;
    let mut response = redirect(&location);
    response.headers_mut().append(
        header::SET_COOKIE,
        cookie::clear(sessions.cookie_name(), "/", sessions.secure()),
    );
    response
}

async fn backchannel_logout(State(state): State<AppState>, body: Bytes) -> Response {
    let refused = || {
        (
            StatusCode::BAD_REQUEST,
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({"error": "invalid_request"})),
        )
            .into_response()
    };
    let Some(sessions) = &state.sessions else {
        return refused();
    };
    let token = std::str::from_utf8(&body)
        .ok()
        .and_then(|text| form::field(text, "logout_token"));
    let Some(token) = token else {
        return refused();
    };
    match sessions.backchannel_logout(&token).await {
        Ok(ended) => {
            tracing::info!(sessions = ended, "back-channel logout");
            (StatusCode::OK, [(header::CACHE_CONTROL, "no-store")]).into_response()
        }
        Err(why) => {
            tracing::info!(reason = why, "back-channel logout refused");
            refused()
        }
    }
}

async fn session(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let no_store = [(header::CACHE_CONTROL, "no-store")];
    let Some(sessions) = &state.sessions else {
        return match state.verifier {
            // Without authentication every caller is a local Admin.
            None => (
                no_store,
                axum::Json(
                    serde_json::json!({"subject": "local", "role": "Admin", "csrfToken": null}),
                ),
            )
                .into_response(),
            Some(_) => ApiError::Unauthorized.into_response(),
        };
    };
    match sessions.authenticate(&headers).await {
        Some(caller) => (
            no_store,
            axum::Json(serde_json::json!({
                "subject": caller.principal.subject,
                "email": caller.email,
                "role": caller.principal.role.as_str(),
                "csrfToken": caller.csrf.0,
            })),
        )
            .into_response(),
        None => ApiError::Unauthorized.into_response(),
    }
}
