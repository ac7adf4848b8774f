//! The Atoll operator: reconciles each `Tenant` into its dedicated instance.
//!
//! This crate grows with the operator issue; today it holds the command line
//! and the CRD printer that the Helm chart's copy is generated from.

pub mod cli;
pub mod crd;
