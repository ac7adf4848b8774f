//! Bearer-token authentication, verified offline with identity's own
//! verification module (`atoll_identity::verify`), behind [`Verifier`] so
//! the API can be tested with any implementation.
//!
//! One route is outside this scheme: webhooks
//! (`/api/v1/executions/webhook/{namespace}/{flowId}/{key}`) are called by
//! other systems that hold no identity token, so the trigger's `key` is the
//! credential. It is compared in constant time and every refusal answers
//! the same 404 (see `engine::webhook`); a webhook can only start the one
//! flow that declares it, with that flow's own checks on inputs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// A caller's role in the tenant: the Tenant API's own type, ordered from
/// least to most privileged.
pub use atoll_crds::Role;

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

/// Verifies identity-issued JWTs for one tenant with identity's own
/// verification module (JWKS cached by `kid`, refreshed on an unknown `kid`
/// at most once per interval, last good set kept while identity is down,
/// EdDSA only, `iss`/`aud`/`exp`/`nbf` checked).
#[derive(Debug)]
pub struct IdentityVerifier {
    inner: atoll_identity::verify::Verifier,
}

impl IdentityVerifier {
    /// A verifier trusting `issuer` for tokens whose audience is `tenant`
    /// and whose `tenant_uid` is `tenant_uid` (a token for a same-named
    /// tenant of another cluster, or of a deleted and re-created Tenant, is
    /// refused like any invalid one).
    pub fn new(issuer: &str, tenant: &str, tenant_uid: &str) -> Arc<IdentityVerifier> {
        let config =
            atoll_identity::verify::VerifierConfig::new(issuer.trim_end_matches('/'), tenant)
                .with_tenant_uid(tenant_uid);
        Arc::new(IdentityVerifier {
            inner: atoll_identity::verify::Verifier::new(config),
        })
    }

    /// Fetches the key set now; a failure keeps the current set.
    pub async fn refresh(&self) -> Result<usize, String> {
        self.inner.refresh().await.map_err(|e| e.to_string())
    }

    /// The claims of another token identity signs (an `id_token`, a
    /// back-channel `logout_token`): its signature is checked against
    /// identity's keys, its claims are the caller's to check.
    pub async fn signed_claims<T: serde::de::DeserializeOwned>(
        &self,
        token: &str,
    ) -> Result<T, AuthError> {
        use atoll_identity::verify::VerifyError;
        self.inner
            .verify_signature(token)
            .await
            .map_err(|error| match error {
                VerifyError::FetchKeys { .. }
                | VerifyError::InvalidKeySet { .. }
                | VerifyError::UnknownKey { .. }
                    if self.inner.keys().is_empty() =>
                {
                    AuthError::KeysUnavailable
                }
                _ => AuthError::Invalid("signature not valid"),
            })
    }

    async fn verify_token(&self, token: &str) -> Result<Principal, AuthError> {
        use atoll_identity::verify::VerifyError;
        let claims = self
            .inner
            .verify(token)
            .await
            .map_err(|error| match error {
                VerifyError::FetchKeys { .. } | VerifyError::InvalidKeySet { .. }
                    if self.inner.keys().is_empty() =>
                {
                    AuthError::KeysUnavailable
                }
                VerifyError::UnknownKey { .. } if self.inner.keys().is_empty() => {
                    AuthError::KeysUnavailable
                }
                VerifyError::Malformed | VerifyError::MalformedClaims => {
                    AuthError::Invalid("malformed token")
                }
                VerifyError::DisallowedAlgorithm(_) => AuthError::Invalid("algorithm not allowed"),
                VerifyError::MissingKeyId => AuthError::Invalid("no key id"),
                VerifyError::UnknownKey { .. } => AuthError::Invalid("unknown key id"),
                VerifyError::WrongIssuer { .. }
                | VerifyError::WrongAudience { .. }
                | VerifyError::WrongTenantUid => {
                    AuthError::Invalid("signature or claims not valid")
                }
                VerifyError::Expired | VerifyError::NotYetValid => {
                    AuthError::Invalid("token not valid now")
                }
                _ => AuthError::Invalid("signature or claims not valid"),
            })?;
        Ok(Principal {
            subject: claims.sub,
            role: claims.role,
        })
    }
}

impl Verifier for IdentityVerifier {
    fn verify<'a>(&'a self, token: &'a str) -> VerifyFuture<'a> {
        Box::pin(self.verify_token(token))
    }
}
