//! Single sign-on test helpers: tenants served on loopback that record
//! back-channel logout tokens, PKCE, the authorize URL, the token endpoint.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};

use super::browser::{Browser, form, query_of};
use super::{Service, config};
use atoll_identity::verify::KeySet;

pub const ALICE: &str = "alice@acme.test";
pub const ALICE_PW: &str = "alice-correct-horse";
pub const CAROL: &str = "carol@else.test";
pub const CAROL_PW: &str = "carol-battery-staple";

/// A tenant served by a little HTTP server on loopback that records the
/// back-channel logout tokens it receives.
pub struct TenantApp {
    pub url: String,
    pub logout_tokens: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TenantApp {
    /// Listens on 127.0.0.1; its URL names `<name>.localhost` (RFC 6761),
    /// which identity's back-channel client resolves to loopback.
    pub async fn start(name: &str) -> TenantApp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr: SocketAddr = listener.local_addr().expect("addr");
        let logout_tokens = Arc::new(Mutex::new(Vec::new()));
        let seen = logout_tokens.clone();
        let app = axum::Router::new().route(
            "/auth/backchannel-logout",
            axum::routing::post(move |body: String| {
                let seen = seen.clone();
                async move {
                    let token = body
                        .strip_prefix("logout_token=")
                        .unwrap_or_default()
                        .to_owned();
                    seen.lock().expect("lock").push(token);
                    "ok"
                }
            }),
        );
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        TenantApp {
            url: format!("http://{name}.localhost:{}", addr.port()),
            logout_tokens,
            task,
        }
    }

    pub fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.url)
    }
}

impl Drop for TenantApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers `name` at `url` with explicit client URIs.
pub async fn register(svc: &Service, name: &str, url: &str, members: Value) {
    let (status, body) = svc
        .put(
            &format!("/api/v1/tenants/{name}"),
            Some(super::SERVICE_TOKEN),
            json!({
                "displayName": format!("{name} Corp"),
                "url": url,
                "phase": "Ready",
                "uid": format!("uid-{name}"),
                "redirectUri": format!("{url}/auth/callback"),
                "backchannelLogoutUri": format!("{url}/auth/backchannel-logout"),
                "members": members,
            }),
        )
        .await;
    assert!(status.is_success(), "register {name}: {body}");
    assert_eq!(body["redirectUri"], format!("{url}/auth/callback"));
}

/// A PKCE pair: (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    let verifier = format!(
        "verifier-{}-0123456789abcdefghijklmnopqrstuvwxyz",
        uuid_like()
    );
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    (verifier, challenge)
}

pub fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The authorize path for `client` with `redirect_uri`, and `extra` params
/// replacing the defaults (an empty value drops the parameter).
pub fn authorize_path(
    client: &str,
    redirect_uri: &str,
    challenge: &str,
    extra: &[(&str, &str)],
) -> String {
    let mut params: Vec<(&str, String)> = vec![
        ("response_type", "code".into()),
        ("client_id", client.into()),
        ("redirect_uri", redirect_uri.into()),
        ("scope", "openid email".into()),
        ("state", "state-123".into()),
        ("nonce", "nonce-456".into()),
        ("code_challenge", challenge.into()),
        ("code_challenge_method", "S256".into()),
    ];
    for (name, value) in extra {
        params.retain(|(n, _)| n != name);
        if !value.is_empty() {
            params.push((name, (*value).to_owned()));
        }
    }
    let fields: Vec<(&str, &str)> = params.iter().map(|(n, v)| (*n, v.as_str())).collect();
    format!("/oauth2/authorize?{}", form(&fields))
}

/// Asks for a code as the signed-in `browser`; returns it.
pub async fn code_for(
    browser: &mut Browser,
    client: &str,
    redirect_uri: &str,
    challenge: &str,
) -> String {
    let page = browser
        .get(&authorize_path(client, redirect_uri, challenge, &[]))
        .await;
    assert_eq!(
        page.status,
        StatusCode::FOUND,
        "authorize {client}: {}",
        page.body
    );
    let location = page.location().expect("location");
    assert!(
        location.starts_with(&format!("{redirect_uri}?")),
        "{location}"
    );
    let query = query_of(location);
    assert_eq!(query["state"], "state-123");
    query["code"].clone()
}

pub async fn token(svc: &Service, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = svc
        .http
        .post(format!("{}/oauth2/token", svc.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form(fields))
        .send()
        .await
        .expect("token request");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

pub async fn exchange(
    svc: &Service,
    code: &str,
    client: &str,
    redirect_uri: &str,
    verifier: &str,
) -> (StatusCode, Value) {
    token(
        svc,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("client_id", client),
            ("code_verifier", verifier),
        ],
    )
    .await
}

pub async fn keys(svc: &Service) -> KeySet {
    let jwks = svc
        .http
        .get(format!("{}/.well-known/jwks.json", svc.base))
        .send()
        .await
        .expect("jwks");
    KeySet::from_json(&jwks.bytes().await.expect("bytes")).expect("key set")
}

pub fn now() -> u64 {
    atoll_identity::verify::unix_now()
}

/// A service with alice (member of acme and beta) and carol (of beta only).
pub async fn setup(url: &str) -> (Service, TenantApp, TenantApp) {
    let svc = Service::start(config(url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.sign_up(&admin, CAROL, CAROL_PW).await;
    let acme = TenantApp::start("acme").await;
    let beta = TenantApp::start("beta").await;
    register(
        &svc,
        "acme",
        &acme.url,
        json!([{"email": ALICE, "role": "Editor"}]),
    )
    .await;
    register(
        &svc,
        "beta",
        &beta.url,
        json!([{"email": ALICE, "role": "Viewer"}, {"email": CAROL, "role": "Admin"}]),
    )
    .await;
    (svc, acme, beta)
}

/// Signs `email` in through the authorize URL's login page; returns the
/// browser, back at the authorize URL.
pub async fn signed_in(
    svc: &Service,
    email: &str,
    password: &str,
    tenant: &TenantApp,
    client: &str,
) -> Browser {
    let mut browser = Browser::new(&svc.base);
    let (_, challenge) = pkce();
    let path = authorize_path(client, &tenant.redirect_uri(), &challenge, &[]);
    let answer = browser.log_in_at(&path, email, password).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), Some(path.as_str()));
    assert!(
        browser.cookies.contains_key("atoll_sso"),
        "{:?}",
        browser.cookies
    );
    browser
}
