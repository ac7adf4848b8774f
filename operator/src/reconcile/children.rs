//! The reconciler's writes and reads of a Tenant's objects: the namespace
//! (created or adopted only when it is the Tenant's), the children in apply
//! order, the workloads' readiness, and pruning what is no longer wanted.

use std::fmt::Debug;

use atoll_crds::Tenant;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::retry::retry;
use super::{Context, Error, RETAINED_FROM_ANNOTATION, RETAINED_LABEL};
use crate::build::{
    self, Child, Children, DATABASE_SECRET, FIELD_MANAGER, MANAGED_BY_LABEL, TENANT_LABEL,
    TenantContext,
};
use crate::claims;
use crate::status::WorkloadReadiness;

/// Server-side apply of one namespaced child under our field manager.
pub(super) async fn apply_namespaced<K>(
    client: &Client,
    namespace: &str,
    object: &K,
) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let name = object.meta().name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(object);
    retry(|| api.patch(&name, &params, &patch))
        .await
        .map_err(|source| Error::Apply {
            kind: <K as k8s_openapi::Resource>::KIND,
            name,
            source,
        })
}

/// The database password: the one already in the namespace, or a new one.
pub(super) async fn database_password(client: &Client, namespace: &str) -> Result<String, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let existing = retry(|| secrets.get_opt(DATABASE_SECRET))
        .await
        .map_err(|source| Error::Read {
            what: format!("Secret {namespace}/{DATABASE_SECRET}"),
            source,
        })?;
    let stored = existing
        .and_then(|s| s.data)
        .and_then(|mut data| data.remove("password"))
        .and_then(|bytes| String::from_utf8(bytes.0).ok())
        .filter(|p| !p.is_empty());
    Ok(stored.unwrap_or_else(generate_password))
}

/// 32 random characters from [A-Za-z0-9].
fn generate_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(32);
    while out.len() < 32 {
        let mut bytes = [0u8; 64];
        if getrandom::fill(&mut bytes).is_err() {
            // The OS random source is required; an empty password would be
            // worse than stopping here.
            panic!("the operating system's random source failed");
        }
        // Rejection sampling keeps the distribution uniform.
        for byte in bytes {
            if usize::from(byte) < ALPHABET.len() * 4 && out.len() < 32 {
                out.push(char::from(ALPHABET[usize::from(byte) % ALPHABET.len()]));
            }
        }
    }
    out
}

pub(super) fn readiness_of_deployment(d: &Deployment) -> WorkloadReadiness {
    let status = d.status.clone().unwrap_or_default();
    WorkloadReadiness {
        desired: d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        observed_current: status.observed_generation.is_some()
            && status.observed_generation == d.metadata.generation,
    }
}

pub(super) fn readiness_of_stateful_set(s: &StatefulSet) -> WorkloadReadiness {
    let status = s.status.clone().unwrap_or_default();
    WorkloadReadiness {
        desired: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1),
        ready: status.ready_replicas.unwrap_or(0),
        updated: status.updated_replicas.unwrap_or(0),
        observed_current: status.observed_generation.is_some()
            && status.observed_generation == s.metadata.generation,
    }
}

/// Applies the namespace; a namespace kept by a Retain deletion of another
/// Tenant of this name is adopted (its retained mark removed).
pub(super) async fn apply_namespace(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
) -> Result<(), Error> {
    let namespace = &tenant_ctx.namespace;
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    // Create or adopt only what the operator labelled for this Tenant: a
    // Tenant must never take over a namespace someone else made.
    let existing = retry(|| namespaces.get_opt(namespace))
        .await
        .map_err(|source| Error::Read {
            what: format!("Namespace {namespace}"),
            source,
        })?;
    claims::check_namespace(
        tenant_ctx.name,
        namespace,
        existing.as_ref().map(|ns| ns.labels()),
        &ctx.operator_namespace,
    )
    .map_err(Error::Refused)?;
    let namespace_object = build::namespace(tenant_ctx);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let patch = Patch::Apply(&namespace_object);
    let apply_error = |source| Error::Apply {
        kind: "Namespace",
        name: namespace.clone(),
        source,
    };
    let applied = retry(|| namespaces.patch(namespace, &params, &patch))
        .await
        .map_err(apply_error)?;
    let retained_from = applied.annotations().get(RETAINED_FROM_ANNOTATION);
    if applied.labels().contains_key(RETAINED_LABEL)
        && retained_from.map(String::as_str) != tenant.metadata.uid.as_deref()
    {
        // A new Tenant of this name is back: what was kept is in use again.
        // (A last reconcile of the deleted Tenant, same uid, changes nothing.)
        let adopt = serde_json::json!({"metadata": {
            "labels": {RETAINED_LABEL: null},
            "annotations": {RETAINED_FROM_ANNOTATION: null},
        }});
        let (merge, adopt) = (PatchParams::default(), Patch::Merge(&adopt));
        retry(|| namespaces.patch(namespace, &merge, &adopt))
            .await
            .map_err(apply_error)?;
    }
    Ok(())
}

