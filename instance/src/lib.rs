//! The per-tenant Atoll orchestration engine.
//!
//! Each tenant runs its own instance of this crate's binary, on its own
//! database. Flows are written in Kestra's YAML shape ([`flow`]).

pub mod engine;
pub mod execution;
pub mod flow;
pub mod store;
pub mod template;
