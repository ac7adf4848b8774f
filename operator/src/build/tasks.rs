//! What script tasks need around the instance (`spec.tasks`,
//! `spec.storage`, `spec.secrets`): the task-runner, storage and secrets
//! variables of the contract, the storage volume, the secrets volume, the
//! task pods' rights (a RoleBinding to the chart's ClusterRole) and their
//! NetworkPolicy.

use std::collections::BTreeMap;

use atoll_crds::{S3_ACCESS_KEY_ID_KEY, S3_SECRET_ACCESS_KEY_KEY, TASK_POD_LABEL, TaskRunner};
use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, PersistentVolumeClaim, PersistentVolumeClaimSpec,
    PersistentVolumeClaimVolumeSource, ProjectedVolumeSource, SecretKeySelector, SecretProjection,
    Volume, VolumeMount, VolumeProjection, VolumeResourceRequirements,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};

use super::{INSTANCE, INSTANCE_SERVICE_PORT, TenantContext, quantity};

/// Name of the instance's storage volume claim (and of its volume in the pod).
pub const STORAGE_CLAIM: &str = "instance-storage";
/// Where the storage volume is mounted in the instance.
pub const STORAGE_DIR: &str = "/var/lib/atoll/storage";
/// Where `spec.secrets` are mounted in the instance, one file per key.
pub const SECRETS_DIR: &str = "/var/run/atoll/secrets";
/// Name of the RoleBinding giving the instance its task-pod rights.
pub const TASK_PODS_ROLE_BINDING: &str = "instance-task-pods";
/// Name of the task pods' NetworkPolicy.
pub const TASK_PODS_NETWORK_POLICY: &str = "task-pods";
/// Name of the policy letting task pods reach the instance's API.
pub const INSTANCE_FROM_TASK_PODS: &str = "instance-from-task-pods";
const SECRETS_VOLUME: &str = "secrets";

/// Whether the instance starts task pods (and so needs an API token).
pub fn runs_task_pods(ctx: &TenantContext<'_>) -> bool {
    ctx.tenant.spec.tasks.runner == TaskRunner::Kubernetes
}

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn from_secret(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// `spec.tasks.resources` as the instance reads them: `{"requests":
/// {"cpu": "100m", ...}, "limits": {...}}`, empty sections left out.
pub fn task_resources_json(ctx: &TenantContext<'_>) -> String {
    let resources = &ctx.tenant.spec.tasks.resources;
    let mut out = BTreeMap::new();
    for (section, amounts) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        let mut map = BTreeMap::new();
        if let Some(cpu) = &amounts.cpu {
            map.insert("cpu", cpu.as_str());
        }
        if let Some(memory) = &amounts.memory {
            map.insert("memory", memory.as_str());
        }
        if !map.is_empty() {
            out.insert(section, map);
        }
    }
    serde_json::to_string(&out).unwrap_or_default()
}

/// The task-runner, storage and secrets variables of the contract.
pub fn task_env(ctx: &TenantContext<'_>, instance_image: &str) -> Vec<EnvVar> {
    use atoll_crds::contract;
    let spec = &ctx.tenant.spec;
    let tasks = &spec.tasks;
    let mut env = vec![
        value(contract::NAMESPACE, ctx.namespace.clone()),
        value(contract::INSTANCE_IMAGE, instance_image),
        value(
            contract::TASK_API_URL,
            format!(
                "http://{INSTANCE}.{}.svc:{INSTANCE_SERVICE_PORT}",
                ctx.namespace
            ),
        ),
        value(contract::TASK_RUNNER, tasks.runner.as_str()),
    ];
    if let Some(image) = &tasks.image {
        env.push(value(contract::TASK_IMAGE, image.clone()));
    }
    env.push(value(contract::TASK_RESOURCES, task_resources_json(ctx)));
    env.push(value(
        contract::TASK_MAX_PODS,
        tasks.max_concurrent_pods.to_string(),
    ));
    if !tasks.allowed_images.is_empty() {
        env.push(value(
            contract::TASK_ALLOWED_IMAGES,
            tasks.allowed_images.join(","),
        ));
    }
    env.push(value(contract::TASK_TIMEOUT, tasks.timeout.clone()));
    if !spec.secrets.is_empty() {
        env.push(value(contract::SECRETS_DIR, SECRETS_DIR));
    }
    match &spec.storage.s3 {
        None => env.push(value(contract::STORAGE_DIR, STORAGE_DIR)),
        Some(s3) => {
            env.push(value(contract::STORAGE_S3_ENDPOINT, s3.endpoint.clone()));
            env.push(value(contract::STORAGE_S3_BUCKET, s3.bucket.clone()));
            if let Some(region) = &s3.region {
                env.push(value(contract::STORAGE_S3_REGION, region.clone()));
            }
            let secret = &s3.credentials_secret_ref.name;
            env.push(from_secret(
                contract::STORAGE_S3_ACCESS_KEY_ID,
                secret,
                S3_ACCESS_KEY_ID_KEY,
            ));
            env.push(from_secret(
                contract::STORAGE_S3_SECRET_ACCESS_KEY,
                secret,
                S3_SECRET_ACCESS_KEY_KEY,
            ));
        }
    }
    env
}

