//! What the binary tells the person who started it.

use std::io::Write;

use crate::server::{FirstAdmin, Identity};

/// Prints where the service listens and how to log in as the first admin.
/// A generated password is written here, to the operator's terminal, once;
/// it never reaches the log stream.
pub fn print_welcome(identity: &Identity, out: &mut impl Write) -> std::io::Result<()> {
    let config = identity.config();
    writeln!(out, "atoll-identity listening on http://{}", config.listen)?;
    writeln!(out, "  issuer:   {}", config.issuer)?;
    writeln!(out, "  database: {}", redact_url(&config.database_url))?;
    match identity.first_admin() {
        Some(FirstAdmin::Generated { email, password }) => {
            writeln!(out)?;
            writeln!(
                out,
                "Created the first admin {email} with this generated password (shown once):"
            )?;
            writeln!(out)?;
            writeln!(out, "    {}", password.expose())?;
            writeln!(out)?;
            writeln!(out, "Log in with:")?;
            writeln!(
                out,
                "    curl -s http://{}/api/v1/login -H 'Content-Type: application/json' \\\n      -d '{{\"email\":\"{email}\",\"password\":\"<the password above>\"}}'",
                config.listen
            )?;
            writeln!(
                out,
                "To choose it yourself, start with {} set (or {}_FILE).",
                crate::config::ADMIN_PASSWORD,
                crate::config::ADMIN_PASSWORD
            )?;
        }
        Some(FirstAdmin::Configured { email }) => {
            writeln!(
                out,
                "Created the first admin {email}; log in with the password from {}.",
                crate::config::ADMIN_PASSWORD
            )?;
        }
        None => {}
    }
    out.flush()
}

/// Hides the password part of a database URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        None => url.to_owned(),
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_are_hidden() {
        assert_eq!(
            redact_url("postgres://atoll:s3cret@db:5432/identity"),
            "postgres://atoll:***@db:5432/identity"
        );
        assert_eq!(
            redact_url("sqlite://atoll-identity.db?mode=rwc"),
            "sqlite://atoll-identity.db?mode=rwc"
        );
    }
}
