//! Bearer-token authentication, verified offline against identity's JWKS.
//!
//! Kept small and behind [`Verifier`] so identity's own verification module
//! can replace it. Keys come from the issuer's OIDC discovery document and
//! are cached by `kid`; an unknown `kid` triggers a refresh (at most one per
//! [`REFRESH_INTERVAL`]), and the last good key set is kept while identity
//! cannot be reached. Only EdDSA, ES256 and RS256 are accepted, and a key is
//! only ever used with its own algorithm.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::{Mutex, RwLock};

/// Minimum time between two JWKS fetches triggered by unknown `kid`s.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Editor,
    Admin,
}

impl Role {
    pub fn parse(name: &str) -> Option<Role> {
        match name {
            "Viewer" => Some(Role::Viewer),
            "Editor" => Some(Role::Editor),
            "Admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

/// Why a token was refused. Callers answer 401 alike for every case, so a
/// token for another tenant looks exactly like an invalid one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token refused: {0}")]
    Invalid(&'static str),
    #[error("no signing keys available from identity")]
    KeysUnavailable,
}

type VerifyFuture<'a> = Pin<Box<dyn Future<Output = Result<Principal, AuthError>> + Send + 'a>>;

/// Turns a bearer token into a principal.
pub trait Verifier: Send + Sync + std::fmt::Debug {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a>;
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    role: String,
}

#[derive(Debug, Deserialize)]
struct Discovery {
    jwks_uri: String,
}

#[derive(Clone)]
struct Key {
    key: DecodingKey,
    algorithm: Algorithm,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("algorithm", &self.algorithm)
            .finish()
    }
}

/// Verifies identity-issued JWTs for one tenant.
#[derive(Debug)]
pub struct JwksVerifier {
    issuer: String,
    audience: String,
    http: reqwest::Client,
    keys: RwLock<HashMap<String, Key>>,
    last_fetch: Mutex<Option<Instant>>,
}

impl JwksVerifier {
    pub fn new(issuer: &str, tenant: &str) -> Arc<JwksVerifier> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default();
        Arc::new(JwksVerifier {
            issuer: issuer.trim_end_matches('/').to_owned(),
            audience: tenant.to_owned(),
            http,
            keys: RwLock::new(HashMap::new()),
            last_fetch: Mutex::new(None),
        })
    }

    /// Fetches the key set now; failures keep the current set. Concurrent
    /// callers wait for the fetch in flight instead of starting another.
    pub async fn refresh(&self) -> Result<usize, String> {
        let mut last = self.last_fetch.lock().await;
        *last = Some(Instant::now());
        self.fetch().await
    }

    async fn fetch(&self) -> Result<usize, String> {
        let discovery_url = format!("{}/.well-known/openid-configuration", self.issuer);
        let discovery: Discovery = self
            .http
            .get(&discovery_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("OIDC discovery failed: {e}"))?
            .json()
            .await
            .map_err(|e| format!("OIDC discovery is not valid: {e}"))?;
        let set: JwkSet = self
            .http
            .get(&discovery.jwks_uri)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| format!("JWKS fetch failed: {e}"))?
            .json()
            .await
            .map_err(|e| format!("JWKS is not valid: {e}"))?;
        let keys: HashMap<String, Key> = set
            .keys
            .iter()
            .filter_map(|jwk| Some((jwk.common.key_id.clone()?, usable_key(jwk)?)))
            .collect();
        if keys.is_empty() {
            return Err("JWKS holds no usable key".into());
        }
        let count = keys.len();
        *self.keys.write().await = keys;
        Ok(count)
    }

    async fn key(&self, kid: &str) -> Option<Key> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Some(key.clone());
        }
        // Held across the fetch: a refresh in flight is waited for, not repeated.
        let mut last = self.last_fetch.lock().await;
        if let Some(key) = self.keys.read().await.get(kid) {
            return Some(key.clone());
        }
        if last.is_none_or(|at| at.elapsed() >= REFRESH_INTERVAL) {
            *last = Some(Instant::now());
            if let Err(err) = self.fetch().await {
                tracing::warn!(error = %err, "refreshing identity keys failed; keeping the last good set");
            }
        }
        self.keys.read().await.get(kid).cloned()
    }

    async fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| AuthError::Invalid("malformed token"))?;
        if !matches!(
            header.alg,
            Algorithm::EdDSA | Algorithm::ES256 | Algorithm::RS256
        ) {
            return Err(AuthError::Invalid("algorithm not allowed"));
        }
        let kid = header.kid.ok_or(AuthError::Invalid("no key id"))?;
        let key = match self.key(&kid).await {
            Some(key) => key,
            None if self.keys.read().await.is_empty() => return Err(AuthError::KeysUnavailable),
            None => return Err(AuthError::Invalid("unknown key id")),
        };
        if key.algorithm != header.alg {
            return Err(AuthError::Invalid("algorithm does not match the key"));
        }
        let mut validation = Validation::new(key.algorithm);
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = 30;
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &validation)
            .map_err(|_| AuthError::Invalid("signature or claims not valid"))?;
        let role = Role::parse(&data.claims.role).ok_or(AuthError::Invalid("unknown role"))?;
        Ok(Principal {
            subject: data.claims.sub,
            role,
        })
    }
}

/// The algorithm a JWK is for, from its own parameters; symmetric keys and
/// curves outside the allow-list are dropped.
fn usable_key(jwk: &Jwk) -> Option<Key> {
    let algorithm = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(_) => Algorithm::EdDSA,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    if let Some(declared) = &jwk.common.key_algorithm
        && format!("{declared:?}") != format!("{algorithm:?}")
    {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(Key { key, algorithm })
}

impl Verifier for JwksVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.verify_token(token))
    }
}
