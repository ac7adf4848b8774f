//! An External database: the admin URL read from a labelled Secret of the
//! operator's namespace, and the tenant's database and role provisioned on
//! the shared server. Errors name the Secret and what is wrong with it,
//! never its content.

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::Api;

use super::{Context, DATABASE_ADMIN_LABEL};
use crate::build::{DatabaseCredentials, TenantContext};
use crate::external::ExternalError;

/// Why the tenant's External database is not there.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The admin Secret could not be read.
    #[error("reading {place}: {source}")]
    ReadSecret {
        /// `Secret <namespace>/<name>`.
        place: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The admin Secret does not exist.
    #[error("{place} (spec.database.external.adminSecretRef) does not exist")]
    SecretMissing {
        /// `Secret <namespace>/<name>`.
        place: String,
    },
    /// The platform admin did not mark the Secret for this use.
    #[error(
        "{place} (spec.database.external.adminSecretRef) is not labelled {DATABASE_ADMIN_LABEL}=true; only Secrets the platform admin labelled so may be used"
    )]
    SecretNotLabelled {
        /// `Secret <namespace>/<name>`.
        place: String,
    },
    /// The Secret lacks the key (or it is not text).
    #[error("{place} has no key {key:?} holding text")]
    KeyMissing {
        /// `Secret <namespace>/<name>`.
        place: String,
        /// The key asked for.
        key: String,
    },
    /// The shared server refused or failed.
    #[error(transparent)]
    Server(#[from] ExternalError),
}

/// Reads the admin URL and provisions the tenant's database on the shared
/// server, unless this process already did with the same password.
pub(super) async fn provision(
    tenant_ctx: &TenantContext<'_>,
    secret_ref: &atoll_crds::SecretKeySelector,
    password: &str,
    ctx: &Context,
) -> Result<DatabaseCredentials, DatabaseError> {
    let uid = tenant_ctx
        .tenant
        .metadata
        .uid
        .as_deref()
        .unwrap_or_default();
    if let Some(credentials) = ctx.memory.get(uid).provisioned
        && credentials.password == password
    {
        return Ok(credentials);
    }
    let admin_url = admin_url(secret_ref, ctx).await?;
    let credentials = crate::external::provision(&admin_url, tenant_ctx.name, password).await?;
    ctx.memory
        .update(uid, |m| m.provisioned = Some(credentials.clone()));
    Ok(credentials)
}

/// Drops the tenant's database and role from the shared server.
pub(super) async fn drop(
    tenant: &str,
    secret_ref: &atoll_crds::SecretKeySelector,
    ctx: &Context,
) -> Result<(), DatabaseError> {
    let url = admin_url(secret_ref, ctx).await?;
    Ok(crate::external::drop_database(&url, tenant).await?)
}

/// The admin URL from a Secret of the operator's namespace that the
/// platform admin labelled for this use.
async fn admin_url(
    secret_ref: &atoll_crds::SecretKeySelector,
    ctx: &Context,
) -> Result<String, DatabaseError> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.operator_namespace);
    let place = format!("Secret {}/{}", ctx.operator_namespace, secret_ref.name);
    let secret = match secrets.get_opt(&secret_ref.name).await {
        Ok(Some(secret)) => secret,
        Ok(None) => return Err(DatabaseError::SecretMissing { place }),
        Err(source) => return Err(DatabaseError::ReadSecret { place, source }),
    };
    // Only Secrets the platform admin marked for this purpose: a Tenant
    // must not be able to make the operator use any other secret.
    if secret
        .labels()
        .get(DATABASE_ADMIN_LABEL)
        .map(String::as_str)
        != Some("true")
    {
        return Err(DatabaseError::SecretNotLabelled { place });
    }
    secret
        .data
        .and_then(|mut data| data.remove(&secret_ref.key))
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .ok_or_else(|| DatabaseError::KeyMissing {
            place,
            key: secret_ref.key.clone(),
        })
}
