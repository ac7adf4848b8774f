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
use crate::config::{Config, Secret};
use crate::keys::KeyRing;
use crate::passwords::{Passwords, Verified, check_new_password};
use crate::ratelimit::{LoginThrottle, Refusal};
use crate::sessions::{self, PAT_PREFIX, SESSION_PREFIX};
use crate::store::{
    Authenticated, CredentialKind, Grant, Member, NewCredential, Registered, Store, TenantSpec,
    User,
};
use crate::users::{display_name, normalize_email};
use crate::verify::{Claims, Role};

/// Largest request body accepted (a tenant with a few thousand members).
pub const BODY_LIMIT: usize = 256 * 1024;
/// Longest personal access token lifetime.
pub const PAT_MAX_DAYS: u32 = 366;

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
    /// SHA-256 of the operators' service token.
    service_token_hash: Option<String>,
}

impl AppState {
    pub fn new(
        config: Config,
        store: Store,
        keys: Arc<KeyRing>,
        passwords: Passwords,
        audit: AuditLog,
    ) -> AppState {
        let service_token_hash = config
            .service_token
            .as_ref()
            .map(|t| sessions::token_hash(t.expose()));
        let throttle = LoginThrottle::new(store.clone(), config.login_limits);
        AppState {
            inner: Arc::new(Inner {
                config,
                store,
                keys,
                passwords,
                throttle,
                audit,
                service_token_hash,
            }),
        }
    }
}

/// The router; `serve` adds the listener. Tests call it directly.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/me", get(me))
        .route("/api/v1/me/tenants", get(my_tenants))
        .route("/api/v1/me/access-tokens", get(list_pats).post(create_pat))
        .route(
            "/api/v1/me/access-tokens/{id}",
            axum::routing::delete(revoke_pat),
        )
        .route("/api/v1/tokens", post(issue_token))
        .route(
            "/api/v1/tenants/{name}",
            put(register_tenant).delete(delete_tenant),
        )
        .route(
            "/api/v1/admin/users",
            get(admin_list_users).post(admin_create_user),
        )
        .route("/api/v1/admin/users/{id}/disable", post(admin_disable_user))
        .route("/api/v1/admin/users/{id}/enable", post(admin_enable_user))
        .route(
            "/api/v1/admin/users/{id}/password",
            put(admin_reset_password),
        )
        .route("/api/v1/admin/tenants", get(admin_list_tenants))
        .route("/api/v1/admin/audit", get(admin_audit))
        .fallback(|| async { AppError::NotFound })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::limit::RequestBodyLimitLayer::new(BODY_LIMIT))
        // Method, path, status, latency; never headers (they carry tokens).
        .layer(tower_http::trace::TraceLayer::new_for_http())
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
            AppError::Forbidden => StatusCode::FORBIDDEN,
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

/// The client address: the socket peer, or the last `X-Forwarded-For`
/// entry when configured to trust the proxy in front.
#[derive(Debug)]
pub struct ClientIp(pub String);

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if state.inner.config.trust_forwarded_for
            && let Some(ip) = parts
                .headers
                .get("x-forwarded-for")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .and_then(|v| v.trim().parse::<IpAddr>().ok())
        {
            return Ok(ClientIp(ip.to_string()));
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or_else(|| "unknown".to_owned(), |c| c.0.ip().to_string());
        Ok(ClientIp(peer))
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
            .await?;
        found.map(Caller).ok_or(AppError::Unauthorized)
    }
}

/// A caller who is a platform admin.
#[derive(Debug)]
pub struct Admin(pub Authenticated);

impl FromRequestParts<AppState> for Admin {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let Caller(caller) = Caller::from_request_parts(parts, state).await?;
        if !caller.user.is_admin {
            return Err(AppError::Forbidden);
        }
        Ok(Admin(caller))
    }
}

/// An operator presenting the service token.
#[derive(Debug)]
pub struct Operator;

impl FromRequestParts<AppState> for Operator {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let expected = state
            .inner
            .service_token_hash
            .as_deref()
            .ok_or(AppError::Unauthorized)?;
        let token = bearer(&parts.headers).ok_or(AppError::Unauthorized)?;
        if sessions::secrets_equal(sessions::token_hash(token).as_bytes(), expected.as_bytes()) {
            Ok(Operator)
        } else {
            Err(AppError::Unauthorized)
        }
    }
}

// Health and discovery.

async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state.inner.store.ping().await?;
    Ok("ok")
}

