//! Personal access tokens: `GET /tokens` lists them with the creation form;
//! `POST /tokens` creates one (scope read or write, expiry in days, the
//! password re-stated as the API asks) and shows it once; `POST
//! /tokens/{id}/revoke` revokes one. Every form carries the CSRF token.

use maud::{Markup, html};

use super::super::pats::{check_password_again, name_and_days, store_pat};
use super::super::sso::Browser;
use super::super::*;
use super::layout::{Viewer, error_page, html_response, page, see_other};
use super::{form_sender, signed_in, when};
use crate::store::PatInfo;

#[derive(Deserialize)]
pub(in crate::api) struct CreateForm {
    #[serde(default, rename = "_csrf")]
    csrf: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    days: String,
    #[serde(default)]
    password: String,
}

#[derive(Deserialize)]
pub(in crate::api) struct CsrfForm {
    #[serde(default, rename = "_csrf")]
    csrf: Option<String>,
}

/// The scope as the page says it: `write` is the API's `full`.
fn scope_label(scope: PatScope) -> &'static str {
    match scope {
        PatScope::Read => "read",
        PatScope::Full => "write",
    }
}

fn tokens_body(
    viewer: &Viewer<'_>,
    pats: &[PatInfo],
    max_days: u32,
    created: Option<&str>,
    error: Option<&str>,
) -> Markup {
    html! {
        main {
            h1 { "Access tokens" }
            p.muted { "Personal access tokens let scripts and the CLI act as you. A read token can only read (tenant tokens minted with it carry the Viewer role)." }
            @if let Some(token) = created {
                div.notice role="status" {
                    p { strong { "Your new token. Copy it now: it will not be shown again." } }
                    code.secret aria-label="New access token" { (token) }
                }
            }
            @if let Some(error) = error { p.error role="alert" { (error) } }
            @if pats.is_empty() {
                p.muted { "You have no access tokens." }
            } @else {
                table {
                    thead { tr { th scope="col" { "Name" } th scope="col" { "Scope" } th scope="col" { "Created" } th scope="col" { "Expires" } th scope="col" { "Revoke" } } }
                    tbody {
                        @for pat in pats {
                            tr {
                                td { (pat.name) }
                                td { span.role { (scope_label(pat.scope)) } }
                                td { (when(pat.created_at)) }
                                td { (when(pat.expires_at)) }
                                td {
                                    form.inline method="post" action={ "/tokens/" (pat.id) "/revoke" } {
                                        input type="hidden" name="_csrf" value=(viewer.csrf);
                                        button.danger type="submit" aria-label={ "Revoke " (pat.name) } { "Revoke" }
                                    }
                                }
                            }
                        }
                    }
                }
            }
            h2 { "New token" }
            form.stack.card method="post" action="/tokens" {
                input type="hidden" name="_csrf" value=(viewer.csrf);
                label for="name" { "Name" input #name name="name" required maxlength="100" placeholder="CI deploys"; }
                label for="scope" { "Scope"
                    select #scope name="scope" {
                        option value="read" selected { "read" }
                        option value="write" { "write" }
                    }
                }
                label for="days" { "Expires in (days)"
                    input #days type="number" name="days" min="1" max=(max_days) value=(max_days.min(30)) required;
                }
                label for="password" { "Your password" input #password type="password" name="password" autocomplete="current-password" required; }
                button type="submit" { "Create token" }
            }
        }
    }
}

async fn render(
    state: &AppState,
    viewer: &Viewer<'_>,
    status: StatusCode,
    created: Option<&str>,
    error: Option<&str>,
) -> Result<Response, AppError> {
    let pats = state.inner.store.list_pats(&viewer.user.id, now()).await?;
    let body = tokens_body(
        viewer,
        &pats,
        state.inner.config.pat_max_days,
        created,
        error,
    );
    Ok(html_response(
        status,
        page("Access tokens", Some(viewer), body),
    ))
}

/// `GET /tokens`.
pub(in crate::api) async fn tokens_page(
    State(state): State<AppState>,
    browser: Browser,
) -> Result<Response, AppError> {
    let (_, viewer) = match signed_in(&browser, "/tokens") {
        Ok(found) => found,
        Err(response) => return Ok(*response),
    };
    render(&state, &viewer, StatusCode::OK, None, None).await
}

/// `POST /tokens`.
pub(in crate::api) async fn create_token(
    State(state): State<AppState>,
    browser: Browser,
    ClientIp(ip): ClientIp,
    axum::Form(form): axum::Form<CreateForm>,
) -> Result<Response, AppError> {
    let (session, viewer) = match form_sender(&browser, "/tokens", form.csrf.as_deref()) {
        Ok(found) => found,
        Err(response) => return Ok(*response),
    };
    let max = state.inner.config.pat_max_days;
    let days = form.days.trim().parse::<u32>().ok();
    let scope = match form.scope.as_str() {
        "write" => PatScope::Full,
        _ => PatScope::Read,
    };
    let Some(days) = days.filter(|d| (1..=max).contains(d)) else {
        let message = format!("The expiry must be 1 to {max} days.");
        return render(
            &state,
            &viewer,
            StatusCode::BAD_REQUEST,
            None,
            Some(&message),
        )
        .await;
    };
    let (name, days) = match name_and_days(&form.name, Some(days), max) {
        Ok(found) => found,
        Err(error) => {
            let message = format!("{error}");
            return render(
                &state,
                &viewer,
                StatusCode::BAD_REQUEST,
                None,
                Some(&message),
            )
            .await;
        }
    };
    let now = now();
    match check_password_again(&state, &session.user, &Secret::new(form.password), &ip, now).await {
        Ok(()) => {}
        Err(AppError::TooManyRequests { .. }) => {
            return Ok(error_page(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many attempts",
                "Too many password attempts. Try again later.",
                Some(&viewer),
            ));
        }
        Err(AppError::Refused(_)) => {
            return render(
                &state,
                &viewer,
                StatusCode::FORBIDDEN,
                None,
                Some("The password is not correct."),
            )
            .await;
        }
        Err(other) => return Err(other),
    }
    let (token, _) = store_pat(&state, &session.user, name, scope, days, Some(&ip), now).await?;
    render(
        &state,
        &viewer,
        StatusCode::CREATED,
        Some(token.expose()),
        None,
    )
    .await
}

/// `POST /tokens/{id}/revoke`.
pub(in crate::api) async fn revoke_token(
    State(state): State<AppState>,
    browser: Browser,
    Path(id): Path<String>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Result<Response, AppError> {
    let (session, _) = match form_sender(&browser, "/tokens", form.csrf.as_deref()) {
        Ok(found) => found,
        Err(response) => return Ok(*response),
    };
    if state
        .inner
        .store
        .delete_credential(&session.user.id, &id, CredentialKind::Pat)
        .await?
    {
        state
            .inner
            .audit
            .record(
                now(),
                Some(&session.user.id),
                "access-token.revoke",
                Some(&id),
                Outcome::Success,
                None,
            )
            .await;
    }
    Ok(see_other("/tokens"))
}
