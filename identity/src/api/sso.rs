//! What the single sign-on endpoints and identity's pages share: the SSO
//! cookie, the browser's session behind it, CSRF tokens, and URL encoding.
//!
//! The SSO session is a password session (a `session` credential, stored as
//! the SHA-256 of its token); in a browser its token travels as the cookie
//! `__Host-atoll_sso` (`atoll_sso` when the issuer is plain-http loopback):
//! HttpOnly, SameSite=Lax, Path=/, no Domain, Secure unless plain-http
//! loopback. Its `sid` is the credential's id, never the cookie value.
//!
//! CSRF: every state-changing form carries a `_csrf` field.
//! - Signed in: the token is derived from the session's secret cookie,
//!   `base64url(SHA-256("atoll-csrf\0" + cookie))`. Only a page served to
//!   this browser knows it (the cookie is HttpOnly and never leaves identity's
//!   host); nothing more is stored, and it dies with the session.
//! - The login form (no session yet): double submit. A random value in a
//!   SameSite=Strict HttpOnly cookie (`__Host-atoll_login_csrf` when Secure,
//!   so that no sibling host under the same parent domain can plant one) and
//!   the same value in the form; both must match.

use std::net::IpAddr;

use aws_lc_rs::digest;
use axum::http::header::COOKIE;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::store::SsoSession;

/// Whether cookies are marked Secure: unless the issuer is plain http on a
/// loopback host (development and tests).
pub(super) fn secure_cookies(issuer: &str) -> bool {
    let Some(rest) = issuer.strip_prefix("http://") else {
        return true;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(h, _)| h)
    };
    !is_loopback_name(host)
}

/// `localhost`, `*.localhost` (RFC 6761 §6.3) or a loopback address.
pub(super) fn is_loopback_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The SSO cookie's name for this issuer.
pub(super) fn sso_cookie_name(state: &AppState) -> &'static str {
    if secure_cookies(&state.inner.config.issuer) {
        "__Host-atoll_sso"
    } else {
        "atoll_sso"
    }
}

/// The login form's double-submit cookie's name.
pub(super) fn login_csrf_cookie_name(state: &AppState) -> &'static str {
    if secure_cookies(&state.inner.config.issuer) {
        "__Host-atoll_login_csrf"
    } else {
        "atoll_login_csrf"
    }
}

/// A `Set-Cookie` value: host-only, Path=/, HttpOnly, Secure when due.
pub(super) fn set_cookie(
    state: &AppState,
    name: &str,
    value: &str,
    same_site: &str,
    max_age: i64,
) -> HeaderValue {
    let secure = if secure_cookies(&state.inner.config.issuer) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{name}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age}{secure}"
    );
    HeaderValue::from_str(&cookie)
        .unwrap_or_else(|_| HeaderValue::from_static("invalid=; Max-Age=0"))
}

/// The value of cookie `name`, if sent.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The CSRF token of the session whose cookie is `token`.
pub(super) fn session_csrf(token: &str) -> String {
    let mut input = b"atoll-csrf\0".to_vec();
    input.extend_from_slice(token.as_bytes());
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &input))
}

/// Whether a submitted CSRF token is `expected`, in constant time.
pub(super) fn csrf_matches(expected: &str, submitted: Option<&str>) -> bool {
    submitted.is_some_and(|s| sessions::secrets_equal(expected.as_bytes(), s.as_bytes()))
}

/// The browser's SSO session, if its cookie names a live one, and the
/// CSRF token of its forms.
#[derive(Debug)]
pub(super) struct Browser {
    pub session: Option<SsoSession>,
    /// Set with `session`.
    pub csrf: String,
}

impl FromRequestParts<AppState> for Browser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let none = Browser {
            session: None,
            csrf: String::new(),
        };
        let Some(token) = cookie(&parts.headers, sso_cookie_name(state)) else {
            return Ok(none);
        };
        if !token.starts_with(SESSION_PREFIX) || token.len() > 200 {
            return Ok(none);
        }
        let session = state
            .inner
            .store
            .sso_session(&sessions::token_hash(token), now())
            .await?;
        Ok(Browser {
            csrf: if session.is_some() {
                session_csrf(token)
            } else {
                String::new()
            },
            session,
        })
    }
}

/// The tracing span of a request: method and path, never the query (the
/// logout endpoint's `id_token_hint` travels there) nor headers.
pub(super) fn request_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    tracing::debug_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
    )
}

/// Percent-encodes a query component (everything but RFC 3986 unreserved).
pub(super) fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            use std::fmt::Write;
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// `base` with query parameters appended (their values encoded).
pub(super) fn with_query(base: &str, params: &[(&str, &str)]) -> String {
    let mut url = base.to_owned();
    let mut separator = if base.contains('?') { '&' } else { '?' };
    for (name, value) in params {
        url.push(separator);
        url.push_str(name);
        url.push('=');
        url.push_str(&url_encode(value));
        separator = '&';
    }
    url
}

/// A local path to return to after login: `/…`, never `//…` or `/\…`
/// (which browsers read as another host); anything else is `/tenants`.
pub(super) fn local_path(return_to: Option<&str>) -> String {
    match return_to {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control)
                && path.len() <= 4096 =>
        {
            path.to_owned()
        }
        _ => "/tenants".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_secure_unless_plain_http_loopback() {
        assert!(secure_cookies("https://id.example.com"));
        assert!(secure_cookies("http://id.example.com"));
        assert!(!secure_cookies("http://127.0.0.1:8080"));
        assert!(!secure_cookies("http://[::1]:8080"));
        assert!(!secure_cookies("http://id.atoll.localhost:8080"));
        assert!(secure_cookies("https://localhost"));
    }

    #[test]
    fn only_local_paths_are_returned_to() {
        assert_eq!(
            local_path(Some("/oauth2/authorize?x=1")),
            "/oauth2/authorize?x=1"
        );
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "",
        ] {
            assert_eq!(local_path(Some(bad)), "/tenants", "{bad}");
        }
    }

    #[test]
    fn queries_are_encoded() {
        assert_eq!(
            with_query("https://a/cb", &[("code", "a b&c"), ("state", "s")]),
            "https://a/cb?code=a%20b%26c&state=s"
        );
    }
}