async fn discovery(State(state): State<AppState>) -> impl IntoResponse {
    let issuer = &state.inner.config.issuer;
    (
        [(CACHE_CONTROL, "public, max-age=3600")],
        Json(serde_json::json!({
            "issuer": issuer,
            "jwks_uri": format!("{issuer}{}", crate::verify::JWKS_PATH),
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "token_endpoint": format!("{issuer}/api/v1/tokens"),
            "claims_supported": ["iss", "sub", "email", "aud", "tid", "role", "iat", "exp"],
        })),
    )
}

/// How long verifiers may cache the JWKS: well under the time new keys are
/// published ahead of use.
fn jwks_max_age(state: &AppState) -> u64 {
    (state.inner.keys.policy().publish_ahead.as_secs() / 4).clamp(1, 300)
}

async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let cache = format!("public, max-age={}", jwks_max_age(&state));
    ([(CACHE_CONTROL, cache)], Json(state.inner.keys.jwks(now())))
}

// Login, logout, me.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    password: Secret,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionResponse {
    token: String,
    expires_at: String,
}

async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(request): Body<LoginRequest>,
) -> Result<Json<SessionResponse>, AppError> {
    let inner = &state.inner;
    let now = now();
    // A malformed email is just an unknown one: same answer, same work.
    let email = normalize_email(&request.email).unwrap_or_else(|_| {
        request
            .email
            .trim()
            .to_lowercase()
            .chars()
            .take(254)
            .collect()
    });
    if let Err(refusal) = inner.throttle.admit(&ip, &email, now).await? {
        let (Refusal::Locked { retry_after } | Refusal::TooManyAttempts { retry_after }) = refusal;
        inner
            .audit
            .record(now, Some(&email), "login", None, Outcome::Denied, Some(&ip))
            .await;
        return Err(AppError::TooManyRequests { retry_after });
    }
    let found = inner.store.user_credentials(&email).await?;
    let verified = if request.password.expose().len() > crate::passwords::MAX_PASSWORD_BYTES {
        Verified::Invalid
    } else {
        inner
            .passwords
            .verify(
                &request.password,
                found.as_ref().map(|f| f.password_hash.as_str()),
            )
            .await?
    };
    let user = match (verified, found) {
        (Verified::Valid { rehash }, Some(found)) if !found.user.disabled => {
            if rehash {
                let hash = inner.passwords.hash(&request.password).await?;
                inner.store.set_password_hash(&found.user.id, &hash).await?;
            }
            found.user
        }
        _ => {
            inner.throttle.failed(&email, now).await?;
            inner
                .audit
                .record(
                    now,
                    Some(&email),
                    "login",
                    None,
                    Outcome::Failure,
                    Some(&ip),
                )
                .await;
            return Err(AppError::InvalidCredentials);
        }
    };
    inner.throttle.succeeded(&email).await?;
    let token = sessions::new_token(SESSION_PREFIX)?;
    let expires_at = now.saturating_add(secs(inner.config.session_ttl));
    inner
        .store
        .insert_credential(&NewCredential {
            id: uuid::Uuid::now_v7().to_string(),
            token_hash: sessions::token_hash(token.expose()),
            user_id: user.id.clone(),
            kind: CredentialKind::Session,
            name: None,
            created_at: now,
            expires_at,
        })
        .await?;
    inner
        .audit
        .record(
            now,
            Some(&user.id),
            "login",
            None,
            Outcome::Success,
            Some(&ip),
        )
        .await;
    Ok(Json(SessionResponse {
        token: token.expose().to_owned(),
        expires_at: rfc3339(expires_at),
    }))
}

fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

