//! What each person does, as they would do it: links and buttons clicked,
//! text typed, the page read back.

use serde_json::json;

use super::{ALICE_PASSWORD, BOB_PASSWORD, CAROL_PASSWORD, Person, Sandbox};

/// The flow alice writes, first with a mistake on line 4 (a task type that
/// does not exist), typed line by line into the editor. Its naps keep it
/// running a while: `bye`'s WARN line comes 3 s after the start, while the
/// execution page is open, and the execution runs 4 s more. Flow-style values
/// keep every line at column 0, so the editor's auto-indent adds nothing.
const FLOW_WITH_MISTAKE: &str = "id: greet\n\
namespace: company.team\n\
inputs: [{id: who, type: STRING, defaults: world}]\n\
tasks: [{id: hello, type: io.kestra.plugin.core.log.Lgo, message: \"Hello {{ inputs.who }}\"}, {id: nap, type: io.kestra.plugin.core.flow.Sleep, duration: PT3S}, {id: bye, type: io.kestra.plugin.core.log.Log, message: done, level: WARN}, {id: rest, type: io.kestra.plugin.core.flow.Sleep, duration: PT4S}]\n";

/// Signs in on identity's login page, where the browser has just been sent.
async fn sign_in(person: &Person, sandbox: &Sandbox, email: &str, password: &str) {
    let browser = &person.browser;
    browser
        .wait_for_url("identity's login page", |u| {
            u.starts_with(&sandbox.identity) && u.contains("/login")
                || u.starts_with(&format!("{}/oauth2/authorize", sandbox.identity))
        })
        .await;
    let email_field = browser.wait_for("input[name=email]").await;
    browser.fill(&email_field, email).await;
    let password_field = browser.wait_for("input[name=password]").await;
    browser.fill(&password_field, password).await;
    person.screenshot("identity-login").await;
    let submit = browser.wait_for("form button[type=submit]").await;
    browser.click(&submit).await;
}

/// alice: signs in through identity, writes a flow with a mistake, sees it
/// at its line, fixes it, sees the topology, runs it with an input and
/// watches it finish live; then opens her second tenant with no password.
pub async fn alice(sandbox: &Sandbox, alice: &Person) {
    let browser = &alice.browser;
    let acme = sandbox.tenant_url("acme");
    browser.goto(&format!("{acme}/")).await;
    sign_in(alice, sandbox, "alice@acme.com", ALICE_PASSWORD).await;
    browser
        .wait_for_url("acme's flows page after signing in", |u| {
            u.starts_with(&format!("{acme}/ui/flows"))
        })
        .await;
    browser.wait_for("a[href='/ui/flows/new']").await;
    alice.screenshot("flows-empty").await;
    // No token reaches the page's scripts: the session cookie is HttpOnly.
    let script_cookies = browser.execute("return document.cookie", json!([])).await;
    assert!(
        !script_cookies
            .as_str()
            .unwrap_or_default()
            .contains("session"),
        "the session cookie is visible to scripts: {script_cookies}"
    );
    let cookies = browser.cookies().await;
    let session = cookies
        .iter()
        .find(|c| {
            c["name"]
                .as_str()
                .is_some_and(|n| n.ends_with("atoll_session"))
        })
        .unwrap_or_else(|| panic!("no session cookie at acme: {cookies:?}"));
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["sameSite"], "Lax", "{session}");

    write_flow(alice, &acme).await;
    run_flow(alice, &acme).await;

    // The executions list and the triggers page of acme.
    let executions = browser.wait_for("nav a[href='/ui/executions']").await;
    browser.click(&executions).await;
    browser
        .wait_for_text("main", |t| t.contains("greet") && t.contains("SUCCESS"))
        .await;
    alice.screenshot("executions").await;
    let triggers = browser.wait_for("nav a[href='/ui/triggers']").await;
    browser.click(&triggers).await;
    browser
        .wait_for_url("the triggers page", |u| u.contains("/ui/triggers"))
        .await;
    alice.screenshot("triggers").await;

    // Her second tenant, through identity's list of her tenants: identity
    // remembers her, no password asked.
    let switch = browser.wait_for("a[href$='/tenants']").await;
    browser.click(&switch).await;
    let globex = sandbox.tenant_url("globex");
    let link = browser.wait_for(&format!("a[href='{globex}/']")).await;
    let listed = browser.text(&browser.wait_for("main").await).await;
    assert!(
        listed.contains("Acme Corp") && listed.contains("Globex") && listed.contains("Editor"),
        "her tenants with their roles: {listed}"
    );
    alice.screenshot("my-tenants").await;
    browser.click(&link).await;
    browser
        .wait_for_url("globex's flows page without a password", |u| {
            u.starts_with(&format!("{globex}/ui/flows")) || u.contains("/login")
        })
        .await;
    assert!(
        browser.find_all("input[type=password]").await.is_empty(),
        "entering a second tenant asked for a password: {}",
        browser.url().await
    );
    browser.wait_for("a[href='/ui/flows/new']").await;
    alice.screenshot("globex-flows").await;
}

