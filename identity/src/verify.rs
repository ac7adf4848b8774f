//! Offline verification of the tenant tokens identity issues.
//!
//! This module is what an instance depends on (`atoll-identity` with
//! `default-features = false`): it needs neither the database nor the HTTP
//! server. A [`Verifier`] keeps identity's public keys (the JWKS) in memory,
//! keyed by `kid`, and checks every token against them without a network
//! round trip:
//!
//! - only `EdDSA` is accepted, whatever the token header claims, so neither
//!   `alg: none` nor HMAC-with-the-public-key (algorithm confusion) can pass;
//! - a token whose `kid` is not cached triggers one JWKS refresh, at most once
//!   per [`VerifierConfig::min_refresh_interval`], so forged `kid`s cannot make
//!   the instance hammer identity;
//! - a failed refresh keeps the last good key set: instances keep working
//!   while identity is down;
//! - `iss`, `aud`, `exp` and `nbf` are checked here, with a small leeway for
//!   clock skew.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};

/// The only signature algorithm identity uses and verifiers accept.
pub const ALGORITHM: Algorithm = Algorithm::EdDSA;

/// Where identity publishes its keys, relative to the issuer URL.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// A member's role in one tenant: the Tenant API's own type, so the
/// `role` claim, identity's JSON and the CRD spell roles the same way.
pub use atoll_crds::{Role, UnknownRole};

/// The claims of a tenant token: one user, one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Identity's public URL.
    pub iss: String,
    /// The user's stable id.
    pub sub: String,
    pub email: String,
    /// The tenant name the token is for; an instance accepts only its own.
    pub aud: String,
    /// The tenant's stable id in identity's directory.
    pub tid: String,
    /// The Tenant object's Kubernetes uid, as its cluster registered it. An
    /// instance accepts only tokens carrying its own tenant's uid, so a
    /// same-named tenant of another cluster (or a deleted and re-created
    /// Tenant) cannot be entered with this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_uid: Option<String>,
    /// The cluster that registered the tenant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub role: Role,
    /// Issued at, seconds since the Unix epoch.
    pub iat: u64,
    /// Expires at, seconds since the Unix epoch.
    pub exp: u64,
    /// Not before, seconds since the Unix epoch (identity does not set it;
    /// checked when present).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Why a token was refused or the key set could not be loaded. Never carries
/// the token itself.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token uses algorithm {0}, only EdDSA is accepted")]
    DisallowedAlgorithm(String),
    #[error("the token header has no kid")]
    MissingKeyId,
    #[error("the token was signed by unknown key {kid:?}")]
    UnknownKey { kid: String },
    #[error("the token signature is invalid")]
    BadSignature,
    #[error("the token claims are malformed")]
    MalformedClaims,
    #[error("the token was issued by {found:?}, expected {expected:?}")]
    WrongIssuer { expected: String, found: String },
    #[error("the token is for tenant {found:?}, expected {expected:?}")]
    WrongAudience { expected: String, found: String },
    #[error("the token is for another tenant with the same name")]
    WrongTenantUid,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("fetching the key set from {url} failed")]
    FetchKeys {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("the key set from {url} is invalid: {reason}")]
    InvalidKeySet { url: String, reason: String },
}

/// What a [`Verifier`] expects and how it refreshes its keys.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Identity's public URL: the expected `iss`.
    pub issuer: String,
    /// This instance's tenant name: the expected `aud`.
    pub audience: String,
    /// This instance's Tenant uid: when set, the expected `tenant_uid`
    /// (a token without one is refused too).
    pub tenant_uid: Option<String>,
    /// Where the JWKS is fetched; defaults to `<issuer>/.well-known/jwks.json`.
    pub jwks_url: String,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// At most one refresh per this interval when a token names an unknown
    /// `kid`.
    pub min_refresh_interval: Duration,
    /// How often [`Verifier::spawn_refresher`] reloads the key set. Identity
    /// publishes new keys longer ahead than this.
    pub refresh_interval: Duration,
    /// Timeout of one JWKS request.
    pub http_timeout: Duration,
}

