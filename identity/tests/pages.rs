//! Identity's HTML pages over loopback, on SQLite and on PostgreSQL:
//! personal access tokens, the admin pages, labels and CSRF tokens, and the
//! login form's throttle.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use support::browser::{Browser, Page};
use support::{ADMIN_EMAIL, ADMIN_PASSWORD, Service, config};

const ALICE: &str = "alice@acme.test";
const ALICE_PW: &str = "alice-correct-horse";

#[tokio::test]
async fn pages_on_sqlite() {
    support::run_suite(&support::Databases::sqlite(), SUITE).await;
}

#[tokio::test]
async fn pages_on_postgres() {
    support::run_suite(&support::Databases::postgres().await, SUITE).await;
}

const SUITE: &[(&str, support::Scenario)] = scenarios![
    access_tokens_are_created_once_and_revoked,
    admin_pages_are_for_admins,
    admins_manage_users_on_the_pages,
    the_login_form_is_throttled,
];

/// A browser signed in through `/login`.
async fn log_in(svc: &Service, email: &str, password: &str) -> Browser {
    let mut browser = Browser::new(&svc.base);
    let answer = browser
        .log_in_at("/login?return_to=/tenants", email, password)
        .await;
    assert_eq!(answer.status, StatusCode::SEE_OTHER, "{}", answer.body);
    assert_eq!(answer.location(), Some("/tenants"));
    browser
}

