//! OpenID Connect: discovery and the JWKS (what standard OIDC/JWT
//! libraries read), and the provider's endpoints by concern: the
//! authorization endpoint (`authorize.rs`), the token endpoint
//! (`token.rs`), RP-initiated logout (`logout.rs`) and the back-channel
//! logout it sends (`backchannel.rs`).

use super::*;

pub(super) mod authorize;
pub(super) mod backchannel;
pub(super) mod logout;
pub(super) mod token;

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
            "authorization_endpoint": format!("{issuer}/oauth2/authorize"),
            "token_endpoint": format!("{issuer}/oauth2/token"),
            "end_session_endpoint": format!("{issuer}/oauth2/logout"),
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": ["openid", "email"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["EdDSA"],
            "backchannel_logout_supported": true,
            "backchannel_logout_session_supported": true,
            "authorization_response_iss_parameter_supported": true,
            "claims_supported": [
                "iss", "sub", "email", "aud", "tid", "tenant_uid", "cluster", "role", "iat", "exp",
                "auth_time", "nonce", "sid"
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