impl VerifierConfig {
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        let issuer = issuer.into();
        let jwks_url = format!("{}{JWKS_PATH}", issuer.trim_end_matches('/'));
        VerifierConfig {
            issuer,
            audience: audience.into(),
            tenant_uid: None,
            jwks_url,
            leeway: Duration::from_secs(30),
            min_refresh_interval: Duration::from_secs(30),
            refresh_interval: Duration::from_secs(300),
            http_timeout: Duration::from_secs(5),
        }
    }

    /// Also requires the token's `tenant_uid` to be `uid`.
    pub fn with_tenant_uid(mut self, uid: impl Into<String>) -> Self {
        self.tenant_uid = Some(uid.into());
        self
    }
}

/// The usable keys of a JWKS, by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, DecodingKey>,
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeySet")
            .field("kids", &self.keys.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl KeySet {
    /// Keeps the Ed25519 signing keys that have a `kid`; ignores every other
    /// key (RSA, EC, encryption keys, keys for other algorithms).
    pub fn from_jwks(jwks: &JwkSet) -> Self {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let Some(kid) = &jwk.common.key_id else {
                continue;
            };
            if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
                continue;
            }
            if matches!(jwk.common.key_algorithm, Some(alg) if alg != KeyAlgorithm::EdDSA) {
                continue;
            }
            let AlgorithmParameters::OctetKeyPair(params) = &jwk.algorithm else {
                continue;
            };
            if params.curve != EllipticCurve::Ed25519 {
                continue;
            }
            if let Ok(key) = DecodingKey::from_ed_components(&params.x) {
                keys.insert(kid.clone(), key);
            }
        }
        KeySet { keys }
    }

    /// Parses a JWKS document.
    pub fn from_json(json: &[u8]) -> Result<Self, serde_json::Error> {
        let jwks: JwkSet = serde_json::from_slice(json)?;
        Ok(Self::from_jwks(&jwks))
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn contains(&self, kid: &str) -> bool {
        self.keys.contains_key(kid)
    }

    pub(crate) fn get(&self, kid: &str) -> Option<&DecodingKey> {
        self.keys.get(kid)
    }
}

/// Verifies tenant tokens offline against a cached JWKS.
#[derive(Debug)]
pub struct Verifier {
    config: VerifierConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<KeySet>>,
    /// When the last fetch started; serialises fetches.
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
}

impl Verifier {
    /// A verifier with no keys yet; the first token (or [`Verifier::refresh`])
    /// fetches them.
    pub fn new(config: VerifierConfig) -> Self {
        Self::with_keys(config, KeySet::default())
    }