async fn logout(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<StatusCode, AppError> {
    if caller.kind != CredentialKind::Session {
        return Err(AppError::BadRequest(
            "logout ends a session; revoke access tokens at /api/v1/me/access-tokens/{id}".into(),
        ));
    }
    state
        .inner
        .store
        .delete_credential(
            &caller.user.id,
            &caller.credential_id,
            CredentialKind::Session,
        )
        .await?;
    state
        .inner
        .audit
        .record(
            now(),
            Some(&caller.user.id),
            "logout",
            None,
            Outcome::Success,
            None,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct UserView {
    id: String,
    email: String,
    display_name: String,
    admin: bool,
    disabled: bool,
    created_at: String,
}

impl From<User> for UserView {
    fn from(user: User) -> Self {
        UserView {
            id: user.id,
            email: user.email,
            display_name: user.display_name,
            admin: user.is_admin,
            disabled: user.disabled,
            created_at: rfc3339(user.created_at),
        }
    }
}

async fn me(Caller(caller): Caller) -> Json<UserView> {
    Json(caller.user.into())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MyTenantView {
    name: String,
    display_name: String,
    role: Role,
    url: String,
    phase: String,
}

async fn my_tenants(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<MyTenantView>>, AppError> {
    let tenants = state.inner.store.tenants_of(&caller.user.email).await?;
    Ok(Json(
        tenants
            .into_iter()
            .map(|t| MyTenantView {
                name: t.name,
                display_name: t.display_name,
                role: t.role,
                url: t.url,
                phase: t.phase,
            })
            .collect(),
    ))
}

// Personal access tokens.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PatRequest {
    name: String,
    expires_in_days: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PatView {
    id: String,
    name: String,
    created_at: String,
    expires_at: String,
    /// Only in the creation response: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

async fn create_pat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Body(request): Body<PatRequest>,
) -> Result<(StatusCode, Json<PatView>), AppError> {
    let name = request.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(AppError::BadRequest(
            "name must have 1 to 100 characters".into(),
        ));
    }
    let days = request.expires_in_days.unwrap_or(90);
    if !(1..=PAT_MAX_DAYS).contains(&days) {
        return Err(AppError::BadRequest(format!(
            "expiresInDays must be between 1 and {PAT_MAX_DAYS}"
        )));
    }
    let now = now();
    let token = sessions::new_token(PAT_PREFIX)?;
    let credential = NewCredential {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: sessions::token_hash(token.expose()),
        user_id: caller.user.id.clone(),
        kind: CredentialKind::Pat,
        name: Some(name.to_owned()),
        created_at: now,
        expires_at: now.saturating_add(i64::from(days) * 86400),
    };
    state.inner.store.insert_credential(&credential).await?;
    state
        .inner
        .audit
        .record(
            now,
            Some(&caller.user.id),
            "access-token.create",
            Some(&credential.id),
            Outcome::Success,
            None,
        )
        .await;
    Ok((
        StatusCode::CREATED,
        Json(PatView {
            id: credential.id,
            name: name.to_owned(),
            created_at: rfc3339(now),
            expires_at: rfc3339(credential.expires_at),
            token: Some(token.expose().to_owned()),
        }),
    ))
}

async fn list_pats(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<PatView>>, AppError> {
    let pats = state.inner.store.list_pats(&caller.user.id, now()).await?;
    Ok(Json(
        pats.into_iter()
            .map(|p| PatView {
                id: p.id,
                name: p.name,
                created_at: rfc3339(p.created_at),
                expires_at: rfc3339(p.expires_at),
                token: None,
            })
            .collect(),
    ))
}

async fn revoke_pat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    let existed = state
        .inner
        .store
        .delete_credential(&caller.user.id, &id, CredentialKind::Pat)
        .await?;
    if !existed {
        return Err(AppError::NotFound);
    }
    state
        .inner
        .audit
        .record(
            now(),
            Some(&caller.user.id),
            "access-token.revoke",
            Some(&id),
            Outcome::Success,
            None,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

// Tenant tokens.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenRequest {
    tenant: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

async fn issue_token(
    State(state): State<AppState>,
    headers: HeaderMap,
    Body(request): Body<TokenRequest>,
) -> Result<Json<TokenResponse>, AppError> {
    let inner = &state.inner;
    let now = now();
    let token_hash = sessions::token_hash(user_token(&headers)?);
    // Not a member and no such tenant get the same answer.
    let tenant = if is_dns_label(&request.tenant) {
        request.tenant.as_str()
    } else {
        ""
    };
    let (user, membership) = match inner.store.token_grant(&token_hash, now, tenant).await? {
        Grant::Member { user, membership } => (user, membership),
        Grant::NotMember { user } => {
            inner
                .audit
                .record(
                    now,
                    Some(&user.id),
                    "token.issue",
                    None,
                    Outcome::Denied,
                    None,
                )
                .await;
            return Err(AppError::Forbidden);
        }
        Grant::Unauthenticated => return Err(AppError::Unauthorized),
    };
    let ttl = inner.config.token_ttl.as_secs();
    let issued_at = u64::try_from(now).unwrap_or_default();
    let claims = Claims {
        iss: inner.config.issuer.clone(),
        sub: user.id.clone(),
        email: user.email.clone(),
        aud: request.tenant.clone(),
        tid: membership.tenant_id,
        role: membership.role,
        iat: issued_at,
        exp: issued_at + ttl,
        nbf: None,
    };
    let token = inner.keys.mint(&claims, now)?;
    inner
        .audit
        .record(
            now,
            Some(&user.id),
            "token.issue",
            Some(&request.tenant),
            Outcome::Success,
            None,
        )
        .await;
    Ok(Json(TokenResponse {
        access_token: token,
        token_type: "Bearer",
        expires_in: ttl,
    }))
}

// The tenant directory (operators).

/// A DNS label: what Kubernetes allows as a Tenant name.
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantRequest {
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    url: String,
    #[serde(default)]
    phase: String,
    cluster: String,
    #[serde(default)]
    members: Vec<MemberRequest>,
}

#[derive(Deserialize)]
struct MemberRequest {
    /// `user` is the Tenant resource's name for it.
    #[serde(alias = "user")]
    email: String,
    role: Role,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TenantView {
    name: String,
    id: String,
    display_name: String,
    url: String,
    phase: String,
    cluster: String,
    members: i64,
    created_at: String,
    updated_at: String,
}

impl From<crate::store::Tenant> for TenantView {
    fn from(t: crate::store::Tenant) -> Self {
        TenantView {
            name: t.name,
            id: t.id,
            display_name: t.display_name,
            url: t.url,
            phase: t.phase,
            cluster: t.cluster,
            members: t.members,
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

fn tenant_spec(name: String, request: TenantRequest) -> Result<TenantSpec, AppError> {
    if !is_dns_label(&name) {
        return Err(AppError::BadRequest(
            "tenant name must be a DNS label (lowercase letters, digits, '-', at most 63)".into(),
        ));
    }
    let cluster = request.cluster.trim().to_owned();
    if cluster.is_empty() || cluster.len() > 253 {
        return Err(AppError::BadRequest(
            "cluster must have 1 to 253 characters".into(),
        ));
    }
    if request.url.len() > 2048 || request.phase.len() > 64 {
        return Err(AppError::BadRequest("url or phase is too long".into()));
    }
    let mut members = Vec::with_capacity(request.members.len());
    for (index, member) in request.members.into_iter().enumerate() {
        let email = normalize_email(&member.email)
            .map_err(|e| AppError::BadRequest(format!("members[{index}]: {e}")))?;
        members.push(Member {
            email,
            role: member.role,
        });
    }
    Ok(TenantSpec {
        display_name: request
            .display_name
            .as_deref()
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map_or_else(|| name.clone(), |d| d.chars().take(200).collect()),
        name,
        url: request.url,
        phase: request.phase,
        cluster,
        members,
    })
}

async fn register_tenant(
    State(state): State<AppState>,
    _operator: Operator,
    Path(name): Path<String>,
    Body(request): Body<TenantRequest>,
) -> Result<(StatusCode, Json<TenantView>), AppError> {
    let spec = tenant_spec(name, request)?;
    let now = now();
    let inner = &state.inner;
    let outcome = inner
        .store
        .register_tenant(&spec, &uuid::Uuid::now_v7().to_string(), now)
        .await?;
    let (status, action) = match outcome {
        Ok(Registered::Created) => (StatusCode::CREATED, "tenant.create"),
        Ok(Registered::Updated) => (StatusCode::OK, "tenant.update"),
        Err(_) => {
            inner
                .audit
                .record(
                    now,
                    Some(&spec.cluster),
                    "tenant.register",
                    Some(&spec.name),
                    Outcome::Denied,
                    None,
                )
                .await;
            return Err(AppError::Conflict(format!(
                "tenant {} is registered by another cluster",
                spec.name
            )));
        }
    };
    inner
        .audit
        .record(
            now,
            Some(&spec.cluster),
            action,
            Some(&spec.name),
            Outcome::Success,
            None,
        )
        .await;
    let tenant = inner
        .store
        .tenant(&spec.name)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((status, Json(tenant.into())))
}

#[derive(Deserialize)]
struct DeleteTenantQuery {
    cluster: Option<String>,
}

async fn delete_tenant(
    State(state): State<AppState>,
    _operator: Operator,
    Path(name): Path<String>,
    Query(query): Query<DeleteTenantQuery>,
) -> Result<StatusCode, AppError> {
    let inner = &state.inner;
    match inner
        .store
        .delete_tenant(&name, query.cluster.as_deref())
        .await?
    {
        Ok(existed) => {
            if existed {
                inner
                    .audit
                    .record(
                        now(),
                        query.cluster.as_deref(),
                        "tenant.delete",
                        Some(&name),
                        Outcome::Success,
                        None,
                    )
                    .await;
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Err(_) => Err(AppError::Conflict(format!(
            "tenant {name} is registered by another cluster"
        ))),
    }
}

// Admin.

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateUserRequest {
    email: String,
    password: Secret,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    admin: bool,
}

async fn admin_create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(request): Body<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), AppError> {
    let email = normalize_email(&request.email).map_err(|e| AppError::BadRequest(e.to_string()))?;
    check_new_password(request.password.expose())
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let inner = &state.inner;
    let now = now();
    let hash = inner.passwords.hash(&request.password).await?;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        display_name: display_name(request.display_name.as_deref(), &email),
        email,
        is_admin: request.admin,
        disabled: false,
        created_at: now,
    };
    let Some(user) = inner.store.create_user(&user, &hash).await? else {
        return Err(AppError::Conflict("a user with this email exists".into()));
    };
    inner
        .audit
        .record(
            now,
            Some(&admin.user.id),
            "user.create",
            Some(&user.id),
            Outcome::Success,
            None,
        )
        .await;
    Ok((StatusCode::CREATED, Json(user.into())))
}

async fn admin_list_users(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<UserView>>, AppError> {
    let users = state.inner.store.list_users().await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

async fn set_disabled(
    state: &AppState,
    admin: &Authenticated,
    id: &str,
    disabled: bool,
) -> Result<StatusCode, AppError> {
    if disabled && admin.user.id == id {
        return Err(AppError::BadRequest(
            "admins cannot disable themselves".into(),
        ));
    }
    if !state.inner.store.set_disabled(id, disabled).await? {
        return Err(AppError::NotFound);
    }
    let action = if disabled {
        "user.disable"
    } else {
        "user.enable"
    };
    state
        .inner
        .audit
        .record(
            now(),
            Some(&admin.user.id),
            action,
            Some(id),
            Outcome::Success,
            None,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn admin_disable_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    set_disabled(&state, &admin, &id, true).await
}

async fn admin_enable_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    set_disabled(&state, &admin, &id, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PasswordRequest {
    password: Secret,
}

async fn admin_reset_password(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
    Body(request): Body<PasswordRequest>,
) -> Result<StatusCode, AppError> {
    check_new_password(request.password.expose())
        .map_err(|e| AppError::BadRequest(e.to_string()))?;
    let inner = &state.inner;
    let user = inner.store.user(&id).await?.ok_or(AppError::NotFound)?;
    let hash = inner.passwords.hash(&request.password).await?;
    inner.store.set_password_hash(&id, &hash).await?;
    // A reset means the old password may be known: end its sessions, lift
    // any lockout.
    inner.store.delete_credentials_of(&id).await?;
    inner.throttle.unlock(&user.email).await?;
    inner
        .audit
        .record(
            now(),
            Some(&admin.user.id),
            "user.reset-password",
            Some(&id),
            Outcome::Success,
            None,
        )
        .await;
    Ok(StatusCode::NO_CONTENT)
}

async fn admin_list_tenants(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<TenantView>>, AppError> {
    let tenants = state.inner.store.list_tenants().await?;
    Ok(Json(tenants.into_iter().map(TenantView::from).collect()))
}

#[derive(Deserialize)]
struct AuditQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditView {
    id: i64,
    at: String,
    actor: Option<String>,
    action: String,
    subject: Option<String>,
    outcome: String,
    client_ip: Option<String>,
}

async fn admin_audit(
    State(state): State<AppState>,
    _admin: Admin,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Vec<AuditView>>, AppError> {
    let limit = query.limit.unwrap_or(100).clamp(1, 1000);
    let entries = state.inner.store.audit_log(limit, query.before).await?;
    Ok(Json(
        entries
            .into_iter()
            .map(|e| AuditView {
                id: e.id,
                at: rfc3339(e.event.at),
                actor: e.event.actor,
                action: e.event.action,
                subject: e.event.subject,
                outcome: e.event.outcome,
                client_ip: e.event.client_ip,
            })
            .collect(),
    ))
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
    fn internal_errors_answer_without_their_cause() {
        let error = AppError::internal(std::io::Error::other("password=hunter2"));
        assert_eq!(error.to_string(), "internal error");
        let response = error.into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
