//! Identity's HTML pages, rendered on the server (maud: compile-time
//! checked, escaped by default); they work without JavaScript. By concern:
//! the shared frame (`layout.rs`), login (`login.rs`), my tenants and "not
//! a member" (`tenants.rs`), personal access tokens (`tokens.rs`), the
//! identity admin's users and tenants (`admin.rs`).

pub(super) mod layout;
pub(super) mod login;
pub(super) mod tenants;
