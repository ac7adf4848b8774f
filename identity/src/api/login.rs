//! Login, logout and the caller's own view: who they are, their tenants.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LoginRequest {
    email: String,
    password: Secret,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct SessionResponse {
    token: String,
    expires_at: String,
}

pub(super) async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Body(request): Body<LoginRequest>,
) -> Result<Json<SessionResponse>, AppError> {
    let inner = &state.inner;
    let now = now();
    let email = login_email(&request.email);
    if let Err(refusal) = inner.throttle.admit(&ip, &email, now).await? {
        let (Refusal::Locked { retry_after } | Refusal::TooManyAttempts { retry_after }) = refusal;
        inner
            .audit
            .record(now, Some(&email), "login", None, Outcome::Denied, Some(&ip))
            .await;
        return Err(AppError::TooManyRequests { retry_after });
    }
    let user = check_login(inner, &email, &request.password, &ip, now).await?;
    inner.throttle.succeeded(&ip, &email).await?;
    let (token, expires_at) = start_session(inner, &user, now).await?;
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

/// The email a login is counted and looked up under. A malformed email is
/// just an unknown one: same answer, same work.
pub(super) fn login_email(raw: &str) -> String {
    normalize_email(raw).unwrap_or_else(|_| raw.trim().to_lowercase().chars().take(254).collect())
}

/// The enabled user whose password this is (rehashing it if its cost is
/// outdated); a failure is counted towards the lockout and audited.
pub(super) async fn check_login(
    inner: &Inner,
    email: &str,
    password: &Secret,
    ip: &str,
    now: i64,
) -> Result<User, AppError> {
    let found = inner.store.user_credentials(email).await?;
    let verified = if password.expose().len() > crate::passwords::MAX_PASSWORD_BYTES {
        Verified::Invalid
    } else {
        inner
            .passwords
            .verify(password, found.as_ref().map(|f| f.password_hash.as_str()))
            .await?
    };
    match (verified, found) {
        (Verified::Valid { rehash }, Some(found)) if !found.user.disabled => {
            if rehash {
                let hash = inner.passwords.hash(password).await?;
                inner.store.set_password_hash(&found.user.id, &hash).await?;
            }
            Ok(found.user)
        }
        _ => {
            inner.throttle.failed(ip, email, now).await?;
            inner
                .audit
                .record(now, Some(email), "login", None, Outcome::Failure, Some(ip))
                .await;
            Err(AppError::InvalidCredentials)
        }
    }
}

/// A new login session for `user`: its token (shown once) and expiry.
pub(super) async fn start_session(
    inner: &Inner,
    user: &User,
    now: i64,
) -> Result<(Secret, i64), AppError> {
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
            scope: None,
            created_at: now,
            expires_at,
        })
        .await?;
    Ok((token, expires_at))
}

pub(super) fn secs(d: std::time::Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

pub(super) async fn logout(
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
pub(super) struct UserView {
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

pub(super) async fn me(Caller(caller): Caller) -> Json<UserView> {
    Json(caller.user.into())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct MyTenantView {
    name: String,
    display_name: String,
    role: Role,
    url: String,
    phase: String,
}

pub(super) async fn my_tenants(
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
