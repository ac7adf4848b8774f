//! Browser sign-in at the instance (#18), over real HTTP against a faithful
//! stand-in for identity's OpenID provider (`sso/fake_op.rs`): the session
//! cookie reads the API, CSRF guards its unsafe requests, bearer tokens are
//! unchanged, another tenant's cookie or code is useless, and every failed
//! callback is an error page with no session.

mod support;

#[path = "sso/browser.rs"]
mod browser;
#[path = "sso/fake_op.rs"]
mod fake_op;

use std::sync::atomic::Ordering;

use browser::{Browser, SsoInstance};
use fake_op::FakeOp;
use reqwest::{Method, StatusCode};
use serde_json::Value;

const HELLO: &str = "id: hello
namespace: company.team
inputs:
  - id: name
    type: STRING
    defaults: nobody
tasks:
  - id: log
    type: io.kestra.plugin.core.log.Log
    message: hello {{ inputs.name }}
";

/// The value of query parameter `name` in `url`, as it is written there.
fn param(url: &str, name: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    query
        .split('&')
        .find_map(|pair| pair.strip_prefix(&format!("{name}=")))
        .expect("the parameter")
        .to_owned()
}

const SEARCH: &str = "/api/v1/acme/flows/search?q=hello";

async fn sign_in_and_read_the_api(database_url: Option<String>) {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Editor", None, database_url).await;
    let browser = Browser::new();
    // No credential: refused as before.
    assert_eq!(
        browser.get(&acme.url(SEARCH)).await.status,
        StatusCode::UNAUTHORIZED
    );

    let login = browser
        .get(&acme.url(&format!(
            "/auth/login?return_to={}",
            browser::encode(SEARCH)
        )))
        .await;
    assert_eq!(login.status, StatusCode::FOUND);
    let authorize = login.location.clone().expect("to identity");
    assert!(authorize.starts_with(&format!("{}/oauth2/authorize?", op.issuer())));
    for part in [
        "response_type=code",
        "client_id=acme",
        "code_challenge_method=S256",
        "scope=openid%20email",
    ] {
        assert!(authorize.contains(part), "{part} in {authorize}");
    }
    let login_cookie = login.cookie_line("atoll_login").expect("the login cookie");
    assert!(login_cookie.contains("; Path=/auth") && login_cookie.contains("; HttpOnly"));
    assert!(login_cookie.contains("; SameSite=Lax") && !login_cookie.contains("Secure"));

    let callback = browser.authorize(&acme, &authorize).await;
    let signed_in = browser.get(&callback).await;
    assert_eq!(signed_in.status, StatusCode::FOUND, "{}", signed_in.body);
    assert_eq!(signed_in.location.as_deref(), Some(SEARCH));
    let session = signed_in
        .cookie_line("atoll_session")
        .expect("the session cookie");
    for attribute in ["; Path=/;", "; HttpOnly", "; SameSite=Lax"] {
        assert!(session.contains(attribute), "{attribute} in {session}");
    }
    assert!(
        !session.contains("Domain") && !session.contains("Secure"),
        "{session}"
    );
    assert!(
        browser.cookie("atoll_login").is_none(),
        "the login cookie is cleared"
    );

    let flows = browser.get(&acme.url(SEARCH)).await;
    assert_eq!(flows.status, StatusCode::OK, "{}", flows.body);
    // What the API answers a browser is never sniffed into a page nor run.
    assert_eq!(flows.headers["x-content-type-options"], "nosniff");
    let policy = flows.headers["content-security-policy"]
        .to_str()
        .unwrap_or_default();
    assert!(policy.starts_with("sandbox;"), "{policy}");
    let who: Value =
        serde_json::from_str(&browser.get(&acme.url("/auth/session")).await.body).expect("json");
    assert_eq!(who["subject"], fake_op::SUB);
    assert_eq!(who["email"], fake_op::EMAIL);
    assert_eq!(who["role"], "Editor");
    browser.assert_no_token(&op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_gives_a_cookie_that_reads_the_api() {
    sign_in_and_read_the_api(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signing_in_gives_a_cookie_that_reads_the_api_on_postgres() {
    let server = atoll_testkit::pg::TestPostgres::start();
    sign_in_and_read_the_api(Some(server.database_url("sso_sessions"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsafe_requests_with_the_cookie_need_the_csrf_token() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Editor", None, None).await;
    let browser = Browser::new();
    browser.sign_in(&acme, "/").await;
    let csrf = browser.csrf(&acme).await;
    let yaml = || Some(("application/x-yaml", HELLO.to_owned()));
    let flows = acme.url("/api/v1/flows");

    let bare = browser.send(Method::POST, &flows, &[], yaml()).await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN, "{}", bare.body);
    assert!(bare.body.contains("CSRF"), "{}", bare.body);
    let wrong = [("x-csrf-token", "not-the-token")];
    let wrong = browser.send(Method::POST, &flows, &wrong, yaml()).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let flow = acme.url("/api/v1/flows/company.team/hello");
    assert_eq!(
        browser.get(&flow).await.status,
        StatusCode::NOT_FOUND,
        "nothing was created"
    );

    let header = [("x-csrf-token", csrf.as_str())];
    let created = browser.send(Method::POST, &flows, &header, yaml()).await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);

    // An HTML form: the token in `_csrf`, the body reaching the handler whole.
    let run = acme.url("/api/v1/executions/company.team/hello");
    let form = |token: &str| {
        let body = format!("_csrf={}&name=world", browser::encode(token));
        Some(("application/x-www-form-urlencoded", body))
    };
    let refused = browser.send(Method::POST, &run, &[], form("wrong")).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let started = browser.send(Method::POST, &run, &[], form(&csrf)).await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.body);
    let execution: Value = serde_json::from_str(&started.body).expect("json");
    assert_eq!(execution["inputs"]["name"], "world");
    assert!(execution["inputs"].get("_csrf").is_none());

    let delete = browser.send(Method::DELETE, &flow, &[], None).await;
    assert_eq!(delete.status, StatusCode::FORBIDDEN);
    browser.assert_no_token(&op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_work_as_before_and_win_over_the_cookie() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Editor", None, None).await;
    let bearer = format!("Bearer {}", op.access_token("acme", "Editor"));
    let stranger = Browser::new();
    let flows = acme.url("/api/v1/flows");
    let yaml = || Some(("application/x-yaml", HELLO.to_owned()));
    // No CSRF token is asked of a bearer.
    let created = stranger
        .send(Method::POST, &flows, &[("authorization", &bearer)], yaml())
        .await;
    assert_eq!(created.status, StatusCode::OK, "{}", created.body);

    // A signed-in browser with a bad Authorization header: the header decides.
    let browser = Browser::new();
    browser.sign_in(&acme, "/").await;
    let forged = [("authorization", "Bearer not.a.token")];
    let read = browser
        .send(Method::GET, &acme.url(SEARCH), &forged, None)
        .await;
    assert_eq!(read.status, StatusCode::UNAUTHORIZED);
    let basic = [("authorization", "Basic dXNlcjpwYXNz")];
    let read = browser
        .send(Method::GET, &acme.url(SEARCH), &basic, None)
        .await;
    assert_eq!(read.status, StatusCode::UNAUTHORIZED);
    assert_eq!(browser.get(&acme.url(SEARCH)).await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_cookie_or_code_is_useless() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Admin", None, None).await;
    let globex = SsoInstance::start(&op, "globex", "Admin", None, None).await;
    let at_globex = Browser::new();
    at_globex.sign_in(&globex, "/").await;
    assert_eq!(
        at_globex
            .get(&globex.url(SEARCH.replace("acme", "globex").as_str()))
            .await
            .status,
        StatusCode::OK
    );
    let cookie = at_globex.cookie("atoll_session").expect("globex's session");

    // globex's session cookie, presented to acme.
    let thief = Browser::new();
    thief.set_cookie("atoll_session", &cookie);
    assert_eq!(
        thief.get(&acme.url(SEARCH)).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        thief.get(&acme.url("/auth/session")).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A code issued for globex, brought to acme's callback with acme's own
    // sign-in under way: acme's exchange is refused.
    let globex_code = at_globex
        .authorize(&globex, &at_globex.start_login(&globex, "/").await)
        .await;
    let code = param(&globex_code, "code");
    let victim = Browser::new();
    let acme_callback = victim
        .authorize(&acme, &victim.start_login(&acme, "/").await)
        .await;
    let state = param(&acme_callback, "state");
    let swapped = victim
        .get(&acme.url(&format!("/auth/callback?code={code}&state={state}")))
        .await;
    assert_eq!(swapped.status, StatusCode::BAD_REQUEST);
    assert!(
        swapped.body.contains("refused the authorization code"),
        "{}",
        swapped.body
    );
    assert!(victim.cookie("atoll_session").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_callbacks_are_error_pages_and_make_no_session() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Viewer", None, None).await;
    let refused = |answer: &browser::Answer, says: &str| {
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.body);
        assert!(
            answer.content_type.starts_with("text/html"),
            "{}",
            answer.content_type
        );
        assert!(answer.body.contains(says), "{says:?} in {}", answer.body);
        assert!(answer.cookie_line("atoll_session").is_none());
    };

    // A wrong state; the sign-in it spent cannot be finished afterwards.
    let browser = Browser::new();
    let callback = browser
        .authorize(&acme, &browser.start_login(&acme, "/").await)
        .await;
    let login_cookie = browser.cookie("atoll_login").expect("login cookie");
    let wrong = callback.replace("state=", "state=x");
    refused(&browser.get(&wrong).await, "state does not match");
    browser.set_cookie("atoll_login", &login_cookie);
    refused(&browser.get(&callback).await, "was already used");

    // No atoll_login cookie: the callback came to another browser.
    let browser = Browser::new();
    let callback = browser
        .authorize(&acme, &browser.start_login(&acme, "/").await)
        .await;
    let elsewhere = Browser::new();
    refused(
        &elsewhere.get(&callback).await,
        "not started in this browser",
    );

    // A replayed code: used once, then brought back with a new sign-in.
    let browser = Browser::new();
    let first = browser
        .authorize(&acme, &browser.start_login(&acme, "/").await)
        .await;
    assert_eq!(browser.get(&first).await.status, StatusCode::FOUND);
    let second = browser
        .authorize(&acme, &browser.start_login(&acme, "/").await)
        .await;
    let replayed = second.replacen(&param(&second, "code"), &param(&first, "code"), 1);
    refused(
        &browser.get(&replayed).await,
        "refused the authorization code (invalid_grant)",
    );

    // An id_token whose nonce is not the sign-in's.
    let browser = Browser::new();
    op.state.tamper_nonce.store(true, Ordering::SeqCst);
    refused(&browser.sign_in(&acme, "/").await, "nonce");
    assert!(browser.cookie("atoll_session").is_none());

    // Identity said no.
    let browser = Browser::new();
    let callback = browser
        .authorize(&acme, &browser.start_login(&acme, "/").await)
        .await;
    let state = param(&callback, "state");
    let denied = acme.url(&format!("/auth/callback?error=access_denied&state={state}"));
    refused(
        &browser.get(&denied).await,
        "identity refused the sign-in (access_denied)",
    );
    browser.assert_no_token(&op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn return_to_is_a_local_path_only() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Viewer", None, None).await;
    for (asked, landed) in [
        ("https://evil.example/", "/"),
        ("//evil.example/x", "/"),
        ("/\\evil.example", "/"),
        ("/ui/executions?state=FAILED", "/ui/executions?state=FAILED"),
    ] {
        let browser = Browser::new();
        let answer = browser.sign_in(&acme, asked).await;
        assert_eq!(answer.location.as_deref(), Some(landed), "{asked}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_public_url_gives_secure_host_only_cookies() {
    let op = FakeOp::start().await;
    let public = "https://acme.example.test";
    let acme = SsoInstance::start(&op, "acme", "Viewer", Some(public), None).await;
    let browser = Browser::new();
    let login = browser.get(&acme.url("/auth/login")).await;
    let login_line = login.cookie_line("atoll_login").expect("the login cookie");
    assert!(login_line.contains("; Secure"), "{login_line}");
    let authorize = login.location.expect("to identity");
    let redirect_uri = "redirect_uri=https%3A%2F%2Facme.example.test%2Fauth%2Fcallback&";
    assert!(authorize.contains(redirect_uri), "{authorize}");
    let callback = browser.authorize(&acme, &authorize).await;
    let signed_in = browser.get(&callback).await;
    assert_eq!(signed_in.status, StatusCode::FOUND, "{}", signed_in.body);
    let line = signed_in
        .cookie_line("__Host-atoll_session")
        .expect("a __Host- cookie");
    for attribute in ["; Path=/;", "; HttpOnly", "; SameSite=Lax", "; Secure"] {
        assert!(line.contains(attribute), "{attribute} in {line}");
    }
    assert!(!line.contains("Domain"));
    assert_eq!(browser.get(&acme.url(SEARCH)).await.status, StatusCode::OK);
    // The same value under the plain name is not this instance's cookie.
    let value = browser.cookie("__Host-atoll_session").expect("value");
    let plain = Browser::new();
    plain.set_cookie("atoll_session", &value);
    assert_eq!(
        plain.get(&acme.url(SEARCH)).await.status,
        StatusCode::UNAUTHORIZED
    );
}
