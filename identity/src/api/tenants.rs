//! The tenant directory, pushed by operators, each with its cluster's
//! credential: the cluster comes from the credential, and every write is
//! scoped to that cluster.

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
    /// Optional; when present it must be the credential's cluster.
    #[serde(default)]
    cluster: Option<String>,
    /// The Tenant object's Kubernetes `metadata.uid`.
    #[serde(default)]
    uid: Option<String>,
    /// The OpenID client's redirect URI; `<url>/auth/callback` when absent.
    #[serde(default)]
    redirect_uri: Option<String>,
    /// Where back-channel logout goes; `<url>/auth/backchannel-logout`
    /// when absent.
    #[serde(default)]
    backchannel_logout_uri: Option<String>,
    #[serde(default)]
    members: Vec<MemberRequest>,
}

/// Longest Tenant uid accepted (Kubernetes uids are 36-character UUIDs).
pub const MAX_UID_LEN: usize = 128;

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
    uid: String,
    redirect_uri: String,
    backchannel_logout_uri: String,
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
            uid: t.uid,
            redirect_uri: t.redirect_uri,
            backchannel_logout_uri: t.backchannel_logout_uri,
            members: t.members,
            created_at: rfc3339(t.created_at),
            updated_at: rfc3339(t.updated_at),
        }
    }
}

/// The registration `request` of the caller's `cluster` (from its
/// credential).
pub(super) fn tenant_spec(
    name: String,
    cluster: &str,
    request: TenantRequest,
) -> Result<TenantSpec, AppError> {
    if !is_dns_label(&name) {
        return Err(AppError::BadRequest(
            "tenant name must be a DNS label (lowercase letters, digits, '-', at most 63)".into(),
        ));
    }
    if let Some(claimed) = &request.cluster
        && claimed.trim() != cluster
    {
        return Err(AppError::BadRequest(format!(
            "cluster {:?} in the body is not the cluster of the credential presented ({cluster:?}); \
             leave it out or send the credential's cluster",
            claimed.chars().take(64).collect::<String>()
        )));
    }
    let uid = request.uid.as_deref().map(str::trim).unwrap_or_default();
    if uid.is_empty() || uid.len() > MAX_UID_LEN {
        return Err(AppError::BadRequest(format!(
            "uid (the Tenant's metadata.uid) is required, 1 to {MAX_UID_LEN} characters"
        )));
    }
    let uid = uid.to_owned();
    if request.url.len() > 2048 || request.phase.len() > 64 {
        return Err(AppError::BadRequest("url or phase is too long".into()));
    }
    let redirect_uri = client_uri("redirectUri", request.redirect_uri, || {
        crate::store::derived_redirect_uri(&request.url)
    })?;
    let backchannel_logout_uri = client_uri(
        "backchannelLogoutUri",
        request.backchannel_logout_uri,
        || crate::store::derived_backchannel_logout_uri(&request.url),
    )?;
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
        cluster: cluster.to_owned(),
        uid,
        redirect_uri,
        backchannel_logout_uri,
        members,
    })
}

/// A registered client URI as sent, or derived from the tenant URL when
/// absent. Stored exactly as given: redirect URIs are compared by exact
/// string equality, so nothing is normalised. An empty tenant URL (a
/// tenant not serving yet) derives an empty URI, which no request matches.
fn client_uri(
    field: &str,
    sent: Option<String>,
    derive: impl FnOnce() -> String,
) -> Result<String, AppError> {
    let Some(uri) = sent.filter(|u| !u.is_empty()) else {
        let derived = derive();
        return Ok(if derived.starts_with('/') {
            String::new()
        } else {
            derived
        });
    };
    let shaped = (uri.starts_with("https://") || uri.starts_with("http://"))
        && uri.len() <= 2048
        && !uri.contains(['#', '*', ' '])
        && !uri.chars().any(char::is_control);
    if !shaped {
        return Err(AppError::BadRequest(format!(
            "{field} must be an absolute http(s) URL without wildcards or fragment, at most 2048 characters"
        )));
    }
    Ok(uri)
}

/// The audit actor of a cluster's operator.
fn actor(cluster: &str) -> String {
    format!("cluster:{cluster}")
}

pub(super) async fn register_tenant(
    State(state): State<AppState>,
    operator: Operator,
    Path(name): Path<String>,
    Body(request): Body<TenantRequest>,
) -> Result<(StatusCode, Json<TenantView>), AppError> {
    let spec = tenant_spec(name, &operator.cluster, request)?;
    let actor = actor(&operator.cluster);
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
                    Some(&actor),
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
            Some(&actor),
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

/// Deletes the caller's cluster's record. A `?cluster=` query is ignored:
/// the cluster is the credential's. A record another cluster owns is left
/// alone and answered like an absent one (404; the operator reads "already
/// gone"), and the attempt is audited.
pub(super) async fn delete_tenant(
    State(state): State<AppState>,
    operator: Operator,
    Path(name): Path<String>,
) -> Result<StatusCode, AppError> {
    let inner = &state.inner;
    let actor = actor(&operator.cluster);
    if !is_dns_label(&name) {
        return Err(AppError::NotFound);
    }
    match inner.store.delete_tenant(&name, &operator.cluster).await? {
        Ok(existed) => {
            if existed {
                inner
                    .audit
                    .record(
                        now(),
                        Some(&actor),
                        "tenant.delete",
                        Some(&name),
                        Outcome::Success,
                        None,
                    )
                    .await;
            }
            Ok(StatusCode::NO_CONTENT)
        }
        Err(_) => {
            inner
                .audit
                .record(
                    now(),
                    Some(&actor),
                    "tenant.delete",
                    Some(&name),
                    Outcome::Denied,
                    None,
                )
                .await;
            Err(AppError::NotFound)
        }
    }
}
