//! Atoll's simulated cluster: what its tests and `atoll-sandbox` run on.

pub mod kubesim;
pub mod nodesim;
pub mod pg;
pub mod sandbox;
