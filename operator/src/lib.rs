//! The Atoll operator: reconciles each `Tenant` into its namespace, its
//! database and its instance, and registers it with identity.
//!
//! - The binary: [`cli`] (the subcommands `crd`, `render` and `run`),
//!   [`crd`] (the CRD as YAML), [`render`] (every object a Tenant produces,
//!   for review), [`run`] (the controller, health and metrics endpoints),
//!   [`leader`] (Lease-based election), [`metrics`].
//! - Pure, tested without an API server: [`config`] (parsed once at start),
//!   [`build`] (one builder per object, from a [`build::TenantContext`]),
//!   [`claims`] (the host and namespace a Tenant may take), [`status`]
//!   (conditions and phase from what was observed).
//! - [`reconcile`]: the pipeline admit → fetch → build → apply or observe →
//!   identity → one status write, and deletion.
//! - Clients: [`identity`] (the tenant directory) and [`external`] (a
//!   shared PostgreSQL server for External-mode databases).

pub mod backup;
pub mod backup_config;
pub mod build;
pub mod claims;
pub mod cli;
pub mod config;
pub mod crd;
pub mod external;
pub mod gate;
pub mod identity;
pub mod idle;
pub mod leader;
pub mod metrics;
pub mod reconcile;
pub mod render;
pub mod restore;
pub mod run;
pub mod status;
