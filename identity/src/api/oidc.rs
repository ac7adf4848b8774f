//! Discovery: what standard OIDC/JWT libraries read.

use super::*;

pub(super) async fn readyz(State(state): State<AppState>) -> Result<&'static str, AppError> {
    state.inner.store.ping().await?;
    Ok("ok")
}

pub(super) async fn discovery(State(state): State<AppState>) -> impl IntoResponse {
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
            "claims_supported": [
                "iss", "sub", "email", "aud", "tid", "tenant_uid", "cluster", "role", "iat", "exp"
            ],
        })),
    )
}

/// How long verifiers may cache the JWKS: well under the time new keys are
/// published ahead of use.
pub(super) fn jwks_max_age(state: &AppState) -> u64 {
    (state.inner.keys.policy().publish_ahead.as_secs() / 4).clamp(1, 300)
}

pub(super) async fn jwks(State(state): State<AppState>) -> impl IntoResponse {
    let cache = format!("public, max-age={}", jwks_max_age(&state));
    ([(CACHE_CONTROL, cache)], Json(state.inner.keys.jwks(now())))
}
