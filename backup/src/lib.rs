//! Continuous backup of a tenant's PostgreSQL (#19): WAL archiving as
//! PostgreSQL's `archive_command`/`restore_command`, base backups and
//! point-in-time restore, into an S3-compatible object store.
//!
//! The library is shared by the `atoll-backup` binary (forked by
//! PostgreSQL per WAL segment, so it stays small and starts fast) and the
//! operator (catalog, layout, settings).

pub mod agent;
pub mod base;
pub mod catalog;
pub mod cli;
pub mod compress;
pub mod conninfo;
pub mod dump;
pub mod dump_catalog;
pub mod extract;
pub mod install;
pub mod label;
pub mod layout;
mod manifest;
pub mod pglog;
pub mod pgtools;
pub mod recovery;
pub mod restore;
pub mod restore_dump;
pub mod retention;
pub mod settings;
pub mod status;
pub mod store;
pub mod wal;
