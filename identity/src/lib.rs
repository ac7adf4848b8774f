//! Atoll's global identity service.
//!
//! Users log in once, list their tenants and get a short-lived token scoped to
//! exactly one tenant (`aud` = the tenant), which that tenant's instance
//! verifies offline with the [`verify`] module against identity's JWKS.
//!
//! Without the default `server` feature the crate is only [`verify`]: what an
//! instance needs, without the database, HTTP server or password hashing.

pub mod sso_tokens;
pub mod verify;

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod audit;
#[cfg(feature = "server")]
pub mod clusters;
#[cfg(feature = "server")]
pub mod config;
#[cfg(feature = "server")]
pub mod console;
#[cfg(feature = "server")]
mod ip_range;
#[cfg(feature = "server")]
pub mod keys;
#[cfg(feature = "server")]
pub mod logging;
#[cfg(feature = "server")]
pub mod passwords;
#[cfg(feature = "server")]
pub mod ratelimit;
#[cfg(feature = "server")]
pub mod server;
#[cfg(feature = "server")]
pub mod sessions;
#[cfg(feature = "server")]
pub mod store;
#[cfg(feature = "server")]
pub mod users;
