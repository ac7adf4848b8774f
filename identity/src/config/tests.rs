//! Configuration's unit tests: defaults, files, validation, redaction.

use std::collections::HashMap;

use super::*;

fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_lookup(|name| map.get(name).cloned())
}

#[test]
fn no_configuration_gives_a_local_sqlite_service() {
    let config = config(&[]).expect("defaults");
    assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
    assert_eq!(config.issuer, "http://127.0.0.1:7800");
    assert_eq!(config.argon2, Argon2Params::default());
    assert!(config.admin_password.is_none());
}

#[test]
fn secrets_come_from_files_without_the_trailing_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("token");
    std::fs::write(&path, "s3rvice-token-with-enough-characters!!\n").expect("write");
    let path = path.to_string_lossy().into_owned();
    let config = config(&[("ATOLL_IDENTITY_SERVICE_TOKEN_FILE", &path)]).expect("config");
    assert_eq!(
        config.service_token.as_ref().map(Secret::expose),
        Some("s3rvice-token-with-enough-characters!!")
    );
}

#[test]
fn a_value_and_its_file_together_are_refused() {
    let error = config(&[
        ("ATOLL_IDENTITY_ADMIN_PASSWORD", "x"),
        ("ATOLL_IDENTITY_ADMIN_PASSWORD_FILE", "/nonexistent"),
    ])
    .expect_err("both set");
    assert!(
        error
            .to_string()
            .contains("ATOLL_IDENTITY_ADMIN_PASSWORD_FILE")
    );
}

#[test]
fn errors_name_the_variable_and_never_the_secret() {
    let error = config(&[("ATOLL_IDENTITY_SERVICE_TOKEN", "short-secret")]).expect_err("too short");
    let shown = format!("{error} {error:?}");
    assert!(shown.contains("ATOLL_IDENTITY_SERVICE_TOKEN"));
    assert!(!shown.contains("short-secret"));
    let missing =
        config(&[("ATOLL_IDENTITY_ISSUER_FILE", "/nonexistent/issuer")]).expect_err("missing file");
    assert!(missing.to_string().contains("/nonexistent/issuer"));
}

#[test]
fn a_defaulted_issuer_follows_the_bound_port() {
    let mut config = config(&[("ATOLL_IDENTITY_LISTEN", "127.0.0.1:0")]).expect("ok");
    config.bound_to("127.0.0.1:4321".parse().expect("addr"));
    assert_eq!(config.issuer, "http://127.0.0.1:4321");
    let mut explicit = config_with_issuer();
    explicit.bound_to("127.0.0.1:4321".parse().expect("addr"));
    assert_eq!(explicit.issuer, "https://id.example");
}

fn config_with_issuer() -> Config {
    config(&[
        ("ATOLL_IDENTITY_LISTEN", "127.0.0.1:0"),
        ("ATOLL_IDENTITY_ISSUER", "https://id.example"),
    ])
    .expect("ok")
}

#[test]
fn the_issuer_must_be_a_clean_url() {
    assert!(config(&[("ATOLL_IDENTITY_ISSUER", "https://id.example/")]).is_err());
    assert!(config(&[("ATOLL_IDENTITY_ISSUER", "id.example")]).is_err());
    let ok = config(&[("ATOLL_IDENTITY_ISSUER", "https://id.example")]).expect("valid");
    assert_eq!(ok.issuer, "https://id.example");
}

#[test]
fn the_command_line_only_asks_for_help_or_the_version() {
    let args = |a: &[&str]| invocation(a.iter().map(|s| (*s).to_owned()));
    assert_eq!(args(&[]), Invocation::Run);
    assert_eq!(args(&["--help"]), Invocation::Help);
    assert_eq!(args(&["-h"]), Invocation::Help);
    assert_eq!(args(&["--version"]), Invocation::Version);
    assert_eq!(
        args(&["--listen", "0.0.0.0:80"]),
        Invocation::Unknown("--listen".into())
    );
    for name in [
        CLUSTER_TOKENS_DIR,
        SERVICE_CLUSTER,
        PAT_MAX_DAYS,
        TRUSTED_PROXIES,
        KEY_ENCRYPTION_KEY,
        SERVICE_TOKEN,
        LISTEN,
        ISSUER,
    ] {
        assert!(USAGE.contains(name), "--help documents {name}");
    }
}

#[test]
fn cluster_and_proxy_settings_are_validated() {
    let ok = config(&[
        ("ATOLL_IDENTITY_SERVICE_CLUSTER", "eu-west-1"),
        (
            "ATOLL_IDENTITY_TRUSTED_PROXIES",
            "10.0.0.0/8, fd00::/8,192.0.2.1",
        ),
        ("ATOLL_IDENTITY_PAT_MAX_DAYS", "30"),
    ])
    .expect("valid");
    assert_eq!(ok.service_cluster, "eu-west-1");
    assert_eq!(ok.trusted_proxies.len(), 3);
    assert_eq!(ok.pat_max_days, 30);
    assert_eq!(config(&[]).expect("defaults").pat_max_days, 90);
    assert_eq!(config(&[]).expect("defaults").service_cluster, "default");
    for (name, value) in [
        ("ATOLL_IDENTITY_SERVICE_CLUSTER", "Not_A_Label"),
        ("ATOLL_IDENTITY_TRUSTED_PROXIES", "10.0.0.0/33"),
        ("ATOLL_IDENTITY_TRUSTED_PROXIES", "in-cluster"),
        ("ATOLL_IDENTITY_PAT_MAX_DAYS", "0"),
        ("ATOLL_IDENTITY_CLUSTER_TOKENS_DIR", "/nonexistent/clusters"),
    ] {
        let error = config(&[(name, value)]).expect_err(value);
        assert!(error.to_string().contains(name), "{error}");
    }
}

#[test]
fn secrets_are_redacted_in_debug_output() {
    let config = config(&[("ATOLL_IDENTITY_ADMIN_PASSWORD", "hunter2-hunter2")]).expect("ok");
    assert!(!format!("{config:?}").contains("hunter2"));
}