    /// A verifier seeded with a key set (it still refreshes from
    /// `jwks_url` on unknown `kid`s).
    pub fn with_keys(config: VerifierConfig, keys: KeySet) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.http_timeout)
            .build()
            .unwrap_or_default();
        Verifier {
            config,
            http,
            keys: RwLock::new(Arc::new(keys)),
            last_fetch: tokio::sync::Mutex::new(None),
        }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.config
    }

    /// The key set in use.
    pub fn keys(&self) -> Arc<KeySet> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Fetches the JWKS now and replaces the cached keys; on any failure the
    /// last good set stays. Returns the number of usable keys.
    pub async fn refresh(&self) -> Result<usize, VerifyError> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, VerifyError> {
        let url = &self.config.jwks_url;
        let fetch_error = |source| VerifyError::FetchKeys {
            url: url.clone(),
            source,
        };
        let body = self
            .http
            .get(url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(fetch_error)?
            .bytes()
            .await
            .map_err(fetch_error)?;
        let keys = KeySet::from_json(&body).map_err(|e| VerifyError::InvalidKeySet {
            url: url.clone(),
            reason: e.to_string(),
        })?;
        if keys.is_empty() {
            return Err(VerifyError::InvalidKeySet {
                url: url.clone(),
                reason: "no Ed25519 signing key with a kid".to_owned(),
            });
        }
        let count = keys.len();
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
        Ok(count)
    }

    /// Refreshes for an unknown `kid`, unless a fetch happened within
    /// `min_refresh_interval` (or another task is fetching right now: it
    /// waits for that one instead of starting its own).
    async fn refresh_for_unknown_kid(&self) {
        let mut last = self.last_fetch.lock().await;
        if last.is_some_and(|at| at.elapsed() < self.config.min_refresh_interval) {
            return;
        }
        *last = Some(Instant::now());
        if let Err(error) = self.fetch().await {
            tracing::warn!(%error, "could not refresh the identity key set; keeping the last good one");
        }
    }

    /// Verifies a token: signature with a cached key (refreshing the cache
    /// once for an unknown `kid`), then `iss`, `aud`, `exp`, `nbf`.
    pub async fn verify(&self, token: &str) -> Result<Claims, VerifyError> {
        let kid = key_id(token)?;
        if !self.keys().contains(&kid) {
            self.refresh_for_unknown_kid().await;
        }
        self.verify_cached_at(token, unix_now())
    }

    /// Checks only the signature of `token` (EdDSA, a cached key by `kid`,
    /// the cache refreshed once for an unknown `kid`) and returns its claims
    /// as `T`, unchecked: for OpenID Connect's other tokens (an `id_token`,
    /// a back-channel `logout_token`), whose claims the caller checks.
    pub async fn verify_signature<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<T, VerifyError> {
        let kid = key_id(token)?;
        if !self.keys().contains(&kid) {
            self.refresh_for_unknown_kid().await;
        }
        decode_signed(&self.keys(), token)
    }

    /// Verifies against the cached keys only, at time `now` (seconds since
    /// the Unix epoch). No network.
    pub fn verify_cached_at(&self, token: &str, now: u64) -> Result<Claims, VerifyError> {
        verify_with_keys(&self.keys(), &self.config, token, now)
    }

    /// Reloads the key set every `refresh_interval` in the background, so
    /// keys identity retires disappear and keys it publishes ahead arrive
    /// before their first token. Failures keep the last good set.
    pub fn spawn_refresher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let verifier = Arc::downgrade(self);
        let period = self.config.refresh_interval;
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            loop {
                ticker.tick().await;
                let Some(verifier) = verifier.upgrade() else {
                    return;
                };
                if let Err(error) = verifier.refresh().await {
                    tracing::warn!(%error, "could not refresh the identity key set; keeping the last good one");
                }
            }
        })
    }
}

/// The `kid` of a token whose header names EdDSA; any other algorithm is
/// refused before a key is looked up.
pub(crate) fn key_id(token: &str) -> Result<String, VerifyError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
    if header.alg != ALGORITHM {
        return Err(VerifyError::DisallowedAlgorithm(format!(
            "{:?}",
            header.alg
        )));
    }
    header.kid.ok_or(VerifyError::MissingKeyId)
}

/// Verifies `token` against `keys` at time `now`: the pure core of
/// [`Verifier`].
pub fn verify_with_keys(
    keys: &KeySet,
    config: &VerifierConfig,
    token: &str,
    now: u64,
) -> Result<Claims, VerifyError> {
    let claims: Claims = decode_signed(keys, token)?;
    check_claims(&claims, config, now)?;
    Ok(claims)
}

/// The claims of `token` as `T` once its signature is good (EdDSA, a key
/// of `keys` by `kid`); no claim is checked.
fn decode_signed<T: serde::de::DeserializeOwned>(
    keys: &KeySet,
    token: &str,
) -> Result<T, VerifyError> {
    let kid = key_id(token)?;
    let key = keys.get(&kid).ok_or(VerifyError::UnknownKey { kid })?;
    // The signature and algorithm are checked by jsonwebtoken; the claims
    // by the caller, so that the time is ours to give (and to test).
    let mut validation = Validation::new(ALGORITHM);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    Ok(jsonwebtoken::decode::<T>(token, key, &validation)
        .map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::InvalidSignature => VerifyError::BadSignature,
                ErrorKind::InvalidAlgorithm => VerifyError::DisallowedAlgorithm("mismatch".into()),
                ErrorKind::Json(_) => VerifyError::MalformedClaims,
                _ => VerifyError::Malformed,
            }
        })?
        .claims)
}