/// Types the flow with its mistake, validates, reads the problem at line
/// 4, fixes it, saves and sees the topology.
async fn write_flow(alice: &Person, acme: &str) {
    let browser = &alice.browser;
    let new = browser.wait_for("a[href='/ui/flows/new']").await;
    browser.click(&new).await;
    // The editor (CodeMirror) lives in a shadow root of its host element.
    let editor = browser.wait_for_in_shadow(".cm-host", ".cm-content").await;
    browser.click(&editor).await;
    // Select what is there (the new flow's template) and type over it, in
    // one go: WebDriver puts the caret at the end of the editor before
    // each typing.
    browser
        .fill_keys(&editor, &[SELECT_ALL, FLOW_WITH_MISTAKE])
        .await;
    let validate = browser.wait_for("button[data-validate]").await;
    browser.click(&validate).await;
    let problem = browser
        .wait_for_text("#problems-list li", |t| t.contains("Lgo"))
        .await;
    assert!(
        problem.starts_with("4:"),
        "the mistake is shown at its line (4): {problem:?}"
    );
    alice.screenshot("editor-problem").await;

    // The fix: retype the whole flow with the right task type; then, from
    // the keyboard only, out of the editor (Tab indents there; Escape then
    // Tab moves on), Validate and Save.
    let fixed = FLOW_WITH_MISTAKE.replace("log.Lgo", "log.Log");
    browser.fill_keys(&editor, &[SELECT_ALL, &fixed]).await;
    browser.press_keys(TAB).await;
    let typed = browser
        .execute(
            "return document.querySelector('.cm-host').atollEditor.text()",
            json!([]),
        )
        .await;
    assert!(
        typed.as_str().is_some_and(|t| t.contains("\n  ")) && focused_in_editor(browser).await,
        "Tab alone indents in the editor and keeps the focus there: {typed}"
    );
    browser.fill_keys(&editor, &[SELECT_ALL, &fixed]).await;
    browser.press_keys(&format!("{ESCAPE}{TAB}")).await;
    assert_eq!(
        focused(browser).await,
        "button:validate",
        "Escape then Tab leaves the editor for Validate"
    );
    browser.press_keys(ENTER).await;
    browser
        .wait_for_text("#validate-status", |t| t.contains("Valid"))
        .await;
    browser.press_keys(TAB).await;
    assert_eq!(focused(browser).await, "button:save", "Tab on to Save");
    browser.press_keys(ENTER).await;
    browser
        .wait_for_url("the saved flow's page", |u| {
            u.starts_with(&format!("{acme}/ui/flows/company.team/greet"))
        })
        .await;
    // The topology: one node per task.
    let graph = browser.wait_for(".graph-box svg").await;
    let drawn = browser.text(&graph).await;
    for task in ["hello", "nap", "bye"] {
        assert!(
            drawn.contains(task),
            "task {task} is not in the topology: {drawn:?}"
        );
    }
    alice.screenshot("flow-topology").await;
}

