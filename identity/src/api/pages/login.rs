//! The login page: `GET /login` shows the form, `POST /login` checks it
//! (CSRF by double submit, the same throttle and lockout as the API login),
//! starts the SSO session (the cookie) and returns to where the person was
//! going, a local path only.

use maud::{Markup, html};

use super::super::sso::{
    Browser, cookie, csrf_matches, local_path, login_csrf_cookie_name, set_cookie, sso_cookie_name,
};
use super::super::*;
use super::layout::{error_page, html_response, page, see_other, with_cookie};

#[derive(Deserialize, Default)]
pub(in crate::api) struct LoginQuery {
    #[serde(default)]
    return_to: Option<String>,
}

#[derive(Deserialize)]
pub(in crate::api) struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    #[serde(rename = "_csrf")]
    csrf: Option<String>,
    #[serde(default)]
    return_to: Option<String>,
}

/// How long the login form's CSRF cookie lives.
const LOGIN_CSRF_MAX_AGE: i64 = 3600;

/// The login form, with its double-submit token (cookie + field).
pub(in crate::api) fn login_page(
    state: &AppState,
    headers: &HeaderMap,
    status: StatusCode,
    return_to: &str,
    email: &str,
    error: Option<&str>,
) -> Result<Response, AppError> {
    // The browser's token if it has one (another tab's form stays valid).
    let token = match cookie(headers, login_csrf_cookie_name(state)) {
        Some(t)
            if t.len() == 43
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            t.to_owned()
        }
        _ => sessions::random_token(32)?,
    };
    let body = login_form(&token, return_to, email, error);
    let response = html_response(status, page("Log in", None, body));
    let cookie = set_cookie(
        state,
        login_csrf_cookie_name(state),
        &token,
        "Strict",
        LOGIN_CSRF_MAX_AGE,
    );
    Ok(with_cookie(response, cookie))
}

fn login_form(csrf: &str, return_to: &str, email: &str, error: Option<&str>) -> Markup {
    html! {
        main.narrow {
            div.card {
                h1 { "Log in to Atoll" }
                @if let Some(error) = error {
                    p.error role="alert" { (error) }
                }
                form.stack method="post" action="/login" {
                    input type="hidden" name="_csrf" value=(csrf);
                    input type="hidden" name="return_to" value=(return_to);
                    label for="email" { "Email"
                        input #email type="email" name="email" value=(email)
                            autocomplete="username" required autofocus;
                    }
                    label for="password" { "Password"
                        input #password type="password" name="password"
                            autocomplete="current-password" required;
                    }
                    button type="submit" { "Log in" }
                }
            }
        }
    }
}

/// `GET /login`: the form, or straight on when already signed in.
pub(in crate::api) async fn show_login(
    State(state): State<AppState>,
    browser: Browser,
    headers: HeaderMap,
    Query(query): Query<LoginQuery>,
) -> Result<Response, AppError> {
    let return_to = local_path(query.return_to.as_deref());
    if browser.session.is_some() {
        return Ok(see_other(&return_to));
    }
    login_page(&state, &headers, StatusCode::OK, &return_to, "", None)
}

/// `POST /login`.
pub(in crate::api) async fn submit_login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    axum::Form(form): axum::Form<LoginForm>,
) -> Result<Response, AppError> {
    let return_to = local_path(form.return_to.as_deref());
    let expected = cookie(&headers, login_csrf_cookie_name(&state)).unwrap_or_default();
    if expected.is_empty() || !csrf_matches(expected, form.csrf.as_deref()) {
        let message = "The login form expired or was not sent from this service. Try again.";
        return login_page(
            &state,
            &headers,
            StatusCode::FORBIDDEN,
            &return_to,
            "",
            Some(message),
        );
    }
    let inner = &state.inner;
    let now = now();
    let email = super::super::login::login_email(&form.email);
    if let Err(refusal) = inner.throttle.admit(&ip, &email, now).await? {
        let (Refusal::Locked { retry_after } | Refusal::TooManyAttempts { retry_after }) = refusal;
        inner
            .audit
            .record(now, Some(&email), "login", None, Outcome::Denied, Some(&ip))
            .await;
        let message = format!("Too many attempts. Try again in {retry_after} seconds.");
        return Ok(error_page(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many attempts",
            &message,
            None,
        ));
    }
    let password = Secret::new(form.password);
    let user = match super::super::login::check_login(inner, &email, &password, &ip, now).await {
        Ok(user) => user,
        Err(AppError::InvalidCredentials) => {
            let message = "Invalid email or password.";
            let shown = form.email.chars().take(254).collect::<String>();
            return login_page(
                &state,
                &headers,
                StatusCode::UNAUTHORIZED,
                &return_to,
                &shown,
                Some(message),
            );
        }
        Err(other) => return Err(other),
    };
    inner.throttle.succeeded(&ip, &email).await?;
    let (token, expires_at) = super::super::login::start_session(inner, &user, now).await?;
    inner
        .audit
        .record(
            now,
            Some(&user.id),
            "login",
            None,
            Outcome::Success,
            Some(&ip),
        )
        .await;
    let sso = set_cookie(
        &state,
        sso_cookie_name(&state),
        token.expose(),
        "Lax",
        expires_at.saturating_sub(now),
    );
    let spent = set_cookie(&state, login_csrf_cookie_name(&state), "", "Strict", 0);
    Ok(with_cookie(with_cookie(see_other(&return_to), sso), spent))
}