/// The claim checks: issuer, audience, expiry, not-before.
pub fn check_claims(claims: &Claims, config: &VerifierConfig, now: u64) -> Result<(), VerifyError> {
    if claims.iss != config.issuer {
        return Err(VerifyError::WrongIssuer {
            expected: config.issuer.clone(),
            found: claims.iss.clone(),
        });
    }
    if claims.aud != config.audience {
        return Err(VerifyError::WrongAudience {
            expected: config.audience.clone(),
            found: claims.aud.clone(),
        });
    }
    if let Some(expected) = &config.tenant_uid
        && claims.tenant_uid.as_ref() != Some(expected)
    {
        return Err(VerifyError::WrongTenantUid);
    }
    let leeway = config.leeway.as_secs();
    if claims.exp.saturating_add(leeway) <= now {
        return Err(VerifyError::Expired);
    }
    if claims
        .nbf
        .is_some_and(|nbf| nbf > now.saturating_add(leeway))
    {
        return Err(VerifyError::NotYetValid);
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> Claims {
        Claims {
            iss: "https://id.example".into(),
            sub: "u1".into(),
            email: "a@example.com".into(),
            aud: "acme".into(),
            tid: "t1".into(),
            tenant_uid: Some("uid-1".into()),
            cluster: Some("east".into()),
            role: Role::Editor,
            iat: 1_000,
            exp: 1_900,
            nbf: None,
        }
    }

    fn config() -> VerifierConfig {
        VerifierConfig::new("https://id.example", "acme")
    }

    #[test]
    fn jwks_url_follows_the_issuer() {
        assert_eq!(
            VerifierConfig::new("https://id.example/", "acme").jwks_url,
            "https://id.example/.well-known/jwks.json"
        );
    }

    #[test]
    fn claims_within_their_lifetime_pass() {
        assert!(check_claims(&claims(), &config(), 1_500).is_ok());
    }

    #[test]
    fn expiry_allows_the_leeway_and_no_more() {
        assert!(check_claims(&claims(), &config(), 1_929).is_ok());
        assert!(matches!(
            check_claims(&claims(), &config(), 1_930),
            Err(VerifyError::Expired)
        ));
    }

    #[test]
    fn not_before_is_checked_when_present() {
        let mut early = claims();
        early.nbf = Some(1_200);
        assert!(matches!(
            check_claims(&early, &config(), 1_100),
            Err(VerifyError::NotYetValid)
        ));
        assert!(check_claims(&early, &config(), 1_180).is_ok());
    }

    #[test]
    fn issuer_and_audience_must_match_exactly() {
        let mut other = claims();
        other.aud = "acme2".into();
        assert!(matches!(
            check_claims(&other, &config(), 1_500),
            Err(VerifyError::WrongAudience { .. })
        ));
        let mut other = claims();
        other.iss = "https://id.example/".into();
        assert!(matches!(
            check_claims(&other, &config(), 1_500),
            Err(VerifyError::WrongIssuer { .. })
        ));
    }

    #[test]
    fn tenant_uid_must_match_when_configured() {
        let pinned = config().with_tenant_uid("uid-1");
        assert!(check_claims(&claims(), &pinned, 1_500).is_ok());
        let mut other = claims();
        other.tenant_uid = Some("uid-2".into());
        assert!(matches!(
            check_claims(&other, &pinned, 1_500),
            Err(VerifyError::WrongTenantUid)
        ));
        other.tenant_uid = None;
        assert!(matches!(
            check_claims(&other, &pinned, 1_500),
            Err(VerifyError::WrongTenantUid)
        ));
        // Without a pinned uid only the name (aud) is checked.
        assert!(check_claims(&other, &config(), 1_500).is_ok());
    }

    #[test]
    fn key_sets_ignore_unusable_keys() {
        let jwks = br#"{"keys":[
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"good","alg":"EdDSA","use":"sig"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"enc","use":"enc"},
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac","alg":"HS256"}
        ]}"#;
        let keys = KeySet::from_json(jwks).expect("valid JWKS");
        assert_eq!(keys.len(), 1);
        assert!(keys.contains("good"));
    }
}
