//! The frame of every page: header "Atoll · <tenant>", navigation, the
//! signed-in subject, the tenant switcher and the log-out form.

use maud::{DOCTYPE, Markup, html};

use super::Page;
use super::assets;
use crate::api::AppState;

/// The navigation entries: (label, path).
const NAV: [(&str, &str); 3] = [
    ("Flows", "/ui/flows"),
    ("Executions", "/ui/executions"),
    ("Triggers", "/ui/triggers"),
];

/// A whole page: `title`, the `active` navigation entry, `body`.
pub fn page(state: &AppState, caller: &Page, title: &str, active: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if let Some(token) = &caller.csrf {
                    meta name="csrf-token" content=(token);
                }
                title { (title) " · Atoll · " (state.tenant) }
                link rel="stylesheet" href=(assets::path(assets::CSS));
                script src=(assets::path(assets::APP_JS)) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/flows" { "Atoll · " (state.tenant) }
                    nav aria-label="Main" {
                        ul {
                            @for (label, path) in NAV {
                                li {
                                    @if label == active {
                                        a href=(path) aria-current="page" { (label) }
                                    } @else {
                                        a href=(path) { (label) }
                                    }
                                }
                            }
                        }
                    }
                    div.who {
                        span.subject title="Signed in as" { (caller.who) }
                        " "
                        span.role { (format!("{:?}", caller.principal.role)) }
                        @if let Some(sessions) = &state.sessions {
                            @let issuer = sessions.issuer();
                            " "
                            a href={(issuer) "/tenants"} { "Switch tenant" }
                        }
                        form.inline method="post" action="/auth/logout" {
                            (caller.csrf_field())
                            button type="submit" { "Log out" }
                        }
                    }
                }
                main id="main" { (body) }
                footer.legal {
                    a href=(assets::path(assets::LICENSES)) { "Third-party licences" }
                }
            }
        }
    }
}

/// A page without the frame (errors, where the caller may be unknown).
pub fn bare(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Atoll" }
                link rel="stylesheet" href=(assets::path(assets::CSS));
            }
            body { main id="main" { (body) } }
        }
    }
}
