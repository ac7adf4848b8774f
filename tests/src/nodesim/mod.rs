//! nodesim: plays kubelet (and the workload controllers) for a simulated
//! cluster, running containers as local processes.

pub mod addr;
pub mod env;
pub mod ingress;
pub mod postgres;
pub mod probe;
pub mod process;
pub mod proxy;
pub mod rewrite;
pub mod testserver;
