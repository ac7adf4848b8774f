//! Personal access tokens: created (shown once), listed, revoked.
//!
//! Only a person can create one: the request must come with a login
//! session (never an access token: tokens do not breed tokens) and re-state
//! the account's password, checked like a login (wrong ones count towards
//! the same lockout). Each token has a scope, `read` (the default: tenant
//! tokens minted with it carry the Viewer role at most, admin endpoints
//! only read) or `full`, and a lifetime of at most
//! `ATOLL_IDENTITY_PAT_MAX_DAYS` (90 by default; also the lifetime of a
//! token created without `expiresInDays`).

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PatRequest {
    name: String,
    expires_in_days: Option<u32>,
    #[serde(default)]
    scope: Option<PatScope>,
    /// The caller's password, re-stated.
    #[serde(default)]
    password: Option<Secret>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PatView {
    id: String,
    name: String,
    scope: PatScope,
    created_at: String,
    expires_at: String,
    /// Only in the creation response: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

/// The token's name, trimmed, and its lifetime in days (`max` when unset).
pub(super) fn name_and_days(
    name: &str,
    expires_in_days: Option<u32>,
    max: u32,
) -> Result<(&str, u32), AppError> {
    let name = name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(AppError::BadRequest(
            "name must have 1 to 100 characters".into(),
        ));
    }
    let days = expires_in_days.unwrap_or(max);
    if !(1..=max).contains(&days) {
        return Err(AppError::BadRequest(format!(
            "expiresInDays must be between 1 and {max}, the longest lifetime this service allows \
             (leave it out to get {max})"
        )));
    }
    Ok((name, days))
}

pub(super) async fn create_pat(
    State(state): State<AppState>,
    Caller(caller): Caller,
    ClientIp(ip): ClientIp,
    Body(request): Body<PatRequest>,
) -> Result<(StatusCode, Json<PatView>), AppError> {
    let inner = &state.inner;
    let now = now();
    if caller.kind != CredentialKind::Session {
        inner
            .audit
            .record(
                now,
                Some(&caller.user.id),
                "access-token.create",
                None,
                Outcome::Denied,
                Some(&ip),
            )
            .await;
        return Err(AppError::Refused(
            "an access token cannot create access tokens; log in with your password".into(),
        ));
    }
    let (name, days) = name_and_days(
        &request.name,
        request.expires_in_days,
        inner.config.pat_max_days,
    )?;
    let scope = request.scope.unwrap_or(PatScope::Read);
    let Some(password) = request.password else {
        return Err(AppError::BadRequest(
            "password is required: re-state your password to create an access token".into(),
        ));
    };
    check_password_again(&state, &caller.user, &password, &ip, now).await?;
    let (token, credential) = store_pat(&state, &caller.user, name, scope, days, None, now).await?;
    Ok((
        StatusCode::CREATED,
        Json(PatView {
            id: credential.id,
            name: name.to_owned(),
            scope,
            created_at: rfc3339(now),
            expires_at: rfc3339(credential.expires_at),
            token: Some(token.expose().to_owned()),
        }),
    ))
}

/// Stores a new access token of `user` (only its hash) and audits its
/// creation (with the client's address, when known); the token, shown
/// once, and what was stored. Shared by the API and identity's pages.
pub(super) async fn store_pat(
    state: &AppState,
    user: &User,
    name: &str,
    scope: PatScope,
    days: u32,
    ip: Option<&str>,
    now: i64,
) -> Result<(Secret, NewCredential), AppError> {
    let token = sessions::new_token(PAT_PREFIX)?;
    let credential = NewCredential {
        id: uuid::Uuid::now_v7().to_string(),
        token_hash: sessions::token_hash(token.expose()),
        user_id: user.id.clone(),
        kind: CredentialKind::Pat,
        name: Some(name.to_owned()),
        scope: Some(scope),
        created_at: now,
        expires_at: now.saturating_add(i64::from(days) * 86400),
    };
    state.inner.store.insert_credential(&credential).await?;
    state
        .inner
        .audit
        .record(
            now,
            Some(&user.id),
            "access-token.create",
            Some(&credential.id),
            Outcome::Success,
            ip,
        )
        .await;
    Ok((token, credential))
}

pub(super) async fn list_pats(
    State(state): State<AppState>,
    Caller(caller): Caller,
) -> Result<Json<Vec<PatView>>, AppError> {
    let pats = state.inner.store.list_pats(&caller.user.id, now()).await?;
    Ok(Json(
        pats.into_iter()
            .map(|p| PatView {
                id: p.id,
                name: p.name,
                scope: p.scope,
                created_at: rfc3339(p.created_at),
                expires_at: rfc3339(p.expires_at),
                token: None,
            })
            .collect(),
    ))
}

/// Checks the password a request re-states, like a login would: the same
/// per-address and per-account-and-address limits, failures counted.
pub(super) async fn check_password_again(
    state: &AppState,
    user: &User,
    password: &Secret,
    ip: &str,
    now: i64,
) -> Result<(), AppError> {
    let inner = &state.inner;
    if let Err(refusal) = inner.throttle.admit(ip, &user.email, now).await? {
        let (Refusal::Locked { retry_after } | Refusal::TooManyAttempts { retry_after }) = refusal;
        return Err(AppError::TooManyRequests { retry_after });
    }
    let found = inner.store.user_credentials(&user.email).await?;
    let verified = if password.expose().len() > crate::passwords::MAX_PASSWORD_BYTES {
        Verified::Invalid
    } else {
        inner
            .passwords
            .verify(password, found.as_ref().map(|f| f.password_hash.as_str()))
            .await?
    };
    if matches!(verified, Verified::Valid { .. }) {
        return Ok(());
    }
    inner.throttle.failed(ip, &user.email, now).await?;
    inner
        .audit
        .record(
            now,
            Some(&user.id),
            "access-token.create",
            None,
            Outcome::Failure,
            Some(ip),
        )
        .await;
    Err(AppError::Refused("the password is not correct".into()))
}

pub(super) async fn revoke_pat(
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
