//! "My tenants" (the tenant switcher) and the "not a member" page.

use maud::{Markup, html};

use super::super::sso::Browser;
use super::super::sso::url_encode;
use super::super::*;
use super::layout::{Viewer, html_response, page, see_other};
use crate::store::MyTenant;

/// The person's tenants: name, display name, role, a link to each.
fn tenant_table(tenants: &[MyTenant]) -> Markup {
    html! {
        @if tenants.is_empty() {
            p.muted { "You are not a member of any tenant yet. An administrator of a tenant can add you." }
        } @else {
            table {
                caption.muted { "Your tenants" }
                thead { tr { th scope="col" { "Tenant" } th scope="col" { "Name" } th scope="col" { "Role" } th scope="col" { "Open" } } }
                tbody {
                    @for tenant in tenants {
                        tr {
                            td { (tenant.display_name) }
                            td { code { (tenant.name) } }
                            td { span.role { (tenant.role.as_str()) } }
                            td {
                                @if tenant.url.is_empty() {
                                    span.muted { "not serving yet" }
                                } @else {
                                    a href={ (tenant.url.trim_end_matches('/')) "/" }
                                        aria-label={ "Open " (tenant.display_name) } { "Open" }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /`: the tenant switcher.
pub(in crate::api) async fn home() -> Response {
    see_other("/tenants")
}

/// The login page's address returning to `path`.
pub(in crate::api) fn login_then(path: &str) -> String {
    format!("/login?return_to={}", url_encode(path))
}

/// `GET /tenants`.
pub(in crate::api) async fn my_tenants_page(
    State(state): State<AppState>,
    browser: Browser,
) -> Result<Response, AppError> {
    let Some(session) = &browser.session else {
        return Ok(see_other(&login_then("/tenants")));
    };
    let tenants = state.inner.store.tenants_of(&session.user.email).await?;
    let viewer = Viewer {
        user: &session.user,
        csrf: &browser.csrf,
    };
    let body = html! {
        main {
            h1 { "My tenants" }
            p.muted { "Open a tenant: you are signed in to each of them with this login." }
            (tenant_table(&tenants))
        }
    };
    Ok(html_response(
        StatusCode::OK,
        page("My tenants", Some(&viewer), body),
    ))
}

/// The 403 page for a person who is not a member of `tenant`: says so and
/// lists their own tenants. No code is issued.
pub(in crate::api) async fn not_a_member_page(
    state: &AppState,
    browser: &Browser,
    tenant: &str,
) -> Result<Response, AppError> {
    let Some(session) = &browser.session else {
        return Err(AppError::Unauthorized);
    };
    let tenants = state.inner.store.tenants_of(&session.user.email).await?;
    let viewer = Viewer {
        user: &session.user,
        csrf: &browser.csrf,
    };
    let body = html! {
        main {
            h1 { "You are not a member of " (tenant) }
            p { "You are signed in as " strong { (session.user.email) } ", which is not a member of "
                strong { (tenant) } ". Ask one of its administrators to add you, or open one of your own tenants." }
            (tenant_table(&tenants))
        }
    };
    let title = format!("Not a member of {tenant}");
    Ok(html_response(
        StatusCode::FORBIDDEN,
        page(&title, Some(&viewer), body),
    ))
}
