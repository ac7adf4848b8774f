//! User fields: email normalisation and display names.

/// Why an email is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidEmail(&'static str);

/// Emails are unique case-insensitively: stored trimmed and lowercased.
pub fn normalize_email(email: &str) -> Result<String, InvalidEmail> {
    let email = email.trim().to_lowercase();
    if email.len() > 254 {
        return Err(InvalidEmail("the email is longer than 254 characters"));
    }
    let Some((local, domain)) = email.rsplit_once('@') else {
        return Err(InvalidEmail("the email has no @"));
    };
    if local.is_empty() || domain.is_empty() || email.chars().any(char::is_whitespace) {
        return Err(InvalidEmail("the email is not of the form name@domain"));
    }
    Ok(email)
}

/// Display names default to the email's local part.
pub fn display_name(given: Option<&str>, email: &str) -> String {
    match given.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => name.chars().take(200).collect(),
        None => email.split('@').next().unwrap_or(email).to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_compared_lowercased() {
        assert_eq!(
            normalize_email("  Alice@ACME.test ").as_deref(),
            Ok("alice@acme.test")
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in ["", "alice", "@acme.test", "alice@", "al ice@acme.test"] {
            assert!(normalize_email(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_names_default_to_the_local_part() {
        assert_eq!(display_name(None, "alice@acme.test"), "alice");
        assert_eq!(display_name(Some("  "), "alice@acme.test"), "alice");
        assert_eq!(
            display_name(Some("Alice A."), "alice@acme.test"),
            "Alice A."
        );
    }
}
