//! Personal access tokens: created (shown once), listed, revoked.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct PatRequest {
    name: String,
    expires_in_days: Option<u32>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PatView {
    id: String,
    name: String,
    created_at: String,
    expires_at: String,
    /// Only in the creation response: shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    token: Option<String>,
}

pub(super) async fn create_pat(
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
                created_at: rfc3339(p.created_at),
                expires_at: rfc3339(p.expires_at),
                token: None,
            })
            .collect(),
    ))
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
