//! The wake gate's own answers, pure: the "waking up" page a browser gets
//! (it reloads itself), and the plain answers for suspended tenants,
//! unknown hosts and requests held past the limit.

/// Seconds a client is told to wait before trying again.
pub const RETRY_AFTER_SECONDS: u64 = 2;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn page(title: &str, body: &str, refresh: bool) -> String {
    let refresh = if refresh {
        format!("<meta http-equiv=\"refresh\" content=\"{RETRY_AFTER_SECONDS}\">")
    } else {
        String::new()
    };
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">{refresh}<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><title>{title}</title><style>body{{font-family:system-ui,sans-serif;margin:15vh auto;max-width:32rem;padding:0 1rem;color:#1f2933}}h1{{font-size:1.4rem}}</style></head><body><h1>{title}</h1><p>{body}</p></body></html>"
    )
}

/// The page a browser gets while its tenant wakes: it reloads itself.
pub fn waking(tenant: &str) -> String {
    page(
        "Waking up…",
        &format!(
            "{} was asleep and is starting now. This page reloads by itself in a moment.",
            escape(tenant)
        ),
        true,
    )
}

/// The answer for a suspended tenant, as HTML or text.
pub fn suspended(tenant: &str, html: bool) -> String {
    let text = format!(
        "{} is suspended by the platform's operators; it does not answer until they resume it.",
        escape(tenant)
    );
    if html {
        page("Suspended", &text, false)
    } else {
        format!("{text}\n")
    }
}

/// The answer when a wake took longer than the hold limit.
pub fn still_waking(tenant: &str, held_seconds: u64) -> String {
    format!(
        "{tenant} is still waking after {held_seconds} s; retry in {RETRY_AFTER_SECONDS} s (Retry-After).\n"
    )
}

/// The answer while a replica that has just started reads the Tenants.
pub fn gate_starting() -> String {
    format!("The wake gate is starting; retry in {RETRY_AFTER_SECONDS} s (Retry-After).\n")
}

/// The answer for a host no tenant is served at.
pub fn unknown_host(host: &str) -> String {
    format!("No tenant is served at {host:?}.\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_names_and_only_the_waking_page_reloads() {
        let page = waking("<acme>");
        assert!(page.contains("&lt;acme&gt; was asleep"), "{page}");
        assert!(
            page.contains("http-equiv=\"refresh\" content=\"2\""),
            "{page}"
        );
        assert!(!suspended("acme", true).contains("refresh"));
        assert!(suspended("acme", false).starts_with("acme is suspended"));
        assert!(still_waking("acme", 60).contains("after 60 s"));
        assert!(gate_starting().contains("retry in 2 s"));
        assert_eq!(
            unknown_host("x.example.com"),
            "No tenant is served at \"x.example.com\".\n"
        );
    }
}
