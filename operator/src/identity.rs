//! The operator's side of the identity contract: register a tenant (URL,
//! its sign-in URIs, display name, phase, uid, members) and remove it. Idempotent PUT and
//! DELETE with this cluster's own credential, from which identity derives
//! the cluster: one cluster can neither change nor remove another's tenant.

use std::time::Duration;

use atoll_crds::{Role, Tenant};
use serde::Serialize;

/// Why identity did not take the tenant.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Identity could not be reached.
    #[error("identity is unreachable: {0}")]
    Unreachable(String),
    /// Another cluster owns the name.
    #[error("another cluster has registered a tenant named {0}")]
    NameConflict(String),
    /// Identity answered with an error status.
    #[error("identity answered {status} to {action}")]
    Refused {
        /// What we asked.
        action: &'static str,
        /// HTTP status.
        status: u16,
    },
}

/// A member as identity stores it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct MemberRecord {
    /// E-mail address.
    pub email: String,
    /// Admin, Editor or Viewer: the Tenant API's role, sent by its name.
    pub role: Role,
}

/// The tenant record pushed to identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantRecord {
    /// Display name.
    pub display_name: String,
    /// Where the instance answers.
    pub url: String,
    /// The tenant's one OpenID Connect redirect URI: exactly
    /// `<url>/auth/callback` (identity compares it by string equality).
    pub redirect_uri: String,
    /// Where identity posts back-channel logout tokens: exactly
    /// `<url>/auth/backchannel-logout`.
    pub backchannel_logout_uri: String,
    /// Lifecycle phase.
    pub phase: String,
    /// Which cluster registers it. Identity takes the cluster from the
    /// operator's credential and refuses a record naming another one.
    pub cluster: String,
    /// The Tenant's Kubernetes uid: tokens for this tenant carry it, and its
    /// instance accepts no token without it.
    pub uid: String,
    /// Who may enter, with which role.
    pub members: Vec<MemberRecord>,
}

impl TenantRecord {
    /// The record for a Tenant in the given phase.
    pub fn new(tenant: &Tenant, url: &str, phase: &str, cluster: &str) -> Self {
        let name = tenant.metadata.name.clone().unwrap_or_default();
        let base = url.trim_end_matches('/');
        Self {
            display_name: tenant.spec.display_name.clone().unwrap_or(name),
            url: url.to_owned(),
            redirect_uri: format!("{base}/auth/callback"),
            backchannel_logout_uri: format!("{base}/auth/backchannel-logout"),
            phase: phase.to_owned(),
            cluster: cluster.to_owned(),
            uid: tenant.metadata.uid.clone().unwrap_or_default(),
            members: tenant
                .spec
                .members
                .iter()
                .map(|m| MemberRecord {
                    email: m.user.clone(),
                    role: m.role,
                })
                .collect(),
        }
    }
}

/// HTTP client for identity's tenant directory.
#[derive(Clone)]
pub struct IdentityClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for IdentityClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl IdentityClient {
    /// A client for identity at `base` (its public URL), presenting `token`.
    pub fn new(base: &str, token: String) -> Result<Self, IdentityError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(3))
            .build()
            .map_err(|e| IdentityError::Unreachable(e.to_string()))?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_owned(),
            token,
        })
    }

    fn url(&self, name: &str) -> String {
        format!("{}/api/v1/tenants/{name}", self.base)
    }

    /// Creates or updates the tenant's record.
    pub async fn register(&self, name: &str, record: &TenantRecord) -> Result<(), IdentityError> {
        let response = self
            .http
            .put(self.url(name))
            .bearer_auth(&self.token)
            .json(record)
            .send()
            .await
            .map_err(|e| IdentityError::Unreachable(without_url(&e)))?;
        match response.status().as_u16() {
            200..=299 => Ok(()),
            409 => Err(IdentityError::NameConflict(name.to_owned())),
            status => Err(IdentityError::Refused {
                action: "the tenant registration",
                status,
            }),
        }
    }

    /// Removes the tenant's record; a record that is already gone is fine.
    pub async fn deregister(&self, name: &str) -> Result<(), IdentityError> {
        let response = self
            .http
            .delete(self.url(name))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| IdentityError::Unreachable(without_url(&e)))?;
        match response.status().as_u16() {
            200..=299 | 404 => Ok(()),
            status => Err(IdentityError::Refused {
                action: "the tenant removal",
                status,
            }),
        }
    }
}

/// reqwest's errors are safe (no headers), but keep messages short and stable.
fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use atoll_crds::{Member, TenantSpec};

    #[test]
    fn members_are_sent_with_the_role_by_name() {
        let tenant = Tenant::new(
            "acme",
            TenantSpec {
                members: vec![Member {
                    user: "alice@acme.com".into(),
                    role: Role::Editor,
                }],
                ..TenantSpec::default()
            },
        );
        let record = TenantRecord::new(&tenant, "https://acme.example", "Ready", "eu-1");
        assert_eq!(
            serde_json::to_value(&record.members).ok(),
            Some(serde_json::json!([{"email": "alice@acme.com", "role": "Editor"}]))
        );
    }

    #[test]
    fn the_sign_in_uris_are_exactly_the_tenant_urls_own() {
        let tenant = Tenant::new("acme", TenantSpec::default());
        for url in ["https://acme.example", "https://acme.example/"] {
            let record = TenantRecord::new(&tenant, url, "Ready", "eu-1");
            let json = serde_json::to_value(&record).unwrap_or_default();
            assert_eq!(json["redirectUri"], "https://acme.example/auth/callback");
            assert_eq!(
                json["backchannelLogoutUri"],
                "https://acme.example/auth/backchannel-logout"
            );
        }
    }
}
