//! The small HTML pages of sign-in: what went wrong, in words, with a way
//! to start again. Never a code or a token; everything escaped.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, html};

/// An HTML page answering `status`: a title, what happened, and a link to
/// sign in again (or to the start).
pub(super) fn problem(status: StatusCode, title: &str, message: &str) -> Response {
    let body = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="referrer" content="no-referrer";
                title { (title) " · Atoll" }
                style { "body{font-family:system-ui,sans-serif;max-width:40rem;margin:4rem auto;padding:0 1rem;line-height:1.5}" }
            }
            body {
                main {
                    h1 { (title) }
                    p { (message) }
                    p { a href="/auth/login" { "Sign in again" } " · " a href="/" { "Home" } }
                }
            }
        }
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}
