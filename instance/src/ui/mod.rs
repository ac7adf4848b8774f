//! The instance's web UI: server-rendered HTML pages (maud, escaped by
//! default) at `/` and under `/ui/...`, and the embedded static files at
//! `/assets/...` (see [`assets`]). Pages read data through the engine as
//! the API handlers do; the few live parts (Gantt, logs, bulk selection,
//! the YAML editor) are small scripts in `/assets` fed by data attributes,
//! so the Content-Security-Policy allows no inline script.
//!
//! Every page needs a caller ([`Page`]): the authentication middleware in
//! front of these routes leaves a [`Principal`] in the request (and a
//! [`CsrfToken`] for browser sessions); without one the browser is sent to
//! `/auth/login` to sign in. Controls a role may not use are not drawn, and
//! every state-changing handler checks the role again (as the API does).

mod assets;
mod execution;
mod executions;
mod flows;
mod graph_svg;
mod layout;
mod locate;
mod run;
mod triggers;

use axum::Router;
use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{Markup, html};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::api::{ApiError, AppState};
use crate::auth::{Principal, Role};
use crate::session::CsrfToken;

pub use locate::locate_problem;

/// The UI's routes: pages at `/` and `/ui/...`, assets at `/assets/...`.
/// Mounted behind the authentication middleware (see the module docs).
pub fn routes() -> Router<AppState> {
    let pages = Router::new()
        .route("/", get(|| async { Redirect::to("/ui/flows") }))
        .route("/ui", get(|| async { Redirect::to("/ui/flows") }))
        .route("/ui/flows", get(flows::list))
        .route("/ui/flows/new", get(flows::new_form).post(flows::create))
        .route("/ui/validate", post(flows::validate_json))
        .route(
            "/ui/flows/{namespace}/{id}",
            get(flows::show).post(flows::save),
        )
        .route(
            "/ui/flows/{namespace}/{id}/run",
            get(run::form).post(run::start),
        )
        .route("/ui/flows/{namespace}/{id}/delete", post(flows::delete))
        .route("/ui/executions", get(executions::list))
        .route("/ui/executions/bulk", post(executions::bulk))
        .route("/ui/executions/{id}", get(execution::show))
        .route("/ui/executions/{id}/resume", post(execution::resume))
        .route("/ui/triggers", get(triggers::list))
        .route("/ui/triggers/disabled", post(triggers::set_disabled))
        .route("/ui/triggers/backfill", post(triggers::backfill))
        .layer(middleware::from_fn(page_headers));
    pages.merge(assets::routes())
}

/// The caller of a page: who, whether they may change things, and the
/// CSRF token of their browser session (none for bearer-token callers).
#[derive(Debug, Clone)]
pub struct Page {
    pub principal: Principal,
    pub csrf: Option<String>,
    /// Who is signed in, as people read it: the e-mail address of a
    /// browser session, else the token's subject.
    pub who: String,
}

impl Page {
    /// Whether the caller may edit, run, delete and act in bulk.
    pub fn can_edit(&self) -> bool {
        self.principal.role >= Role::Editor
    }

    /// Refuses callers below Editor (the API refuses them the same way).
    fn require_editor(&self) -> Result<(), UiError> {
        if self.can_edit() {
            Ok(())
        } else {
            Err(UiError::new(
                StatusCode::FORBIDDEN,
                "your role in this tenant does not allow this (Editor needed)",
            ))
        }
    }

    /// The hidden `_csrf` field every form carries (nothing for bearer callers).
    fn csrf_field(&self) -> Markup {
        html! {
            @if let Some(token) = &self.csrf {
                input type="hidden" name="_csrf" value=(token);
            }
        }
    }

    /// Checks a form's `_csrf` against the session's, in constant time,
    /// when the caller came with the session cookie. Authentication checks
    /// it already; checked again here so a page's form never relies on
    /// where it is mounted.
    fn check_csrf(&self, form: &Form) -> Result<(), UiError> {
        let Some(expected) = &self.csrf else {
            return Ok(());
        };
        let given = form.get("_csrf").unwrap_or_default();
        aws_lc_rs::constant_time::verify_slices_are_equal(given.as_bytes(), expected.as_bytes())
            .map_err(|_| {
                UiError::new(
                    StatusCode::FORBIDDEN,
                    "the form's CSRF token is missing or wrong; reload the page",
                )
            })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Page {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Response> {
        let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
            let here = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            let target = format!("/auth/login?return_to={}", encode(here));
            return Err(Redirect::to(&target).into_response());
        };
        let csrf = parts.extensions.get::<CsrfToken>().map(|t| t.0.clone());
        let who = parts
            .extensions
            .get::<crate::session::SessionCaller>()
            .map_or_else(|| principal.subject.clone(), |s| s.email.clone());
        Ok(Page {
            principal,
            csrf,
            who,
        })
    }
}

/// A URL-encoded form's fields, in order (repeated names kept).
#[derive(Debug, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    fn parse(bytes: &[u8]) -> Result<Form, UiError> {
        crate::api::form_pairs(bytes).map(Form).ok_or_else(|| {
            UiError::new(StatusCode::BAD_REQUEST, "the form is not URL-encoded UTF-8")
        })
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first non-empty value of `name`, trimmed.
    fn text(&self, name: &str) -> Option<&str> {
        self.get(name).map(str::trim).filter(|v| !v.is_empty())
    }