/// A stable digest of everything the reconciler would apply.
pub(super) fn fingerprint(children: &Children) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    match children.to_values() {
        Ok(values) => serde_json::to_string(&values)
            .unwrap_or_default()
            .hash(&mut hasher),
        // Cannot happen for k8s-openapi types; never matches a cache entry.
        Err(_) => std::time::Instant::now().hash(&mut hasher),
    }
    hasher.finish()
}

/// Readiness of the workloads and the generations their specs are at.
pub(super) struct Workloads {
    pub database: Option<WorkloadReadiness>,
    pub instance: WorkloadReadiness,
    /// metadata.generation of the StatefulSet (if any) and the Deployment.
    pub generations: [Option<i64>; 2],
}

/// The workloads as they are, or None when one is missing or its spec was
/// changed by someone else since `applied` (then everything is applied
/// again).
pub(super) async fn observe_workloads(
    client: &Client,
    namespace: &str,
    children: &Children,
    applied: &[Option<i64>; 2],
) -> Result<Option<Workloads>, Error> {
    let read = |what: &str| {
        let what = format!("{what} {namespace}");
        move |source| Error::Read { what, source }
    };
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), namespace);
    let Some(deployment) = retry(|| deployments.get_opt(build::INSTANCE))
        .await
        .map_err(read("Deployment"))?
    else {
        return Ok(None);
    };
    let (database, set_generation) = match &children.database_stateful_set {
        None => (None, None),
        Some(_) => {
            let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
            let Some(set) = retry(|| sets.get_opt(build::DATABASE))
                .await
                .map_err(read("StatefulSet"))?
            else {
                return Ok(None);
            };
            (
                Some(readiness_of_stateful_set(&set)),
                set.metadata.generation,
            )
        }
    };
    let generations = [set_generation, deployment.metadata.generation];
    Ok((&generations == applied).then(|| Workloads {
        database,
        instance: readiness_of_deployment(&deployment),
        generations,
    }))
}

