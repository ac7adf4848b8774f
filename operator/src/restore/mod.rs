//! Restore into a new Tenant (#19, `spec.restore`): the source's uid and
//! base backup are resolved before the database is built ([`resolve`]),
//! the database pod gains a `restore` init container (built in
//! `crate::build`, next to the pod it changes), and the outcome the
//! restore writes (`tenants/<new uid>/restore.json`) becomes
//! `status.restore` and the `Restored` condition ([`status`]). What to
//! build and hold in each phase is decided purely ([`plan`]).
//!
//! The instance Deployment is held at 0 replicas until the restore
//! completed (it exists, so its Service, Ingress and status are as for any
//! Tenant, and it starts by a replica change only); the database
//! StatefulSet is held at 0 until the source and backup are resolved, and
//! again after a failed restore (no endless init loop), including one
//! whose init container keeps failing before it writes its outcome
//! ([`pod`]).

pub mod plan;
pub mod pod;
pub mod resolve;
pub mod status;
pub mod store;

pub use plan::{Resolved, RestoreView, hold_database, hold_instance, reasons};
