use super::*;

fn env_of(url: &str) -> Vec<(&'static str, String)> {
    ConnInfo::parse(url).expect("a valid URL").env()
}

fn get<'a>(env: &'a [(&'static str, String)], name: &str) -> Option<&'a str> {
    env.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.as_str())
}

#[test]
fn the_operators_url_becomes_libpq_variables() {
    // What operator/src/build/database.rs writes (password percent-encoded).
    let env = env_of("postgres://atoll_acme:p%40ss%3Aw%2Frd@db.example.com:5433/atoll_acme");
    assert_eq!(get(&env, "PGHOST"), Some("db.example.com"));
    assert_eq!(get(&env, "PGPORT"), Some("5433"));
    assert_eq!(get(&env, "PGUSER"), Some("atoll_acme"));
    assert_eq!(get(&env, "PGPASSWORD"), Some("p@ss:w/rd"));
    assert_eq!(get(&env, "PGDATABASE"), Some("atoll_acme"));
    assert_eq!(get(&env, "PGCONNECT_TIMEOUT"), Some("10"));
    assert_eq!(get(&env, "PGAPPNAME"), Some("atoll-backup"));
}

#[test]
fn defaults_lists_and_parameters() {
    let env = env_of("postgresql://u:pw@h1,[::1]:6000/db?sslmode=verify-full&connect_timeout=3");
    assert_eq!(get(&env, "PGHOST"), Some("h1,::1"));
    assert_eq!(get(&env, "PGPORT"), Some("5432,6000"));
    assert_eq!(get(&env, "PGSSLMODE"), Some("verify-full"));
    assert_eq!(get(&env, "PGCONNECT_TIMEOUT"), Some("3"));
    let env = env_of("postgres://u@h/db?password=s%26cret&application_name=x");
    assert_eq!(get(&env, "PGPASSWORD"), Some("s&cret"));
    assert_eq!(get(&env, "PGAPPNAME"), Some("x"));
    // A socket directory as the host parameter.
    let env = env_of("postgres://u@/db?host=%2Fvar%2Frun%2Fpostgresql");
    assert_eq!(get(&env, "PGHOST"), Some("/var/run/postgresql"));
    assert_eq!(get(&env, "PGPASSWORD"), None);
}

#[test]
fn bad_urls_are_refused_without_echoing_them() {
    let cases = [
        ("mysql://u:secret1@h/db", UrlError::Scheme),
        ("postgres://u:secret1@h:port/db", UrlError::Port),
        ("postgres://u:secret1@h:99999/db", UrlError::Port),
        ("postgres://u:secret1@h", UrlError::Missing("database")),
        ("postgres://h/db", UrlError::Missing("user")),
        ("postgres://u:secret1@/db", UrlError::Missing("host")),
        (
            "postgres://u:secret1@h/db?sslpassword=x",
            UrlError::Parameter("sslpassword".into()),
        ),
        ("postgres://u:%ff@h/db", UrlError::Encoding("password")),
    ];
    for (url, expected) in cases {
        let err = ConnInfo::parse(url).expect_err(url);
        assert_eq!(err, expected, "{url}");
        assert!(!err.to_string().contains("secret1"), "{err}");
    }
}

#[test]
fn debug_display_and_redaction_hide_the_password() {
    let url = "postgres://atoll_acme:p%40ss%3Aw%2Frd@db:5432/atoll_acme";
    let info = ConnInfo::parse(url).expect("valid");
    for shown in [format!("{info:?}"), info.to_string()] {
        assert!(!shown.contains("p@ss"), "{shown}");
        assert!(!shown.contains("p%40ss"), "{shown}");
    }
    assert_eq!(info.to_string(), "atoll_acme@db:5432/atoll_acme");
    let noisy = format!("failed: {url} / p@ss:w/rd / p%40ss%3Aw%2Frd / p%40ss%3aw%2frd");
    let clean = info.redact(&noisy);
    assert!(
        !clean.contains("p@ss") && !clean.contains("p%40ss"),
        "{clean}"
    );
    assert_eq!(clean.matches("<redacted>").count(), 4, "{clean}");
    // Without a password only the URL is removed.
    let info = ConnInfo::parse("postgres://u@h/db").expect("valid");
    assert_eq!(info.redact("postgres://u@h/db x"), "<redacted> x");
}

#[test]
fn the_dbname_argument_is_a_quoted_conninfo() {
    assert_eq!(dbname_arg("atoll_acme"), "dbname='atoll_acme'");
    assert_eq!(dbname_arg("a'b\\c"), "dbname='a\\'b\\\\c'");
}
