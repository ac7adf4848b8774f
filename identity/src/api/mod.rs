//! The HTTP API (see DESIGN.md, "Contracts between components").
//!
//! Every handler returns `Result<_, AppError>`; an `AppError` logs internal
//! causes and answers with a fixed message that never echoes the request,
//! the database or a secret.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{
    ConnectInfo, DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State,
};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, RETRY_AFTER, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::audit::{AuditLog, Outcome};
use crate::clusters::ClusterCredentials;
use crate::config::{Config, Secret};
use crate::keys::KeyRing;
use crate::passwords::{Passwords, Verified, check_new_password};
use crate::ratelimit::{LoginThrottle, Refusal};
use crate::sessions::{self, PAT_PREFIX, SESSION_PREFIX};
use crate::store::{
    Authenticated, CredentialKind, Grant, Member, NewCredential, PatScope, Registered, Store,
    TenantSpec, User,
};
use crate::users::{display_name, normalize_email};
use crate::verify::{Claims, Role};

/// Largest request body accepted (a tenant with a few thousand members).
pub const BODY_LIMIT: usize = 256 * 1024;

/// Everything handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    store: Store,
    keys: Arc<KeyRing>,
    passwords: Passwords,
    throttle: LoginThrottle,
    audit: AuditLog,
    /// Which cluster each operator credential belongs to.
    clusters: ClusterCredentials,
}

impl AppState {
    pub fn new(
        config: Config,
        store: Store,
        keys: Arc<KeyRing>,
        passwords: Passwords,
        audit: AuditLog,
        clusters: ClusterCredentials,
    ) -> AppState {
        let throttle = LoginThrottle::new(store.clone(), config.login_limits);
        AppState {
            inner: Arc::new(Inner {
                config,
                store,
                keys,
                passwords,
                throttle,
                audit,
                clusters,
            }),
        }
    }
}

mod admin;
mod login;
mod oidc;
mod pages;
mod pats;
mod sso;
mod tenants;
mod tokens;

pub use tenants::is_dns_label;

/// The router; `serve` adds the listener. Tests call it directly.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(oidc::readyz))
        .route("/.well-known/openid-configuration", get(oidc::discovery))
        .route("/.well-known/jwks.json", get(oidc::jwks))
        .route("/oauth2/authorize", get(oidc::authorize::authorize))
        .route("/oauth2/token", post(oidc::token::token))
        .route(
            "/oauth2/logout",
            get(oidc::logout::end_session_get).post(oidc::logout::end_session_post),
        )
        .route("/", get(pages::tenants::home))
        .route("/assets/identity.css", get(pages::layout::stylesheet))
        .route(
            "/login",
            get(pages::login::show_login).post(pages::login::submit_login),
        )
        .route("/logout", post(oidc::logout::logout_form))
        .route("/tenants", get(pages::tenants::my_tenants_page))
        .route(
            "/tokens",
            get(pages::tokens::tokens_page).post(pages::tokens::create_token),
        )
        .route("/tokens/{id}/revoke", post(pages::tokens::revoke_token))
        .route(
            "/admin/users",
            get(pages::admin::users).post(pages::admin::create),
        )
        .route(
            "/admin/users/{id}/{action}",
            post(pages::admin::disable_or_enable),
        )
        .route("/admin/tenants", get(pages::admin::tenants))
        .route("/api/v1/login", post(login::login))
        .route("/api/v1/logout", post(login::logout))
        .route("/api/v1/me", get(login::me))
        .route("/api/v1/me/tenants", get(login::my_tenants))
        .route(
            "/api/v1/me/access-tokens",
            get(pats::list_pats).post(pats::create_pat),
        )
        .route(
            "/api/v1/me/access-tokens/{id}",
            axum::routing::delete(pats::revoke_pat),
        )
        .route("/api/v1/tokens", post(tokens::issue_token))
        .route(
            "/api/v1/tenants/{name}",
            put(tenants::register_tenant).delete(tenants::delete_tenant),
        )
        .route(
            "/api/v1/admin/users",
            get(admin::admin_list_users).post(admin::admin_create_user),
        )
        .route(
            "/api/v1/admin/users/{id}/disable",
            post(admin::admin_disable_user),
        )
        .route(
            "/api/v1/admin/users/{id}/enable",
            post(admin::admin_enable_user),
        )
        .route(
            "/api/v1/admin/users/{id}/password",
            put(admin::admin_reset_password),
        )
        .route("/api/v1/admin/tenants", get(admin::admin_list_tenants))
        .route("/api/v1/admin/audit", get(admin::admin_audit))
        .fallback(|| async { AppError::NotFound })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        // Method, path, status, latency; never headers (they carry tokens)
        // nor the query (an ID token hint, a return address).
        .layer(tower_http::trace::TraceLayer::new_for_http().make_span_with(sso::request_span))
        .with_state(state)
}

