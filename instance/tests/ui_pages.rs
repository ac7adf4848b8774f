//! The web UI's pages over real HTTP, with authentication on and bearer
//! tokens of each role (the cookie sign-in puts the same caller in front of
//! the same pages): each page answers with its content and its security
//! headers, a Viewer gets no edit controls (and is refused them), hostile
//! labels and log lines come out escaped.

mod support;

use reqwest::StatusCode;
use support::api_instance::encode;
use support::ui::{FLOW, Ui, assert_page_headers, stylesheet};

/// The root, the flow list with its search, a flow's page and its assets.
async fn check_flow_pages(ui: &Ui, editor: &str) {
    let root = ui.get(editor, "/").await;
    assert!(root.status.is_redirection(), "{}", root.status);
    assert_eq!(root.location(), "/ui/flows");

    let flows = ui.get(editor, "/ui/flows").await;
    assert_eq!(flows.status, StatusCode::OK);
    assert_page_headers(&flows);
    assert!(flows.body.contains("Atoll · acme"), "{}", flows.body);
    assert!(
        flows.body.contains("href=\"/ui/flows/ui.test/greet\""),
        "{}",
        flows.body
    );
    assert!(flows.body.contains("action=\"/auth/logout\""));
    assert!(
        flows.body.contains("user-1"),
        "the signed-in subject is shown"
    );
    for (q, found) in [
        ("team:data", true),
        ("ui.te", true),
        ("GREET", true),
        ("nothing-like-it", false),
    ] {
        let page = ui.get(editor, &format!("/ui/flows?q={}", encode(q))).await;
        assert_eq!(page.body.contains(">greet</a>"), found, "search {q}");
    }

    let flow = ui.get(editor, "/ui/flows/ui.test/greet").await;
    assert_eq!(flow.status, StatusCode::OK);
    for needle in [
        "<textarea",
        "data-editor",
        "value=\"validate\"",
        "value=\"save\"",
        "<svg",
        "Revision 1",
        "nightly",
        ">both<",
        ">left<",
        "href=\"/ui/flows/ui.test/greet/run\"",
        "action=\"/ui/flows/ui.test/greet/delete\"",
    ] {
        assert!(
            flow.body.contains(needle),
            "flow page lacks {needle}: {}",
            flow.body
        );
    }
    let css = ui.get(editor, &stylesheet(&flow.body)).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("immutable")
    );
    third_party_notices(ui, editor, &flow.body).await;
}

