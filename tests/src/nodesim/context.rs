//! What a starting pod sees of the cluster: its Secrets and ConfigMaps
//! (from the stores, or read one by one as its node in kubelet mode), its
//! claims, the names it resolves and its service-account token.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Debug;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use kube::api::Api;
use kube::runtime::reflector;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::informers::Stores;
use super::kubelet::PodContext;
use super::rewrite::ServiceResolver;
use super::services::ServiceTable;
use super::status::post_params;
use super::{NodeSimConfig, PodInfo, env};

pub(super) struct Context<'a> {
    pub(super) namespace: String,
    pub(super) stores: &'a Stores,
    pub(super) dns: ClusterDns<'a>,
    pub(super) token: Option<Result<String, String>>,
    /// Kubelet-only mode: the pod's Secrets and ConfigMaps as the node read
    /// them (instead of the stores).
    pub(super) fetched: Option<Fetched>,
}

/// The Secrets and ConfigMaps one pod refers to, as its node may read them.
#[derive(Debug, Default)]
pub(super) struct Fetched {
    secrets: HashMap<String, Secret>,
    config_maps: HashMap<String, ConfigMap>,
}

/// The names of the Secrets and ConfigMaps a pod refers to (env, envFrom,
/// volumes, projected volumes): what the Node authorizer lets its node get.
fn referenced(pod: &Pod) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut secrets = BTreeSet::new();
    let mut config_maps = BTreeSet::new();
    let Some(spec) = pod.spec.as_ref() else {
        return (secrets, config_maps);
    };
    let containers = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten());
    for container in containers {
        for var in container.env.iter().flatten() {
            if let Some(from) = &var.value_from {
                if let Some(r) = &from.secret_key_ref {
                    secrets.insert(r.name.clone());
                }
                if let Some(r) = &from.config_map_key_ref {
                    config_maps.insert(r.name.clone());
                }
            }
        }
        for source in container.env_from.iter().flatten() {
            if let Some(r) = &source.secret_ref {
                secrets.insert(r.name.clone());
            }
            if let Some(r) = &source.config_map_ref {
                config_maps.insert(r.name.clone());
            }
        }
    }
    for volume in spec.volumes.iter().flatten() {
        if let Some(name) = volume.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.insert(name);
        }
        if let Some(cm) = &volume.config_map {
            config_maps.insert(cm.name.clone());
        }
        let projected = volume
            .projected
            .iter()
            .flat_map(|p| p.sources.iter().flatten());
        for source in projected {
            if let Some(s) = &source.secret {
                secrets.insert(s.name.clone());
            }
            if let Some(c) = &source.config_map {
                config_maps.insert(c.name.clone());
            }
        }
    }
    secrets.remove("");
    config_maps.remove("");
    (secrets, config_maps)
}

/// Reads a pod's Secrets and ConfigMaps one by one through the node's
/// client, as kubelet does; a missing one is left out (the pod waits, as
/// with kubelet's `CreateContainerConfigError`), a refusal is logged.
pub(super) async fn fetch_referenced(client: &Client, pod: &Pod) -> Fetched {
    async fn get<K>(api: Api<K>, name: &str) -> Option<K>
    where
        K: Resource + Clone + DeserializeOwned + Debug,
    {
        match api.get_opt(name).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, name, "the node could not read a pod's Secret or ConfigMap");
                None
            }
        }
    }
    let namespace = pod.namespace().unwrap_or_default();
    let (secrets, config_maps) = referenced(pod);
    let mut fetched = Fetched::default();
    for name in secrets {
        let api = Api::<Secret>::namespaced(client.clone(), &namespace);
        if let Some(secret) = get(api, &name).await {
            fetched.secrets.insert(name, secret);
        }
    }
    for name in config_maps {
        let api = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
        if let Some(cm) = get(api, &name).await {
            fetched.config_maps.insert(name, cm);
        }
    }
    fetched
}

