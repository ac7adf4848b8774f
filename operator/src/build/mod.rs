//! Pure builders: `fn(&TenantContext, …) -> Object`, one per object a
//! Tenant produces, one file per area (namespace, network, database,
//! instance); [`TenantContext`] holds what every builder derives from the
//! Tenant and the operator's configuration, once. No I/O: the reconciler
//! applies what [`children`] returns in [`Children::in_order`], and
//! `atoll-operator render` prints it for review.

mod backup;
mod database;
mod dump;
mod instance;
mod namespace;
mod network;
mod restore;
mod tasks;
mod wake_gate;

use std::collections::BTreeMap;

use atoll_crds::{DatabaseMode, Tenant};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, LimitRange, PersistentVolumeClaim, PodSecurityContext, ResourceQuota,
    SeccompProfile, Secret, SecurityContext, Service, ServiceAccount,
};
use k8s_openapi::api::networking::v1::{Ingress, NetworkPolicy};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::Resource;

use crate::config::OperatorConfig;

pub use backup::{
    ARCHIVE_TIMEOUT_SECONDS, BACKUP_AGENT, BACKUP_AGENT_PORT, BACKUP_AGENT_SECRET,
    BACKUP_AGENT_TOKEN_KEY, BACKUP_BINARY, BACKUP_CONFIG_DIR, BACKUP_CONFIG_FILE,
    BACKUP_IMAGE_BINARY, BACKUP_OBJECT_STORE_SECRET, BACKUP_STATUS_DIR, BackupSetup, BackupStore,
    CredentialsSource, INSTALL_BACKUP, ObjectStoreCredentials, archive_args,
    backed_up_database_stateful_set, backup_agent_secret, backup_config_json,
    backup_object_store_secret, backup_store, backup_wanted, credentials_source, store_named,
};
pub use database::{
    DATABASE, DATABASE_INIT, DATABASE_NAME, DATABASE_PORT, DATABASE_SECRET, DATABASE_USER,
    DatabaseCredentials, database_init_config_map, database_secret, database_service,
    database_stateful_set,
};
pub use dump::{
    DUMP_COMPONENT, DUMP_CONTAINER, RESTORE_DUMP_POD, TENANT_BACKUP_LABEL, dump_network_policy,
    dump_pod, dump_pod_name, dumps_wanted, restore_dump_command, restore_dump_pod,
};
pub use instance::{
    DATABASE_ANNOTATION, INSTANCE, INSTANCE_PORT, INSTANCE_SERVICE_PORT, instance_deployment,
    instance_ingress, instance_service,
};
pub use namespace::{
    limit_range, namespace, resource_quota, service_account_database, service_account_instance,
};
pub use network::{
    BACKUP_NETWORK_POLICY, DATABASE_NETWORK_POLICY, DUMP_NETWORK_POLICY, backup_network_policy,
    network_policies,
};
pub use restore::{
    RESTORE_CONFIG_DIR, RESTORE_CONTAINER, RESTORE_SECRET, ROLES_MARKER, apply_restore,
    restore_command, restore_secret,
};
pub use tasks::{
    INSTANCE_FROM_TASK_PODS, SECRETS_DIR, STORAGE_CLAIM, STORAGE_DIR, TASK_PODS_NETWORK_POLICY,
    TASK_PODS_ROLE_BINDING, runs_task_pods, storage_claim, task_pod_selector,
    task_pods_role_binding, task_resources_json,
};
pub use wake_gate::{
    ACTIVITY_ROLE_BINDING, GateEndpoints, SERVICE_NAME_LABEL, SLICE_MANAGED_BY_LABEL, Sleep,
    WAKE_GATE, activity_role_binding, gate_endpoints, shape_for_sleep, wake_gate_endpoints,
    wake_gate_service,
};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "atoll-operator";
/// Label naming the tenant an object belongs to.
pub const TENANT_LABEL: &str = "atoll.dev/tenant";
/// Label naming the part of a tenant an object is (instance, database).
pub const COMPONENT_LABEL: &str = "app.kubernetes.io/component";
/// Label marking objects the operator manages (used to prune).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";

/// Why objects could not be built for a Tenant.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BuildError {
    /// The Tenant has no name (it was never stored by an API server).
    #[error("the Tenant has no metadata.name")]
    MissingName,
    /// The Tenant has no uid, so children cannot name it as their owner.
    #[error("the Tenant has no metadata.uid; it must come from the API server")]
    MissingUid,
}

/// Facts about one Tenant that every builder needs, derived once.
#[derive(Clone, Debug)]
pub struct TenantContext<'a> {
    /// The Tenant.
    pub tenant: &'a Tenant,
    /// The operator's settings.
    pub config: &'a OperatorConfig,
    /// metadata.name.
    pub name: &'a str,
    /// The tenant's namespace.
    pub namespace: String,
    /// Controller owner reference to the Tenant.
    pub owner: OwnerReference,
}

