//! Unit tests of `settings`.

use super::*;

const CONFIG: &str = r#"{"endpoint":"https://s3.example.com","bucket":"tenant-backups","region":"eu-west-3","pathStyle":true,"prefix":"atoll","allowHttp":false,"tenantUid":"6f0c2a6e-93b4-4c1e-9a53-0d3f1c1b2a77","tenantName":"acme"}"#;

fn dir_with(config: &str, creds: Option<(&str, &str)>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join(CONFIG_FILE), config).expect("write config");
    if let Some((id, secret)) = creds {
        std::fs::write(dir.path().join(ACCESS_KEY_ID_FILE), id).expect("write id");
        std::fs::write(dir.path().join(SECRET_ACCESS_KEY_FILE), secret).expect("write secret");
    }
    dir
}

fn with_field(field: &str, value: serde_json::Value) -> String {
    let mut v: serde_json::Value = serde_json::from_str(CONFIG).expect("json");
    v[field] = value;
    v.to_string()
}

fn error_of(config: &str) -> String {
    let dir = dir_with(config, None);
    Settings::load(dir.path()).expect_err("invalid").to_string()
}

#[test]
fn loads_a_full_configuration() {
    let dir = dir_with(CONFIG, Some(("AKIDEXAMPLE\n", "s3cr3t-value\n")));
    let s = Settings::load(dir.path()).expect("valid");
    assert_eq!(s.endpoint, "https://s3.example.com");
    assert_eq!(s.bucket, "tenant-backups");
    assert_eq!(s.region, "eu-west-3");
    assert!(s.path_style);
    assert_eq!(s.prefix.as_deref(), Some("atoll"));
    assert_eq!(s.tenant_uid, "6f0c2a6e-93b4-4c1e-9a53-0d3f1c1b2a77");
    assert_eq!(s.tenant_name.as_deref(), Some("acme"));
    let c = s.credentials.as_ref().expect("credentials");
    assert_eq!(c.access_key_id, "AKIDEXAMPLE");
    assert_eq!(c.secret_access_key, "s3cr3t-value");
}

#[test]
fn debug_and_redact_hide_the_credentials() {
    let dir = dir_with(CONFIG, Some(("AKIDEXAMPLE", "s3cr3t-value")));
    let s = Settings::load(dir.path()).expect("valid");
    let debug = format!("{s:?}");
    assert!(!debug.contains("s3cr3t-value"), "{debug}");
    assert!(!debug.contains("AKIDEXAMPLE"), "{debug}");
    assert_eq!(
        s.redact("denied for AKIDEXAMPLE with s3cr3t-value"),
        "denied for <redacted> with <redacted>"
    );
    let inner = std::io::Error::other("signature of s3cr3t-value");
    let outer = SettingsError::Read {
        path: "/x/AKIDEXAMPLE".into(),
        source: inner,
    };
    assert_eq!(
        s.redact_error(&outer),
        "cannot read /x/<redacted>: signature of <redacted>"
    );
}

#[test]
fn defaults_and_anonymous() {
    let minimal =
        r#"{"endpoint":"http://127.0.0.1:9000/","bucket":"b-1","allowHttp":true,"tenantUid":"u1"}"#;
    let dir = dir_with(minimal, None);
    let s = Settings::load(dir.path()).expect("valid");
    assert_eq!(s.region, DEFAULT_REGION);
    assert_eq!(s.endpoint, "http://127.0.0.1:9000");
    assert!(!s.path_style);
    assert_eq!(s.prefix, None);
    assert_eq!(s.tenant_name, None);
    assert!(s.credentials.is_none());
}

#[test]
fn invalid_fields_are_named_with_the_file() {
    let cases = [
        (
            "endpoint",
            serde_json::json!("http://s3.example.com"),
            "allowHttp",
        ),
        (
            "endpoint",
            serde_json::json!("ftp://s3.example.com"),
            "https://",
        ),
        (
            "endpoint",
            serde_json::json!("https://s3.example.com/path"),
            "without a path",
        ),
        (
            "endpoint",
            serde_json::json!("https://u:p@s3.example.com"),
            "user info",
        ),
        ("endpoint", serde_json::json!("https://"), "no host"),
        ("bucket", serde_json::json!("Tenant_Backups"), "lowercase"),
        ("bucket", serde_json::json!("ab"), "3-63"),
        ("region", serde_json::json!("EU WEST"), "lowercase"),
        ("prefix", serde_json::json!("/atoll"), "empty segment"),
        ("prefix", serde_json::json!("atoll/"), "empty segment"),
        ("prefix", serde_json::json!("a/../b"), "'..'"),
        ("prefix", serde_json::json!("a b"), "letters"),
        ("tenantUid", serde_json::json!("../other"), "tenant uid"),
        ("tenantName", serde_json::json!("Acme"), "tenant name"),
    ];
    for (field, value, expected) in cases {
        let message = error_of(&with_field(field, value.clone()));
        assert!(
            message.contains("config.json: field `")
                && message.contains(&format!("`{field}`"))
                && message.contains(expected),
            "{field}={value}: {message}"
        );
    }
}

#[test]
fn parse_errors_name_the_file_and_field() {
    let message = error_of(r#"{"endpoint":"https://s3.example.com"}"#);
    assert!(
        message.contains("config.json") && message.contains("bucket"),
        "{message}"
    );
    let message = error_of(&with_field("secretAccessKey", serde_json::json!("x")));
    assert!(
        message.contains("unknown field `secretAccessKey`"),
        "{message}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let message = Settings::load(dir.path()).expect_err("no file").to_string();
    assert!(
        message.contains("cannot read") && message.contains("config.json"),
        "{message}"
    );
}

#[test]
fn credentials_come_in_pairs() {
    let dir = dir_with(CONFIG, None);
    std::fs::write(dir.path().join(ACCESS_KEY_ID_FILE), "AKIDEXAMPLE").expect("write");
    let message = Settings::load(dir.path())
        .expect_err("one file")
        .to_string();
    assert!(message.contains("secretAccessKey: missing"), "{message}");
    assert!(!message.contains("AKIDEXAMPLE"), "{message}");
    std::fs::write(dir.path().join(SECRET_ACCESS_KEY_FILE), "  \n").expect("write");
    let message = Settings::load(dir.path()).expect_err("empty").to_string();
    assert!(message.contains("secretAccessKey: is empty"), "{message}");
}
