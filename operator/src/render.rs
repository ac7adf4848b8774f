//! `atoll-operator render`: every object a Tenant produces, from the same
//! builders the reconciler uses, for review in a GitOps pull request.

use atoll_crds::{DatabaseMode, FieldError, Tenant};

use crate::build::{self, BuildError, DatabaseCredentials, TenantContext};
use crate::config::OperatorConfig;

/// Stands in for values only a cluster can give.
const UID_PLACEHOLDER: &str = "00000000-0000-0000-0000-000000000000";
const PASSWORD_PLACEHOLDER: &str = "generated-on-first-reconcile";
/// Stands in for the object store's credentials the operator copies.
const CREDENTIAL_PLACEHOLDER: &str = "copied-from-the-credentials-secret";

/// Why a file could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// Not YAML, or not a Tenant.
    #[error("{path}: {source}")]
    ParseYaml {
        /// The file.
        path: String,
        /// What the YAML parser said, with line and column.
        source: serde_norway::Error,
    },
    /// A field has the wrong type or an unknown value.
    #[error("{path}: {source}")]
    ParseTenant {
        /// The file.
        path: String,
        /// The field and what is wrong with it.
        source: FieldError,
    },
    /// The Tenant breaks the API's rules.
    #[error("{path}: the Tenant is invalid:\n{}", list(.errors))]
    Invalid {
        /// The file.
        path: String,
        /// Every problem.
        errors: Vec<FieldError>,
    },
    /// Not a Tenant at all.
    #[error("{path}: expected apiVersion atoll.dev/v1alpha1 and kind Tenant, found {found}")]
    NotATenant {
        /// The file.
        path: String,
        /// What the file holds.
        found: String,
    },
    /// Building failed.
    #[error("{path}: {source}")]
    Build {
        /// The file.
        path: String,
        /// Why.
        source: BuildError,
    },
    /// Printing failed.
    #[error("rendering YAML: {0}")]
    Print(#[from] serde_norway::Error),
    /// Converting failed.
    #[error("converting objects: {0}")]
    Convert(#[from] serde_json::Error),
}

fn list(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| format!("  - {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads a Tenant from YAML text, checking it as the operator would.
pub fn parse_tenant(path: &str, text: &str) -> Result<Tenant, RenderError> {
    let value: serde_json::Value =
        serde_norway::from_str(text).map_err(|source| RenderError::ParseYaml {
            path: path.to_owned(),
            source,
        })?;
    let api_version = value["apiVersion"].as_str().unwrap_or("");
    let kind = value["kind"].as_str().unwrap_or("");
    if api_version != "atoll.dev/v1alpha1" || kind != "Tenant" {
        return Err(RenderError::NotATenant {
            path: path.to_owned(),
            found: format!("apiVersion {api_version:?}, kind {kind:?}"),
        });
    }
    let tenant = atoll_crds::from_value(value).map_err(|source| RenderError::ParseTenant {
        path: path.to_owned(),
        source,
    })?;
    atoll_crds::validate(&tenant).map_err(|errors| RenderError::Invalid {
        path: path.to_owned(),
        errors,
    })?;
    Ok(tenant)
}

/// Every object the Tenant produces, as a multi-document YAML stream.
pub fn render(
    path: &str,
    mut tenant: Tenant,
    config: &OperatorConfig,
) -> Result<String, RenderError> {
    if tenant.metadata.uid.is_none() {
        tenant.metadata.uid = Some(UID_PLACEHOLDER.to_owned());
    }
    let ctx = TenantContext::new(&tenant, config).map_err(|source| RenderError::Build {
        path: path.to_owned(),
        source,
    })?;
    let credentials = match tenant.spec.database.mode {
        DatabaseMode::Dedicated => {
            DatabaseCredentials::dedicated(&ctx, PASSWORD_PLACEHOLDER.to_owned())
        }
        DatabaseMode::External => DatabaseCredentials {
            username: format!("atoll_{}", ctx.name.replace('-', "_")),
            password: PASSWORD_PLACEHOLDER.to_owned(),
            database: format!("atoll_{}", ctx.name.replace('-', "_")),
            host: "shared-server-from-admin-secret".to_owned(),
            port: 5432,
        },
    };
    // A store that cannot be resolved (no platform store in `config`)
    // renders without backups, as the operator would run the Tenant.
    let backup = build::backup_store(&ctx)
        .ok()
        .map(|store| build::BackupSetup {
            credentials: match build::credentials_source(&ctx) {
                build::CredentialsSource::Platform(None) => None,
                _ => Some(build::ObjectStoreCredentials {
                    access_key_id: CREDENTIAL_PLACEHOLDER.to_owned(),
                    secret_access_key: CREDENTIAL_PLACEHOLDER.to_owned(),
                }),
            },
            store,
            agent_token: PASSWORD_PLACEHOLDER.to_owned(),
        });
    let children = build::children_with_backup(&ctx, &credentials, backup.as_ref());
    let mut out = String::new();
    for object in children.to_values()? {
        out.push_str("---\n");
        out.push_str(&serde_norway::to_string(&object)?);
    }
    Ok(out)
}
