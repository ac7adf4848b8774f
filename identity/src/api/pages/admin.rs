//! The identity admin's pages: `/admin/users` (list, create, disable and
//! enable) and `/admin/tenants` (the directory). Anyone else gets a 403
//! page. Every form carries the CSRF token.

use maud::{Markup, html};

use super::super::admin::{create_user, set_disabled};
use super::super::sso::Browser;
use super::super::*;
use super::layout::{Viewer, error_page, html_response, page, see_other};
use super::{form_sender, signed_in, when};
use crate::store::SsoSession;

#[derive(Deserialize)]
pub(in crate::api) struct NewUserForm {
    #[serde(default, rename = "_csrf")]
    csrf: Option<String>,
    #[serde(default)]
    email: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    admin: Option<String>,
}

#[derive(Deserialize)]
pub(in crate::api) struct CsrfForm {
    #[serde(default, rename = "_csrf")]
    csrf: Option<String>,
}

fn admin_only(viewer: &Viewer<'_>) -> Response {
    error_page(
        StatusCode::FORBIDDEN,
        "Administrators only",
        "This page is for identity administrators.",
        Some(viewer),
    )
}

fn admin_nav() -> Markup {
    html! {
        nav aria-label="Admin" .row {
            a href="/admin/users" { "Users" }
            a href="/admin/tenants" { "Tenants" }
        }
    }
}

async fn users_page(
    state: &AppState,
    viewer: &Viewer<'_>,
    status: StatusCode,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let users = state.inner.store.list_users().await?;
    let body = html! {
        main {
            h1 { "Users" }
            (admin_nav())
            @if let Some(error) = error { p.error role="alert" { (error) } }
            table {
                thead { tr { th scope="col" { "Email" } th scope="col" { "Name" } th scope="col" { "Admin" } th scope="col" { "Created" } th scope="col" { "Status" } } }
                tbody {
                    @for user in &users {
                        tr {
                            td { (user.email) }
                            td { (user.display_name) }
                            td { @if user.is_admin { "yes" } @else { "no" } }
                            td { (when(user.created_at)) }
                            td {
                                @let (action, label) = if user.disabled { ("enable", "Enable") } else { ("disable", "Disable") };
                                @if user.disabled { span.muted { "disabled " } } @else { "active " }
                                @if user.id != viewer.user.id {
                                    form.inline method="post" action={ "/admin/users/" (user.id) "/" (action) } {
                                        input type="hidden" name="_csrf" value=(viewer.csrf);
                                        button.secondary type="submit" aria-label={ (label) " " (user.email) } { (label) }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "New user" }
            form.stack.card method="post" action="/admin/users" {
                input type="hidden" name="_csrf" value=(viewer.csrf);
                label for="email" { "Email" input #email type="email" name="email" required; }
                label for="display_name" { "Display name (optional)" input #display_name name="display_name"; }
                label for="password" { "Initial password" input #password type="password" name="password" autocomplete="new-password" required; }
                label for="admin" { span { input #admin type="checkbox" name="admin" value="on"; " Identity administrator" } }
                button type="submit" { "Create user" }
            }
        }
    };
    Ok(html_response(status, page("Users", Some(viewer), body)))
}

/// The signed-in admin of a page, or the response to give instead.
fn admin_viewer<'a>(
    browser: &'a Browser,
    path: &str,
) -> Result<(&'a SsoSession, Viewer<'a>), Box<Response>> {
    let (session, viewer) = signed_in(browser, path)?;
    if !session.user.is_admin {
        return Err(Box::new(admin_only(&viewer)));
    }
    Ok((session, viewer))
}

/// `GET /admin/users`.
pub(in crate::api) async fn users(
    State(state): State<AppState>,
    browser: Browser,
) -> Result<Response, AppError> {
    match admin_viewer(&browser, "/admin/users") {
        Ok((_, viewer)) => users_page(&state, &viewer, StatusCode::OK, None).await,
        Err(response) => Ok(*response),
    }
}

/// `POST /admin/users`.
pub(in crate::api) async fn create(
    State(state): State<AppState>,
    browser: Browser,
    axum::Form(form): axum::Form<NewUserForm>,
) -> Result<Response, AppError> {
    let (session, viewer) = match form_sender(&browser, "/admin/users", form.csrf.as_deref()) {
        Ok(found) => found,
        Err(response) => return Ok(*response),
    };
    if !session.user.is_admin {
        return Ok(admin_only(&viewer));
    }
    let display = Some(form.display_name.trim()).filter(|d| !d.is_empty());
    let password = Secret::new(form.password);
    match create_user(
        &state,
        &session.user.id,
        &form.email,
        &password,
        display,
        form.admin.is_some(),
    )
    .await
    {
        Ok(_) => Ok(see_other("/admin/users")),
        Err(AppError::BadRequest(message) | AppError::Conflict(message)) => {
            users_page(&state, &viewer, StatusCode::BAD_REQUEST, Some(&message)).await
        }
        Err(other) => Err(other),
    }
}

/// `POST /admin/users/{id}/disable` and `/enable`.
pub(in crate::api) async fn disable_or_enable(
    State(state): State<AppState>,
    browser: Browser,
    Path((id, action)): Path<(String, String)>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, AppError> {
    let (session, viewer) = match form_sender(&browser, "/admin/users", form.csrf.as_deref()) {
        Ok(found) => found,
        Err(response) => return Ok(*response),
    };
    if !session.user.is_admin {
        return Ok(admin_only(&viewer));
    }
    let disabled = match action.as_str() {
        "disable" => true,
        "enable" => false,
        _ => return Err(AppError::NotFound),
    };
    let admin = Authenticated {
        user: session.user.clone(),
        credential_id: session.id.clone(),
        kind: CredentialKind::Session,
        scope: None,
    };
    match set_disabled(&state, &admin, &id, disabled).await {
        Ok(_) => Ok(see_other("/admin/users")),
        Err(AppError::BadRequest(message)) => {
            users_page(&state, &viewer, StatusCode::BAD_REQUEST, Some(&message)).await
        }
        Err(other) => Err(other),
    }
}

/// `GET /admin/tenants`.
pub(in crate::api) async fn tenants(
    State(state): State<AppState>,
    browser: Browser,
) -> Result<Response, AppError> {
    let viewer = match admin_viewer(&browser, "/admin/tenants") {
        Ok((_, viewer)) => viewer,
        Err(response) => return Ok(*response),
    };
    let tenants = state.inner.store.list_tenants().await?;
    let body = html! {
        main {
            h1 { "Tenants" }
            (admin_nav())
            table {
                thead { tr { th scope="col" { "Name" } th scope="col" { "Display name" } th scope="col" { "Cluster" } th scope="col" { "Phase" } th scope="col" { "Members" } th scope="col" { "URL" } } }
                tbody {
                    @for tenant in &tenants {
                        tr {
                            td { code { (tenant.name) } }
                            td { (tenant.display_name) }
                            td { (tenant.cluster) }
                            td { (tenant.phase) }
                            td { (tenant.members) }
                            td { @if !tenant.url.is_empty() { a href=(tenant.url) { (tenant.url) } } }
                        }
                    }
                }
            }
        }
    };
    Ok(html_response(
        StatusCode::OK,
        page("Tenants", Some(&viewer), body),
    ))
}
