//! Every single sign-on refusal the isolation matrix counts, over loopback
//! on SQLite and on PostgreSQL: each is refused, none accepted.

mod support;

use atoll_identity::store::AuthCode;
use reqwest::StatusCode;
use serde_json::Value;
use support::Service;
use support::browser::{Browser, Page, query_of};
use support::sso::{
    ALICE, ALICE_PW, authorize_path, code_for, exchange, now, pkce, setup, signed_in, token,
};

#[tokio::test]
async fn refusals_on_sqlite() {
    support::run_suite(&support::Databases::sqlite(), SUITE).await;
}

#[tokio::test]
async fn refusals_on_postgres() {
    support::run_suite(&support::Databases::postgres().await, SUITE).await;
}

const SUITE: &[(&str, support::Scenario)] = scenarios![authorize_refusals, token_refusals];

/// The refusals the isolation matrix counts, by kind; the scenarios below
/// check each at least once and fail on any accepted.
pub const REFUSALS: &[&str] = &[
    // GET /oauth2/authorize
    "unknown client",
    "unregistered redirect_uri",
    "missing PKCE",
    "plain PKCE method",
    "missing nonce",
    // POST /oauth2/token
    "wrong verifier",
    "missing verifier",
    "replayed code",
    "code of another client",
    "redirect_uri mismatch",
    "expired code",
    "forged code",
    "refresh token of another client",
];

/// Refusals seen, by kind.
#[derive(Default)]
struct Tally(Vec<&'static str>);

impl Tally {
    fn saw(&mut self, kind: &'static str) {
        assert!(REFUSALS.contains(&kind), "{kind} is listed in REFUSALS");
        self.0.push(kind);
    }

    /// Asserts that every kind of `expected` was refused; prints the count.
    fn done(&self, expected: &[&str]) {
        for kind in expected {
            assert!(self.0.contains(kind), "{kind} was checked");
        }
        eprintln!(
            "single sign-on refusals: {} refused, 0 accepted",
            self.0.len()
        );
    }
}

/// One refusal of the token endpoint: 400 with `error`.
fn refused(
    tally: &mut Tally,
    kind: &'static str,
    (status, body): (StatusCode, Value),
    error: &str,
) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{kind}: {body}");
    assert_eq!(body["error"], error, "{kind}: {body}");
    tally.saw(kind);
}

/// One refusal of the authorize endpoint by redirect with `invalid_request`.
fn refused_by_redirect(tally: &mut Tally, kind: &'static str, page: &Page, redirect_uri: &str) {
    assert_eq!(page.status, StatusCode::FOUND, "{kind}");
    let location = page.location().expect("location");
    assert!(location.starts_with(redirect_uri), "{kind}: {location}");
    let query = query_of(location);
    assert_eq!(query["error"], "invalid_request", "{kind}");
    assert!(!query.contains_key("code"), "{kind}");
    tally.saw(kind);
}

/// An HTML 400 page, never a redirect.
fn refused_by_page(tally: &mut Tally, kind: &'static str, page: &Page) {
    assert_eq!(page.status, StatusCode::BAD_REQUEST, "{kind}");
    assert!(page.location().is_none(), "{kind}: redirected");
    assert!(
        page.header("content-type").starts_with("text/html"),
        "{kind}"
    );
    tally.saw(kind);
}

async fn authorize_refusals(url: String) {
    let (svc, acme, beta) = setup(&url).await;
    let mut browser = signed_in(&svc, ALICE, ALICE_PW, &acme, "acme").await;
    let mut tally = Tally::default();
    let (verifier, challenge) = pkce();
    let acme_cb = acme.redirect_uri();
    let mut get = async |client: &str, redirect_uri: &str, extra: &[(&str, &str)]| {
        browser
            .get(&authorize_path(client, redirect_uri, &challenge, extra))
            .await
    };

    let page = get("nobody", &acme_cb, &[]).await;
    refused_by_page(&mut tally, "unknown client", &page);
    for evil in [
        "https://evil.example/auth/callback",
        &format!("{acme_cb}/x"),
        &format!("{}/AUTH/callback", acme.url),
        &beta.redirect_uri(),
    ] {
        let page = get("acme", evil, &[]).await;
        refused_by_page(&mut tally, "unregistered redirect_uri", &page);
    }
    let no_pkce = [("code_challenge", ""), ("code_challenge_method", "")];
    let page = get("acme", &acme_cb, &no_pkce).await;
    refused_by_redirect(&mut tally, "missing PKCE", &page, &acme_cb);
    let plain = [
        ("code_challenge", verifier.as_str()),
        ("code_challenge_method", "plain"),
    ];
    let page = get("acme", &acme_cb, &plain).await;
    refused_by_redirect(&mut tally, "plain PKCE method", &page, &acme_cb);
    let page = get("acme", &acme_cb, &[("nonce", "")]).await;
    refused_by_redirect(&mut tally, "missing nonce", &page, &acme_cb);
    tally.done(&REFUSALS[..5]);
    svc.stop().await;
}