// Errors.

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error("unauthorized")]
    Unauthorized,
    #[error("invalid email or password")]
    InvalidCredentials,
    #[error("forbidden")]
    Forbidden,
    /// Forbidden, saying why (the reason must not echo the request).
    #[error("{0}")]
    Refused(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("too many attempts; try again later")]
    TooManyRequests { retry_after: i64 },
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl AppError {
    fn internal(error: impl std::error::Error + Send + Sync + 'static) -> AppError {
        AppError::Internal(Box::new(error))
    }
}

macro_rules! internal_from {
    ($($t:ty),*) => {$(
        impl From<$t> for AppError {
            fn from(error: $t) -> Self {
                AppError::internal(error)
            }
        }
    )*};
}
internal_from!(
    crate::store::StoreError,
    crate::passwords::PasswordError,
    crate::keys::KeyError,
    crate::sessions::RandomError
);

#[derive(Serialize)]
struct ErrorBody {
    error: String,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let status = match &self {
            AppError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AppError::Unauthorized | AppError::InvalidCredentials => StatusCode::UNAUTHORIZED,
            AppError::Forbidden | AppError::Refused(_) => StatusCode::FORBIDDEN,
            AppError::NotFound => StatusCode::NOT_FOUND,
            AppError::Conflict(_) => StatusCode::CONFLICT,
            AppError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            AppError::Internal(source) => {
                let mut chain = source.to_string();
                let mut cause = source.source();
                while let Some(next) = cause {
                    chain.push_str(": ");
                    chain.push_str(&next.to_string());
                    cause = next.source();
                }
                tracing::error!(error = %chain, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (
            status,
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response();
        match self {
            AppError::Unauthorized => {
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            AppError::TooManyRequests { retry_after } => {
                if let Ok(value) = HeaderValue::from_str(&retry_after.max(1).to_string()) {
                    response.headers_mut().insert(RETRY_AFTER, value);
                }
            }
            _ => {}
        }
        response
    }
}

/// `Json` whose rejection never echoes the body (serde messages can quote
/// the offending value, which may be a password).
#[derive(Debug)]
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(Body(value)),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(AppError::BadRequest(
                "expected a JSON body (Content-Type: application/json)".into(),
            )),
            Err(JsonRejection::BytesRejection(_)) => Err(AppError::BadRequest(
                "the request body is too large or unreadable".into(),
            )),
            Err(_) => Err(AppError::BadRequest(
                "the request body is not the JSON this endpoint expects".into(),
            )),
        }
    }
}

// Request context.

fn now() -> i64 {
    i64::try_from(crate::verify::unix_now()).unwrap_or(i64::MAX)
}

fn rfc3339(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(|_| secs.to_string(), |t| t.to_string())
}

/// The client address: the socket peer; when the peer is a trusted proxy
/// (`ATOLL_IDENTITY_TRUSTED_PROXIES`), the right-most `X-Forwarded-For`
/// entry that is not itself a trusted proxy.
#[derive(Debug)]
pub struct ClientIp(pub String);

/// The client behind `peer`, given the `X-Forwarded-For` values in order.
pub fn client_address(
    peer: IpAddr,
    forwarded_for: &[&str],
    trusted: &[crate::config::IpRange],
    trust_any: bool,
) -> IpAddr {
    let is_trusted = |ip: IpAddr| trust_any || trusted.iter().any(|r| r.contains(ip));
    if !is_trusted(peer) {
        return peer;
    }
    let mut client = peer;
    // Walk from the proxy nearest to us outwards; stop at the first hop we
    // do not trust (anything left of it may be forged by the client).
    for entry in forwarded_for.iter().rev().flat_map(|v| v.rsplit(',')) {
        let Ok(ip) = entry.trim().parse::<IpAddr>() else {
            break;
        };
        client = ip;
        if !is_trusted(ip) || trust_any {
            break;
        }
    }
    client
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let config = &state.inner.config;
        let Some(peer) = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip())
        else {
            return Ok(ClientIp("unknown".to_owned()));
        };
        let forwarded: Vec<&str> = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let client = client_address(
            peer,
            &forwarded,
            &config.trusted_proxies,
            config.trust_forwarded_for,
        );
        Ok(ClientIp(client.to_string()))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The session or access token presented; only its shape is checked here.
fn user_token(headers: &HeaderMap) -> Result<&str, AppError> {
    let token = bearer(headers).ok_or(AppError::Unauthorized)?;
    if !(token.starts_with(SESSION_PREFIX) || token.starts_with(PAT_PREFIX)) || token.len() > 200 {
        return Err(AppError::Unauthorized);
    }
    Ok(token)
}

/// A caller with a valid session or personal access token.
#[derive(Debug)]
pub struct Caller(pub Authenticated);

impl FromRequestParts<AppState> for Caller {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = user_token(&parts.headers)?;
        let found = state
            .inner
            .store
            .authenticate(&sessions::token_hash(token), now())
            .await?
            .ok_or(AppError::Unauthorized)?;
        if found.scope == Some(PatScope::Read) && !read_only_request(parts) {
            return Err(AppError::Forbidden);
        }
        Ok(Caller(found))
    }
}

