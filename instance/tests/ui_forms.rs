//! The web UI's forms over real HTTP (authentication on, bearer tokens):
//! validation problems shown at their line and column, saving, the
//! executions list's paging, filters and bulk actions, and resuming a
//! paused execution.

mod support;

use std::time::Duration;

use atoll_testkit::eventually;
use reqwest::StatusCode;
use serde_json::Value;
use support::ui::{FLOW, Ui};

/// A flow with an unknown task type: validated and saved from the form, refused at 21:9, nothing saved; the broken source.
async fn broken_flow_is_refused_at_its_line(ui: &Ui, editor: &str) -> String {
    // tasks[1].tasks[0].type is unknown: line 21 ("        type: nope"), column 9.
    let broken = FLOW.replacen(
        "type: io.kestra.plugin.core.log.Log\n        message: left",
        "type: nope\n        message: left",
        1,
    );
    assert_eq!(broken.lines().nth(20), Some("        type: nope"));
    let answer = ui
        .post_form(
            editor,
            "/ui/flows/ui.test/greet",
            &[("action", "validate"), ("source", &broken)],
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("data-line=\"21\" data-column=\"9\""),
        "{}",
        answer.body
    );
    assert!(
        answer.body.contains("<span class=\"where\">21:9</span>"),
        "{}",
        answer.body
    );
    // Saving it is refused the same way, and nothing is saved.
    let save = ui
        .post_form(
            editor,
            "/ui/flows/ui.test/greet",
            &[("action", "save"), ("source", &broken)],
        )
        .await;
    assert_eq!(save.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        ui.get(editor, "/ui/flows/ui.test/greet")
            .await
            .body
            .contains("Revision 1")
    );
    broken
}

