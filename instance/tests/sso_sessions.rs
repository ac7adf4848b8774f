//! The life of a browser session at the instance (#18), over real HTTP
//! against the stand-in provider (`sso/fake_op.rs`): logout, back-channel
//! logout (and the logout tokens it refuses), the refresh of an expired
//! access token, and the HTML pages' sign-in redirect.

mod support;

#[path = "sso/browser.rs"]
mod browser;
#[path = "sso/fake_op.rs"]
mod fake_op;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use browser::{Browser, SsoInstance};
use fake_op::FakeOp;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use support::identity::{KEY_A_PEM, KEY_B_PEM};

const SEARCH: &str = "/api/v1/acme/flows/search";
const EVENT: &str = "http://schemas.openid.net/event/backchannel-logout";

/// A logout token as identity sends it, signed with `key`.
fn logout_token(claims: &Value, key: &str) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("key-a".into());
    header.typ = Some("logout+jwt".into());
    let key = EncodingKey::from_ed_pem(key.as_bytes()).expect("test key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

fn logout_claims(op: &FakeOp, jti: &str) -> Value {
    let now = jiff::Timestamp::now().as_second();
    json!({"iss": op.issuer(), "aud": "acme", "iat": now, "exp": now + 120, "jti": jti,
           "sid": fake_op::SID, "sub": fake_op::SUB, "events": {EVENT: {}}})
}

async fn alive(acme: &SsoInstance, browser: &Browser) -> bool {
    browser.get(&acme.url(SEARCH)).await.status == StatusCode::OK
}

async fn post_logout_token(acme: &SsoInstance, token: &str) -> (StatusCode, String) {
    let response = reqwest::Client::new()
        .post(acme.url("/auth/backchannel-logout"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("logout_token={token}"))
        .send()
        .await
        .expect("request");
    let status = response.status();
    (status, response.text().await.expect("body"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_the_session_and_goes_to_identity() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Viewer", None, None).await;
    let browser = Browser::new();
    browser.sign_in(&acme, "/").await;
    let csrf = browser.csrf(&acme).await;
    let logout = acme.url("/auth/logout");

    let forged = browser.send(Method::POST, &logout, &[], None).await;
    assert_eq!(
        forged.status,
        StatusCode::FORBIDDEN,
        "no CSRF token, no logout"
    );
    assert_eq!(browser.get(&acme.url(SEARCH)).await.status, StatusCode::OK);

    let form = Some((
        "application/x-www-form-urlencoded",
        format!("_csrf={}", browser::encode(&csrf)),
    ));
    let out = browser.send(Method::POST, &logout, &[], form).await;
    assert_eq!(out.status, StatusCode::FOUND, "{}", out.body);
    let to = out.location.clone().expect("to identity");
    let id_token = op.state.issued.lock().expect("lock")[2].clone();
    let expected = format!(
        "{}/oauth2/logout?id_token_hint={id_token}&post_logout_redirect_uri={}",
        op.issuer(),
        browser::encode(&format!("{}/", acme.public_url))
            .replace("%2E", ".")
            .replace("%2D", "-")
    );
    assert_eq!(to, expected);
    let cleared = out
        .cookie_line("atoll_session")
        .expect("the cookie cleared");
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    assert_eq!(browser.get(&to).await.status, StatusCode::OK);
    assert_eq!(op.state.logouts.lock().expect("lock").len(), 1);

    assert_eq!(
        browser.get(&acme.url(SEARCH)).await.status,
        StatusCode::UNAUTHORIZED
    );
    browser.assert_no_token(&op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logged_out_cookie_is_dead_even_when_kept() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Viewer", None, None).await;
    let browser = Browser::new();
    browser.sign_in(&acme, "/").await;
    let kept = browser.cookie("atoll_session").expect("session");
    let csrf = browser.csrf(&acme).await;
    let header = [("x-csrf-token", csrf.as_str())];
    let out = browser
        .send(Method::POST, &acme.url("/auth/logout"), &header, None)
        .await;
    assert_eq!(out.status, StatusCode::FOUND);
    let thief = Browser::new();
    thief.set_cookie("atoll_session", &kept);
    assert_eq!(
        thief.get(&acme.url(SEARCH)).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backchannel_logout_ends_the_sessions_of_its_sid_once() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Editor", None, None).await;
    let (first, second) = (Browser::new(), Browser::new());
    first.sign_in(&acme, "/").await;
    second.sign_in(&acme, "/").await;
    assert!(alive(&acme, &first).await && alive(&acme, &second).await);

    // Refused, each with 400 {"error":"invalid_request"}, sessions untouched.
    let mut refused = Vec::new();
    refused.push(logout_token(&logout_claims(&op, "forged"), KEY_B_PEM));
    let mut other = logout_claims(&op, "aud");
    other["aud"] = json!("globex");
    refused.push(logout_token(&other, KEY_A_PEM));
    let mut no_event = logout_claims(&op, "event");
    no_event.as_object_mut().map(|c| c.remove("events"));
    refused.push(logout_token(&no_event, KEY_A_PEM));
    let mut with_nonce = logout_claims(&op, "nonce");
    with_nonce["nonce"] = json!("n");
    refused.push(logout_token(&with_nonce, KEY_A_PEM));
    let mut old = logout_claims(&op, "old");
    old["iat"] = json!(jiff::Timestamp::now().as_second() - 600);
    refused.push(logout_token(&old, KEY_A_PEM));
    // An id_token is not a logout token.
    refused.push(op.state.issued.lock().expect("lock")[2].clone());
    refused.push("not-a-token".into());
    for token in &refused {
        let (status, body) = post_logout_token(&acme, token).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            serde_json::from_str::<Value>(&body).ok(),
            Some(json!({"error": "invalid_request"}))
        );
    }
    assert!(alive(&acme, &first).await && alive(&acme, &second).await);

    let token = logout_token(&logout_claims(&op, "jti-1"), KEY_A_PEM);
    assert_eq!(post_logout_token(&acme, &token).await.0, StatusCode::OK);
    assert!(!alive(&acme, &first).await && !alive(&acme, &second).await);

    // Replayed: refused, even against a new session of the same sid.
    let third = Browser::new();
    third.sign_in(&acme, "/").await;
    assert_eq!(
        post_logout_token(&acme, &token).await.0,
        StatusCode::BAD_REQUEST
    );
    assert!(alive(&acme, &third).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_refreshed_and_a_refused_refresh_ends_the_session() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Editor", None, None).await;
    // Valid at sign-in, but within the instance's refresh margin (30 s).
    op.state.access_ttl.store(20, Ordering::SeqCst);
    let browser = Browser::new();
    browser.sign_in(&acme, "/").await;
    op.state.access_ttl.store(3600, Ordering::SeqCst);
    // Requests at once spend the refresh token once.
    let url = acme.url(SEARCH);
    let reads = futures::future::join_all((0..4).map(|_| browser.get(&url))).await;
    assert!(
        reads.iter().all(|r| r.status == StatusCode::OK),
        "{reads:?}"
    );
    assert_eq!(op.state.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(browser.get(&acme.url(SEARCH)).await.status, StatusCode::OK);
    assert_eq!(
        op.state.refreshes.load(Ordering::SeqCst),
        1,
        "refreshed once"
    );

    // Identity ended the SSO session: the refresh is refused, the session ends.
    op.state.access_ttl.store(20, Ordering::SeqCst);
    let other = Browser::new();
    other.sign_in(&acme, "/").await;
    op.revoke_refresh_tokens();
    assert_eq!(
        other.get(&acme.url(SEARCH)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        other.get(&acme.url("/auth/session")).await.status,
        StatusCode::UNAUTHORIZED
    );
    browser.assert_no_token(&op);
    other.assert_no_token(&op);
}

/// The UI's pages, as the lead mounts them: `authenticate_page` in front.
/// With `authentication` false the instance runs open (no verifier).
async fn serve_pages(
    op: &FakeOp,
    dir: &std::path::Path,
    authentication: bool,
) -> (String, tokio::task::JoinHandle<()>) {
    use atoll_instance::api::{AppState, authenticate_page};
    use atoll_instance::auth::{IdentityVerifier, Principal};
    use atoll_instance::session::{CsrfToken, Sessions};
    use axum::routing::get;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    op.register("acme", &base, "Viewer");
    let url = format!("sqlite:{}", dir.join("db.sqlite").display());
    let store = atoll_instance::store::Store::connect(&url)
        .await
        .expect("store");
    let verifier = IdentityVerifier::new(&op.issuer(), "acme", "uid-acme");
    let sessions = Sessions::new("acme", &base, &op.issuer(), store.clone(), verifier.clone());
    let state = AppState {
        engine: atoll_instance::engine::Engine::new(store, Default::default()),
        tenant: "acme".into(),
        verifier: authentication.then_some(verifier as _),
        metrics: Arc::default(),
        attempts: Default::default(),
        sessions: authentication.then(|| Arc::new(sessions)),
        activity: Arc::default(),
    };
    let page = |principal: axum::Extension<Principal>, csrf: Option<axum::Extension<CsrfToken>>| async move {
        format!(
            "{} {:?} csrf={}",
            principal.subject,
            principal.role,
            csrf.is_some()
        )
    };
    let app = axum::Router::new()
        .route("/ui/flows", get(page).post(page))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate_page,
        ))
        .merge(atoll_instance::session::routes())
        .with_state(state);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (base, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_send_strangers_to_sign_in_and_back() {
    let op = FakeOp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (base, server) = serve_pages(&op, dir.path(), true).await;
    let browser = Browser::new();
    let page = format!("{base}/ui/flows?q=a%20b");
    let stranger = browser.get(&page).await;
    assert_eq!(stranger.status, StatusCode::SEE_OTHER);
    assert_eq!(
        stranger.location.as_deref(),
        Some("/auth/login?return_to=%2Fui%2Fflows%3Fq%3Da%2520b")
    );
    let post = browser.send(Method::POST, &page, &[], None).await;
    assert_eq!(post.status, StatusCode::UNAUTHORIZED);

    // Through identity and back to the page.
    let instance_like = SsoInstance::at(&base);
    let landed = browser.sign_in(&instance_like, "/ui/flows?q=a%20b").await;
    assert_eq!(landed.location.as_deref(), Some("/ui/flows?q=a%20b"));
    let shown = browser.get(&page).await;
    assert_eq!(
        (shown.status, shown.body.as_str()),
        (StatusCode::OK, "user-1 Viewer csrf=true")
    );
    let form = Some(("application/x-www-form-urlencoded", "title=x".to_owned()));
    assert_eq!(
        browser.send(Method::POST, &page, &[], form).await.status,
        StatusCode::FORBIDDEN
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_authentication_pages_are_open_and_ask_no_csrf_token() {
    let op = FakeOp::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (base, server) = serve_pages(&op, dir.path(), false).await;
    let browser = Browser::new();
    let page = format!("{base}/ui/flows");
    let shown = browser.get(&page).await;
    assert_eq!(
        (shown.status, shown.body.as_str()),
        (StatusCode::OK, "local Admin csrf=false")
    );
    let form = Some(("application/x-www-form-urlencoded", "title=x".to_owned()));
    assert_eq!(
        browser.send(Method::POST, &page, &[], form).await.status,
        StatusCode::OK
    );
    let login = browser
        .get(&format!("{base}/auth/login?return_to=%2Fui%2Fflows"))
        .await;
    assert_eq!(login.location.as_deref(), Some("/ui/flows"));
    let who: Value = serde_json::from_str(&browser.get(&format!("{base}/auth/session")).await.body)
        .expect("json");
    assert_eq!(
        who,
        json!({"subject": "local", "role": "Admin", "csrfToken": null})
    );
    server.abort();
}
