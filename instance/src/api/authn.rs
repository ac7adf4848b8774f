//! Who is calling, for every route behind authentication: a bearer token
//! (`Authorization: Bearer`, exactly as API clients always did), or else
//! the browser's session cookie (see `crate::session`), whose unsafe
//! requests must carry the session's CSRF token. The caller is left in the
//! request for the role extractors ([`super::Viewer`], [`super::Editor`]);
//! a cookie caller's [`crate::session::CsrfToken`] and [`SessionCaller`] too.
//!
//! With authentication off (no verifier) every caller is an Admin and no
//! CSRF token is asked for.

use axum::extract::{OriginalUri, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::{ApiError, AppState};
use crate::auth::{AuthError, Principal, Role, Verifier};
use crate::session::{SessionCaller, check_csrf, is_unsafe};

/// What a request with no valid credential gets.
#[derive(Debug, Clone, Copy)]
enum Unauthenticated {
    /// 401 (the JSON API).
    Refuse,
    /// A GET or HEAD is sent to sign in, then back (HTML pages).
    SignIn,
}

/// The API's authentication: unauthenticated requests are answered 401.
pub(super) async fn authenticate(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    authenticated(state, request, next, Unauthenticated::Refuse).await
}

/// The HTML pages' authentication: as the API's, but an unauthenticated
/// GET (or HEAD) is answered `303 See Other` to
/// `/auth/login?return_to=<path and query>`; other methods 401.
pub async fn authenticate_page(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    authenticated(state, request, next, Unauthenticated::SignIn).await
}

async fn authenticated(
    state: AppState,
    mut request: Request,
    next: Next,
    otherwise: Unauthenticated,
) -> Response {
    let Some(verifier) = &state.verifier else {
        request.extensions_mut().insert(Principal {
            subject: "local".into(),
            role: Role::Admin,
        });
        return next.run(request).await;
    };
    if let Some(authorization) = request.headers().get(header::AUTHORIZATION) {
        let principal = match bearer(verifier.as_ref(), authorization).await {
            Ok(principal) => principal,
            Err(refused) => return refused,
        };
        request.extensions_mut().insert(principal);
        return next.run(request).await;
    }
    let caller = match &state.sessions {
        Some(sessions) => sessions.authenticate(request.headers()).await,
        None => None,
    };
    let Some(caller) = caller else {
        return unauthenticated(&request, otherwise);
    };
    if is_unsafe(request.method()) {
        request = match check_csrf(request, &caller.csrf).await {
            Ok(request) => request,
            Err(refused) => return refused,
        };
    }
    let extensions = request.extensions_mut();
    extensions.insert(caller.principal.clone());
    extensions.insert(caller.csrf.clone());
    extensions.insert::<SessionCaller>(caller);
    next.run(request).await
}

/// The principal of a bearer token; any other scheme, or a refused token,
/// is a 401 like a missing one.
async fn bearer(
    verifier: &dyn Verifier,
    authorization: &HeaderValue,
) -> Result<Principal, Response> {
    let token = authorization
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token else {
        return Err(ApiError::Unauthorized.into_response());
    };
    match verifier.verify(token).await {
        Ok(principal) => Ok(principal),
        Err(AuthError::KeysUnavailable) => {
            tracing::warn!("no identity keys yet; refusing the token");
            Err(ApiError::Unauthorized.into_response())
        }
        Err(err) => {
            tracing::debug!(reason = %err, "token refused");
            Err(ApiError::Unauthorized.into_response())
        }
    }
}

fn unauthenticated(request: &Request, otherwise: Unauthenticated) -> Response {
    let reads = matches!(*request.method(), Method::GET | Method::HEAD);
    if !matches!(otherwise, Unauthenticated::SignIn) || !reads {
        return ApiError::Unauthorized.into_response();
    }
    let uri = request
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| request.uri(), |original| &original.0);
    let here = uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!(
        "/auth/login?{}",
        crate::session::query(&[("return_to", here)])
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