/// A new flow from its form: the problems first, then its page, then "already exists".
async fn new_flow_from_its_form(ui: &Ui, editor: &str, broken: &str) {
    // A new flow from its form: the problems first, then its page.
    let new_form = ui.get(editor, "/ui/flows/new").await;
    assert!(new_form.body.contains("<textarea"), "{}", new_form.body);
    let other = FLOW.replace("id: greet", "id: greet-too");
    let refused = ui
        .post_form(
            editor,
            "/ui/flows/new",
            &[
                ("action", "save"),
                ("source", &broken.replace("id: greet", "id: greet-too")),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        refused.body.contains("data-line=\"21\""),
        "{}",
        refused.body
    );
    let created = ui
        .post_form(
            editor,
            "/ui/flows/new",
            &[("action", "save"), ("source", &other)],
        )
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(created.location(), "/ui/flows/ui.test/greet-too?saved=1");
    let again = ui
        .post_form(
            editor,
            "/ui/flows/new",
            &[("action", "save"), ("source", &other)],
        )
        .await;
    assert!(again.body.contains("already exists"), "{}", again.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_problems_are_shown_at_their_line_and_column() {
    let ui = Ui::start().await;
    let editor = &ui.token("Editor");
    ui.create_flow(editor, FLOW).await;
    let broken = broken_flow_is_refused_at_its_line(&ui, editor).await;
    // YAML that does not parse: the parser's own line and column.
    let yaml = "id: greet\nnamespace: ui.test\ntasks:\n  - id: a\n    type: [unclosed\n";
    let answer = ui
        .post_form(
            editor,
            "/ui/flows/ui.test/greet",
            &[("action", "validate"), ("source", yaml)],
        )
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(answer.body.contains("class=\"where\">"), "{}", answer.body);

    // What the editor's Validate button asks.
    let url = format!("{}/ui/validate", ui.instance.base);
    let problems: Value = ui
        .http
        .post(url)
        .bearer_auth(editor)
        .body(broken.clone())
        .send()
        .await
        .expect("validate")
        .json()
        .await
        .expect("json");
    assert_eq!(problems[0]["line"], 21, "{problems}");
    assert_eq!(problems[0]["column"], 9);
    assert!(
        problems[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nope")),
        "{problems}"
    );

    new_flow_from_its_form(&ui, editor, &broken).await;
    // A good save: back to the page, a new revision.
    let fixed = FLOW.replace("Greets", "Greets warmly");
    let save = ui
        .post_form(
            editor,
            "/ui/flows/ui.test/greet",
            &[("action", "save"), ("source", &fixed)],
        )
        .await;
    assert_eq!(save.status, StatusCode::SEE_OTHER, "{}", save.body);
    assert!(
        ui.get(editor, save.location())
            .await
            .body
            .contains("Revision 2")
    );
    let refused = ui
        .post_form(
            &ui.token("Viewer"),
            "/ui/flows/ui.test/greet-too/delete",
            &[],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    let deleted = ui
        .post_form(editor, "/ui/flows/ui.test/greet-too/delete", &[])
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    assert!(!ui.get(editor, "/ui/flows").await.body.contains("greet-too"));
    let earlier = ui.get(editor, "/ui/flows/ui.test/greet?revision=1").await;
    assert!(
        earlier.body.contains("An earlier revision") && earlier.body.contains("Greets\n"),
        "{}",
        earlier.body
    );
}

/// Flow ui.bulk.quick and 31 ended executions of it, 30 labelled batch:one.
async fn thirty_one_ended_executions(ui: &Ui, editor: &str) {
    ui.create_flow(editor, "id: quick\nnamespace: ui.bulk\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.debug.Return\n    format: ok\n").await;
    for _ in 0..30 {
        let (status, body) = ui
            .api(
                editor,
                reqwest::Method::POST,
                "/executions/ui.bulk/quick?labels=batch:one",
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = ui
        .api(
            editor,
            reqwest::Method::POST,
            "/executions/ui.bulk/quick?wait=true",
            "",
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let all_done = "/ui/executions?namespace=ui.bulk&state=SUCCESS";
    eventually(
        "every execution to end",
        Duration::from_secs(60),
        || async {
            ui.get(editor, all_done)
                .await
                .body
                .contains("· 31 execution(s)")
                .then_some(())
        },
    )
    .await;
}

/// Deletes the two newest executions of the first page (`first`), then kills an ended one: refused, nothing done.
async fn bulk_actions(ui: &Ui, editor: &str, first: &str) {
    // Delete the two newest, then kill one that has ended: refused, nothing done.
    let ids: Vec<String> = first
        .split("name=\"ids\" value=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_owned))
        .collect();
    let fields = [
        ("action", "delete"),
        ("ids", ids[0].as_str()),
        ("ids", ids[1].as_str()),
        ("query", "namespace=ui.bulk"),
    ];
    let deleted = ui.post_form(editor, "/ui/executions/bulk", &fields).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    assert_eq!(
        deleted.location(),
        "/ui/executions?namespace=ui.bulk&done=delete&count=2"
    );
    let after = ui.get(editor, deleted.location()).await;
    assert!(
        after.body.contains("delete: 2 execution(s)") && after.body.contains("· 29 execution(s)"),
        "{}",
        after.body
    );
    let kill = ui
        .post_form(
            editor,
            "/ui/executions/bulk",
            &[("action", "kill"), ("ids", ids[2].as_str())],
        )
        .await;
    assert_eq!(kill.status, StatusCode::BAD_REQUEST);
    assert!(
        kill.body.contains("execution already finished"),
        "{}",
        kill.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executions_list_pages_filters_and_acts_in_bulk() {
    let ui = Ui::start().await;
    let editor = &ui.token("Editor");
    thirty_one_ended_executions(&ui, editor).await;
    let first = ui.get(editor, "/ui/executions?namespace=ui.bulk").await;
    assert!(
        first.body.contains("Page 1 of 2 · 31 execution(s)"),
        "{}",
        first.body
    );
    assert_eq!(first.body.matches("name=\"ids\"").count(), 25);
    assert!(
        first
            .body
            .contains("href=\"/ui/executions?namespace=ui.bulk&amp;page=2\""),
        "{}",
        first.body
    );
    let second = ui
        .get(editor, "/ui/executions?namespace=ui.bulk&page=2")
        .await;
    assert_eq!(second.body.matches("name=\"ids\"").count(), 6);
    let labelled = ui.get(editor, "/ui/executions?labels=batch%3Aone").await;
    assert!(
        labelled.body.contains("· 30 execution(s)"),
        "{}",
        labelled.body
    );
    let future = ui
        .get(editor, "/ui/executions?from=2999-01-01T00%3A00")
        .await;
    assert!(
        future.body.contains("No executions match"),
        "{}",
        future.body
    );
    let past = ui
        .get(editor, "/ui/executions?until=2000-01-01T00%3A00")
        .await;
    assert!(past.body.contains("No executions match"));
    let recent = ui
        .get(
            editor,
            "/ui/executions?from=2000-01-01T00%3A00&flowId=quick",
        )
        .await;
    assert!(recent.body.contains("· 31 execution(s)"));
    let bad = ui.get(editor, "/ui/executions?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    bulk_actions(&ui, editor, &first.body).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_execution_is_resumed_from_its_page() {
    let ui = Ui::start().await;
    let editor = &ui.token("Editor");
    ui.create_flow(editor, "id: waits\nnamespace: ui.pause\ntasks:\n  - id: hold\n    type: io.kestra.plugin.core.flow.Pause\n  - id: after\n    type: io.kestra.plugin.core.log.Log\n    message: resumed\n").await;
    let run = ui
        .post_form(editor, "/ui/flows/ui.pause/waits/run", &[])
        .await;
    assert_eq!(run.status, StatusCode::SEE_OTHER, "{}", run.body);
    let path = run.location().to_owned();
    let paused = ui.wait_for_state(editor, &path, "PAUSED").await;
    assert!(
        paused.body.contains(&format!("action=\"{path}/resume\"")),
        "{}",
        paused.body
    );
    let viewer = ui.get(&ui.token("Viewer"), &path).await;
    assert!(
        !viewer.body.contains("/resume\""),
        "a Viewer gets no resume button"
    );
    let refused = ui
        .post_form(&ui.token("Viewer"), &format!("{path}/resume"), &[])
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    let resumed = ui.post_form(editor, &format!("{path}/resume"), &[]).await;
    assert_eq!(resumed.status, StatusCode::SEE_OTHER, "{}", resumed.body);
    assert_eq!(resumed.location(), path);
    let done = ui.wait_for_state(editor, &path, "SUCCESS").await;
    assert!(done.body.contains("resumed"), "{}", done.body);

    // Its own actions, back to its page: replay (ended), not kill.
    assert!(done.body.contains("value=\"replay\"") && !done.body.contains("value=\"kill\""));
    let id = path.trim_start_matches("/ui/executions/");
    let replayed = ui
        .post_form(
            editor,
            "/ui/executions/bulk",
            &[("action", "replay"), ("ids", id), ("from", "execution")],
        )
        .await;
    assert_eq!(replayed.status, StatusCode::SEE_OTHER, "{}", replayed.body);
    assert_eq!(replayed.location(), path);
}
