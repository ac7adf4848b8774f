//! The Atoll Tenant API (`atoll.dev/v1alpha1`).
//!
//! Types for the `Tenant` custom resource, its generated CRD, a pure
//! [`validate`] that enforces the same rules as the CRD's schema and CEL
//! rules, and helpers for `metav1.Condition`-shaped status conditions.
//! No I/O and no async runtime: the operator, the tests and the chart
//! generator all build on this crate.

pub mod conditions;
pub mod contract;
pub mod quantity;
mod role;
mod status;
mod tasks;
mod tenant;
mod validation;

pub use quantity::Quantity;
pub use role::{Role, UnknownRole};
pub use status::{Phase, TenantStatus};
pub use tasks::*;
pub use tenant::*;
pub use validation::{FieldError, from_value, validate};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The Tenant CRD exactly as the operator's `crd` subcommand prints it and the
/// Helm chart ships it.
pub fn tenant_crd() -> CustomResourceDefinition {
    Tenant::crd()
}
