//! Helpers shared by the integration tests (meant to move to the testkit).
#![allow(dead_code)]

pub mod api_instance;
pub mod identity;
pub mod task_cluster;
pub mod ui;
