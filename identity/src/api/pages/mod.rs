//! Identity's HTML pages, rendered on the server (maud: compile-time
//! checked, escaped by default); they work without JavaScript. By concern:
//! the shared frame (`layout.rs`), login (`login.rs`), my tenants and "not
//! a member" (`tenants.rs`), personal access tokens (`tokens.rs`), the
//! identity admin's users and tenants (`admin.rs`).

pub(super) mod admin;
pub(super) mod layout;
pub(super) mod login;
pub(super) mod tenants;
pub(super) mod tokens;

use super::sso::{Browser, csrf_matches};
use super::*;
use crate::store::SsoSession;
use layout::{Viewer, csrf_refused, see_other};
use tenants::login_then;

/// The signed-in person of a page at `path`, or the way to the login page.
fn signed_in<'a>(
    browser: &'a Browser,
    path: &str,
) -> Result<(&'a SsoSession, Viewer<'a>), Box<Response>> {
    match &browser.session {
        Some(session) => Ok((
            session,
            Viewer {
                user: &session.user,
                csrf: &browser.csrf,
            },
        )),
        None => Err(Box::new(see_other(&login_then(path)))),
    }
}

/// The signed-in person of a form POST, if its CSRF token is the
/// session's; otherwise the refusal (the login page, or 403).
fn form_sender<'a>(
    browser: &'a Browser,
    path: &str,
    csrf: Option<&str>,
) -> Result<(&'a SsoSession, Viewer<'a>), Box<Response>> {
    let (session, viewer) = signed_in(browser, path)?;
    if !csrf_matches(&browser.csrf, csrf) {
        return Err(Box::new(csrf_refused(Some(&viewer))));
    }
    Ok((session, viewer))
}

/// A short UTC date and time for tables.
fn when(secs: i64) -> String {
    jiff::Timestamp::from_second(secs).map_or_else(
        |_| secs.to_string(),
        |t| t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
    )
}
