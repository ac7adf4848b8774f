//! Platform admins: users, the tenant list, the audit log.

use super::login::UserView;
use super::tenants::TenantView;
use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct CreateUserRequest {
    email: String,
    password: Secret,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    admin: bool,
}

pub(super) async fn admin_create_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Body(request): Body<CreateUserRequest>,
) -> Result<(StatusCode, Json<UserView>), AppError> {
    let user = create_user(
        &state,
        &admin.user.id,
        &request.email,
        &request.password,
        request.display_name.as_deref(),
        request.admin,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(user.into())))
}

/// Creates a user as admin `admin_id` (the API's and the admin page's).
pub(super) async fn create_user(
    state: &AppState,
    admin_id: &str,
    email: &str,
    password: &Secret,
    display: Option<&str>,
    is_admin: bool,
) -> Result<User, AppError> {
    let email = normalize_email(email).map_err(|e| AppError::BadRequest(e.to_string()))?;
    check_new_password(password.expose()).map_err(|e| AppError::BadRequest(e.to_string()))?;
    let inner = &state.inner;
    let now = now();
    let hash = inner.passwords.hash(password).await?;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        display_name: display_name(display, &email),
        email,
        is_admin,
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
            Some(admin_id),
            "user.create",
            Some(&user.id),
            Outcome::Success,
            None,
        )
        .await;
    Ok(user)
}

pub(super) async fn admin_list_users(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<UserView>>, AppError> {
    let users = state.inner.store.list_users().await?;
    Ok(Json(users.into_iter().map(UserView::from).collect()))
}

pub(super) async fn set_disabled(
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

pub(super) async fn admin_disable_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    set_disabled(&state, &admin, &id, true).await
}

pub(super) async fn admin_enable_user(
    State(state): State<AppState>,
    Admin(admin): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, AppError> {
    set_disabled(&state, &admin, &id, false).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordRequest {
    password: Secret,
}

pub(super) async fn admin_reset_password(
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

pub(super) async fn admin_list_tenants(
    State(state): State<AppState>,
    _admin: Admin,
) -> Result<Json<Vec<TenantView>>, AppError> {
    let tenants = state.inner.store.list_tenants().await?;
    Ok(Json(tenants.into_iter().map(TenantView::from).collect()))
}

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    limit: Option<i64>,
    before: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct AuditView {
    id: i64,
    at: String,
    actor: Option<String>,
    action: String,
    subject: Option<String>,
    outcome: String,
    client_ip: Option<String>,
}

pub(super) async fn admin_audit(
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