/// The licence notices of the packages bundled into the editor: linked from
/// every page, and at the stable address the editor's banner names.
async fn third_party_notices(ui: &Ui, editor: &str, page: &str) {
    let at = page
        .find("href=\"/assets/licenses.")
        .expect("a link to the third-party licences")
        + 6;
    let hashed = page[at..].split('"').next().expect("href");
    let script = page
        .find("src=\"/assets/editor.")
        .map(|at| page[at + 5..].split('"').next().expect("src").to_owned())
        .expect("the editor's script");
    let bundle = ui.get(editor, &script).await;
    assert!(
        bundle.body.starts_with("/*") && bundle.body[..300].contains("/assets/licenses.txt"),
        "the editor names its notices: {}",
        &bundle.body[..300]
    );
    for path in [hashed, "/assets/licenses.txt"] {
        let notices = ui.get(editor, path).await;
        assert_eq!(notices.status, StatusCode::OK, "{path}");
        assert!(
            notices.headers["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("text/plain"),
            "{path}"
        );
        for package in [
            "@codemirror/view",
            "@codemirror/state",
            "@lezer/yaml",
            "style-mod",
        ] {
            assert!(
                notices.body.contains(&format!("\n{package} ")),
                "{path} lacks {package}"
            );
        }
        assert!(
            notices.body.contains("Marijn Haverbeke")
                && notices
                    .body
                    .contains("The above copyright notice and this permission notice"),
            "{path}: the MIT notices themselves"
        );
    }
}

/// The run form, a run from it and the execution's page: the execution's path.
async fn run_from_the_form(ui: &Ui, editor: &str) -> String {
    let form = ui.get(editor, "/ui/flows/ui.test/greet/run").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(
        form.body.contains("name=\"input.name\"") && form.body.contains("value=\"world\""),
        "{}",
        form.body
    );
    assert!(
        form.body.contains("name=\"input.times\" type=\"number\""),
        "{}",
        form.body
    );
    assert!(form.body.contains("(required)"));

    // A required input left out: the form again, saying so.
    let missing = ui
        .post_form(editor, "/ui/flows/ui.test/greet/run", &[])
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
    assert!(missing.body.contains("times"), "{}", missing.body);

    let run = ui
        .post_form(
            editor,
            "/ui/flows/ui.test/greet/run",
            &[("input.times", "3"), ("labels", "env:test")],
        )
        .await;
    assert_eq!(run.status, StatusCode::SEE_OTHER, "{}", run.body);
    let execution = run.location().to_owned();
    assert!(execution.starts_with("/ui/executions/"), "{execution}");
    let page = ui.wait_for_state(editor, &execution, "SUCCESS").await;
    assert_page_headers(&page);
    for needle in [
        "gantt-track",
        "class=\"bar state-success\"",
        "Hello world x3",
        "/download\"",
        "env:test",
        "data-follow=\"/api/v1/logs/",
    ] {
        assert!(
            page.body.contains(needle),
            "execution page lacks {needle}: {}",
            page.body
        );
    }
    let warn_only = ui.get(editor, &format!("{execution}?level=WARN")).await;
    assert!(
        !warn_only.body.contains("Hello world x3"),
        "the level filter hides INFO lines"
    );
    execution
}

/// The triggers page, and disabling a trigger from it.
async fn check_triggers_page(ui: &Ui, editor: &str) {
    let triggers = ui.get(editor, "/ui/triggers").await;
    assert_eq!(triggers.status, StatusCode::OK);
    for needle in ["nightly", "0 3 * * *", "Next fire", ">Disable<", "Backfill"] {
        assert!(
            triggers.body.contains(needle),
            "triggers page lacks {needle}: {}",
            triggers.body
        );
    }
    let disabled = ui
        .post_form(
            editor,
            "/ui/triggers/disabled",
            &[
                ("namespace", "ui.test"),
                ("flowId", "greet"),
                ("triggerId", "nightly"),
                ("disabled", "true"),
            ],
        )
        .await;
    assert_eq!(disabled.status, StatusCode::SEE_OTHER, "{}", disabled.body);
    let triggers = ui.get(editor, "/ui/triggers?namespace=ui.test").await;
    assert!(
        triggers.body.contains(">Enable<") && triggers.body.contains("DISABLED"),
        "{}",
        triggers.body
    );
    // Saved again, the flow keeps its trigger disabled.
    let (status, body) = ui
        .api(editor, reqwest::Method::PUT, "/flows/ui.test/greet", FLOW)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let triggers = ui.get(editor, "/ui/triggers?namespace=ui.test").await;
    assert!(triggers.body.contains(">Enable<"), "{}", triggers.body);

    // A backfill over two past days.
    let backfill = ui
        .post_form(
            editor,
            "/ui/triggers/backfill",
            &[
                ("namespace", "ui.test"),
                ("flowId", "greet"),
                ("triggerId", "nightly"),
                ("start", "2020-01-01T00:00"),
                ("end", "2020-01-03T00:00"),
                ("back", "namespace=ui.test"),
            ],
        )
        .await;
    assert_eq!(backfill.status, StatusCode::SEE_OTHER, "{}", backfill.body);
    assert_eq!(backfill.location(), "/ui/triggers?namespace=ui.test");
    let triggers = ui.get(editor, backfill.location()).await;
    assert!(
        triggers
            .body
            .contains("2020-01-01 00:00:00 UTC → 2020-01-03 00:00:00 UTC"),
        "{}",
        triggers.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_with_its_content() {
    let ui = Ui::start().await;
    let editor = &ui.token("Editor");
    ui.create_flow(editor, FLOW).await;

    check_flow_pages(&ui, editor).await;
    let execution = run_from_the_form(&ui, editor).await;
    let list = ui.get(editor, "/ui/executions").await;
    assert_eq!(list.status, StatusCode::OK);
    let id = execution.trim_start_matches("/ui/executions/");
    assert!(
        list.body.contains(&format!("value=\"{id}\"")),
        "{}",
        list.body
    );

    check_triggers_page(&ui, editor).await;
    let missing = ui.get(editor, "/ui/flows/ui.test/nope").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_sees_no_edit_controls_and_is_refused_them() {
    let ui = Ui::start().await;
    ui.create_flow(&ui.token("Editor"), FLOW).await;
    let viewer = ui.token("Viewer");

    let flows = ui.get(&viewer, "/ui/flows").await;
    assert_eq!(flows.status, StatusCode::OK);
    assert!(!flows.body.contains("New flow"));
    let flow = ui.get(&viewer, "/ui/flows/ui.test/greet").await;
    assert_eq!(flow.status, StatusCode::OK);
    assert!(
        flow.body.contains("cron: &quot;0 3 * * *&quot;"),
        "the source is shown: {}",
        flow.body
    );
    for control in [
        "<textarea",
        "value=\"save\"",
        "/run\"",
        "/delete\"",
        "editor.",
    ] {
        assert!(!flow.body.contains(control), "a Viewer sees {control}");
    }
    let triggers = ui.get(&viewer, "/ui/triggers").await;
    assert!(triggers.body.contains("nightly"));
    assert!(!triggers.body.contains(">Disable<") && !triggers.body.contains("Backfill"));

    let (status, started) = ui
        .api(
            &ui.token("Editor"),
            reqwest::Method::POST,
            "/executions/ui.test/greet?wait=true",
            "",
        )
        .await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "times is required: {started}"
    );
    let list = ui.get(&viewer, "/ui/executions").await;
    assert!(!list.body.contains("type=\"checkbox\"") && !list.body.contains("/ui/executions/bulk"));

    // The handlers refuse them too.
    let refused = [
        ui.get(&viewer, "/ui/flows/ui.test/greet/run").await,
        ui.get(&viewer, "/ui/flows/new").await,
        ui.post_form(
            &viewer,
            "/ui/flows/ui.test/greet",
            &[("action", "save"), ("source", FLOW)],
        )
        .await,
        ui.post_form(
            &viewer,
            "/ui/flows/ui.test/greet/run",
            &[("input.times", "1")],
        )
        .await,
        ui.post_form(
            &viewer,
            "/ui/executions/bulk",
            &[("action", "delete"), ("ids", "x")],
        )
        .await,
        ui.post_form(
            &viewer,
            "/ui/triggers/disabled",
            &[
                ("namespace", "ui.test"),
                ("flowId", "greet"),
                ("triggerId", "nightly"),
                ("disabled", "true"),
            ],
        )
        .await,
    ];
    for answer in refused {
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_labels_and_log_lines_are_escaped() {
    let ui = Ui::start().await;
    let editor = &ui.token("Editor");
    let hostile = "<img src=x onerror=alert(1)>";
    let flow = format!(
        "id: hostile\nnamespace: ui.test\nlabels:\n  owner: \"{hostile}\"\ndescription: \"</textarea><script>alert(2)</script>\"\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: \"<script>alert(3)</script>\"\n"
    );
    ui.create_flow(editor, &flow).await;
    let list = ui.get(editor, "/ui/flows").await;
    assert!(!list.body.contains(hostile), "{}", list.body);
    assert!(
        list.body
            .contains("owner:&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        list.body
    );
    let page = ui.get(editor, "/ui/flows/ui.test/hostile").await;
    assert!(
        !page.body.contains("<script>alert") && !page.body.contains("</textarea><script>"),
        "{}",
        page.body
    );

    let run = ui
        .post_form(
            editor,
            "/ui/flows/ui.test/hostile/run",
            &[("labels", "who:<b>x</b>")],
        )
        .await;
    assert_eq!(run.status, StatusCode::SEE_OTHER, "{}", run.body);
    let page = ui.wait_for_state(editor, run.location(), "SUCCESS").await;
    assert!(
        !page.body.contains("<script>alert(3)") && page.body.contains("&lt;script&gt;alert(3)"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>x</b>") && page.body.contains("who:&lt;b&gt;x&lt;/b&gt;"));
    let list = ui
        .get(editor, "/ui/executions?labels=who%3A%3Cb%3Ex%3C%2Fb%3E")
        .await;
    assert!(
        list.body.contains("who:&lt;b&gt;x&lt;/b&gt;") && !list.body.contains("<b>x</b>"),
        "{}",
        list.body
    );
    // A search term comes back escaped in the form.
    let search = ui
        .get(
            editor,
            &format!("/ui/flows?q={}", encode("\"><script>alert(4)</script>")),
        )
        .await;
    assert!(!search.body.contains("<script>alert(4)"), "{}", search.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_inputs_are_masked_on_the_execution_page() {
    let ui = Ui::start().await;
    let editor = &ui.token("Editor");
    ui.create_flow(
        editor,
        "id: keyed\nnamespace: ui.secret\ninputs:\n  - id: key\n    type: SECRET\n  - id: who\n    type: STRING\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.debug.Return\n    format: ok\n",
    )
    .await;
    let run = ui
        .post_form(
            editor,
            "/ui/flows/ui.secret/keyed/run",
            &[("input.key", "hunter2-very-secret"), ("input.who", "ann")],
        )
        .await;
    assert_eq!(run.status, StatusCode::SEE_OTHER, "{}", run.body);
    let page = ui.wait_for_state(editor, run.location(), "SUCCESS").await;
    assert!(
        page.body.contains("&quot;******&quot;") && page.body.contains("&quot;ann&quot;"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("hunter2"), "the secret is not shown");
}
