//! CSRF protection of cookie-authenticated requests: an unsafe method
//! (anything but GET, HEAD, OPTIONS, TRACE) must carry the session's CSRF
//! token in the `X-CSRF-Token` header or, for HTML forms, in the `_csrf`
//! field of an `application/x-www-form-urlencoded` body (read, at most
//! `MAX_BODY_BYTES`, and put back for the handler). Compared in constant
//! time. Bearer-authenticated requests need none.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};

use super::{CsrfToken, form, secret};
use crate::api::{ApiError, MAX_BODY_BYTES};

/// The header scripts send the token in.
pub const HEADER: &str = "x-csrf-token";
/// The form field HTML forms send it in.
pub const FIELD: &str = "_csrf";

/// Whether `method` changes state (needs the CSRF token).
pub fn is_unsafe(method: &Method) -> bool {
    !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    )
}

/// The request, if it carries `expected` (its body re-injected when it was
/// read for the form field); else the 403 (or 413) to answer.
pub async fn check_csrf(request: Request, expected: &CsrfToken) -> Result<Request, Response> {
    if let Some(given) = request.headers().get(HEADER) {
        return match given.to_str() {
            Ok(given) if secret::equal(given, &expected.0) => Ok(request),
            _ => Err(refused()),
        };
    }
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return Err(refused());
    }
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| ApiError::PayloadTooLarge.into_response())?;
    let given = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| form::field(text, FIELD));
    match given {
        Some(given) if secret::equal(&given, &expected.0) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(refused()),
    }
}

fn refused() -> Response {
    ApiError::ForbiddenBecause(
        "this request needs the session's CSRF token (header X-CSRF-Token or form field _csrf)"
            .into(),
    )
    .into_response()
}
