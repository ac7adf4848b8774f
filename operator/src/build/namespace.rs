//! The tenant's namespace and what bounds it: quota, container defaults,
//! service accounts.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
    ServiceAccount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::{TenantContext, quantity};

/// The namespace, labelled for the tenant and for Pod Security `restricted`;
/// owned by the Tenant only under `deletionPolicy: Delete`.
pub fn namespace(ctx: &TenantContext<'_>) -> Namespace {
    let mut labels = ctx.labels(None);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    Namespace {
        metadata: ObjectMeta {
            name: Some(ctx.namespace.clone()),
            labels: Some(labels),
            owner_references: ctx.data_owner(),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    }
}

/// Quota from `spec.quota`: CPU and memory limits, storage requests, pods.
pub fn resource_quota(ctx: &TenantContext<'_>) -> ResourceQuota {
    let quota = &ctx.tenant.spec.quota;
    let hard = BTreeMap::from([
        ("limits.cpu".to_owned(), quantity(&quota.cpu)),
        ("limits.memory".to_owned(), quantity(&quota.memory)),
        ("requests.storage".to_owned(), quantity(&quota.storage)),
        ("pods".to_owned(), Quantity(quota.pods.to_string())),
    ]);
    ResourceQuota {
        metadata: ctx.meta("tenant-quota", None),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard),
            ..ResourceQuotaSpec::default()
        }),
        ..ResourceQuota::default()
    }
}

/// Defaults for containers that set no resources, so the quota (which needs
/// limits) never blocks a pod someone adds by hand.
pub fn limit_range(ctx: &TenantContext<'_>) -> LimitRange {
    let amounts = |cpu: &str, memory: &str| {
        Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ]))
    };
    LimitRange {
        metadata: ctx.meta("tenant-limits", None),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: amounts("500m", "256Mi"),
                default_request: amounts("50m", "64Mi"),
                ..LimitRangeItem::default()
            }],
        }),
    }
}

fn service_account(ctx: &TenantContext<'_>, name: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: ctx.meta(name, Some(name)),
        // Neither the instance nor PostgreSQL talks to the Kubernetes API.
        automount_service_account_token: Some(false),
        ..ServiceAccount::default()
    }
}

/// The instance pods' service account, without an API token.
pub fn service_account_instance(ctx: &TenantContext<'_>) -> ServiceAccount {
    service_account(ctx, super::INSTANCE)
}

/// The database pods' service account, without an API token.
pub fn service_account_database(ctx: &TenantContext<'_>) -> ServiceAccount {
    service_account(ctx, super::database::DATABASE)
}