/// Applies every namespaced child in [`Children::in_order`] (the caller
/// applies the namespace first); returns the workloads as applied.
pub(super) async fn apply_children(
    client: &Client,
    namespace: &str,
    children: &Children,
) -> Result<Workloads, Error> {
    let (mut database, mut set_generation) = (None, None);
    let mut instance = None;
    for child in children.in_order() {
        match child {
            Child::ResourceQuota(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::LimitRange(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::NetworkPolicy(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::ServiceAccount(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::RoleBinding(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::PersistentVolumeClaim(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::Secret(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::ConfigMap(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::Service(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::Ingress(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::EndpointSlice(o) => {
                apply_namespaced(client, namespace, o).await?;
            }
            Child::StatefulSet(o) => {
                let applied = apply_namespaced(client, namespace, o).await?;
                database = Some(readiness_of_stateful_set(&applied));
                set_generation = applied.metadata.generation;
            }
            Child::Deployment(o) => instance = Some(apply_namespaced(client, namespace, o).await?),
        }
    }
    let deployment = instance.unwrap_or_default();
    Ok(Workloads {
        database,
        instance: readiness_of_deployment(&deployment),
        generations: [set_generation, deployment.metadata.generation],
    })
}

/// Removes the children the Tenant no longer needs: the Dedicated
/// database's objects once the Tenant uses an External one, the
/// instance's task-pod RoleBinding once its tasks run as processes, and
/// the backup Secrets and NetworkPolicy once its database is not backed up. Only
/// objects carrying this Tenant's labels under the operator's field manager
/// are removed, each with its uid as precondition; the database volume, the
/// storage volume (files a switch to S3 does not move) and the credentials
/// Secret (what a Retain deletion keeps) are never touched. Reads one
/// StatefulSet per full apply of an External Tenant and one RoleBinding per
/// full apply of a Process Tenant, the three backup objects per full apply
/// of a Tenant without backups, and nothing else unless there is
/// something to remove.
pub(super) async fn prune(
    client: &Client,
    tenant_ctx: &TenantContext<'_>,
    children: &Children,
) -> Result<(), Error> {
    if children.task_pods_role_binding.is_none() {
        prune_one::<RoleBinding>(client, tenant_ctx, build::TASK_PODS_ROLE_BINDING).await?;
    }
    if children.backup_secrets.is_empty() {
        // Backups off (or not possible): no way out to a store, no token,
        // no credentials left in the namespace. The StatefulSet applied
        // before this no longer mounts them.
        prune_one::<NetworkPolicy>(client, tenant_ctx, build::BACKUP_NETWORK_POLICY).await?;
        prune_one::<Secret>(client, tenant_ctx, build::BACKUP_OBJECT_STORE_SECRET).await?;
        prune_one::<Secret>(client, tenant_ctx, build::BACKUP_AGENT_SECRET).await?;
    }
    if !tenant_ctx.dedicated_database() && !children.backup_secrets.is_empty() {
        // An External database has no agent and no database pod to let out.
        prune_one::<NetworkPolicy>(client, tenant_ctx, build::BACKUP_NETWORK_POLICY).await?;
        prune_one::<Secret>(client, tenant_ctx, build::BACKUP_AGENT_SECRET).await?;
    }
    if !build::dumps_wanted(tenant_ctx) {
        prune_one::<NetworkPolicy>(client, tenant_ctx, build::DUMP_NETWORK_POLICY).await?;
    }
    // A Tenant that may have slept (#20) or was suspended: its host may
    // still be routed to the wake gate.
    let status = tenant_ctx.tenant.status.as_ref();
    let slept = tenant_ctx.tenant.spec.idle.is_some()
        || status.is_some_and(|s| s.idle.is_some())
        || status.and_then(|s| s.phase) == Some(atoll_crds::Phase::Suspended);
    if children.activity_role_binding.is_none() && slept {
        prune_one::<RoleBinding>(client, tenant_ctx, build::ACTIVITY_ROLE_BINDING).await?;
    }
    if children.wake_gate.is_none() && slept {
        // No spec.idle (any more) and not suspended: the Ingress (applied
        // before this) routes to the instance; the gate's Service and
        // endpoints go. (A Tenant with spec.idle keeps them.)
        prune_one::<EndpointSlice>(client, tenant_ctx, build::WAKE_GATE).await?;
        prune_one::<Service>(client, tenant_ctx, build::WAKE_GATE).await?;
    }
    if tenant_ctx.tenant.spec.restore.is_some() && children.restore_secret.is_none() {
        // Restored (or stopped): the source store's credentials go.
        prune_one::<Secret>(client, tenant_ctx, build::RESTORE_SECRET).await?;
    }
    prune_database(client, tenant_ctx, children).await
}

async fn prune_database(
    client: &Client,
    tenant_ctx: &TenantContext<'_>,
    children: &Children,
) -> Result<(), Error> {
    if children.database_stateful_set.is_some() {
        return Ok(());
    }
    let namespace = &tenant_ctx.namespace;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), namespace);
    let read = |source| Error::Read {
        what: format!("StatefulSet {namespace}/{}", build::DATABASE),
        source,
    };
    let Some(set) = retry(|| sets.get_opt(build::DATABASE))
        .await
        .map_err(read)?
    else {
        return Ok(());
    };
    if !is_ours(set.labels(), tenant_ctx.name) {
        return Ok(());
    }
    // The StatefulSet goes last, so that while it exists the others may too.
    prune_one::<NetworkPolicy>(client, tenant_ctx, build::DATABASE_NETWORK_POLICY).await?;
    prune_one::<Service>(client, tenant_ctx, build::DATABASE).await?;
    prune_one::<ServiceAccount>(client, tenant_ctx, build::DATABASE).await?;
    prune_one::<ConfigMap>(client, tenant_ctx, build::DATABASE_INIT).await?;
    prune_one::<StatefulSet>(client, tenant_ctx, build::DATABASE).await
}

fn is_ours(labels: &std::collections::BTreeMap<String, String>, tenant: &str) -> bool {
    labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(FIELD_MANAGER)
        && labels.get(TENANT_LABEL).map(String::as_str) == Some(tenant)
}

async fn prune_one<K>(
    client: &Client,
    tenant_ctx: &TenantContext<'_>,
    name: &str,
) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + k8s_openapi::Resource
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), &tenant_ctx.namespace);
    let error = |source| Error::Prune {
        kind: <K as k8s_openapi::Resource>::KIND,
        name: name.to_owned(),
        source,
    };
    let Some(object) = retry(|| api.get_opt(name)).await.map_err(error)? else {
        return Ok(());
    };
    if !is_ours(object.labels(), tenant_ctx.name) {
        return Ok(());
    }
    let params = DeleteParams {
        preconditions: object.uid().map(|uid| kube::api::Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::background()
    };
    match retry(|| api.delete(name, &params)).await {
        Ok(_) => {
            tracing::info!(tenant = %tenant_ctx.name, kind = <K as k8s_openapi::Resource>::KIND, %name, "removed a child the Tenant no longer needs");
            Ok(())
        }
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(source) => Err(error(source)),
    }
}
