//! Back-channel logout (OpenID Connect Back-Channel Logout 1.0): when an SSO
//! session ends, a logout token (JWT, header `typ` `logout+jwt`) is POSTed
//! to the back-channel logout URI of every tenant the session entered.
//! Failures are logged (tenant and reason, never the token) and do not block
//! the logout: the requests run concurrently, each with a short timeout.
//!
//! The HTTP client resolves `localhost` and `*.localhost` to loopback (RFC
//! 6761 §6.3, as browsers do), so that the sandbox's tenant URLs such as
//! `http://acme.atoll.localhost:8080` work; any other name goes to the
//! system resolver. Redirects are not followed.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::super::*;
use crate::sso_tokens::{BACKCHANNEL_LOGOUT_EVENT, LOGOUT_TOKEN_TYPE, LogoutClaims};
use crate::store::EnteredTenant;

/// How long one back-channel logout request may take.
pub const BACKCHANNEL_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a logout token is valid.
const LOGOUT_TOKEN_TTL_SECS: u64 = 120;

/// Resolves `localhost` and `*.localhost` to loopback, everything else with
/// the system resolver.
#[derive(Debug, Clone, Copy)]
pub struct LoopbackResolver;

/// Whether `host` is `localhost` or a name under it (RFC 6761 §6.3).
pub fn is_localhost_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

impl Resolve for LoopbackResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            if is_localhost_name(&host) {
                let loopback = [
                    SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                    SocketAddr::from((Ipv6Addr::LOCALHOST, 0)),
                ];
                return Ok(Box::new(loopback.into_iter()) as Addrs);
            }
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// The client back-channel logout requests go out with.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(LoopbackResolver))
        .timeout(BACKCHANNEL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

fn shared_client() -> Option<&'static reqwest::Client> {
    static CLIENT: OnceLock<Option<reqwest::Client>> = OnceLock::new();
    CLIENT
        .get_or_init(|| match http_client() {
            Ok(client) => Some(client),
            Err(error) => {
                tracing::error!(%error, "cannot build the back-channel logout HTTP client");
                None
            }
        })
        .as_ref()
}

/// Sends a logout token for session `sid` of user `sub` to each tenant;
/// returns how many accepted it (2xx).
pub(in crate::api) async fn notify(
    inner: &Inner,
    sid: &str,
    sub: &str,
    tenants: Vec<EnteredTenant>,
) -> usize {
    let Some(client) = shared_client() else {
        return 0;
    };
    let now = now();
    let issued_at = u64::try_from(now).unwrap_or_default();
    let mut requests = tokio::task::JoinSet::new();
    for tenant in tenants {
        if tenant.backchannel_logout_uri.is_empty() {
            continue;
        }
        let claims = LogoutClaims {
            iss: inner.config.issuer.clone(),
            aud: tenant.name.clone(),
            iat: issued_at,
            exp: issued_at + LOGOUT_TOKEN_TTL_SECS,
            jti: match sessions::random_token(16) {
                Ok(jti) => jti,
                Err(error) => {
                    tracing::error!(%error, "no logout token id");
                    continue;
                }
            },
            sid: Some(sid.to_owned()),
            sub: Some(sub.to_owned()),
            events: serde_json::json!({ BACKCHANNEL_LOGOUT_EVENT: {} }),
            nonce: None,
        };
        let token = match inner.keys.sign(&claims, LOGOUT_TOKEN_TYPE, now) {
            Ok(token) => token,
            Err(error) => {
                tracing::error!(tenant = %tenant.name, %error, "cannot sign a logout token");
                continue;
            }
        };
        let request = client
            .post(&tenant.backchannel_logout_uri)
            .header(
                axum::http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            // A JWS is base64url and dots: nothing to escape.
            .body(format!("logout_token={token}"));
        requests.spawn(async move { (tenant.name, request.send().await) });
    }
    let mut delivered = 0;
    while let Some(joined) = requests.join_next().await {
        match joined {
            Ok((_, Ok(response))) if response.status().is_success() => delivered += 1,
            Ok((tenant, Ok(response))) => {
                tracing::warn!(%tenant, status = %response.status(), "back-channel logout refused");
            }
            Ok((tenant, Err(error))) => {
                tracing::warn!(%tenant, error = %error.without_url(), "back-channel logout failed");
            }
            Err(error) => tracing::warn!(%error, "back-channel logout task failed"),
        }
    }
    delivered
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localhost_names_are_loopback() {
        for name in [
            "localhost",
            "acme.atoll.localhost",
            "LOCALHOST.",
            "a.localhost.",
        ] {
            assert!(is_localhost_name(name), "{name}");
        }
        for name in ["localhost.example.com", "notlocalhost", "example.com"] {
            assert!(!is_localhost_name(name), "{name}");
        }
    }
}
