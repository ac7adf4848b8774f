//! Browser sessions: the instance is the backend for its web UI's
//! frontend. A person signs in through identity (OpenID Connect, code flow
//! with PKCE); the tenant token stays here, server-side, and the browser
//! holds only a host-only HttpOnly cookie naming its session.

/// The CSRF token of the caller's browser session, left in the request's
/// extensions by authentication when the caller came with the session
/// cookie (absent for bearer tokens, which need none). Pages put it in
/// every form (`_csrf`) and scripts send it as `X-CSRF-Token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrfToken(pub String);