/// Runs the flow with an input and watches the Gantt and the logs go live
/// to SUCCESS.
async fn run_flow(alice: &Person, acme: &str) {
    let browser = &alice.browser;
    let run = browser.wait_for("a[href$='/run']").await;
    browser.click(&run).await;
    let who = browser.wait_for("#input-who").await;
    browser.fill(&who, "Atoll").await;
    alice.screenshot("run-form").await;
    let start = browser.wait_for("main form button[type=submit]").await;
    browser.click(&start).await;
    browser
        .wait_for_url("the execution's page", |u| {
            u.starts_with(&format!("{acme}/ui/executions/"))
        })
        .await;
    // Still running when the page loads (the flow naps 3 s): what follows is
    // the page updating itself. The mark is lost if the page reloads.
    browser.wait_for(".gantt").await;
    let drawn = browser
        .execute(
            "window.atollFirstLoad = true; return document.getElementById('logs').textContent",
            json!([]),
        )
        .await;
    assert!(
        !drawn.as_str().unwrap_or_default().contains("done"),
        "the page was drawn after bye ran, nothing left to follow live: {drawn}"
    );
    watch_live(alice).await;
    browser
        .wait_for_text("#execution-state", |t| t.contains("SUCCESS"))
        .await;
    browser
        .wait_for_text("#logs", |t| t.contains("Hello Atoll") && t.contains("done"))
        .await;
    let bars = browser.find_all(".gantt rect.bar").await;
    assert!(
        bars.len() >= 3,
        "one Gantt bar per task run, got {}",
        bars.len()
    );
    // Once ended, the page loads itself again, whole (outputs, end time).
    browser
        .until("the execution page to reload once ended", || async {
            let reloaded = browser
                .execute(
                    "return document.readyState === 'complete' \
                     && performance.getEntriesByType('navigation')[0].type === 'reload'",
                    json!([]),
                )
                .await;
            (reloaded == true).then_some(())
        })
        .await;
    browser.wait_for(".gantt[data-ended]").await;
    browser.wait_for_text(".gantt", |t| t.contains("bye")).await;
    alice.screenshot("execution-success").await;
}

/// What the execution page shows now: whether it is the page first loaded
/// (not reloaded), its state, its log lines (text, hidden) and Gantt rows.
const PAGE_NOW: &str = "return {\
    first: window.atollFirstLoad === true,\
    state: document.getElementById('execution-state').textContent,\
    logs: Array.from(document.querySelectorAll('#logs li')).map(li => [li.textContent, li.hidden]),\
    rows: Array.from(document.querySelectorAll('.gantt .gantt-name')).map(n => n.textContent)}";

/// `bye`'s log line and Gantt row appear in the page while the execution
/// still runs, before any reload; the level filter hides INFO lines.
async fn watch_live(alice: &Person) {
    let browser = &alice.browser;
    let has = |list: &serde_json::Value, needle: &str| {
        list.as_array().is_some_and(|all| {
            all.iter().any(|e| {
                e.as_str()
                    .or(e[0].as_str())
                    .is_some_and(|t| t.contains(needle))
            })
        })
    };
    let live = browser
        .until("bye's log line and Gantt row to appear live", || async {
            let now = browser.execute(PAGE_NOW, json!([])).await;
            (has(&now["logs"], "done") && has(&now["rows"], "bye")).then_some(now)
        })
        .await;
    assert_eq!(
        live["first"], true,
        "the page reloaded to show them: {live}"
    );
    assert!(
        live["state"]
            .as_str()
            .is_some_and(|s| s.contains("RUNNING")),
        "the execution still runs (rest naps 4 s): {live}"
    );
    alice.screenshot("execution-running").await;

    // The level filter, in the page: WARN and above keeps bye's line only.
    let chosen = browser
        .execute(
            "return document.getElementById('log-level').value",
            json!([]),
        )
        .await;
    let chosen = chosen.as_str().unwrap_or("INFO").to_owned();
    browser
        .click(&browser.wait_for("#log-level option[value=WARN]").await)
        .await;
    let filtered = browser.execute(PAGE_NOW, json!([])).await;
    assert_eq!(filtered["first"], true, "{filtered}");
    let lines = filtered["logs"].as_array().cloned().unwrap_or_default();
    let hidden = |needle: &str| {
        lines
            .iter()
            .find(|l| l[0].as_str().is_some_and(|t| t.contains(needle)))
            .map(|l| l[1] == true)
    };
    assert_eq!(
        hidden("Hello Atoll"),
        Some(true),
        "INFO hidden at WARN: {filtered}"
    );
    assert_eq!(
        hidden("done"),
        Some(false),
        "WARN shown at WARN: {filtered}"
    );
    browser
        .click(
            &browser
                .wait_for(&format!("#log-level option[value={chosen}]"))
                .await,
        )
        .await;
}