async fn token_refusals(url: String) {
    let (svc, acme, beta) = setup(&url).await;
    let mut browser = signed_in(&svc, ALICE, ALICE_PW, &acme, "acme").await;
    let mut t = Tally::default();
    let (verifier, challenge) = pkce();
    let cb = acme.redirect_uri();

    // A wrong verifier; the code is spent by it.
    let code = code_for(&mut browser, "acme", &cb, &challenge).await;
    let (wrong, _) = pkce();
    refused(
        &mut t,
        "wrong verifier",
        exchange(&svc, &code, "acme", &cb, &wrong).await,
        "invalid_grant",
    );
    refused(
        &mut t,
        "replayed code",
        exchange(&svc, &code, "acme", &cb, &verifier).await,
        "invalid_grant",
    );
    // A missing verifier: invalid_request, and the code is spent too.
    let code = code_for(&mut browser, "acme", &cb, &challenge).await;
    let fields = [
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", &cb),
        ("client_id", "acme"),
    ];
    refused(
        &mut t,
        "missing verifier",
        token(&svc, &fields).await,
        "invalid_request",
    );
    refused(
        &mut t,
        "replayed code",
        exchange(&svc, &code, "acme", &cb, &verifier).await,
        "invalid_grant",
    );
    // acme's code at beta; at another redirect URI; a forged one.
    let code = code_for(&mut browser, "acme", &cb, &challenge).await;
    let at_beta = exchange(&svc, &code, "beta", &beta.redirect_uri(), &verifier).await;
    refused(&mut t, "code of another client", at_beta, "invalid_grant");
    let code = code_for(&mut browser, "acme", &cb, &challenge).await;
    let elsewhere = exchange(&svc, &code, "acme", &format!("{cb}/x"), &verifier).await;
    refused(&mut t, "redirect_uri mismatch", elsewhere, "invalid_grant");
    let forged = exchange(&svc, "forged-code-0123456789", "acme", &cb, &verifier).await;
    refused(&mut t, "forged code", forged, "invalid_grant");
    expired_code(&svc, &browser, &cb, &challenge).await;
    let expired = exchange(&svc, "expired-code", "acme", &cb, &verifier).await;
    refused(&mut t, "expired code", expired, "invalid_grant");

    // acme's refresh token presented by beta.
    let code = code_for(&mut browser, "acme", &cb, &challenge).await;
    let (_, body) = exchange(&svc, &code, "acme", &cb, &verifier).await;
    let rt = body["refresh_token"].as_str().expect("rt");
    let fields = [
        ("grant_type", "refresh_token"),
        ("refresh_token", rt),
        ("client_id", "beta"),
    ];
    refused(
        &mut t,
        "refresh token of another client",
        token(&svc, &fields).await,
        "invalid_grant",
    );
    t.done(&REFUSALS[5..]);
    svc.stop().await;
}

/// Stores the code `expired-code` as the service would have 61 s ago.
async fn expired_code(svc: &Service, browser: &Browser, redirect_uri: &str, challenge: &str) {
    let cookie = &browser.cookies["atoll_sso"];
    let session = svc
        .store
        .sso_session(&atoll_identity::sessions::token_hash(cookie), now() as i64)
        .await
        .expect("query")
        .expect("session");
    let old = now() as i64 - 61;
    svc.store
        .insert_auth_code(&AuthCode {
            code_hash: atoll_identity::sessions::token_hash("expired-code"),
            client_id: "acme".into(),
            redirect_uri: redirect_uri.into(),
            code_challenge: challenge.into(),
            nonce: "n".into(),
            user_id: session.user.id.clone(),
            session_id: session.id.clone(),
            auth_time: old,
            expires_at: old + 60,
        })
        .await
        .expect("insert");
}
