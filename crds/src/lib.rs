//! The Atoll Tenant API (`atoll.dev/v1alpha1`).
//!
//! Types for the `Tenant` and `TenantBackup` custom resources, their
//! generated CRDs, a pure [`validate`] (and [`validate_update`],
//! [`validate_tenant_backup`]) that enforces the same rules as the CRDs'
//! schemas and CEL rules, and helpers for `metav1.Condition`-shaped status conditions.
//! No I/O and no async runtime: the operator, the tests and the chart
//! generator all build on this crate.

mod backup;
mod backup_validation;
pub mod conditions;
pub mod contract;
mod idle;
pub mod quantity;
mod role;
mod status;
mod tasks;
mod tenant;
mod tenant_backup;
mod validation;

pub use backup::*;
pub use backup_validation::{validate_tenant_backup, validate_update};
pub use idle::*;
pub use quantity::Quantity;
pub use role::{Role, UnknownRole};
pub use status::{Phase, TenantStatus};
pub use tasks::*;
pub use tenant::*;
pub use tenant_backup::*;
pub use validation::{FieldError, from_value, validate};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The Tenant CRD exactly as the operator's `crd` subcommand prints it and the
/// Helm chart ships it.
pub fn tenant_crd() -> CustomResourceDefinition {
    Tenant::crd()
}

/// The TenantBackup CRD exactly as the operator's `crd` subcommand prints it
/// and the Helm chart ships it.
pub fn tenant_backup_crd() -> CustomResourceDefinition {
    TenantBackup::crd()
}

/// Every CRD of the Atoll API, in the order to install them.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![tenant_crd(), tenant_backup_crd()]
}