/// Every `<input>`, `<select>` of the page (but hidden ones) has a label.
fn every_control_is_labelled(page: &Page) {
    for tag in ["<input ", "<select "] {
        for (at, _) in page.body.match_indices(tag) {
            let control = &page.body[at..at + page.body[at..].find('>').expect("tag end")];
            if control.contains("type=\"hidden\"") {
                continue;
            }
            let id = control
                .split("id=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("control without id: {control}"));
            assert!(
                page.body.contains(&format!("<label for=\"{id}\"")),
                "no label for {id}"
            );
        }
    }
}

async fn access_tokens_are_created_once_and_revoked(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let mut browser = log_in(&svc, ALICE, ALICE_PW).await;
    let page = browser.get("/tokens").await;
    assert_eq!(page.status, StatusCode::OK);
    every_control_is_labelled(&page);
    let csrf = page.field("_csrf").expect("CSRF token");

    // Without the CSRF token: refused, nothing created.
    let fields = [
        ("name", "ci"),
        ("scope", "read"),
        ("days", "7"),
        ("password", ALICE_PW),
    ];
    let refused = browser.post("/tokens", &fields).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let mut with_csrf = fields.to_vec();
    with_csrf.push(("_csrf", &csrf));
    // A wrong password: refused.
    let mut wrong = with_csrf.clone();
    wrong.retain(|(k, _)| *k != "password");
    wrong.push(("password", "not-her-password"));
    assert_eq!(
        browser.post("/tokens", &wrong).await.status,
        StatusCode::FORBIDDEN
    );

    let created = browser.post("/tokens", &with_csrf).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let start = created.body.find("atoll_pat_").expect("the token is shown");
    let token: String = created.body[start..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let (status, me) = svc.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], ALICE);
    // Shown once: the listing does not carry it.
    let page = browser.get("/tokens").await;
    assert!(!page.body.contains(&token));
    assert!(page.body.contains("ci") && page.body.contains("read"));

    let (_, pats) = svc.get("/api/v1/me/access-tokens", Some(&token)).await;
    let id = pats[0]["id"].as_str().expect("id").to_owned();
    let revoke = format!("/tokens/{id}/revoke");
    assert_eq!(
        browser.post(&revoke, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let done = browser.post(&revoke, &[("_csrf", &csrf)]).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let (status, _) = svc.get("/api/v1/me", Some(&token)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "revoked");
    svc.stop().await;
}

async fn admin_pages_are_for_admins(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin_token = svc.admin().await;
    svc.sign_up(&admin_token, ALICE, ALICE_PW).await;
    let (status, _) = svc
        .register(
            "acme",
            support::CLUSTER_A,
            json!([{"email": ALICE, "role": "Viewer"}]),
        )
        .await;
    assert!(status.is_success());

    // Alice is no admin: 403 pages, and her POSTs change nothing.
    let mut alice = log_in(&svc, ALICE, ALICE_PW).await;
    let tenants = alice.get("/tenants").await;
    assert!(
        !tenants.body.contains("href=\"/admin/users\""),
        "no Admin link"
    );
    let alice_csrf = tenants.field("_csrf").expect("csrf");
    for path in ["/admin/users", "/admin/tenants"] {
        let page = alice.get(path).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
        assert!(page.body.contains("Administrators only"));
    }
    let page = alice
        .post(
            "/admin/users",
            &[
                ("_csrf", &alice_csrf),
                ("email", "mallory@x.test"),
                ("password", "mallory-password-1"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    svc.stop().await;
}

async fn admins_manage_users_on_the_pages(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin_token = svc.admin().await;
    svc.sign_up(&admin_token, ALICE, ALICE_PW).await;
    let (status, _) = svc
        .register(
            "acme",
            support::CLUSTER_A,
            json!([{"email": ALICE, "role": "Viewer"}]),
        )
        .await;
    assert!(status.is_success());
    let mut alice = log_in(&svc, ALICE, ALICE_PW).await;

    // The admin lists, creates, disables and enables.
    let mut admin = log_in(&svc, ADMIN_EMAIL, ADMIN_PASSWORD).await;
    let page = admin.get("/admin/users").await;
    assert_eq!(page.status, StatusCode::OK);
    every_control_is_labelled(&page);
    assert!(page.body.contains(ALICE));
    let csrf = page.field("_csrf").expect("csrf");
    let fields = [
        ("email", "dave@acme.test"),
        ("password", "dave-long-password-1"),
    ];
    assert_eq!(
        admin.post("/admin/users", &fields).await.status,
        StatusCode::FORBIDDEN,
        "no CSRF token"
    );
    let mut with_csrf = fields.to_vec();
    with_csrf.push(("_csrf", &csrf));
    let created = admin.post("/admin/users", &with_csrf).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    let (_, users) = svc.get("/api/v1/admin/users", Some(&admin_token)).await;
    let alice_id = users
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == ALICE)
        .and_then(|u| u["id"].as_str())
        .expect("alice")
        .to_owned();
    assert!(
        users
            .as_array()
            .expect("users")
            .iter()
            .any(|u| u["email"] == "dave@acme.test")
    );
    let disabled = admin
        .post(
            &format!("/admin/users/{alice_id}/disable"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER);
    // Disabling ends her session: her pages ask her to log in.
    assert_eq!(alice.get("/tenants").await.status, StatusCode::SEE_OTHER);
    let enabled = admin
        .post(
            &format!("/admin/users/{alice_id}/enable"),
            &[("_csrf", &csrf)],
        )
        .await;
    assert_eq!(enabled.status, StatusCode::SEE_OTHER);
    log_in(&svc, ALICE, ALICE_PW).await;

    let page = admin.get("/admin/tenants").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("acme Corp"));
    svc.stop().await;
}

async fn the_login_form_is_throttled(url: String) {
    let mut config = config(&url);
    config.login_limits.attempts_per_minute = 3;
    let svc = Service::start(config).await;
    let mut browser = Browser::new(&svc.base);
    // Escaped: what was typed comes back as text, never markup.
    let page = browser
        .log_in_at("/login", "<script>x</script>@a.test", "pw")
        .await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED);
    assert!(page.body.contains("Invalid email or password"));
    assert!(!page.body.contains("<script>x") && page.body.contains("&lt;script&gt;x"));
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let page = browser.log_in_at("/login", ALICE, "wrong-password").await;
        statuses.push(page.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    svc.stop().await;
}
