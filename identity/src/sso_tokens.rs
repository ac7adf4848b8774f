//! The single sign-on tokens identity signs besides tenant tokens: ID tokens
//! (OpenID Connect Core 1.0) and back-channel logout tokens (OpenID Connect
//! Back-Channel Logout 1.0), and their offline verification against the same
//! key set as tenant tokens ([`crate::verify::KeySet`]). Without the
//! `server` feature, for relying parties.
//!
//! The JWS header's `typ` tells them apart: `JWT` for ID tokens,
//! `logout+jwt` for logout tokens, so that neither can pass for the other.

use jsonwebtoken::Validation;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::verify::{ALGORITHM, KeySet, VerifyError, key_id};

/// The `events` member a logout token must carry.
pub const BACKCHANNEL_LOGOUT_EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// The JWS `typ` of logout tokens.
pub const LOGOUT_TOKEN_TYPE: &str = "logout+jwt";

/// How far a logout token's `iat` may lie from the verifier's clock.
pub const LOGOUT_TOKEN_MAX_AGE_SECS: u64 = 300;

/// An ID token's claims.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdClaims {
    pub iss: String,
    /// The user's id.
    pub sub: String,
    /// The client: the tenant name.
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    /// When the person logged in at identity.
    pub auth_time: u64,
    /// The relying party's nonce, echoed.
    pub nonce: String,
    /// The SSO session's id (never its cookie value).
    pub sid: String,
    pub email: String,
}

/// A back-channel logout token's claims.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogoutClaims {
    pub iss: String,
    /// The client: the tenant name.
    pub aud: String,
    pub iat: u64,
    pub exp: u64,
    /// Unique per token: relying parties refuse one seen before.
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    pub events: serde_json::Value,
    /// Never set; a token carrying one is refused (it could be an ID token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
}

/// Why an ID or logout token was refused. Never carries the token.
#[derive(Debug, thiserror::Error)]
pub enum SsoTokenError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("the token's type is not {expected}")]
    WrongType { expected: &'static str },
    #[error("the token's nonce is not the one sent")]
    WrongNonce,
    #[error("the token was issued too far from now")]
    Stale,
    #[error("the token is not a back-channel logout token (events, sid/sub or nonce)")]
    NotALogoutToken,
}

/// Checks the signature (EdDSA only, key by `kid`) and the header `typ`,
/// and decodes the claims; no claim is checked.
pub fn decode_signed<T: DeserializeOwned>(
    keys: &KeySet,
    token: &str,
    typ: &'static str,
) -> Result<T, SsoTokenError> {
    let kid = key_id(token)?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
    if !header
        .typ
        .as_deref()
        .is_some_and(|t| t.eq_ignore_ascii_case(typ))
    {
        return Err(SsoTokenError::WrongType { expected: typ });
    }
    let key = keys.get(&kid).ok_or(VerifyError::UnknownKey { kid })?;
    let mut validation = Validation::new(ALGORITHM);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<T>(token, key, &validation).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::InvalidSignature => VerifyError::BadSignature,
            ErrorKind::Json(_) => VerifyError::MalformedClaims,
            _ => VerifyError::Malformed,
        }
    })?;
    Ok(data.claims)
}

fn check_issuer_audience(
    iss: &str,
    aud: &str,
    issuer: &str,
    client_id: &str,
) -> Result<(), SsoTokenError> {
    if iss != issuer {
        return Err(VerifyError::WrongIssuer {
            expected: issuer.to_owned(),
            found: iss.to_owned(),
        }
        .into());
    }
    if aud != client_id {
        return Err(VerifyError::WrongAudience {
            expected: client_id.to_owned(),
            found: aud.to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Verifies an ID token for `client_id`: signature, `typ`, issuer,
/// audience, expiry (with `leeway_secs`) and the nonce the client sent.
pub fn verify_id_token(
    keys: &KeySet,
    issuer: &str,
    client_id: &str,
    nonce: &str,
    token: &str,
    now: u64,
    leeway_secs: u64,
) -> Result<IdClaims, SsoTokenError> {
    let claims: IdClaims = decode_signed(keys, token, "JWT")?;
    check_issuer_audience(&claims.iss, &claims.aud, issuer, client_id)?;
    if claims.exp.saturating_add(leeway_secs) <= now {
        return Err(VerifyError::Expired.into());
    }
    let same = claims.nonce.len() == nonce.len()
        && claims
            .nonce
            .bytes()
            .zip(nonce.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(SsoTokenError::WrongNonce);
    }
    Ok(claims)
}

/// Verifies a back-channel logout token for `client_id`: signature, `typ`
/// `logout+jwt`, issuer, audience, `iat` within
/// [`LOGOUT_TOKEN_MAX_AGE_SECS`] of `now` and not expired, the logout event,
/// `sid` or `sub`, and no `nonce`. Whether its `jti` was seen before is the caller's check.
pub fn verify_logout_token(
    keys: &KeySet,
    issuer: &str,
    client_id: &str,
    token: &str,
    now: u64,
) -> Result<LogoutClaims, SsoTokenError> {
    let claims: LogoutClaims = decode_signed(keys, token, LOGOUT_TOKEN_TYPE)?;
    check_issuer_audience(&claims.iss, &claims.aud, issuer, client_id)?;
    if claims.iat.abs_diff(now) > LOGOUT_TOKEN_MAX_AGE_SECS {
        return Err(SsoTokenError::Stale);
    }
    if claims.exp <= now {
        return Err(VerifyError::Expired.into());
    }
    let has_event = claims
        .events
        .get(BACKCHANNEL_LOGOUT_EVENT)
        .is_some_and(serde_json::Value::is_object);
    if !has_event
        || claims.nonce.is_some()
        || (claims.sid.is_none() && claims.sub.is_none())
        || claims.jti.is_empty()
    {
        return Err(SsoTokenError::NotALogoutToken);
    }
    Ok(claims)
}
