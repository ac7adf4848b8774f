//! The two cookies of browser sign-in: the session cookie (`Path=/`,
//! host-only, `__Host-` prefixed when the public URL is https) and the
//! short-lived `atoll_login` cookie binding a sign-in under way to the
//! browser that started it (`Path=/auth`).

use axum::http::{HeaderMap, HeaderValue, header};

/// The session cookie's name over https: the `__Host-` prefix makes the
/// browser refuse it unless it is Secure, host-only and `Path=/`.
pub const SESSION_SECURE: &str = "__Host-atoll_session";
/// The session cookie's name over plain http (local use, the sandbox).
pub const SESSION_PLAIN: &str = "atoll_session";
/// The sign-in-under-way cookie's name.
pub const LOGIN: &str = "atoll_login";
/// The sign-in cookie's path: sent to `/auth/callback` only.
pub(super) const LOGIN_PATH: &str = "/auth";

/// The values of every cookie named `name` the request carries (a browser
/// may send two of one name, e.g. one set by a parent domain), at most 4.
pub(super) fn values<'a>(headers: &'a HeaderMap, name: &'a str) -> Vec<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(key, _)| *key == name)
        .map(|(_, value)| value.trim_matches('"'))
        .take(4)
        .collect()
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Lax, no Domain (host-only),
/// Secure when `secure`; `max_age` in seconds (0 clears the cookie).
pub(super) fn set(name: &str, value: &str, path: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let text =
        format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}");
    // Names, paths and values are ours (base64url): always a valid header.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A `Set-Cookie` value that removes cookie `name` at `path`.
pub(super) fn clear(name: &str, path: &str, secure: bool) -> HeaderValue {
    set(name, "", path, 0, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cookie_of_the_name_is_read() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; atoll_session=x"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("atoll_session=\"y\""),
        );
        assert_eq!(values(&headers, SESSION_PLAIN), vec!["x", "y"]);
        assert!(values(&headers, LOGIN).is_empty());
    }

    #[test]
    fn cookies_are_http_only_lax_and_host_only() {
        let v = set(SESSION_SECURE, "v", "/", 60, true);
        assert_eq!(
            v.to_str().ok(),
            Some("__Host-atoll_session=v; Path=/; Max-Age=60; HttpOnly; SameSite=Lax; Secure")
        );
        let cleared = clear(LOGIN, LOGIN_PATH, false);
        assert_eq!(
            cleared.to_str().ok(),
            Some("atoll_login=; Path=/auth; Max-Age=0; HttpOnly; SameSite=Lax")
        );
    }
}
