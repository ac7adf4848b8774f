//! Everything identity logs while handling every kind of secret, captured
//! at TRACE level from every crate, contains none of them.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::json;
use support::{ADMIN_PASSWORD, SERVICE_TOKEN, Service, config};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn captured() -> &'static Captured {
    static LOG: OnceLock<Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let log = Captured::default();
        let writer = log.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        log
    })
}

fn text() -> String {
    String::from_utf8_lossy(&captured().0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn no_secret_reaches_the_log_on_sqlite() {
    captured();
    exercise(&support::Databases::sqlite()).await;
}

#[tokio::test]
async fn no_secret_reaches_the_log_on_postgres() {
    captured();
    exercise(&support::Databases::postgres().await).await;
}

/// Runs every path that handles a secret, then greps the whole log.
async fn exercise(databases: &support::Databases) {
    let url = databases.fresh("logs").await;
    let kek = STANDARD.encode([0x5au8; 32]);
    let mut settings = config(&url);
    settings.key_encryption_key = Some(atoll_identity::config::Secret::new(kek.clone()));
    let svc = Service::start(settings).await;
    let alice_pw = "alice-secret-Pa55-phrase";
    let wrong_pw = "wrong-secret-Pa55-phrase";
    let reset_pw = "reset-secret-Pa55-phrase";
    let mut secrets: Vec<String> = vec![
        ADMIN_PASSWORD.into(),
        SERVICE_TOKEN.into(),
        alice_pw.into(),
        wrong_pw.into(),
        reset_pw.into(),
        kek,
    ];

    let admin = svc.admin().await;
    let alice_id = svc.sign_up(&admin, "alice@acme.test", alice_pw).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": "alice@acme.test", "role": "Admin"}]),
    )
    .await;
    // A failed login, a lockout-counting one, a malformed body carrying a
    // password.
    let (status, _) = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": "alice@acme.test", "password": wrong_pw}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": "alice@acme.test", "password": wrong_pw, "x": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let session = svc.login("alice@acme.test", alice_pw).await;
    let (_, pat) = svc
        .post(
            "/api/v1/me/access-tokens",
            Some(&session),
            json!({"name": "ci", "scope": "full", "password": alice_pw}),
        )
        .await;
    let pat = pat["token"].as_str().expect("pat").to_owned();
    let (_, token) = svc.tenant_token(&pat, "acme").await;
    let jwt = token["accessToken"].as_str().expect("jwt").to_owned();
    // Refused credentials are logged no more than accepted ones.
    let (status, _) = svc
        .get("/api/v1/me", Some("atoll_ses_not-a-real-session-token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = svc
        .put(
            "/api/v1/tenants/acme",
            Some("wrong-service-token-0123456789abcdef"),
            json!({"cluster": "x"}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    exercise_sso(&svc, alice_pw, &mut secrets).await;
    let (status, _) = svc
        .put(
            &format!("/api/v1/admin/users/{alice_id}/password"),
            Some(&admin),
            json!({"password": reset_pw}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = svc
        .post("/api/v1/logout", Some(&admin), serde_json::Value::Null)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    secrets.extend([
        session,
        admin,
        pat,
        jwt,
        "atoll_ses_not-a-real-session-token".into(),
        "wrong-service-token-0123456789abcdef".into(),
    ]);
    for key in svc.keys.records() {
        let der = &key.private_pkcs8;
        // The PKCS#8 document and the 32-byte seed inside it, in every
        // encoding a log line could carry.
        let seed = &der[16..48];
        for bytes in [der.as_slice(), seed] {
            secrets.push(STANDARD.encode(bytes));
            secrets.push(URL_SAFE_NO_PAD.encode(bytes));
            secrets.push(hex(bytes));
            secrets.push(format!("{bytes:?}"));
        }
    }
    svc.stop().await;

    let log = text();
    assert!(log.contains("atoll_identity"), "the log was captured");
    assert!(log.len() > 1000, "the log has content: {} bytes", log.len());
    let leaked: Vec<&String> = secrets
        .iter()
        .filter(|s| log.contains(s.as_str()))
        .collect();
    assert!(
        leaked.is_empty(),
        "secrets in the log: {} of {}",
        leaked.len(),
        secrets.len()
    );
}

/// Single sign-on: the login form, a code, its exchange, a refresh, and
/// logout with an ID token hint (in the query) and back-channel logout.
async fn exercise_sso(svc: &Service, password: &str, secrets: &mut Vec<String>) {
    use aws_lc_rs::digest;
    use support::browser::{Browser, form, query_of};

    let verifier = "a-pkce-verifier-that-is-long-enough-0123456789";
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    let redirect_uri = "https://acme.atoll.test/auth/callback";
    let authorize = format!(
        "/oauth2/authorize?{}",
        form(&[
            ("response_type", "code"),
            ("client_id", "acme"),
            ("redirect_uri", redirect_uri),
            ("scope", "openid email"),
            ("state", "s"),
            ("nonce", "n"),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ])
    );
    let mut browser = Browser::new(&svc.base);
    let answer = browser
        .log_in_at(&authorize, "alice@acme.test", password)
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let page = browser.get(&authorize).await;
    let code = query_of(page.location().expect("code redirect"))["code"].clone();
    let tokens: serde_json::Value = svc
        .http
        .post(format!("{}/oauth2/token", svc.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", redirect_uri),
            ("client_id", "acme"),
            ("code_verifier", verifier),
        ]))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    let field = |name: &str| tokens[name].as_str().expect(name).to_owned();
    let (id_token, refresh) = (field("id_token"), field("refresh_token"));
    secrets.extend([
        code,
        verifier.to_owned(),
        id_token.clone(),
        refresh,
        field("access_token"),
    ]);
    secrets.extend(browser.cookies.values().cloned());
    let page = browser
        .get(&format!(
            "/oauth2/logout?{}",
            form(&[("id_token_hint", &id_token)])
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
}
