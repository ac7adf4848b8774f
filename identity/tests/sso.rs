//! Single sign-on end to end over loopback, on SQLite and on PostgreSQL:
//! the login form, the authorization code flow with PKCE, the token
//! endpoint, refresh, RP-initiated and back-channel logout, the pages'
//! frame and CSRF. The refusals are in `sso_refusals.rs`.

mod support;

use std::time::Duration;

use atoll_identity::sso_tokens::{LogoutClaims, verify_id_token, verify_logout_token};
use atoll_identity::verify::{KeySet, VerifierConfig, verify_with_keys};
use reqwest::StatusCode;
use support::browser::{Browser, encode};
use support::eventually;
use support::sso::{
    ALICE, ALICE_PW, CAROL, CAROL_PW, TenantApp, authorize_path, code_for, exchange, keys, now,
    pkce, register, setup, signed_in, token,
};

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
    a_second_tenant_asks_no_password,
    a_stranger_gets_the_not_a_member_page,
    logout_ends_the_session_everywhere,
    the_pages_are_framed_and_protected,
    discovery_advertises_the_code_flow,
];

async fn the_code_flow_with_pkce(url: String) {
    let (svc, acme, _beta) = setup(&url).await;
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
        let claims = logout_token_of(app, &keys, &svc.base, tenant).await;
        assert_eq!(claims.sid.as_deref(), Some(id.sid.as_str()));
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

async fn a_second_tenant_asks_no_password(url: String) {
    let (svc, acme, beta) = setup(&url).await;
    let mut browser = signed_in(&svc, ALICE, ALICE_PW, &acme, "acme").await;
    let (verifier, challenge) = pkce();
    let code = code_for(&mut browser, "acme", &acme.redirect_uri(), &challenge).await;
    let (_, body) = exchange(&svc, &code, "acme", &acme.redirect_uri(), &verifier).await;
    let keys = keys(&svc).await;
    let id_token = body["id_token"].as_str().expect("id");
    let id =
        verify_id_token(&keys, &svc.base, "acme", "nonce-456", id_token, now(), 5).expect("id");
    let config = VerifierConfig::new(svc.base.clone(), "acme").with_tenant_uid("uid-acme");

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

    // Once she is no member of acme, its refresh token is refused.
    register(&svc, "acme", &acme.url, serde_json::json!([])).await;
    let (status, refused) = token(
        &svc,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", body["refresh_token"].as_str().expect("rt")),
            ("client_id", "acme"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(refused["error"], "invalid_grant");
    svc.stop().await;
}

/// The first logout token `app` received, verified as `tenant`'s.
async fn logout_token_of(
    app: &TenantApp,
    keys: &KeySet,
    issuer: &str,
    tenant: &str,
) -> LogoutClaims {
    let tokens = eventually(
        "a back-channel logout token",
        Duration::from_secs(10),
        || {
            let got = app.logout_tokens.lock().expect("lock").clone();
            async move { (!got.is_empty()).then_some(got) }
        },
    )
    .await;
    assert!(
        verify_id_token(keys, issuer, tenant, "", &tokens[0], now(), 5).is_err(),
        "typ logout+jwt: never an ID token"
    );
    verify_logout_token(keys, issuer, tenant, &tokens[0], now()).expect("the logout token verifies")
}

/// The discovery document names the endpoints this suite uses and what they
/// support; each advertised endpoint answers as that endpoint.
async fn discovery_advertises_the_code_flow(url: String) {
    let (svc, acme, _beta) = setup(&url).await;
    let http = reqwest::Client::new();
    let doc: serde_json::Value = http
        .get(format!("{}/.well-known/openid-configuration", svc.base))
        .send()
        .await
        .expect("discovery")
        .json()
        .await
        .expect("discovery is JSON");
    let base = &svc.base;
    assert_eq!(doc["issuer"], base.as_str(), "{doc}");
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{base}/oauth2/authorize"),
        "{doc}"
    );
    assert_eq!(
        doc["token_endpoint"],
        format!("{base}/oauth2/token"),
        "{doc}"
    );
    assert_eq!(
        doc["end_session_endpoint"],
        format!("{base}/oauth2/logout"),
        "{doc}"
    );
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"]),
        "only S256: {doc}"
    );
    assert_eq!(doc["backchannel_logout_supported"], true, "{doc}");
    assert_eq!(doc["backchannel_logout_session_supported"], true, "{doc}");
    assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
    assert!(
        doc["grant_types_supported"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "authorization_code")),
        "{doc}"
    );

    // The advertised authorization endpoint is where the code flow starts:
    // without a session it shows the login form.
    let endpoint = doc["authorization_endpoint"].as_str().expect("authorize");
    let (_, challenge) = pkce();
    let query = authorize_path("acme", &acme.redirect_uri(), &challenge, &[]);
    let query = query.split_once('?').expect("a query").1;
    let login = http
        .get(format!("{endpoint}?{query}"))
        .send()
        .await
        .expect("authorize");
    assert_eq!(login.status(), StatusCode::OK);
    assert!(
        login
            .text()
            .await
            .expect("body")
            .contains("<label for=\"password\">"),
        "the login form"
    );
    // The advertised token endpoint refuses an unknown code as OAuth says.
    let redirect = acme.redirect_uri();
    let verifier = "v".repeat(43);
    let refused = http
        .post(doc["token_endpoint"].as_str().expect("token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=authorization_code&code=not-a-code&client_id=acme&redirect_uri={}&code_verifier={verifier}",
            encode(&redirect)
        ))
        .send()
        .await
        .expect("token");
    assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
    let error: serde_json::Value = refused.json().await.expect("an OAuth error");
    assert_eq!(error["error"], "invalid_grant", "{error}");
    // The advertised end-session endpoint answers (no session to end).
    let end = http
        .get(doc["end_session_endpoint"].as_str().expect("end session"))
        .send()
        .await
        .expect("end session");
    assert_ne!(end.status(), StatusCode::NOT_FOUND);
    assert!(!end.status().is_server_error(), "{}", end.status());

    svc.stop().await;
}
