//! Tenant tokens: one JWT per tenant, for members only.

use super::*;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenRequest {
    tenant: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TokenResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

pub(super) async fn issue_token(
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
        Grant::Member {
            user,
            mut membership,
            scope,
        } => {
            // A read-only access token mints read-only tenant tokens.
            if scope == Some(PatScope::Read) {
                membership.role = Role::Viewer;
            }
            (user, membership)
        }
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
    let claims = tenant_claims(inner, &user, &request.tenant, membership, now);
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

/// The claims of `user`'s tenant token for `tenant`: what `/api/v1/tokens`
/// and the OpenID token endpoint both mint.
pub(super) fn tenant_claims(
    inner: &Inner,
    user: &User,
    tenant: &str,
    membership: crate::store::Membership,
    now: i64,
) -> Claims {
    let issued_at = u64::try_from(now).unwrap_or_default();
    Claims {
        iss: inner.config.issuer.clone(),
        sub: user.id.clone(),
        email: user.email.clone(),
        aud: tenant.to_owned(),
        tid: membership.tenant_id,
        tenant_uid: Some(membership.tenant_uid).filter(|u| !u.is_empty()),
        cluster: Some(membership.cluster).filter(|c| !c.is_empty()),
        role: membership.role,
        iat: issued_at,
        exp: issued_at + inner.config.token_ttl.as_secs(),
        nbf: None,
    }
}
