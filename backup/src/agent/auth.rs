//! The agent's bearer token: read once from a file (a Secret volume),
//! compared in constant time, never shown.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::Agent;
use super::routes::ApiError;

/// Shorter tokens are refused (the operator makes 64 hex digits).
pub const MIN_TOKEN_LEN: usize = 16;

/// The expected token. `Debug` does not show it.
#[derive(Clone)]
pub struct Token(Vec<u8>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The token file is unusable. Never holds the file's content.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// It cannot be read.
    #[error("cannot read the token file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The reason.
        source: std::io::Error,
    },
    /// Its content is no usable token.
    #[error(
        "the token file {path} must hold one token of at least {MIN_TOKEN_LEN} visible ASCII characters"
    )]
    Invalid {
        /// The file.
        path: PathBuf,
    },
}

impl Token {
    /// Reads the token from `path` (surrounding whitespace ignored).
    pub fn load(path: &Path) -> Result<Token, TokenError> {
        let bytes = std::fs::read(path).map_err(|source| TokenError::Read {
            path: path.to_owned(),
            source,
        })?;
        Token::parse(&bytes).ok_or_else(|| TokenError::Invalid {
            path: path.to_owned(),
        })
    }

    /// The token in `bytes`, `None` when too short or not visible ASCII.
    pub fn parse(bytes: &[u8]) -> Option<Token> {
        let token = bytes.trim_ascii();
        let ok = token.len() >= MIN_TOKEN_LEN && token.iter().all(u8::is_ascii_graphic);
        ok.then(|| Token(token.to_vec()))
    }

    /// Whether `headers` carry `Authorization: Bearer <this token>`.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return false;
        };
        let value = value.as_bytes();
        let Some((scheme, presented)) = value.split_at_checked(7) else {
            return false;
        };
        scheme.eq_ignore_ascii_case(b"bearer ") && constant_time_eq(presented, &self.0)
    }
}

/// Equality whose time does not depend on where the inputs differ (only
/// on their lengths, which are not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// Middleware: 401 `{"message"}` unless the request carries the token.
pub async fn require_token(
    State(agent): State<Arc<Agent>>,
    request: Request,
    next: Next,
) -> Response {
    if agent.token.admits(request.headers()) {
        return next.run(request).await;
    }
    let mut response = ApiError::new(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (Authorization: Bearer <token>)",
    )
    .into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    fn headers(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, value.parse().expect("header value"));
        headers
    }

    #[test]
    fn admits_only_the_right_bearer_token() {
        let token = Token::parse(format!("{TOKEN}\n").as_bytes()).expect("token");
        assert!(token.admits(&headers(&format!("Bearer {TOKEN}"))));
        assert!(token.admits(&headers(&format!("bearer {TOKEN}"))));
        assert!(!token.admits(&HeaderMap::new()));
        for wrong in [
            format!("Bearer {TOKEN}x"),
            format!("Bearer {}", &TOKEN[1..]),
            format!("Bearer  {TOKEN}"),
            format!("Basic {TOKEN}"),
            format!("Bearer{TOKEN}"),
            TOKEN.to_owned(),
            "Bearer ".into(),
            "Bearer 0123456789abcdef0123456789abcdeF".into(),
        ] {
            assert!(!token.admits(&headers(&wrong)), "{wrong:?}");
        }
    }

    #[test]
    fn refuses_short_or_odd_tokens() {
        assert!(Token::parse(b"").is_none());
        assert!(Token::parse(b"  \n").is_none());
        assert!(Token::parse(b"short").is_none());
        assert!(Token::parse(b"0123456789 abcdef0123").is_none());
        assert!(Token::parse("0123456789abcdefé".as_bytes()).is_none());
        assert!(Token::parse(b"  0123456789abcdef  ").is_some());
    }

    #[test]
    fn errors_and_debug_never_show_the_token() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("token");
        std::fs::write(&path, "secret-but-short").expect("write");
        // 16 characters: usable.
        let token = Token::load(&path).expect("token");
        assert!(!format!("{token:?}").contains("secret"));
        std::fs::write(&path, "tiny-secret").expect("write");
        let err = Token::load(&path).expect_err("too short").to_string();
        assert!(!err.contains("tiny-secret"), "{err}");
        assert!(err.contains("token"), "{err}");
        let missing = Token::load(&dir.path().join("absent")).expect_err("absent");
        assert!(missing.to_string().contains("absent"), "{missing}");
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
