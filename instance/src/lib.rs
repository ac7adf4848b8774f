//! The per-tenant Atoll orchestration engine.
//!
//! Each tenant runs its own instance of this crate's binary, on its own
//! database: flows in Kestra's YAML shape ([`flow`]), executions driven by
//! the [`engine`] from a durable queue in the [`store`], a Kestra-shaped
//! REST [`api`] behind bearer-token [`auth`]. [`vocabulary`] (states,
//! labels) and [`cron`] (cron expressions) are leaves the others share.

pub mod api;
pub mod auth;
pub mod config;
pub mod cron;
pub mod engine;
pub mod execution;
pub mod flow;
pub mod lookups;
pub mod runner;
pub mod secrets;
pub mod server;
pub mod session;
pub mod storage;
pub mod store;
pub mod task_files;
pub mod template;
pub mod ui;
pub mod vocabulary;