/// The token a pod mounts, from the TokenRequest API: `None` when nodesim
/// gives pods no API access or the pod does not mount its token.
pub(super) async fn service_account_token(
    client: &Client,
    cluster: &Client,
    config: &NodeSimConfig,
    pod: &Pod,
) -> Option<Result<String, String>> {
    use k8s_openapi::api::authentication::v1::{
        BoundObjectReference, TokenRequest, TokenRequestSpec,
    };
    use k8s_openapi::api::core::v1::ServiceAccount;
    config.api_server.as_ref()?;
    let spec = pod.spec.as_ref()?;
    if spec.automount_service_account_token == Some(false) {
        return None;
    }
    let namespace = pod.namespace().unwrap_or_default();
    let account = spec
        .service_account_name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "default".to_owned());
    let api = Api::<ServiceAccount>::namespaced(client.clone(), &namespace);
    let failed = |e: &dyn std::fmt::Display| Some(Err(format!("failed to fetch token: {e}")));
    match Api::<ServiceAccount>::namespaced(cluster.clone(), &namespace)
        .get_opt(&account)
        .await
    {
        Ok(Some(found)) => {
            if spec
                .automount_service_account_token
                .or(found.automount_service_account_token)
                == Some(false)
            {
                return None;
            }
        }
        Ok(None) => return failed(&format!("serviceaccounts \"{account}\" not found")),
        Err(error) => return failed(&error),
    }
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: Vec::new(),
            // kubelet's default for projected tokens.
            expiration_seconds: Some(3607),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".to_owned()),
                kind: Some("Pod".to_owned()),
                name: Some(pod.name_any()),
                uid: pod.uid(),
            }),
        },
        ..TokenRequest::default()
    };
    match api
        .create_token_request(&account, &post_params(), &request)
        .await
    {
        Ok(answer) => match answer.status {
            Some(status) => Some(Ok(status.token)),
            None => failed(&"the TokenRequest answer has no status"),
        },
        Err(error) => failed(&error),
    }
}

/// Names to addresses: Services from the table, pods from the last pass.
pub(super) struct ClusterDns<'a> {
    pub(super) services: &'a ServiceTable,
    pub(super) pods: &'a Mutex<HashMap<(String, String), PodInfo>>,
}

impl ServiceResolver for ClusterDns<'_> {
    fn resolve(&self, namespace: &str, name: &str, explicit: bool) -> Option<Ipv4Addr> {
        self.services.resolve(namespace, name, explicit)
    }

    fn resolve_pod(&self, namespace: &str, _service: &str, pod: &str) -> Option<Ipv4Addr> {
        self.pods
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(namespace.to_owned(), pod.to_owned()))
            .and_then(|p| p.ip)
    }
}

impl env::ConfigLookup for Context<'_> {
    fn secret(&self, name: &str) -> Option<Secret> {
        if let Some(fetched) = &self.fetched {
            return fetched.secrets.get(name).cloned();
        }
        self.stores
            .secrets
            .get(&reflector::ObjectRef::new(name).within(&self.namespace))
            .map(|s| (*s).clone())
    }

    fn config_map(&self, name: &str) -> Option<ConfigMap> {
        if let Some(fetched) = &self.fetched {
            return fetched.config_maps.get(name).cloned();
        }
        self.stores
            .config_maps
            .get(&reflector::ObjectRef::new(name).within(&self.namespace))
            .map(|s| (*s).clone())
    }
}

impl PodContext for Context<'_> {
    fn pvc_exists(&self, name: &str) -> bool {
        self.stores
            .pvcs
            .get(&reflector::ObjectRef::new(name).within(&self.namespace))
            .is_some_and(|p| p.metadata.deletion_timestamp.is_none())
    }

    fn services(&self) -> &dyn ServiceResolver {
        &self.dns
    }

    fn service_account_token(&self) -> Option<&Result<String, String>> {
        self.token.as_ref()
    }
}