impl<'a> TenantContext<'a> {
    /// Derives the context; fails only for Tenants that did not come from an
    /// API server.
    pub fn new(tenant: &'a Tenant, config: &'a OperatorConfig) -> Result<Self, BuildError> {
        let name = tenant
            .metadata
            .name
            .as_deref()
            .ok_or(BuildError::MissingName)?;
        let owner = tenant
            .controller_owner_ref(&())
            .ok_or(BuildError::MissingUid)?;
        Ok(Self {
            tenant,
            config,
            name,
            namespace: namespace_name(config, name),
            owner,
        })
    }

    /// Labels every child carries.
    pub fn labels(&self, component: Option<&str>) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::from([
            (TENANT_LABEL.to_owned(), self.name.to_owned()),
            (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
            ("app.kubernetes.io/part-of".to_owned(), "atoll".to_owned()),
        ]);
        if let Some(component) = component {
            labels.insert(COMPONENT_LABEL.to_owned(), component.to_owned());
        }
        labels
    }

    /// Labels that select a component's pods (stable across upgrades).
    pub fn selector(&self, component: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (TENANT_LABEL.to_owned(), self.name.to_owned()),
            (COMPONENT_LABEL.to_owned(), component.to_owned()),
        ])
    }

    /// Metadata of a namespaced child.
    pub fn meta(&self, name: &str, component: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }

    /// Owner reference for what deletionPolicy decides the fate of (the
    /// namespace and the database credentials): the Tenant under `Delete`,
    /// none under `Retain`, so the garbage collector can never take retained
    /// data, whatever order deletion and a last reconcile happen in.
    pub fn data_owner(&self) -> Option<Vec<OwnerReference>> {
        (self.tenant.spec.deletion_policy == atoll_crds::DeletionPolicy::Delete)
            .then(|| vec![self.owner.clone()])
    }

    /// Host the instance answers at.
    pub fn host(&self) -> String {
        self.tenant
            .spec
            .ingress
            .host
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.name, self.config.base_domain))
    }

    /// Whether the ingress serves TLS, and with which secret and issuer.
    pub fn tls(&self) -> Option<(String, Option<String>)> {
        match &self.tenant.spec.ingress.tls {
            Some(tls) => Some((
                tls.secret_name
                    .clone()
                    .unwrap_or_else(|| "instance-tls".to_owned()),
                tls.cluster_issuer.clone(),
            )),
            None => self
                .config
                .cluster_issuer
                .as_ref()
                .map(|issuer| ("instance-tls".to_owned(), Some(issuer.clone()))),
        }
    }

    /// The URL users reach the instance at.
    pub fn url(&self) -> String {
        let scheme = if self.tls().is_some() {
            "https"
        } else {
            "http"
        };
        match self.config.public_port {
            Some(port) => format!("{scheme}://{}:{port}", self.host()),
            None => format!("{scheme}://{}", self.host()),
        }
    }

    /// The instance version (image tag) to run.
    pub fn version(&self) -> &str {
        self.tenant
            .spec
            .instance
            .version
            .as_deref()
            .unwrap_or(&self.config.instance_version)
    }

    /// Whether the database runs in the tenant's namespace.
    pub fn dedicated_database(&self) -> bool {
        self.tenant.spec.database.mode == DatabaseMode::Dedicated
    }
}

/// The namespace of a tenant.
pub fn namespace_name(config: &OperatorConfig, tenant: &str) -> String {
    format!("{}{tenant}", config.namespace_prefix)
}

/// Container security settings for Pod Security `restricted`.
fn restricted_container(read_only_root: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        read_only_root_filesystem: Some(read_only_root),
        run_as_non_root: Some(true),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..SecurityContext::default()
    }
}

