//! The web UI's pages over real HTTP, with authentication on and bearer
//! tokens of each role (the cookie sign-in puts the same caller in front of
//! the same pages): each page answers with its content and its security
//! headers, a Viewer gets no edit controls (and is refused them), hostile
//! labels and log lines come out escaped, validation problems are shown at
//! their line and column, and the executions list pages and filters.

mod support;

use std::time::Duration;

use atoll_instance::config::AuthMode;
use atoll_testkit::eventually;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;
use support::api_instance::{Instance, TENANT, encode};
use support::identity::{self, KEY_A_PEM, TestIdentity};

const FLOW: &str = r#"id: greet
namespace: ui.test
description: Greets
labels:
  team: data
inputs:
  - id: name
    type: STRING
    defaults: world
  - id: times
    type: INT
    required: true
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: "Hello {{ inputs.name }} x{{ inputs.times }}"
  - id: both
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: left
        type: io.kestra.plugin.core.log.Log
        message: left
      - id: right
        type: io.kestra.plugin.core.log.Log
        message: right
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 3 * * *"
"#;

/// One page's answer.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// The instance with identity's stand-in, and a client that does not
/// follow redirects (so they can be checked).
struct Ui {
    instance: Instance,
    id: TestIdentity,
    http: reqwest::Client,
}

impl Ui {
    async fn start() -> Ui {
        let id = TestIdentity::start().await;
        let instance = Instance::start(
            AuthMode::Identity {
                issuer: id.issuer.clone(),
                tenant_uid: format!("uid-{TENANT}"),
            },
            None,
        )
        .await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Ui { instance, id, http }
    }

