//! Atoll's simulated cluster: what its tests and `atoll-sandbox` run on.

pub mod chart;
pub mod cluster;
pub mod kubesim;
pub mod nodesim;
pub mod pg;
pub mod realkube;
pub mod s3;
pub mod sandbox;
pub mod wait;
pub mod wake_gate;

pub use wait::eventually;