/// The focused element, as `tag:what`: `button:validate`, `button:save`,
/// or the tag and id.
async fn focused(browser: &super::webdriver::Browser) -> String {
    let seen = browser
        .execute(
            "const e = document.activeElement;\
             if (!e) return 'none';\
             if (e.matches('button[data-validate]')) return 'button:validate';\
             if (e.matches('button[value=save]')) return 'button:save';\
             return e.tagName.toLowerCase() + ':' + (e.id || e.className);",
            json!([]),
        )
        .await;
    seen.as_str().unwrap_or_default().to_owned()
}

/// Whether the focus is in the editor (inside its shadow root).
async fn focused_in_editor(browser: &super::webdriver::Browser) -> bool {
    let inside = browser
        .execute(
            "const host = document.querySelector('.cm-host');\
             return document.activeElement === host && !!host.shadowRoot.activeElement\
               && host.shadowRoot.activeElement.classList.contains('cm-content');",
            json!([]),
        )
        .await;
    inside == true
}

/// bob (Viewer): signs in, sees acme's flow but no control to change it.
pub async fn bob(sandbox: &Sandbox, bob: &Person) {
    let browser = &bob.browser;
    let acme = sandbox.tenant_url("acme");
    browser
        .goto(&format!("{acme}/ui/flows/company.team/greet"))
        .await;
    sign_in(bob, sandbox, "bob@acme.com", BOB_PASSWORD).await;
    browser
        .wait_for_url("the flow page bob asked for", |u| {
            u.starts_with(&format!("{acme}/ui/flows/company.team/greet"))
        })
        .await;
    browser.wait_for("pre.source").await;
    for control in [
        "a[href='/ui/flows/new']",
        "a[href$='/run']",
        "button[value=save]",
        "textarea[name=source]",
    ] {
        assert!(
            browser.find_all(control).await.is_empty(),
            "bob (Viewer) sees an edit control {control:?}"
        );
    }
    bob.screenshot("viewer-flow").await;
    // And the API refuses him anyway, with his own cookie and CSRF token.
    let status = browser
        .execute_async(
            "const done = arguments[arguments.length - 1];\
             const csrf = document.querySelector('meta[name=csrf-token]').content;\
             fetch('/api/v1/executions/company.team/greet', {method: 'POST', headers: {'X-CSRF-Token': csrf}})\
               .then(r => done(r.status), e => done(String(e)));",
            json!([]),
        )
        .await;
    assert_eq!(status, 403, "a Viewer's run through the API: {status}");
}