/// What a `read` access token may ask for: reads, and tenant tokens (whose
/// role it caps at Viewer). It changes nothing: no revocation, no logout,
/// no admin writes.
fn read_only_request(parts: &Parts) -> bool {
    use axum::http::Method;
    matches!(parts.method, Method::GET | Method::HEAD)
        || (parts.method == Method::POST && parts.uri.path() == "/api/v1/tokens")
}

/// A caller who is a platform admin. A `read` access token may only read.
#[derive(Debug)]
pub struct Admin(pub Authenticated);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        if !caller.user.is_admin {
            return Err(AppError::Forbidden);
        }
        if caller.scope == Some(PatScope::Read) && parts.method != axum::http::Method::GET {
            return Err(AppError::Forbidden);
        }
        Ok(Admin(caller))
    }
}

/// An operator presenting its cluster's credential: the cluster is the
/// credential's, never anything the request says.
#[derive(Debug)]
pub struct Operator {
    pub cluster: String,
}

impl FromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = bearer(&parts.headers).ok_or(AppError::Unauthorized)?;
        // Session and access tokens are never cluster credentials.
        if token.starts_with(SESSION_PREFIX) || token.starts_with(PAT_PREFIX) || token.len() > 4096
        {
            return Err(AppError::Unauthorized);
        }
        let cluster = state
            .inner
            .clusters
            .cluster_of(token)
            .await
            .ok_or(AppError::Unauthorized)?;
        Ok(Operator { cluster })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_dns_labels() {
        for good in ["acme", "a", "acme-2", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good}");
        }
        for bad in [
            "",
            "-acme",
            "acme-",
            "Acme",
            "ac.me",
            "ac_me",
            &"a".repeat(64),
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    #[test]
    fn the_client_is_the_first_untrusted_hop() {
        let ranges: Vec<crate::config::IpRange> = ["10.0.0.0/8", "fd00::/8"]
            .iter()
            .map(|r| r.parse().expect("range"))
            .collect();
        let ip = |s: &str| s.parse::<IpAddr>().expect("ip");
        // From a trusted proxy: the right-most untrusted entry; what the
        // client wrote to the left of it is ignored.
        assert_eq!(
            client_address(ip("10.1.2.3"), &["1.1.1.1, 203.0.113.7"], &ranges, false),
            ip("203.0.113.7")
        );
        assert_eq!(
            client_address(
                ip("10.1.2.3"),
                &["1.1.1.1", "203.0.113.7, 10.9.9.9"],
                &ranges,
                false
            ),
            ip("203.0.113.7")
        );
        // From anyone else the header is not believed.
        assert_eq!(
            client_address(ip("198.51.100.1"), &["203.0.113.7"], &ranges, false),
            ip("198.51.100.1")
        );
        // No header, or garbage: the proxy itself.
        assert_eq!(
            client_address(ip("10.1.2.3"), &[], &ranges, false),
            ip("10.1.2.3")
        );
        assert_eq!(
            client_address(ip("10.1.2.3"), &["garbage"], &ranges, false),
            ip("10.1.2.3")
        );
        // IPv4-mapped peers match IPv4 ranges.
        assert_eq!(
            client_address(ip("::ffff:10.0.0.1"), &["203.0.113.7"], &ranges, false),
            ip("203.0.113.7")
        );
    }

    #[test]
    fn internal_errors_answer_without_their_cause() {
        let error = AppError::internal(std::io::Error::other("password=hunter2"));
        assert_eq!(error.to_string(), "internal error");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
