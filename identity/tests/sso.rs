//! Single sign-on end to end over loopback, on SQLite and on PostgreSQL:
//! the login form, the authorization code flow with PKCE, the token
//! endpoint, refresh, RP-initiated and back-channel logout, and every
//! refusal the isolation matrix counts.

mod support;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_identity::sso_tokens::{verify_id_token, verify_logout_token};
use atoll_identity::store::AuthCode;
use atoll_identity::verify::{KeySet, VerifierConfig, verify_with_keys};
use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::browser::{Browser, Page, encode, form, query_of};
use support::{Service, config, eventually};

const ALICE: &str = "alice@acme.test";
const ALICE_PW: &str = "alice-correct-horse";
const CAROL: &str = "carol@else.test";
const CAROL_PW: &str = "carol-battery-staple";

#[tokio::test]
async fn sso_on_sqlite() {
    support::run_suite(&support::Databases::sqlite(), SUITE).await;
}

#[tokio::test]
async fn sso_on_postgres() {
    support::run_suite(&support::Databases::postgres().await, SUITE).await;
}

const SUITE: &[(&str, support::Scenario)] = scenarios![
    the_code_flow_with_pkce,
    refusals_are_counted,
    a_stranger_gets_the_not_a_member_page,
    logout_ends_the_session_everywhere,
    the_pages_are_framed_and_protected,
];

/// The refusals the isolation matrix counts, by name: each scenario of
/// [`refusals_are_counted`] checks one.
pub const REFUSALS: &[&str] = &[
    "unknown client",
    "unregistered redirect_uri",
    "missing PKCE",
    "plain PKCE method",
    "missing nonce",
    "wrong verifier",
    "missing verifier",
    "replayed code",
    "code of another client",
    "redirect_uri mismatch at the token endpoint",
    "expired code",
    "forged code",
    "refresh token of another client",
];

