//! The web UI with a signed-in browser (#18): the session cookie opens the
//! pages, a browser without one is sent to sign in and back, every form
//! carries the session's CSRF token (and a form or script request without
//! it is refused), the header links identity's tenant switcher, and no
//! token reaches the browser.

mod support;

#[path = "sso/browser.rs"]
mod browser;
#[path = "sso/fake_op.rs"]
mod fake_op;

use browser::{Browser, SsoInstance, encode};
use fake_op::FakeOp;
use reqwest::{Method, StatusCode};

const FLOW: &str = "id: hello\nnamespace: company.team\ntasks:\n  - id: log\n    type: io.kestra.plugin.core.log.Log\n    message: hello\n";
const FORM: &str = "application/x-www-form-urlencoded";

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The new-flow form and the editor's validation: refused without the session's CSRF token (or with another), done with it.
async fn forms_and_scripts_need_the_token(browser: &Browser, acme: &SsoInstance, csrf: &str) {
    // A form without the token is refused; with it, the flow is created.
    let url = acme.url("/ui/flows/new");
    let without = form(&[("action", "save"), ("source", FLOW)]);
    let refused = browser
        .send(Method::POST, &url, &[], Some((FORM, without)))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    let wrong = form(&[("_csrf", "not-it"), ("action", "save"), ("source", FLOW)]);
    let refused = browser
        .send(Method::POST, &url, &[], Some((FORM, wrong)))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let with = form(&[("_csrf", csrf), ("action", "save"), ("source", FLOW)]);
    let created = browser
        .send(Method::POST, &url, &[], Some((FORM, with)))
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(
        created.location.as_deref(),
        Some("/ui/flows/company.team/hello?saved=1")
    );
    let page = browser.get(&acme.url("/ui/flows/company.team/hello")).await;
    assert!(
        page.body
            .contains(&format!("name=\"_csrf\" value=\"{csrf}\"")),
        "the editor's form carries the token"
    );

    // The editor's script sends the token as a header.
    let validate = acme.url("/ui/validate");
    let bare = browser
        .send(
            Method::POST,
            &validate,
            &[],
            Some(("text/plain", FLOW.into())),
        )
        .await;
    assert_eq!(bare.status, StatusCode::FORBIDDEN);
    let checked = browser
        .send(
            Method::POST,
            &validate,
            &[("x-csrf-token", csrf)],
            Some(("text/plain", FLOW.into())),
        )
        .await;
    assert_eq!(checked.status, StatusCode::OK, "{}", checked.body);
    assert_eq!(checked.body, "[]");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_browser_uses_the_pages_with_its_csrf_token() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Editor", None, None).await;
    let browser = Browser::new();

    let page = browser.get(&acme.url("/ui/executions?state=FAILED")).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert_eq!(
        page.location.as_deref(),
        Some("/auth/login?return_to=%2Fui%2Fexecutions%3Fstate%3DFAILED")
    );
    let signed_in = browser.sign_in(&acme, "/ui/flows").await;
    assert_eq!(
        signed_in.location.as_deref(),
        Some("/ui/flows"),
        "{}",
        signed_in.body
    );
    let csrf = browser.csrf(&acme).await;

    let flows = browser.get(&acme.url("/ui/flows")).await;
    assert_eq!(flows.status, StatusCode::OK, "{}", flows.body);
    assert!(
        flows
            .body
            .contains(&format!("<meta name=\"csrf-token\" content=\"{csrf}\">")),
        "{}",
        flows.body
    );
    assert!(
        flows
            .body
            .contains(&format!("href=\"{}/tenants\"", op.issuer())),
        "the tenant switcher"
    );
    assert!(
        flows
            .body
            .contains(&format!("name=\"_csrf\" value=\"{csrf}\"")),
        "the log-out form's token"
    );
    assert!(
        flows.body.contains(fake_op::EMAIL),
        "the signed-in person's e-mail address: {}",
        flows.body
    );

    forms_and_scripts_need_the_token(&browser, &acme, &csrf).await;
    // Running from the form opens the execution's page.
    let execution = run_from_form(&browser, &acme, &csrf, "company.team/hello").await;
    assert_eq!(
        browser
            .get(&acme.url(&format!("/ui/executions/{execution}")))
            .await
            .status,
        StatusCode::OK
    );
    browser.assert_no_token(&op);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_viewer_gets_no_edit_controls() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Viewer", None, None).await;
    let browser = Browser::new();
    browser.sign_in(&acme, "/ui/flows").await;
    let csrf = browser.csrf(&acme).await;
    let flows = browser.get(&acme.url("/ui/flows")).await;
    assert_eq!(flows.status, StatusCode::OK);
    assert!(!flows.body.contains("New flow"));
    let body = form(&[("_csrf", &csrf), ("action", "save"), ("source", FLOW)]);
    let refused = browser
        .send(
            Method::POST,
            &acme.url("/ui/flows/new"),
            &[],
            Some((FORM, body)),
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
}

/// Saves `source` from the new-flow form, as the signed-in browser.
async fn save_flow(browser: &Browser, acme: &SsoInstance, csrf: &str, source: &str) {
    let body = form(&[("_csrf", csrf), ("action", "save"), ("source", source)]);
    let saved = browser
        .send(
            Method::POST,
            &acme.url("/ui/flows/new"),
            &[],
            Some((FORM, body)),
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
}

/// Runs `namespace/id` from its form; the new execution's id.
async fn run_from_form(browser: &Browser, acme: &SsoInstance, csrf: &str, flow: &str) -> String {
    let started = browser
        .send(
            Method::POST,
            &acme.url(&format!("/ui/flows/{flow}/run")),
            &[],
            Some((FORM, form(&[("_csrf", csrf)]))),
        )
        .await;
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let page = started.location.expect("the execution's page");
    page.trim_start_matches("/ui/executions/").to_owned()
}

/// The execution as the API gives it, once `ready` holds.
async fn execution_when(
    browser: &Browser,
    acme: &SsoInstance,
    id: &str,
    what: &str,
    ready: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    atoll_testkit::eventually(what, std::time::Duration::from_secs(30), || async {
        let answer = browser
            .get(&acme.url(&format!("/api/v1/executions/{id}")))
            .await;
        let execution: serde_json::Value = serde_json::from_str(&answer.body).ok()?;
        ready(&execution).then_some(execution)
    })
    .await
}

/// The executions list's bulk form with the session's cookie and CSRF
/// token: a failed execution restarted (its failed task tried again), a
/// running one killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_restart_and_kill_from_the_executions_list() {
    let op = FakeOp::start().await;
    let acme = SsoInstance::start(&op, "acme", "Editor", None, None).await;
    let browser = Browser::new();
    browser.sign_in(&acme, "/ui/executions").await;
    let csrf = browser.csrf(&acme).await;
    save_flow(&browser, &acme, &csrf, "id: fails\nnamespace: ui.bulk\ntasks:\n  - id: boom\n    type: io.kestra.plugin.core.execution.Fail\n    errorMessage: on purpose\n").await;
    save_flow(&browser, &acme, &csrf, "id: naps\nnamespace: ui.bulk\ntasks:\n  - id: nap\n    type: io.kestra.plugin.core.flow.Sleep\n    duration: PT10M\n").await;
    let state = |e: &serde_json::Value| e["state"]["current"].as_str().unwrap_or("").to_owned();

    // Restart: the failed execution's failed task runs a second attempt.
    let failed = run_from_form(&browser, &acme, &csrf, "ui.bulk/fails").await;
    execution_when(&browser, &acme, &failed, "the execution to fail", |e| {
        state(e) == "FAILED"
    })
    .await;
    let list = browser
        .get(&acme.url("/ui/executions?namespace=ui.bulk&state=FAILED"))
        .await;
    assert!(
        list.body
            .contains(&format!("name=\"ids\" value=\"{failed}\"")),
        "the failed execution is selectable: {}",
        list.body
    );
    let restart = form(&[
        ("_csrf", &csrf),
        ("action", "restart"),
        ("ids", &failed),
        ("query", "namespace=ui.bulk"),
    ]);
    let restarted = browser
        .send(
            Method::POST,
            &acme.url("/ui/executions/bulk"),
            &[],
            Some((FORM, restart)),
        )
        .await;
    assert_eq!(
        restarted.status,
        StatusCode::SEE_OTHER,
        "{}",
        restarted.body
    );
    assert_eq!(
        restarted.location.as_deref(),
        Some("/ui/executions?namespace=ui.bulk&done=restart&count=1")
    );
    let after = browser
        .get(&acme.url(restarted.location.as_deref().expect("location")))
        .await;
    assert!(
        after.body.contains("restart: 1 execution(s)"),
        "{}",
        after.body
    );
    let again = execution_when(&browser, &acme, &failed, "the restarted run to end", |e| {
        state(e) == "FAILED"
            && e["taskRunList"][0]["attempts"]
                .as_array()
                .is_some_and(|a| a.len() == 2)
    })
    .await;
    let history: Vec<&str> = again["state"]["histories"]
        .as_array()
        .expect("histories")
        .iter()
        .filter_map(|h| h["state"].as_str())
        .collect();
    assert_eq!(
        history.iter().filter(|s| **s == "FAILED").count(),
        2,
        "failed, restarted, failed again: {history:?}"
    );

    // Kill: the running execution ends KILLED.
    let running = run_from_form(&browser, &acme, &csrf, "ui.bulk/naps").await;
    execution_when(&browser, &acme, &running, "the nap to start", |e| {
        state(e) == "RUNNING"
    })
    .await;
    let kill = form(&[("_csrf", &csrf), ("action", "kill"), ("ids", &running)]);
    let killed = browser
        .send(
            Method::POST,
            &acme.url("/ui/executions/bulk"),
            &[],
            Some((FORM, kill)),
        )
        .await;
    assert_eq!(killed.status, StatusCode::SEE_OTHER, "{}", killed.body);
    assert_eq!(
        killed.location.as_deref(),
        Some("/ui/executions?done=kill&count=1")
    );
    execution_when(
        &browser,
        &acme,
        &running,
        "the execution to be killed",
        |e| state(e) == "KILLED",
    )
    .await;
    let page = browser
        .get(&acme.url(&format!("/ui/executions/{running}")))
        .await;
    assert!(page.body.contains("state-killed"), "{}", page.body);
}