    /// Every value of `name`.
    fn all(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl<S: Send + Sync> axum::extract::FromRequest<S> for Form {
    type Rejection = UiError;

    async fn from_request(request: Request, _: &S) -> Result<Self, UiError> {
        let bytes = axum::body::to_bytes(request.into_body(), crate::api::MAX_BODY_BYTES)
            .await
            .map_err(|_| UiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large"))?;
        Form::parse(&bytes)
    }
}

/// A page that could not be shown: its status and what to tell the person.
#[derive(Debug)]
pub struct UiError {
    status: StatusCode,
    message: String,
}

impl UiError {
    fn new(status: StatusCode, message: impl Into<String>) -> UiError {
        UiError {
            status,
            message: message.into(),
        }
    }

    fn not_found(what: &str) -> UiError {
        UiError::new(StatusCode::NOT_FOUND, format!("no such {what}"))
    }
}

impl From<ApiError> for UiError {
    fn from(err: ApiError) -> UiError {
        let (status, message) = match err {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "sign in first".to_owned()),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "your role does not allow this".to_owned(),
            ),
            ApiError::ForbiddenBecause(m) => (StatusCode::FORBIDDEN, m),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, m),
            ApiError::BadRequest { message, .. } => (StatusCode::BAD_REQUEST, message),
            ApiError::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too large".to_owned()),
            ApiError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m),
            ApiError::Internal(m) => {
                tracing::error!(error = %m, "web UI page failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal error; see the instance's log".to_owned(),
                )
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is not reachable".to_owned(),
            ),
            ApiError::NotImplemented { feature, why } => {
                (StatusCode::NOT_IMPLEMENTED, format!("{feature}: {why}"))
            }
        };
        UiError { status, message }
    }
}

macro_rules! via_api_error {
    ($($t:ty),*) => {$(
        impl From<$t> for UiError {
            fn from(err: $t) -> UiError {
                UiError::from(ApiError::from(err))
            }
        }
    )*};
}

via_api_error!(
    crate::store::StoreError,
    crate::engine::EngineError,
    crate::engine::FlowChangeError,
    crate::engine::TriggerActionError
);

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let body = layout::bare(
            "Error",
            html! {
                h1 { "Something went wrong" }
                p.error role="alert" { (self.message) }
                p { a href="/ui/flows" { "Back to the flows" } }
            },
        );
        (self.status, body).into_response()
    }
}

/// What a page handler answers.
type UiResult<T = Response> = Result<T, UiError>;

/// Headers of every page: no framing, no inline script, nothing cached.
async fn page_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    response
}

/// What [`encode`] escapes: everything but RFC 3986's unreserved
/// characters, so `company.team` stays readable in an address.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// `text` percent-encoded for a query string or path segment.
fn encode(text: &str) -> String {
    utf8_percent_encode(text, COMPONENT).to_string()
}

/// A 303 to `location` (after a form post).
fn see_other(location: &str) -> Response {
    Redirect::to(location).into_response()
}

/// A timestamp as people read it (UTC, to the second).
fn when(ts: jiff::Timestamp) -> String {
    ts.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// A state's badge.
fn state_badge(state: crate::vocabulary::State) -> Markup {
    let name = state.as_str();
    html! { span class={"state state-" (name.to_ascii_lowercase())} { (name) } }
}

/// The path of a flow's page.
fn flow_path(namespace: &str, id: &str) -> String {
    format!("/ui/flows/{}/{}", encode(namespace), encode(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_page_without_a_caller_sends_the_browser_to_sign_in() {
        let request = axum::http::Request::get("/ui/executions?state=FAILED&labels=a:b")
            .body(())
            .expect("request");
        let (mut parts, ()) = request.into_parts();
        let response = Page::from_request_parts(&mut parts, &())
            .await
            .expect_err("no caller");
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(
            response.headers()[header::LOCATION],
            "/auth/login?return_to=%2Fui%2Fexecutions%3Fstate%3DFAILED%26labels%3Da%3Ab"
        );

        parts.extensions.insert(Principal {
            subject: "alice".into(),
            role: Role::Viewer,
        });
        parts.extensions.insert(CsrfToken("t0ken".into()));
        let page = Page::from_request_parts(&mut parts, &())
            .await
            .expect("a caller");
        assert!(!page.can_edit());
        assert!(
            page.csrf_field()
                .into_string()
                .contains("name=\"_csrf\" value=\"t0ken\"")
        );
        let forged = Form(vec![("_csrf".into(), "other".into())]);
        assert_eq!(
            page.check_csrf(&forged).map_err(|e| e.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert_eq!(
            page.check_csrf(&Form::default()).map_err(|e| e.status),
            Err(StatusCode::FORBIDDEN)
        );
        assert!(
            page.check_csrf(&Form(vec![("_csrf".into(), "t0ken".into())]))
                .is_ok()
        );
    }
}
