//! The Atoll operator: reconciles each `Tenant` into its dedicated instance.
//!
//! Today it holds the command line, the CRD printer the Helm chart's copy is
//! generated from, the operator's configuration and the pure builders of
//! every object a Tenant produces (`atoll-operator render`).

pub mod build;
pub mod cli;
pub mod config;
pub mod crd;
pub mod external;
pub mod identity;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod run;
pub mod status;
