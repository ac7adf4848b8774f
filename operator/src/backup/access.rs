//! How the operator reaches a backed-up tenant's store and agent: the
//! store through the tenant's own `backup-object-store` Secret (the
//! settings and credentials the database pod uses, written by the Tenant
//! reconciler), the agent at the database pod's IP with the token of the
//! `backup-agent` Secret. Errors name the object, never a value.

use std::path::Path;
use std::sync::Arc;

use atoll_backup::layout::Layout;
use atoll_backup::settings::{
    ACCESS_KEY_ID_FILE, CONFIG_FILE, Credentials, SECRET_ACCESS_KEY_FILE, Settings,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::Api;
use kube::{Client, ResourceExt};
use object_store::ObjectStore;

use super::agent_client::AgentClient;
use crate::build::{
    BACKUP_AGENT_PORT, BACKUP_AGENT_SECRET, BACKUP_AGENT_TOKEN_KEY, BACKUP_OBJECT_STORE_SECRET,
    DATABASE,
};

/// A tenant's store as the operator opens it.
#[derive(Clone)]
pub struct TenantStore {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// Its layout (prefix).
    pub layout: Layout,
    /// The settings (to redact messages).
    pub settings: Arc<Settings>,
}

impl std::fmt::Debug for TenantStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantStore")
            .field("endpoint", &self.settings.endpoint)
            .field("bucket", &self.settings.bucket)
            .finish_non_exhaustive()
    }
}

impl TenantStore {
    /// The tenant's uid (its prefix in the store).
    pub fn uid(&self) -> &str {
        &self.settings.tenant_uid
    }

    /// An error's text with the credentials redacted.
    pub fn redact(&self, error: &dyn std::error::Error) -> String {
        self.settings.redact_error(error)
    }
}

async fn secret(client: &Client, namespace: &str, name: &str) -> Result<Option<Secret>, String> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {namespace}/{name}: {e}"))
}

fn text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty())
}

/// Opens the store of the tenant whose namespace is `namespace`
/// (`Ok(None)`: the Secret does not exist yet).
pub async fn open_store(client: &Client, namespace: &str) -> Result<Option<TenantStore>, String> {
    let Some(secret) = secret(client, namespace, BACKUP_OBJECT_STORE_SECRET).await? else {
        return Ok(None);
    };
    let origin = format!("Secret {namespace}/{BACKUP_OBJECT_STORE_SECRET}");
    let config =
        text(&secret, CONFIG_FILE).ok_or_else(|| format!("{origin} has no key {CONFIG_FILE}"))?;
    let credentials = match (
        text(&secret, ACCESS_KEY_ID_FILE),
        text(&secret, SECRET_ACCESS_KEY_FILE),
    ) {
        (Some(access_key_id), Some(secret_access_key)) => Some(Credentials {
            access_key_id,
            secret_access_key,
        }),
        _ => None,
    };
    let settings = Settings::from_parts(&config, credentials, Path::new(&origin))
        .map_err(|e| e.to_string())?;
    let store = atoll_backup::store::open(&settings).map_err(|e| settings.redact_error(&e))?;
    Ok(Some(TenantStore {
        store,
        layout: Layout::new(settings.prefix.as_deref()),
        settings: Arc::new(settings),
    }))
}

/// The agent of the tenant's database pod, once the pod has an IP and the
/// token exists (`Ok(None)` before).
pub async fn agent(
    client: &Client,
    http: &reqwest::Client,
    namespace: &str,
) -> Result<Option<AgentClient>, String> {
    let pod_name = format!("{DATABASE}-0");
    let pod = Api::<Pod>::namespaced(client.clone(), namespace)
        .get_opt(&pod_name)
        .await
        .map_err(|e| format!("reading Pod {namespace}/{pod_name}: {e}"))?;
    let Some(pod) = pod else {
        return Ok(None);
    };
    // The token goes only to the database StatefulSet's own pod: a pod of
    // that name made by anyone else (the tenant's task pods share the
    // namespace) while the real one is absent gets nothing.
    let set = Api::<StatefulSet>::namespaced(client.clone(), namespace)
        .get_opt(DATABASE)
        .await
        .map_err(|e| format!("reading StatefulSet {namespace}/{DATABASE}: {e}"))?;
    let owned = set.and_then(|s| s.metadata.uid).is_some_and(|uid| {
        pod.owner_references().iter().any(|o| {
            o.controller == Some(true)
                && o.kind == "StatefulSet"
                && o.name == DATABASE
                && o.uid == uid
        })
    });
    if !owned {
        return Err(format!(
            "Pod {namespace}/{pod_name} is not the database StatefulSet's: the backup agent is not asked"
        ));
    }
    let Some(ip) = pod.status.and_then(|s| s.pod_ip) else {
        return Ok(None);
    };
    let Some(secret) = secret(client, namespace, BACKUP_AGENT_SECRET).await? else {
        return Ok(None);
    };
    let token = text(&secret, BACKUP_AGENT_TOKEN_KEY).ok_or_else(|| {
        format!("Secret {namespace}/{BACKUP_AGENT_SECRET} has no key {BACKUP_AGENT_TOKEN_KEY}")
    })?;
    Ok(Some(AgentClient::new(
        http.clone(),
        &ip,
        BACKUP_AGENT_PORT,
        token,
    )))
}
