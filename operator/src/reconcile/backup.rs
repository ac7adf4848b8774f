//! The inputs of a backed-up tenant's objects (#19): the object store's
//! credentials (the platform's Secret in the operator's namespace, or the
//! Tenant's own in its namespace) and the agent's token (the one already
//! in the `backup-agent` Secret, or a new one). A Tenant whose store
//! cannot be used is not wired for backups (its database runs without
//! archiving) and the reason is kept for its status; errors and logs name
//! Secrets and keys, never their values.

use atoll_crds::{S3_ACCESS_KEY_ID_KEY, S3_SECRET_ACCESS_KEY_KEY};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, ResourceExt};

use super::retry::retry;
use super::{Context, Error};
use crate::build::{
    self, BACKUP_AGENT_SECRET, BACKUP_AGENT_TOKEN_KEY, BackupSetup, CredentialsSource,
    FIELD_MANAGER, MANAGED_BY_LABEL, ObjectStoreCredentials, TenantContext,
};

/// What the reconciler found for a Tenant's backups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BackupWiring {
    /// No backups wanted (no `spec.backup`, or disabled).
    Off,
    /// Wired: the objects carry this.
    On(BackupSetup),
    /// Wanted but impossible for now; says why (no secret values).
    Unavailable(String),
}

impl BackupWiring {
    /// The setup to build with, if wired.
    pub fn setup(&self) -> Option<&BackupSetup> {
        match self {
            BackupWiring::On(setup) => Some(setup),
            _ => None,
        }
    }
}

/// A wired setup as remembered between reconciles, with the source of its
/// credentials: reused while the Tenant keeps that source. `Debug` shows
/// no secret.
#[derive(Clone, Debug)]
pub struct RememberedBackup {
    /// Where the credentials came from.
    pub source: CredentialsSource,
    /// What was applied.
    pub setup: BackupSetup,
}

/// The Tenant's backup wiring: read (credentials, token) unless
/// `remembered` holds them for the same credentials source.
pub(super) async fn wiring(
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
    remembered: Option<&RememberedBackup>,
) -> Result<(BackupWiring, Option<RememberedBackup>), Error> {
    if !build::backup_wanted(tenant_ctx) {
        return Ok((BackupWiring::Off, None));
    }
    let store = match build::backup_store(tenant_ctx) {
        Ok(store) => store,
        Err(reason) => return Ok((BackupWiring::Unavailable(reason), None)),
    };
    let source = build::credentials_source(tenant_ctx);
    if let Some(remembered) = remembered.filter(|r| r.source == source) {
        let setup = BackupSetup {
            store,
            ..remembered.setup.clone()
        };
        let again = RememberedBackup {
            source,
            setup: setup.clone(),
        };
        return Ok((BackupWiring::On(setup), Some(again)));
    }
    let credentials = match credentials(tenant_ctx, ctx, &source).await? {
        Ok(credentials) => credentials,
        Err(reason) => return Ok((BackupWiring::Unavailable(reason), None)),
    };
    // An External database is dumped by pods of its own: no agent.
    let agent_token = match tenant_ctx.dedicated_database() {
        true => agent_token(&ctx.client, &tenant_ctx.namespace).await?,
        false => String::new(),
    };
    let setup = BackupSetup {
        store,
        credentials,
        agent_token,
    };
    let remembered = RememberedBackup {
        source,
        setup: setup.clone(),
    };
    Ok((BackupWiring::On(setup), Some(remembered)))
}

/// The store's credentials from their source: `Ok(Err(reason))` when the
/// Secret is missing or unusable (the Tenant is told), `Err` when the API
/// failed (retried).
pub(super) async fn credentials(
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
    source: &CredentialsSource,
) -> Result<Result<Option<ObjectStoreCredentials>, String>, Error> {
    read_credentials(&tenant_ctx.namespace, ctx, source).await
}

/// The platform store's credentials (the chart value
/// `backup.objectStore.credentialsSecret`), as [`credentials`] reads them.
pub(crate) async fn platform_credentials(
    ctx: &Context,
) -> Result<Result<Option<ObjectStoreCredentials>, String>, Error> {
    let source = CredentialsSource::Platform(ctx.config.backup.backup_credentials_secret.clone());
    read_credentials("", ctx, &source).await
}

async fn read_credentials(
    tenant_namespace: &str,
    ctx: &Context,
    source: &CredentialsSource,
) -> Result<Result<Option<ObjectStoreCredentials>, String>, Error> {
    let (namespace, name, what) = match source {
        CredentialsSource::Platform(None) => return Ok(Ok(None)),
        CredentialsSource::Platform(Some(name)) => (
            ctx.operator_namespace.as_str(),
            name,
            "the chart value backup.objectStore.credentialsSecret",
        ),
        CredentialsSource::Tenant(name) => (
            tenant_namespace,
            name,
            "spec.backup.objectStore.credentialsSecretRef",
        ),
    };
    let place = format!("Secret {namespace}/{name} ({what})");
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let secret = match retry(|| secrets.get_opt(name)).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Ok(Err(format!("{place} does not exist"))),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Ok(Err(format!(
                "the operator may not read {place}; a Tenant's own object store needs the chart value backup.tenantObjectStores=true"
            )));
        }
        Err(source) => {
            return Err(Error::Read {
                what: format!("Secret {namespace}/{name}"),
                source,
            });
        }
    };
    // The operator's own Secrets (the platform store's copy, the agent's
    // token, the database credentials) are never a Tenant's store's: a
    // Tenant must not send the platform's credentials to a store it names.
    if matches!(source, CredentialsSource::Tenant(_))
        && secret.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(FIELD_MANAGER)
    {
        return Ok(Err(format!(
            "{place} is managed by the operator; name a Secret of your own"
        )));
    }
    let mut data = secret.data.unwrap_or_default();
    let mut key = |key: &str| {
        data.remove(key)
            .and_then(|bytes| String::from_utf8(bytes.0).ok())
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
            .ok_or_else(|| format!("{place} has no key {key:?} holding text"))
    };
    let pair = key(S3_ACCESS_KEY_ID_KEY).and_then(|access_key_id| {
        Ok(ObjectStoreCredentials {
            access_key_id,
            secret_access_key: key(S3_SECRET_ACCESS_KEY_KEY)?,
        })
    });
    Ok(pair.map(Some))
}

/// The agent's token: the one in the namespace's `backup-agent` Secret, or
/// a new one.
async fn agent_token(client: &Client, namespace: &str) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let existing = retry(|| secrets.get_opt(BACKUP_AGENT_SECRET))
        .await
        .map_err(|source| Error::Read {
            what: format!("Secret {namespace}/{BACKUP_AGENT_SECRET}"),
            source,
        })?;
    let stored = existing
        .and_then(|s| s.data)
        .and_then(|mut data| data.remove(BACKUP_AGENT_TOKEN_KEY))
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .filter(|token| is_token(token));
    Ok(stored.unwrap_or_else(generate_token))
}

/// 64 lower-case hex digits.
fn is_token(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// 256 random bits as 64 hex digits.
fn generate_token() -> String {
    let mut bytes = [0u8; 32];
    if getrandom::fill(&mut bytes).is_err() {
        // A guessable token would be worse than stopping here.
        panic!("the operating system's random source failed");
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_random_bits_in_hex() {
        let (a, b) = (generate_token(), generate_token());
        assert!(is_token(&a) && is_token(&b), "{}", a.len());
        assert_ne!(a, b);
        assert!(!is_token("abc"));
        assert!(!is_token(&"G".repeat(64)));
    }
}
