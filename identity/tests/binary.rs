//! The `atoll-identity` binary as an operator runs it: configuration from
//! the environment and mounted secret files, a refusal that names what is
//! missing, graceful exit on SIGTERM, and nothing secret on its output.

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_atoll-identity");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[test]
fn without_an_admin_password_off_a_terminal_it_refuses_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .env("ATOLL_IDENTITY_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ATOLL_IDENTITY_ADMIN_PASSWORD"),
        "the error names the variable: {stderr}"
    );
}

#[tokio::test]
async fn runs_from_secret_files_serves_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let password = "admin-from-a-mounted-secret";
    let service_token = "service-token-from-a-mounted-secret-0123";
    std::fs::write(dir.path().join("password"), format!("{password}\n")).expect("write");
    std::fs::write(dir.path().join("token"), service_token).expect("write");
    let port = free_port();
    let mut child = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .env("ATOLL_IDENTITY_LISTEN", format!("127.0.0.1:{port}"))
        .env("ATOLL_IDENTITY_ADMIN_EMAIL", "ops@atoll.test")
        .env(
            "ATOLL_IDENTITY_ADMIN_PASSWORD_FILE",
            dir.path().join("password"),
        )
        .env(
            "ATOLL_IDENTITY_SERVICE_TOKEN_FILE",
            dir.path().join("token"),
        )
        .env("ATOLL_IDENTITY_ARGON2_MEMORY_KIB", "64")
        .env("ATOLL_IDENTITY_ARGON2_ITERATIONS", "1")
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("read");
    assert_eq!(
        first.trim(),
        format!("atoll-identity listening on http://127.0.0.1:{port}")
    );

    // It answers (it listens before it prints): the admin logs in with the
    // password from the file.
    let response = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/api/v1/login"))
        .json(&serde_json::json!({"email": "ops@atoll.test", "password": password}))
        .send()
        .await
        .expect("login request");
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let login = response.text().await.expect("body");
    assert!(login.contains("atoll_ses_"), "{login}");

    // SIGTERM to our own child, by its pid: a clean exit.
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = child.wait().expect("wait");
    assert!(status.success(), "exit after SIGTERM: {status}");

    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("stdout");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    assert!(stderr.contains("shutting down"), "{stderr}");
    let session = login
        .split('"')
        .find(|part| part.starts_with("atoll_ses_"))
        .expect("session token");
    for secret in [password, service_token, session] {
        assert!(!stderr.contains(secret), "a secret in the log");
        assert!(
            !rest.contains(secret) && !first.contains(secret),
            "a secret on stdout"
        );
    }
}

#[test]
fn help_documents_the_configuration_and_exits_and_unknown_arguments_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    for flag in ["--help", "-h"] {
        // No configuration and no database: --help must not start anything.
        let output = Command::new(BIN)
            .current_dir(dir.path())
            .env_clear()
            .arg(flag)
            .stdin(Stdio::null())
            .output()
            .expect("run");
        assert!(output.status.success(), "{flag}: {output:?}");
        let help = String::from_utf8_lossy(&output.stdout);
        for documented in [
            "ATOLL_IDENTITY_CLUSTER_TOKENS_DIR",
            "ATOLL_IDENTITY_SERVICE_CLUSTER",
            "ATOLL_IDENTITY_PAT_MAX_DAYS",
            "ATOLL_IDENTITY_TRUSTED_PROXIES",
            "ATOLL_IDENTITY_KEY_ENCRYPTION_KEY",
        ] {
            assert!(help.contains(documented), "{flag} documents {documented}");
        }
    }
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .arg("--version")
        .output()
        .expect("run");
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("atoll-identity "));
    let output = Command::new(BIN)
        .current_dir(dir.path())
        .env_clear()
        .arg("--listen=0.0.0.0:80")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--help"));
    assert_eq!(
        std::fs::read_dir(dir.path()).expect("dir").count(),
        0,
        "no database was created"
    );
}
