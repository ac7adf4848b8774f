//! The Atoll operator: reconciles each `Tenant` into its dedicated instance.
//!
//! The command line (`cli`, `run`, `render`, `crd`), the operator's
//! configuration, the pure builders of every object a Tenant produces
//! (`build`), the pure checks of what a Tenant may claim (`claims`), status
//! computation (`status`), the reconcile pipeline (`reconcile`), and the
//! clients of identity and of shared database servers.

pub mod build;
pub mod claims;
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