/// Pod security settings for Pod Security `restricted`.
fn restricted_pod(user: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(user),
        fs_group: Some(user),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

/// Converts our quantity into the core API's.
fn quantity(q: &atoll_crds::Quantity) -> k8s_openapi::apimachinery::pkg::api::resource::Quantity {
    k8s_openapi::apimachinery::pkg::api::resource::Quantity(q.as_str().to_owned())
}

/// Core resource requirements from a Tenant's compute resources.
fn resources(r: &atoll_crds::ComputeResources) -> k8s_openapi::api::core::v1::ResourceRequirements {
    let list = |amounts: &atoll_crds::ResourceAmounts| {
        let mut map = BTreeMap::new();
        if let Some(cpu) = &amounts.cpu {
            map.insert("cpu".to_owned(), quantity(cpu));
        }
        if let Some(memory) = &amounts.memory {
            map.insert("memory".to_owned(), quantity(memory));
        }
        (!map.is_empty()).then_some(map)
    };
    k8s_openapi::api::core::v1::ResourceRequirements {
        requests: list(&r.requests),
        limits: list(&r.limits),
        ..Default::default()
    }
}

/// Every object a Tenant produces, in apply order.
#[derive(Clone, Debug)]
pub struct Children {
    /// The tenant's namespace.
    pub namespace: k8s_openapi::api::core::v1::Namespace,
    /// Namespace quota.
    pub resource_quota: k8s_openapi::api::core::v1::ResourceQuota,
    /// Container defaults.
    pub limit_range: k8s_openapi::api::core::v1::LimitRange,
    /// Default deny plus the allowed paths.
    pub network_policies: Vec<k8s_openapi::api::networking::v1::NetworkPolicy>,
    /// Identity of the instance pods.
    pub instance_service_account: k8s_openapi::api::core::v1::ServiceAccount,
    /// The instance's task-pod rights (Kubernetes runner).
    pub task_pods_role_binding: Option<RoleBinding>,
    /// The operator's right to list this namespace's pods (spec.idle).
    pub activity_role_binding: Option<RoleBinding>,
    /// Identity of the database pods (Dedicated mode).
    pub database_service_account: Option<k8s_openapi::api::core::v1::ServiceAccount>,
    /// Database credentials.
    pub database_secret: k8s_openapi::api::core::v1::Secret,
    /// The backup Secrets (`backup-agent`, `backup-object-store`) of a
    /// backed-up Dedicated database, `backup-object-store` of a backed-up
    /// External one; empty otherwise.
    pub backup_secrets: Vec<Secret>,
    /// The source store's Secret of a Tenant being restored
    /// ([`apply_restore`]); `None` otherwise.
    pub restore_secret: Option<Secret>,
    /// PostgreSQL's init scripts: the instance's unprivileged role
    /// (Dedicated mode).
    pub database_init_config_map: Option<k8s_openapi::api::core::v1::ConfigMap>,
    /// The PostgreSQL server (Dedicated mode).
    pub database_stateful_set: Option<k8s_openapi::api::apps::v1::StatefulSet>,
    /// Its Service (Dedicated mode).
    pub database_service: Option<k8s_openapi::api::core::v1::Service>,
    /// The instance's storage volume (no S3).
    pub storage_claim: Option<PersistentVolumeClaim>,
    /// The instance.
    pub instance_deployment: k8s_openapi::api::apps::v1::Deployment,
    /// Its Service.
    pub instance_service: k8s_openapi::api::core::v1::Service,
    /// Its Ingress.
    pub instance_ingress: k8s_openapi::api::networking::v1::Ingress,
    /// While the tenant sleeps or wakes (#20, [`shape_for_sleep`]): the
    /// Service its Ingress routes to instead, and that Service's endpoints
    /// (the wake gate's pods); `None` while it is awake.
    pub wake_gate: Option<(
        k8s_openapi::api::core::v1::Service,
        k8s_openapi::api::discovery::v1::EndpointSlice,
    )>,
}

/// Builds every child of a Tenant from the credentials its database uses,
/// without backups (see [`children_with_backup`]).
pub fn children(ctx: &TenantContext<'_>, credentials: &DatabaseCredentials) -> Children {
    children_with_backup(ctx, credentials, None)
}

/// Builds every child of a Tenant from the credentials its database uses
/// and, for a Tenant whose database is to be backed up ([`backup_wanted`]),
/// what the reconciler found for its backups: with `Some`, the backup
/// Secrets, the database pod's archiving and agent and their
/// NetworkPolicy; with `None` (or a Tenant without backups) none of it.
pub fn children_with_backup(
    ctx: &TenantContext<'_>,
    credentials: &DatabaseCredentials,
    backup: Option<&BackupSetup>,
) -> Children {
    let dedicated = ctx.dedicated_database();
    let backup = backup.filter(|_| backup_wanted(ctx));
    let mut policies = network_policies(ctx);
    policies.extend(
        backup
            .filter(|_| dedicated)
            .map(|_| backup_network_policy(ctx)),
    );
    policies.extend(dumps_wanted(ctx).then(|| dump_network_policy(ctx)));
    Children {
        namespace: namespace(ctx),
        resource_quota: resource_quota(ctx),
        limit_range: limit_range(ctx),
        network_policies: policies,
        instance_service_account: service_account_instance(ctx),
        task_pods_role_binding: task_pods_role_binding(ctx),
        activity_role_binding: activity_role_binding(ctx),
        database_service_account: dedicated.then(|| service_account_database(ctx)),
        database_secret: database_secret(ctx, credentials),
        // An External database has no agent: its dump pods use the store's.
        backup_secrets: backup
            .map(|setup| match dedicated {
                true => vec![
                    backup_agent_secret(ctx, setup),
                    backup_object_store_secret(ctx, setup),
                ],
                false => vec![backup_object_store_secret(ctx, setup)],
            })
            .unwrap_or_default(),
        restore_secret: None,
        database_init_config_map: dedicated.then(|| database_init_config_map(ctx)),
        database_stateful_set: dedicated.then(|| match backup {
            Some(_) => backed_up_database_stateful_set(ctx),
            None => database_stateful_set(ctx),
        }),
        database_service: dedicated.then(|| database_service(ctx)),
        storage_claim: storage_claim(ctx),
        instance_deployment: instance_deployment(ctx, credentials),
        instance_service: instance_service(ctx),
        instance_ingress: instance_ingress(ctx),
        wake_gate: None,
    }
}

/// One namespaced child, borrowed: [`Children::in_order`] walks them in the
/// order they are applied, the one place that order is written.
#[derive(Clone, Copy, Debug)]
pub enum Child<'a> {
    /// Namespace quota.
    ResourceQuota(&'a ResourceQuota),
    /// Container defaults.
    LimitRange(&'a LimitRange),
    /// A network policy.
    NetworkPolicy(&'a NetworkPolicy),
    /// A pod identity.
    ServiceAccount(&'a ServiceAccount),
    /// The instance's task-pod rights.
    RoleBinding(&'a RoleBinding),
    /// The instance's storage volume.
    PersistentVolumeClaim(&'a PersistentVolumeClaim),
    /// The database credentials.
    Secret(&'a Secret),
    /// PostgreSQL's init scripts.
    ConfigMap(&'a ConfigMap),
    /// A Service.
    Service(&'a Service),
    /// The PostgreSQL server.
    StatefulSet(&'a StatefulSet),
    /// The instance.
    Deployment(&'a Deployment),
    /// The wake gate's endpoints of a sleeping tenant.
    EndpointSlice(&'a k8s_openapi::api::discovery::v1::EndpointSlice),
    /// The instance's Ingress.
    Ingress(&'a Ingress),
}

impl Child<'_> {
    /// The object as JSON.
    pub fn to_value(self) -> Result<serde_json::Value, serde_json::Error> {
        use serde_json::to_value;
        match self {
            Child::ResourceQuota(o) => to_value(o),
            Child::LimitRange(o) => to_value(o),
            Child::NetworkPolicy(o) => to_value(o),
            Child::ServiceAccount(o) => to_value(o),
            Child::RoleBinding(o) => to_value(o),
            Child::PersistentVolumeClaim(o) => to_value(o),
            Child::Secret(o) => to_value(o),
            Child::ConfigMap(o) => to_value(o),
            Child::Service(o) => to_value(o),
            Child::StatefulSet(o) => to_value(o),
            Child::Deployment(o) => to_value(o),
            Child::EndpointSlice(o) => to_value(o),
            Child::Ingress(o) => to_value(o),
        }
    }
}

impl Children {
    /// The namespaced children in apply order (the namespace itself comes
    /// before all of them): what a workload uses is applied before it.
    pub fn in_order(&self) -> Vec<Child<'_>> {
        let mut out = vec![
            Child::ResourceQuota(&self.resource_quota),
            Child::LimitRange(&self.limit_range),
        ];
        out.extend(self.network_policies.iter().map(Child::NetworkPolicy));
        out.push(Child::ServiceAccount(&self.instance_service_account));
        out.extend(self.task_pods_role_binding.iter().map(Child::RoleBinding));
        out.extend(self.activity_role_binding.iter().map(Child::RoleBinding));
        out.extend(
            self.database_service_account
                .iter()
                .map(Child::ServiceAccount),
        );
        out.push(Child::Secret(&self.database_secret));
        out.extend(self.backup_secrets.iter().map(Child::Secret));
        out.extend(self.restore_secret.iter().map(Child::Secret));
        out.extend(self.database_init_config_map.iter().map(Child::ConfigMap));
        out.extend(self.database_service.iter().map(Child::Service));
        out.extend(self.database_stateful_set.iter().map(Child::StatefulSet));
        out.push(Child::Service(&self.instance_service));
        out.extend(self.storage_claim.iter().map(Child::PersistentVolumeClaim));
        out.push(Child::Deployment(&self.instance_deployment));
        if let Some((service, endpoints)) = &self.wake_gate {
            out.push(Child::Service(service));
            out.push(Child::EndpointSlice(endpoints));
        }
        out.push(Child::Ingress(&self.instance_ingress));
        out
    }

    /// Every object as JSON, in apply order (the namespace first).
    pub fn to_values(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        std::iter::once(serde_json::to_value(&self.namespace))
            .chain(self.in_order().into_iter().map(Child::to_value))
            .collect()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_backup;
#[cfg(test)]
mod tests_dump;
#[cfg(test)]
mod tests_tasks;
