//! The object store holding the source's backups: `spec.restore.objectStore`
//! (credentials from a Secret in the new tenant's namespace) or the
//! platform's (credentials from the operator's Secret), and the settings
//! the operator opens it with (under the NEW tenant's uid, where
//! `restore.json` is written). Pure.

use atoll_backup::settings::{Credentials, Settings};

use crate::build::{
    BackupStore, CredentialsSource, ObjectStoreCredentials, TenantContext, store_named,
};

/// The store of the source's backups; `Err` says why there is none.
pub fn restore_store(ctx: &TenantContext<'_>) -> Result<BackupStore, String> {
    let own = ctx.tenant.spec.restore.as_ref();
    store_named(
        ctx,
        own.and_then(|r| r.object_store.as_ref()),
        "spec.restore",
    )
}

/// Where the credentials of [`restore_store`] come from.
pub fn restore_credentials_source(ctx: &TenantContext<'_>) -> CredentialsSource {
    match ctx
        .tenant
        .spec
        .restore
        .as_ref()
        .and_then(|r| r.object_store.as_ref())
    {
        Some(own) => CredentialsSource::Tenant(own.credentials_secret_ref.name.clone()),
        None => CredentialsSource::Platform(ctx.config.backup.backup_credentials_secret.clone()),
    }
}

/// The settings the operator opens `store` with, as tenant `uid` (`name`).
pub fn settings(
    store: &BackupStore,
    credentials: Option<&ObjectStoreCredentials>,
    uid: &str,
    name: &str,
) -> Settings {
    Settings {
        endpoint: store.endpoint.clone(),
        bucket: store.bucket.clone(),
        region: store.region.clone(),
        path_style: store.path_style,
        prefix: store.prefix.clone(),
        allow_http: store.endpoint.starts_with("http://"),
        tenant_uid: uid.to_owned(),
        tenant_name: Some(name.to_owned()),
        credentials: credentials.map(|c| Credentials {
            access_key_id: c.access_key_id.clone(),
            secret_access_key: c.secret_access_key.clone(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OperatorConfig;
    use atoll_crds::{LocalSecretRef, ObjectStoreSpec, RestoreSpec, Tenant, TenantSpec};

    fn tenant(object_store: Option<ObjectStoreSpec>) -> Tenant {
        let mut tenant = Tenant::new(
            "copy",
            TenantSpec {
                restore: Some(RestoreSpec {
                    from: "acme".into(),
                    backup: "latest".into(),
                    target_time: None,
                    object_store,
                }),
                ..TenantSpec::default()
            },
        );
        tenant.metadata.uid = Some("0a0a0a0a-0000-4000-8000-000000000001".into());
        tenant
    }

    #[test]
    fn the_restores_own_store_or_the_platforms() {
        let mut config = OperatorConfig::default();
        let platform = tenant(None);
        let ctx = TenantContext::new(&platform, &config).expect("ctx");
        assert!(restore_store(&ctx).is_err_and(|e| e.contains("backup.objectStore.endpoint")));
        config.backup.backup_endpoint = Some("http://127.0.0.1:9000/".into());
        config.backup.backup_bucket = Some("backups".into());
        config.backup.backup_credentials_secret = Some("store".into());
        let ctx = TenantContext::new(&platform, &config).expect("ctx");
        let store = restore_store(&ctx).expect("platform store");
        assert_eq!(store.endpoint, "http://127.0.0.1:9000");
        assert_eq!(
            restore_credentials_source(&ctx),
            CredentialsSource::Platform(Some("store".into()))
        );
        let secret = ObjectStoreCredentials {
            access_key_id: "id".into(),
            secret_access_key: "sk".into(),
        };
        let settings = settings(&store, Some(&secret), "0a0a", "copy");
        assert!(settings.allow_http && settings.tenant_uid == "0a0a");
        assert!(!format!("{settings:?}").contains("sk"));

        let own = tenant(Some(ObjectStoreSpec {
            endpoint: "https://s3.example.com".into(),
            bucket: "theirs".into(),
            region: "eu-west-1".into(),
            path_style: true,
            prefix: Some("atoll".into()),
            credentials_secret_ref: LocalSecretRef {
                name: "their-store".into(),
            },
        }));
        let ctx = TenantContext::new(&own, &config).expect("ctx");
        assert_eq!(restore_store(&ctx).expect("own").bucket, "theirs");
        assert_eq!(
            restore_credentials_source(&ctx),
            CredentialsSource::Tenant("their-store".into())
        );
    }
}