    fn token(&self, role: &str) -> String {
        identity::sign(&self.id.claims(TENANT, role), KEY_A_PEM, "key-a")
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Answer {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, token: &str, path: &str) -> Answer {
        let url = format!("{}{path}", self.instance.base);
        Ui::answer(
            self.http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("get"),
        )
        .await
    }

    async fn post_form(&self, token: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let url = format!("{}{path}", self.instance.base);
        let request = self
            .http
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        Ui::answer(request.send().await.expect("post")).await
    }

    /// A JSON API call with a text body.
    async fn api(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let url = format!("{}/api/v1{path}", self.instance.base);
        let response = self
            .http
            .request(method, url)
            .bearer_auth(token)
            .header("content-type", "application/x-yaml")
            .body(body.to_owned())
            .send()
            .await
            .expect("api");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn create_flow(&self, token: &str, source: &str) {
        let (status, body) = self
            .api(token, reqwest::Method::POST, "/flows", source)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Waits until the execution page shows `state`.
    async fn wait_for_state(&self, token: &str, path: &str, state: &str) -> Answer {
        let needle = format!(
            "id=\"execution-state\"><span class=\"state state-{}\"",
            state.to_lowercase()
        );
        eventually(
            &format!("{path} to show {state}"),
            Duration::from_secs(30),
            || async {
                let page = self.get(token, path).await;
                page.body.contains(&needle).then_some(page)
            },
        )
        .await
    }
}

fn assert_page_headers(answer: &Answer) {
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-store");
    assert!(
        header("content-type").starts_with("text/html"),
        "{}",
        header("content-type")
    );
}

/// The `href` of the first stylesheet link of a page.
fn stylesheet(body: &str) -> String {
    let at = body
        .find("rel=\"stylesheet\" href=\"")
        .expect("a stylesheet")
        + 23;
    body[at..].split('"').next().expect("href").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_answers_with_its_content() {
    let ui = Ui::start().await;
    let editor = ui.token("Editor");
    ui.create_flow(&editor, FLOW).await;

    let root = ui.get(&editor, "/").await;
    assert!(root.status.is_redirection(), "{}", root.status);
    assert_eq!(root.location(), "/ui/flows");

    let flows = ui.get(&editor, "/ui/flows").await;
    assert_eq!(flows.status, StatusCode::OK);
    assert_page_headers(&flows);
    assert!(flows.body.contains("Atoll · acme"), "{}", flows.body);
    assert!(
        flows.body.contains("href=\"/ui/flows/ui%2Etest/greet\""),
        "{}",
        flows.body
    );
    assert!(flows.body.contains("action=\"/auth/logout\""));
    assert!(
        flows
            .body
            .contains(&format!("href=\"{}/tenants\"", ui.id.issuer)),
        "the tenant switcher links identity"
    );
    for (q, found) in [
        ("team:data", true),
        ("ui.te", true),
        ("GREET", true),
        ("nothing-like-it", false),
    ] {
        let page = ui.get(&editor, &format!("/ui/flows?q={}", encode(q))).await;
        assert_eq!(page.body.contains(">greet</a>"), found, "search {q}");
    }

    let flow = ui.get(&editor, "/ui/flows/ui.test/greet").await;
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
        "href=\"/ui/flows/ui%2Etest/greet/run\"",
    ] {
        assert!(
            flow.body.contains(needle),
            "flow page lacks {needle}: {}",
            flow.body
        );
    }
    let css = ui.get(&editor, &stylesheet(&flow.body)).await;
    assert_eq!(css.status, StatusCode::OK);
    assert!(
        css.headers["cache-control"]
            .to_str()
            .expect("ascii")
            .contains("immutable")
    );

    let form = ui.get(&editor, "/ui/flows/ui.test/greet/run").await;
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
        .post_form(&editor, "/ui/flows/ui.test/greet/run", &[])
        .await;
    assert_eq!(missing.status, StatusCode::BAD_REQUEST, "{}", missing.body);
    assert!(missing.body.contains("times"), "{}", missing.body);

    let run = ui
        .post_form(
            &editor,
            "/ui/flows/ui.test/greet/run",
            &[("input.times", "3"), ("labels", "env:test")],
        )
        .await;
    assert_eq!(run.status, StatusCode::SEE_OTHER, "{}", run.body);
    let execution = run.location().to_owned();
    assert!(execution.starts_with("/ui/executions/"), "{execution}");
    let page = ui.wait_for_state(&editor, &execution, "SUCCESS").await;
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
    let warn_only = ui.get(&editor, &format!("{execution}?level=WARN")).await;
    assert!(
        !warn_only.body.contains("Hello world x3"),
        "the level filter hides INFO lines"
    );

    let list = ui.get(&editor, "/ui/executions").await;
    assert_eq!(list.status, StatusCode::OK);
    let id = execution.trim_start_matches("/ui/executions/");
    assert!(
        list.body.contains(&format!("value=\"{id}\"")),
        "{}",
        list.body
    );

    let triggers = ui.get(&editor, "/ui/triggers").await;
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
            &editor,
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
    let triggers = ui.get(&editor, "/ui/triggers?namespace=ui.test").await;
    assert!(
        triggers.body.contains(">Enable<") && triggers.body.contains("DISABLED"),
        "{}",
        triggers.body
    );

    let missing = ui.get(&editor, "/ui/flows/ui.test/nope").await;
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
    for control in ["<textarea", "value=\"save\"", "/run\"", "editor."] {
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
    let editor = ui.token("Editor");
    let hostile = "<img src=x onerror=alert(1)>";
    let flow = format!(
        "id: hostile\nnamespace: ui.test\nlabels:\n  owner: \"{hostile}\"\ndescription: \"</textarea><script>alert(2)</script>\"\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: \"<script>alert(3)</script>\"\n"
    );
    ui.create_flow(&editor, &flow).await;
    let list = ui.get(&editor, "/ui/flows").await;
    assert!(!list.body.contains(hostile), "{}", list.body);
    assert!(
        list.body
            .contains("owner:&lt;img src=x onerror=alert(1)&gt;"),
        "{}",
        list.body
    );
    let page = ui.get(&editor, "/ui/flows/ui.test/hostile").await;
    assert!(
        !page.body.contains("<script>alert") && !page.body.contains("</textarea><script>"),
        "{}",
        page.body
    );

    let run = ui
        .post_form(
            &editor,
            "/ui/flows/ui.test/hostile/run",
            &[("labels", "who:<b>x</b>")],
        )
        .await;
    assert_eq!(run.status, StatusCode::SEE_OTHER, "{}", run.body);
    let page = ui.wait_for_state(&editor, run.location(), "SUCCESS").await;
    assert!(
        !page.body.contains("<script>alert(3)") && page.body.contains("&lt;script&gt;alert(3)"),
        "{}",
        page.body
    );
    assert!(!page.body.contains("<b>x</b>") && page.body.contains("who:&lt;b&gt;x&lt;/b&gt;"));
    let list = ui
        .get(&editor, "/ui/executions?labels=who%3A%3Cb%3Ex%3C%2Fb%3E")
        .await;
    assert!(
        list.body.contains("who:&lt;b&gt;x&lt;/b&gt;") && !list.body.contains("<b>x</b>"),
        "{}",
        list.body
    );
    // A search term comes back escaped in the form.
    let search = ui
        .get(
            &editor,
            &format!("/ui/flows?q={}", encode("\"><script>alert(4)</script>")),
        )
        .await;
    assert!(!search.body.contains("<script>alert(4)"), "{}", search.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_problems_are_shown_at_their_line_and_column() {
    let ui = Ui::start().await;
    let editor = ui.token("Editor");
    ui.create_flow(&editor, FLOW).await;
    // tasks[1].tasks[0].type is unknown: line 21 ("        type: nope"), column 9.
    let broken = FLOW.replacen(
        "type: io.kestra.plugin.core.log.Log\n        message: left",
        "type: nope\n        message: left",
        1,
    );
    assert_eq!(broken.lines().nth(20), Some("        type: nope"));
    let answer = ui
        .post_form(
            &editor,
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
            &editor,
            "/ui/flows/ui.test/greet",
            &[("action", "save"), ("source", &broken)],
        )
        .await;
    assert_eq!(save.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        ui.get(&editor, "/ui/flows/ui.test/greet")
            .await
            .body
            .contains("Revision 1")
    );

    // YAML that does not parse: the parser's own line and column.
    let yaml = "id: greet\nnamespace: ui.test\ntasks:\n  - id: a\n    type: [unclosed\n";
    let answer = ui
        .post_form(
            &editor,
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
        .bearer_auth(&editor)
        .body(broken)
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

    // A good save: back to the page, a new revision.
    let fixed = FLOW.replace("Greets", "Greets warmly");
    let save = ui
        .post_form(
            &editor,
            "/ui/flows/ui.test/greet",
            &[("action", "save"), ("source", &fixed)],
        )
        .await;
    assert_eq!(save.status, StatusCode::SEE_OTHER, "{}", save.body);
    assert!(
        ui.get(&editor, save.location())
            .await
            .body
            .contains("Revision 2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_executions_list_pages_filters_and_acts_in_bulk() {
    let ui = Ui::start().await;
    let editor = ui.token("Editor");
    ui.create_flow(&editor, "id: quick\nnamespace: ui.bulk\ntasks:\n  - id: t\n    type: io.kestra.plugin.core.debug.Return\n    format: ok\n").await;
    for _ in 0..30 {
        let (status, body) = ui
            .api(
                &editor,
                reqwest::Method::POST,
                "/executions/ui.bulk/quick?labels=batch:one",
                "",
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (status, body) = ui
        .api(
            &editor,
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
            ui.get(&editor, all_done)
                .await
                .body
                .contains("· 31 execution(s)")
                .then_some(())
        },
    )
    .await;

    let first = ui.get(&editor, "/ui/executions?namespace=ui.bulk").await;
    assert!(
        first.body.contains("Page 1 of 2 · 31 execution(s)"),
        "{}",
        first.body
    );
    assert_eq!(first.body.matches("name=\"ids\"").count(), 25);
    assert!(
        first
            .body
            .contains("href=\"/ui/executions?namespace=ui%2Ebulk&amp;page=2\""),
        "{}",
        first.body
    );
    let second = ui
        .get(&editor, "/ui/executions?namespace=ui.bulk&page=2")
        .await;
    assert_eq!(second.body.matches("name=\"ids\"").count(), 6);
    let labelled = ui.get(&editor, "/ui/executions?labels=batch%3Aone").await;
    assert!(
        labelled.body.contains("· 30 execution(s)"),
        "{}",
        labelled.body
    );
    let future = ui
        .get(&editor, "/ui/executions?from=2999-01-01T00%3A00")
        .await;
    assert!(
        future.body.contains("No executions match"),
        "{}",
        future.body
    );
    let past = ui
        .get(&editor, "/ui/executions?until=2000-01-01T00%3A00")
        .await;
    assert!(past.body.contains("No executions match"));
    let recent = ui
        .get(
            &editor,
            "/ui/executions?from=2000-01-01T00%3A00&flowId=quick",
        )
        .await;
    assert!(recent.body.contains("· 31 execution(s)"));
    let bad = ui.get(&editor, "/ui/executions?from=yesterday").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    // Delete the two newest, then kill one that has ended: refused, nothing done.
    let ids: Vec<String> = first
        .body
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
    let deleted = ui.post_form(&editor, "/ui/executions/bulk", &fields).await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    assert_eq!(
        deleted.location(),
        "/ui/executions?namespace=ui%2Ebulk&done=delete&count=2"
    );
    let after = ui.get(&editor, deleted.location()).await;
    assert!(
        after.body.contains("delete: 2 execution(s)") && after.body.contains("· 29 execution(s)"),
        "{}",
        after.body
    );
    let kill = ui
        .post_form(
            &editor,
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
