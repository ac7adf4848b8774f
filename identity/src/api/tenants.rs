//! The tenant directory, pushed by operators with the service token.

use super::*;

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
pub(super) struct TenantRequest {
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
pub(super) struct MemberRequest {
    /// `user` is the Tenant resource's name for it.
    #[serde(alias = "user")]
    email: String,
    role: Role,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TenantView {
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

pub(super) fn tenant_spec(name: String, request: TenantRequest) -> Result<TenantSpec, AppError> {
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

pub(super) async fn register_tenant(
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
pub(super) struct DeleteTenantQuery {
    cluster: Option<String>,
}

pub(super) async fn delete_tenant(
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