/// carol: a person of no tenant here; acme tells her so and issues nothing.
pub async fn carol(sandbox: &Sandbox, carol: &Person) {
    let browser = &carol.browser;
    let acme = sandbox.tenant_url("acme");
    browser.goto(&format!("{acme}/")).await;
    sign_in(carol, sandbox, "carol@example.com", CAROL_PASSWORD).await;
    let heading = browser
        .wait_for_text("h1", |t| t.contains("not a member"))
        .await;
    assert!(heading.contains("acme"), "{heading}");
    assert!(
        browser.url().await.starts_with(&sandbox.identity),
        "carol stays at identity"
    );
    carol.screenshot("not-a-member").await;
    // Nothing was issued: acme still sends her to sign in.
    browser.goto(&format!("{acme}/ui/flows")).await;
    browser
        .wait_for_url("acme to send carol to identity again", |u| {
            u.starts_with(&sandbox.identity)
        })
        .await;
}

/// alice logs out in acme: her sessions at identity, acme and globex end.
pub async fn alice_logs_out(sandbox: &Sandbox, alice: &Person) {
    let browser = &alice.browser;
    let acme = sandbox.tenant_url("acme");
    browser.goto(&format!("{acme}/ui/flows")).await;
    let logout = browser.wait_for("form[action='/auth/logout'] button").await;
    browser.click(&logout).await;
    // Back at acme's address, which now sends her to sign in again.
    browser
        .wait_for_url("identity's sign-in page after logging out", |u| {
            u.starts_with(&sandbox.identity)
        })
        .await;
    browser.wait_for("input[type=password]").await;
    alice.screenshot("logged-out").await;
    for tenant in ["acme", "globex"] {
        let url = sandbox.tenant_url(tenant);
        browser.goto(&format!("{url}/ui/flows")).await;
        browser
            .wait_for_url(&format!("{tenant} to ask alice to sign in again"), |u| {
                u.starts_with(&sandbox.identity)
            })
            .await;
        browser.wait_for("input[type=password]").await;
    }
}

/// Ctrl+A: selects everything in the focused field.
const SELECT_ALL: &str = "\u{E009}a\u{E009}";
/// WebDriver's Escape, Tab and Enter keys.
const ESCAPE: &str = "\u{E00C}";
const TAB: &str = "\u{E004}";
const ENTER: &str = "\u{E007}";

/// The first admin, at identity's own pages: an access token created
/// (shown once) and revoked; the users and tenants identity knows.
pub async fn admin(sandbox: &Sandbox, admin: &Person) {
    let browser = &admin.browser;
    let (email, password) = (&sandbox.admin.0, &sandbox.admin.1);
    browser.goto(&format!("{}/login", sandbox.identity)).await;
    sign_in(admin, sandbox, email, password).await;
    browser
        .wait_for_url("identity's home after signing in", |u| {
            u.starts_with(&format!("{}/tenants", sandbox.identity))
        })
        .await;
    browser.goto(&format!("{}/tokens", sandbox.identity)).await;
    browser
        .fill(&browser.wait_for("#name").await, "CI deploys")
        .await;
    browser.fill(&browser.wait_for("#days").await, "7").await;
    browser
        .fill(&browser.wait_for("#password").await, password)
        .await;
    let create = browser
        .wait_for("main form button[type=submit]:not(.danger)")
        .await;
    browser.click(&create).await;
    let shown = browser
        .wait_for_text("code.secret", |t| t.starts_with("atoll_pat_"))
        .await;
    admin.screenshot("token-created").await;
    // Shown once: the list no longer has it.
    browser.goto(&format!("{}/tokens", sandbox.identity)).await;
    browser.wait_for("button.danger").await;
    let page = browser.text(&browser.wait_for("main").await).await;
    assert!(
        page.contains("CI deploys") && !page.contains(&shown),
        "{page}"
    );
    let revoke = browser.wait_for("button.danger").await;
    browser.click(&revoke).await;
    browser
        .wait_for_text("main", |t| !t.contains("CI deploys"))
        .await;
    for (path, expect) in [
        ("/admin/users", "carol@example.com"),
        ("/admin/tenants", "globex"),
    ] {
        browser.goto(&format!("{}{path}", sandbox.identity)).await;
        browser.wait_for_text("main", |t| t.contains(expect)).await;
        admin
            .screenshot(&path.trim_start_matches('/').replace('/', "-"))
            .await;
    }
}