/// A tenant served by a little HTTP server on loopback that records the
/// back-channel logout tokens it receives.
struct TenantApp {
    url: String,
    logout_tokens: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl TenantApp {
    /// Listens on 127.0.0.1; its URL names `<name>.localhost` (RFC 6761),
    /// which identity's back-channel client resolves to loopback.
    async fn start(name: &str) -> TenantApp {
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

    fn redirect_uri(&self) -> String {
        format!("{}/auth/callback", self.url)
    }
}

impl Drop for TenantApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Registers `name` at `url` with explicit client URIs.
async fn register(svc: &Service, name: &str, url: &str, members: Value) {
    let (status, body) = svc
        .put(
            &format!("/api/v1/tenants/{name}"),
            Some(support::SERVICE_TOKEN),
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
fn pkce() -> (String, String) {
    let verifier = format!(
        "verifier-{}-0123456789abcdefghijklmnopqrstuvwxyz",
        uuid_like()
    );
    let challenge = URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
    (verifier, challenge)
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}", N.fetch_add(1, Ordering::Relaxed))
}

/// The authorize path for `client` with `redirect_uri`, and `extra` params
/// replacing the defaults (an empty value drops the parameter).
fn authorize_path(
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
async fn code_for(
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

async fn token(svc: &Service, fields: &[(&str, &str)]) -> (StatusCode, Value) {
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

async fn exchange(
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

async fn keys(svc: &Service) -> KeySet {
    let jwks = svc
        .http
        .get(format!("{}/.well-known/jwks.json", svc.base))
        .send()
        .await
        .expect("jwks");
    KeySet::from_json(&jwks.bytes().await.expect("bytes")).expect("key set")
}

fn now() -> u64 {
    atoll_identity::verify::unix_now()
}

/// A service with alice (member of acme and beta) and carol (of beta only).
async fn setup(url: &str) -> (Service, TenantApp, TenantApp) {
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
async fn signed_in(
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

async fn the_code_flow_with_pkce(url: String) {
    let (svc, acme, beta) = setup(&url).await;
    let mut browser = Browser::new(&svc.base);
    let (verifier, challenge) = pkce();
    let path = authorize_path("acme", &acme.redirect_uri(), &challenge, &[]);

    // No session: the login form, labelled, with a CSRF token.
    let login = browser.get(&path).await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.body.contains("<label for=\"email\">"),
        "{}",
        login.body
    );
    assert!(login.body.contains("<label for=\"password\">"));
    let answer = browser.log_in_at(&path, ALICE, ALICE_PW).await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER);
    let set_cookie = answer.header("set-cookie");
    assert!(
        set_cookie.contains("HttpOnly") && set_cookie.contains("SameSite=Lax"),
        "{set_cookie}"
    );

    // Back at authorize, signed in: a code for acme.
    let code = code_for(&mut browser, "acme", &acme.redirect_uri(), &challenge).await;
    let (status, body) = exchange(&svc, &code, "acme", &acme.redirect_uri(), &verifier).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["scope"], "openid email");
    assert!(
        body["refresh_token"]
            .as_str()
            .is_some_and(|t| t.starts_with("atoll_rt_"))
    );
    let keys = keys(&svc).await;
    let id = verify_id_token(
        &keys,
        &svc.base,
        "acme",
        "nonce-456",
        body["id_token"].as_str().expect("id"),
        now(),
        5,
    )
    .expect("the ID token verifies");
    assert_eq!(id.email, ALICE);
    assert!(!id.sid.is_empty() && !browser.cookies.values().any(|c| c.contains(&id.sid)));
    assert!(id.auth_time <= now());
    assert!(
        verify_id_token(
            &keys,
            &svc.base,
            "acme",
            "other-nonce",
            body["id_token"].as_str().expect("id"),
            now(),
            5
        )
        .is_err()
    );
    let config = VerifierConfig::new(svc.base.clone(), "acme").with_tenant_uid("uid-acme");
    let claims = verify_with_keys(
        &keys,
        &config,
        body["access_token"].as_str().expect("access"),
        now(),
    )
    .expect("the access token is acme's tenant token");
    assert_eq!(claims.role.as_str(), "Editor");

    // The second tenant asks for no password: the cookie is enough.
    let (verifier_b, challenge_b) = pkce();
    let code_b = code_for(&mut browser, "beta", &beta.redirect_uri(), &challenge_b).await;
    let (status, body_b) = exchange(&svc, &code_b, "beta", &beta.redirect_uri(), &verifier_b).await;
    assert_eq!(status, StatusCode::OK, "{body_b}");
    let id_b = verify_id_token(
        &keys,
        &svc.base,
        "beta",
        "nonce-456",
        body_b["id_token"].as_str().expect("id"),
        now(),
        5,
    )
    .expect("beta's ID token");
    assert_eq!(id_b.sid, id.sid, "one SSO session");

    // Refresh: a new access token for the same tenant.
    let (status, refreshed) = token(
        &svc,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().expect("rt")),
            ("client_id", "acme"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    verify_with_keys(
        &keys,
        &config,
        refreshed["access_token"].as_str().expect("access"),
        now(),
    )
    .expect("refreshed");
    svc.stop().await;
}

/// One refusal of the token endpoint: 400 with `error`.
fn refused(what: &str, (status, body): (StatusCode, Value), error: &str, count: &mut usize) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {body}");
    assert_eq!(body["error"], error, "{what}: {body}");
    *count += 1;
}

/// One refusal of the authorize endpoint by redirect with `invalid_request`.
fn refused_by_redirect(what: &str, page: &Page, redirect_uri: &str, count: &mut usize) {
    assert_eq!(page.status, StatusCode::FOUND, "{what}");
    let location = page.location().expect("location");
    assert!(location.starts_with(redirect_uri), "{what}: {location}");
    let query = query_of(location);
    assert_eq!(query["error"], "invalid_request", "{what}");
    assert!(!query.contains_key("code"), "{what}");
    *count += 1;
}

/// An HTML 400 page, never a redirect.
fn refused_by_page(what: &str, page: &Page, count: &mut usize) {
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{what}");
    assert!(page.location().is_none(), "{what}: redirected");
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{what}"
    );
    *count += 1;
}

async fn refusals_are_counted(url: String) {
    let (svc, acme, beta) = setup(&url).await;
    let mut browser = signed_in(&svc, ALICE, ALICE_PW, &acme, "acme").await;
    let mut count = 0;
    let (verifier, challenge) = pkce();
    let acme_cb = acme.redirect_uri();

    let page = browser
        .get(&authorize_path("nobody", &acme_cb, &challenge, &[]))
        .await;
    refused_by_page("unknown client", &page, &mut count);
    for evil in [
        "https://evil.example/auth/callback",
        &format!("{acme_cb}/x"),
        &format!("{}/AUTH/callback", acme.url),
        &beta.redirect_uri(),
    ] {
        let page = browser
            .get(&authorize_path("acme", evil, &challenge, &[]))
            .await;
        refused_by_page("unregistered redirect_uri", &page, &mut count);
    }
    let page = browser
        .get(&authorize_path(
            "acme",
            &acme_cb,
            &challenge,
            &[("code_challenge", ""), ("code_challenge_method", "")],
        ))
        .await;
    refused_by_redirect("missing PKCE", &page, &acme_cb, &mut count);
    let page = browser
        .get(&authorize_path(
            "acme",
            &acme_cb,
            &verifier,
            &[("code_challenge_method", "plain")],
        ))
        .await;
    refused_by_redirect("plain PKCE method", &page, &acme_cb, &mut count);
    let page = browser
        .get(&authorize_path(
            "acme",
            &acme_cb,
            &challenge,
            &[("nonce", "")],
        ))
        .await;
    refused_by_redirect("missing nonce", &page, &acme_cb, &mut count);

    // Wrong verifier; then the code is spent.
    let code = code_for(&mut browser, "acme", &acme_cb, &challenge).await;
    let (wrong, _) = pkce();
    refused(
        "wrong verifier",
        exchange(&svc, &code, "acme", &acme_cb, &wrong).await,
        "invalid_grant",
        &mut count,
    );
    refused(
        "replayed code",
        exchange(&svc, &code, "acme", &acme_cb, &verifier).await,
        "invalid_grant",
        &mut count,
    );
    // Missing verifier: invalid_request, and the code is spent too.
    let code = code_for(&mut browser, "acme", &acme_cb, &challenge).await;
    refused(
        "missing verifier",
        token(
            &svc,
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &acme_cb),
                ("client_id", "acme"),
            ],
        )
        .await,
        "invalid_request",
        &mut count,
    );
    refused(
        "replayed code",
        exchange(&svc, &code, "acme", &acme_cb, &verifier).await,
        "invalid_grant",
        &mut count,
    );
    // acme's code at beta.
    let code = code_for(&mut browser, "acme", &acme_cb, &challenge).await;
    refused(
        "code of another client",
        exchange(&svc, &code, "beta", &beta.redirect_uri(), &verifier).await,
        "invalid_grant",
        &mut count,
    );
    let code = code_for(&mut browser, "acme", &acme_cb, &challenge).await;
    refused(
        "redirect_uri mismatch",
        exchange(&svc, &code, "acme", &format!("{acme_cb}/x"), &verifier).await,
        "invalid_grant",
        &mut count,
    );
    refused(
        "forged code",
        exchange(&svc, "forged-code-0123456789", "acme", &acme_cb, &verifier).await,
        "invalid_grant",
        &mut count,
    );

    // An expired code (stored as the service would, 61 s ago).
    let session = svc
        .store
        .sso_session(
            &atoll_identity::sessions::token_hash(&browser.cookies["atoll_sso"]),
            now() as i64,
        )
        .await
        .expect("query")
        .expect("session");
    let old = now() as i64 - 61;
    svc.store
        .insert_auth_code(&AuthCode {
            code_hash: atoll_identity::sessions::token_hash("expired-code"),
            client_id: "acme".into(),
            redirect_uri: acme_cb.clone(),
            code_challenge: challenge.clone(),
            nonce: "n".into(),
            user_id: session.user.id.clone(),
            session_id: session.id.clone(),
            auth_time: old,
            expires_at: old + 60,
        })
        .await
        .expect("insert");
    refused(
        "expired code",
        exchange(&svc, "expired-code", "acme", &acme_cb, &verifier).await,
        "invalid_grant",
        &mut count,
    );

    // A refresh token of acme presented by beta.
    let code = code_for(&mut browser, "acme", &acme_cb, &challenge).await;
    let (_, body) = exchange(&svc, &code, "acme", &acme_cb, &verifier).await;
    let rt = body["refresh_token"].as_str().expect("rt");
    refused(
        "refresh token of another client",
        token(
            &svc,
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", rt),
                ("client_id", "beta"),
            ],
        )
        .await,
        "invalid_grant",
        &mut count,
    );
    eprintln!(
        "single sign-on refusals: {count} refused, 0 accepted ({} kinds)",
        REFUSALS.len()
    );
    assert!(count >= REFUSALS.len());
    svc.stop().await;
}

async fn a_stranger_gets_the_not_a_member_page(url: String) {
    let (svc, acme, _beta) = setup(&url).await;
    let mut browser = signed_in(&svc, CAROL, CAROL_PW, &acme, "acme").await;
    let (_, challenge) = pkce();
    let page = browser
        .get(&authorize_path(
            "acme",
            &acme.redirect_uri(),
            &challenge,
            &[],
        ))
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.location().is_none(), "no code, no redirect");
    assert!(
        page.body.contains("You are not a member of acme"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("beta Corp"),
        "her own tenants are listed"
    );
    assert!(!page.body.contains("code="));
    svc.stop().await;
}

async fn logout_ends_the_session_everywhere(url: String) {
    let (svc, acme, beta) = setup(&url).await;
    let mut browser = signed_in(&svc, ALICE, ALICE_PW, &acme, "acme").await;
    let (verifier, challenge) = pkce();
    let code = code_for(&mut browser, "acme", &acme.redirect_uri(), &challenge).await;
    let (_, tokens) = exchange(&svc, &code, "acme", &acme.redirect_uri(), &verifier).await;
    code_for(&mut browser, "beta", &beta.redirect_uri(), &challenge).await;
    let id_token = tokens["id_token"].as_str().expect("id");
    let keys = keys(&svc).await;
    let id =
        verify_id_token(&keys, &svc.base, "acme", "nonce-456", id_token, now(), 5).expect("id");

    // A post-logout URI that is not a registered tenant URL is not followed.
    let logout = format!(
        "/oauth2/logout?id_token_hint={}&post_logout_redirect_uri={}&state=bye",
        encode(id_token),
        encode(&format!("{}/", acme.url))
    );
    let page = browser.get(&logout).await;
    assert_eq!(page.status, StatusCode::FOUND, "{}", page.body);
    assert_eq!(
        page.location(),
        Some(format!("{}/?state=bye", acme.url).as_str())
    );
    assert!(
        !browser.cookies.contains_key("atoll_sso"),
        "the cookie is cleared"
    );

    // Both tenants got a logout token for this session.
    for (app, tenant) in [(&acme, "acme"), (&beta, "beta")] {
        let tokens = eventually(
            "a back-channel logout token",
            Duration::from_secs(10),
            || {
                let got = app.logout_tokens.lock().expect("lock").clone();
                async move { (!got.is_empty()).then_some(got) }
            },
        )
        .await;
        let claims = verify_logout_token(&keys, &svc.base, tenant, &tokens[0], now())
            .expect("the logout token verifies");
        assert_eq!(claims.sid.as_deref(), Some(id.sid.as_str()));
        assert!(
            verify_id_token(&keys, &svc.base, tenant, "", &tokens[0], now(), 5).is_err(),
            "typ logout+jwt"
        );
    }

    // Refresh is refused; authorize asks for the password again.
    let (status, body) = token(
        &svc,
        &[
            ("grant_type", "refresh_token"),
            (
                "refresh_token",
                tokens["refresh_token"].as_str().expect("rt"),
            ),
            ("client_id", "acme"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    let page = browser
        .get(&authorize_path(
            "acme",
            &acme.redirect_uri(),
            &challenge,
            &[],
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("Log in to Atoll"));

    // Without a session, an unregistered post-logout URI gets the page.
    let page = browser
        .get(&format!(
            "/oauth2/logout?post_logout_redirect_uri={}",
            encode("https://evil.example/")
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.location().is_none());
    assert!(page.body.contains("You are logged out"));
    svc.stop().await;
}

async fn the_pages_are_framed_and_protected(url: String) {
    let (svc, acme, _beta) = setup(&url).await;
    let mut browser = signed_in(&svc, ALICE, ALICE_PW, &acme, "acme").await;
    let page = browser.get("/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(page.location(), Some("/tenants"));
    let page = browser.get("/tenants").await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("cache-control"), "no-store");
    assert_eq!(page.header("x-frame-options"), "DENY");
    assert_eq!(
        page.header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert!(page.body.contains("acme Corp") && page.body.contains("beta Corp"));
    assert!(page.body.contains(&format!("href=\"{}/\"", acme.url)));
    assert!(
        page.body.contains(ALICE),
        "the header shows who is signed in"
    );
    let csrf = page.field("_csrf").expect("the logout form's CSRF token");

    let css = browser.get("/assets/identity.css").await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(css.header("cache-control").contains("max-age=31536000"));

    // A POST without its CSRF token is refused, with it accepted.
    let page = browser.post("/logout", &[]).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(browser.cookies.contains_key("atoll_sso"));
    let page = browser.post("/logout", &[("_csrf", &csrf)]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("You are logged out"));
    let page = browser.get("/tenants").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);

    // The login form without its CSRF cookie and token is refused.
    let mut stranger = Browser::new(&svc.base);
    let page = stranger
        .post("/login", &[("email", ALICE), ("password", ALICE_PW)])
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(!stranger.cookies.contains_key("atoll_sso"));
    svc.stop().await;
}