/// Whether the internal storage is a volume (no `spec.storage.s3`).
pub fn uses_storage_volume(ctx: &TenantContext<'_>) -> bool {
    ctx.tenant.spec.storage.s3.is_none()
}

/// The storage volume claim (ReadWriteOnce), sized by `spec.storage` and
/// counted in the namespace's storage quota; none with S3. Files are data:
/// like the namespace, the claim is owned by the Tenant only under
/// `deletionPolicy: Delete`, so a Retain deletion keeps it for a new Tenant
/// of the same name.
pub fn storage_claim(ctx: &TenantContext<'_>) -> Option<PersistentVolumeClaim> {
    if !uses_storage_volume(ctx) {
        return None;
    }
    let storage = &ctx.tenant.spec.storage;
    let mut metadata = ctx.meta(STORAGE_CLAIM, Some(INSTANCE));
    metadata.owner_references = ctx.data_owner();
    Some(PersistentVolumeClaim {
        metadata,
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    quantity(&storage.size),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    })
}

/// The instance pod's volumes for storage and secrets, with their mounts.
pub fn task_volumes(ctx: &TenantContext<'_>) -> (Vec<Volume>, Vec<VolumeMount>) {
    let spec = &ctx.tenant.spec;
    let (mut volumes, mut mounts) = (Vec::new(), Vec::new());
    if uses_storage_volume(ctx) {
        volumes.push(Volume {
            name: STORAGE_CLAIM.to_owned(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: STORAGE_CLAIM.to_owned(),
                read_only: None,
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: STORAGE_CLAIM.to_owned(),
            mount_path: STORAGE_DIR.to_owned(),
            ..VolumeMount::default()
        });
    }
    if !spec.secrets.is_empty() {
        // One file per key of each Secret. Optional: a Secret created after
        // the Tenant appears in the directory without a restart.
        let sources = spec
            .secrets
            .iter()
            .map(|secret| VolumeProjection {
                secret: Some(SecretProjection {
                    name: secret.name.clone(),
                    optional: Some(true),
                    items: None,
                }),
                ..VolumeProjection::default()
            })
            .collect();
        volumes.push(Volume {
            name: SECRETS_VOLUME.to_owned(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(sources),
                // Readable by the instance's user only (fsGroup).
                default_mode: Some(0o440),
            }),
            ..Volume::default()
        });
        mounts.push(VolumeMount {
            name: SECRETS_VOLUME.to_owned(),
            mount_path: SECRETS_DIR.to_owned(),
            read_only: Some(true),
            ..VolumeMount::default()
        });
    }
    (volumes, mounts)
}

/// Binds the instance's service account, in its namespace only, to the
/// chart's ClusterRole for task pods (pods: create, get, list, watch,
/// delete; pods/log: get); none with the Process runner.
pub fn task_pods_role_binding(ctx: &TenantContext<'_>) -> Option<RoleBinding> {
    if !runs_task_pods(ctx) {
        return None;
    }
    Some(RoleBinding {
        metadata: ctx.meta(TASK_PODS_ROLE_BINDING, Some(INSTANCE)),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".to_owned(),
            kind: "ClusterRole".to_owned(),
            name: ctx.config.task_pods_cluster_role.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: INSTANCE.to_owned(),
            namespace: Some(ctx.namespace.clone()),
            api_group: None,
        }]),
    })
}

/// Labels selecting task pods.
pub fn task_pod_selector() -> BTreeMap<String, String> {
    BTreeMap::from([(TASK_POD_LABEL.to_owned(), "true".to_owned())])
}
