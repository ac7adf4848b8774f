//! The frame every page shares: the header (product name, the signed-in
//! email, the navigation), the stylesheet, and the response headers of an
//! HTML page (never cached, never framed, nothing but our own resources).

use std::sync::OnceLock;

use axum::http::header::{CONTENT_TYPE, LOCATION, SET_COOKIE};
use maud::{DOCTYPE, Markup, html};

use super::super::*;
use crate::store::User;

/// The stylesheet, embedded.
pub(in crate::api) const CSS: &str = include_str!("../../../assets/identity.css");

/// A short hash of the stylesheet: its URL changes with its content, so
/// it can be cached for a year.
fn css_version() -> &'static str {
    static VERSION: OnceLock<String> = OnceLock::new();
    VERSION.get_or_init(|| sessions::token_hash(CSS)[..12].to_owned())
}

/// `GET /assets/identity.css`.
pub(in crate::api) async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        CSS,
    )
}

/// Who is signed in, for the header.
pub(in crate::api) struct Viewer<'a> {
    pub user: &'a User,
    pub csrf: &'a str,
}

/// A whole page: `title`, the header for `viewer` (if signed in), `body`.
pub(in crate::api) fn page(title: &str, viewer: Option<&Viewer<'_>>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Atoll" }
                link rel="stylesheet" href={ "/assets/identity.css?v=" (css_version()) };
            }
            body {
                header.top {
                    a.brand href="/tenants" { "Atoll" }
                    @if let Some(viewer) = viewer {
                        nav aria-label="Main" {
                            a href="/tenants" { "My tenants" }
                            a href="/tokens" { "Access tokens" }
                            @if viewer.user.is_admin {
                                a href="/admin/users" { "Admin" }
                            }
                            span.who { (viewer.user.email) }
                            form.inline method="post" action="/logout" {
                                input type="hidden" name="_csrf" value=(viewer.csrf);
                                button.link type="submit" { "Log out" }
                            }
                        }
                    }
                }
                (body)
            }
        }
    }
}

/// An HTML response with the headers every page carries.
pub(in crate::api) fn html_response(status: StatusCode, markup: Markup) -> Response {
    let mut response = (status, markup.into_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

/// A page saying what went wrong, with `status`.
pub(in crate::api) fn error_page(
    status: StatusCode,
    title: &str,
    message: &str,
    viewer: Option<&Viewer<'_>>,
) -> Response {
    let body = html! {
        main.narrow {
            div.card {
                h1 { (title) }
                p { (message) }
                p { a href="/tenants" { "Go to my tenants" } }
            }
        }
    };
    html_response(status, page(title, viewer, body))
}

/// A `303 See Other` to `location` (a local path or a registered URI).
pub(in crate::api) fn see_other(location: &str) -> Response {
    redirect(StatusCode::SEE_OTHER, location)
}

/// A redirect with `status` to `location`, never cached.
pub(in crate::api) fn redirect(status: StatusCode, location: &str) -> Response {
    let mut response = status.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// Adds a `Set-Cookie` header.
pub(in crate::api) fn with_cookie(mut response: Response, cookie: HeaderValue) -> Response {
    response.headers_mut().append(SET_COOKIE, cookie);
    response
}

/// The signed-in page's refusal for a failed CSRF check.
pub(in crate::api) fn csrf_refused(viewer: Option<&Viewer<'_>>) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Form expired",
        "This form was not sent from a page of this service, or it is too old. Go back, reload the page and try again.",
        viewer,
    )
}
