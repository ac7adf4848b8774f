//! Flow pages: the list with its search, a flow's page (YAML editor with
//! validation at line and column, save, topology, revisions) and the form
//! of a new flow.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::locate::Located;
use super::{Form, Page, UiError, UiResult, assets, encode, flow_path, layout, see_other, when};
use crate::api::{AppState, FlowKey};
use crate::engine::FlowChangeError;
use crate::flow;
use crate::store::FlowRecord;

/// `?q=` of the flow list.
#[derive(Debug, Deserialize)]
pub(super) struct ListQuery {
    q: Option<String>,
}

/// A flow's labels as `key:value` texts, read leniently from its source.
pub(super) fn labels_of(source: &str) -> Vec<String> {
    let value: Value = serde_norway::from_str(source).unwrap_or(Value::Null);
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match &value["labels"] {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}:{}", text(v)))
            .collect(),
        Value::Array(items) => items
            .iter()
            .map(|l| format!("{}:{}", text(&l["key"]), text(&l["value"])))
            .collect(),
        _ => Vec::new(),
    }
}

fn matches(record: &FlowRecord, labels: &[String], q: &str) -> bool {
    let q = q.to_lowercase();
    record.namespace.to_lowercase().contains(&q)
        || record.id.to_lowercase().contains(&q)
        || labels.iter().any(|l| l.to_lowercase().contains(&q))
}

/// `GET /ui/flows`: every flow, searched by namespace, id or label.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Page,
    Query(query): Query<ListQuery>,
) -> UiResult<Markup> {
    let q = query.q.unwrap_or_default();
    let mut flows: Vec<(FlowRecord, Vec<String>)> = state
        .engine
        .flows()
        .list(None)
        .await?
        .into_iter()
        .map(|r| {
            let labels = labels_of(&r.source);
            (r, labels)
        })
        .filter(|(r, labels)| q.trim().is_empty() || matches(r, labels, q.trim()))
        .collect();
    flows.sort_by(|a, b| (&a.0.namespace, &a.0.id).cmp(&(&b.0.namespace, &b.0.id)));
    let body = html! {
        div.titlebar {
            h1 { "Flows" }
            @if caller.can_edit() { a.button href="/ui/flows/new" { "New flow" } }
        }
        form.filters method="get" action="/ui/flows" role="search" {
            label for="q" { "Search by namespace, id or label" }
            input id="q" name="q" type="search" value=(q);
            button type="submit" { "Search" }
        }
        @if flows.is_empty() {
            p.empty { "No flows" @if !q.is_empty() { " match " q {(q)} } "." }
        } @else {
            table {
                caption.visually-hidden { "Flows" }
                thead { tr { th scope="col" { "Namespace" } th scope="col" { "Flow" } th scope="col" { "Labels" } th scope="col" { "Revision" } th scope="col" { "Updated" } } }
                tbody {
                    @for (record, labels) in &flows {
                        tr {
                            td { (record.namespace) }
                            td { a href=(flow_path(&record.namespace, &record.id)) { (record.id) } }
                            td { @for label in labels { span.label { (label) } " " } }
                            td { (record.revision) }
                            td { (when(record.updated)) }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(&state, &caller, "Flows", "Flows", body))
}

/// `?revision=` of a flow page.
#[derive(Debug, Deserialize)]
pub(super) struct RevisionQuery {
    revision: Option<i64>,
    saved: Option<String>,
}

fn key_of(namespace: String, id: String) -> UiResult<FlowKey> {
    FlowKey::parse(namespace, id).ok_or_else(|| UiError::not_found("flow"))
}

/// What the editor shows besides the stored flow: an unsaved source and
/// its problems, or a note.
#[derive(Default)]
struct EditorState {
    source: Option<String>,
    problems: Vec<Located>,
    note: Option<&'static str>,
}

/// `GET /ui/flows/{namespace}/{id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Page,
    Path((namespace, id)): Path<(String, String)>,
    Query(query): Query<RevisionQuery>,
) -> UiResult<Response> {
    let key = key_of(namespace, id)?;
    let note = query.saved.is_some().then_some("Saved.");
    let editor = EditorState {
        note,
        ..EditorState::default()
    };
    flow_page(&state, &caller, &key, query.revision, editor)
        .await
        .map(IntoResponse::into_response)
}

async fn flow_page(
    state: &AppState,
    caller: &Page,
    key: &FlowKey,
    revision: Option<i64>,
    editor: EditorState,
) -> UiResult<Markup> {
    let record = state
        .engine
        .flows()
        .get(&key.namespace, &key.id, revision)
        .await?
        .filter(|r| !r.deleted || revision.is_some())
        .ok_or_else(|| UiError::not_found("flow"))?;
    let revisions = state
        .engine
        .flows()
        .revisions(&key.namespace, &key.id)
        .await?;
    let stored = crate::api::visible_source(record.source.clone(), &caller.principal);
    let topology = match flow::parse(&record.source) {
        Ok(parsed) => super::graph_svg::render(&parsed, &flow::graph::graph(&parsed)),
        Err(err) => html! { p.error { "This revision does not parse any more: " (err) } },
    };
    let path = flow_path(&key.namespace, &key.id);
    let title = format!("{}.{}", key.namespace, key.id);
    let body = html! {
        div.titlebar {
            h1 { span.muted { (key.namespace) " / " } (key.id) }
            @if caller.can_edit() && !record.deleted {
                a.button href={(path) "/run"} { "Run" }
            }
            @if caller.can_edit() && !record.deleted && revision.is_none() {
                form.inline method="post" action={(path) "/delete"} {
                    (caller.csrf_field())
                    button type="submit" data-confirm={"Delete flow " (key.namespace) "." (key.id) "?"} { "Delete" }
                }
            }
            a href={"/ui/executions?namespace=" (encode(&key.namespace)) "&flowId=" (encode(&key.id))} { "Executions" }
            " "
            a href={"/ui/triggers?namespace=" (encode(&key.namespace)) "&flowId=" (encode(&key.id))} { "Triggers" }
        }
        p.muted { "Revision " (record.revision) " · updated " (when(record.updated)) @if record.deleted { " · deleted" } }
        @if revisions.last().is_some_and(|latest| latest.revision != record.revision) {
            p.notice role="status" { "An earlier revision: saving it makes it the latest. " a href=(path) { "Open the latest" } }
        }
        div.columns {
            section.editor aria-labelledby="source-title" {
                h2 id="source-title" { "Source" }
                (source_form(caller, &path, editor.source.as_deref().unwrap_or(&stored), &editor))
            }
            section.side {
                h2 { "Topology" }
                div.graph-box { (topology) }
                h2 { "Revisions" }
                ol.revisions reversed {
                    @for r in revisions.iter().rev() {
                        li {
                            @if r.revision == record.revision { strong { "Revision " (r.revision) } }
                            @else { a href={(path) "?revision=" (r.revision)} { "Revision " (r.revision) } }
                            " · " (when(r.updated)) @if r.deleted { " · deleted" }
                        }
                    }
                }
            }
        }
    };
    Ok(layout::page(state, caller, &title, "Flows", body))
}

/// The problems of a source at line:column (hidden when there are none;
/// the editor's script fills it when Validate is pressed).
fn problem_list(problems: &[Located]) -> Markup {
    html! {
        div.problems hidden[problems.is_empty()] role="alert" {
            h3 { "Problems" }
            ol id="problems-list" {
                @for p in problems {
                    li data-line=(p.line) data-column=(p.column) data-message=(p.message) {
                        span.where { (p.line) ":" (p.column) } " " (p.message)
                    }
                }
            }
        }
    }
}

/// The editor (Editors) or the source read-only (Viewers), with the list
/// of problems at line:column.
fn source_form(caller: &Page, action: &str, source: &str, editor: &EditorState) -> Markup {
    html! {
        @if let Some(note) = editor.note { p.notice role="status" { (note) } }
        @if caller.can_edit() {
            form method="post" action=(action) {
                (caller.csrf_field())
                label for="source" { "Flow YAML" }
                p.muted id="source-keys" { "In the editor, Tab indents; press Escape then Tab to move on to Validate and Save." }
                textarea id="source" name="source" rows="28" spellcheck="false" data-editor aria-label="Flow YAML" aria-describedby="source-keys" { (source) }
                div.actions {
                    button type="submit" name="action" value="validate" data-validate="/ui/validate" { "Validate" }
                    button.primary type="submit" name="action" value="save" { "Save" }
                    span id="validate-status" role="status" {}
                }
                (problem_list(&editor.problems))
            }
            script src=(assets::path(assets::EDITOR_JS)) defer {}
        } @else {
            pre.source tabindex="0" aria-label="Flow YAML" { code { (source) } }
        }
    }
}

/// `POST /ui/flows/{namespace}/{id}`: validate (re-renders with the
/// problems) or save (back to the page, or the problems).
pub(super) async fn save(
    State(state): State<AppState>,
    caller: Page,
    Path((namespace, id)): Path<(String, String)>,
    form: Form,
) -> UiResult<Response> {
    caller.check_csrf(&form)?;
    caller.require_editor()?;
    let key = key_of(namespace, id)?;
    let source = form.get("source").unwrap_or_default().replace("\r\n", "\n");
    let validate_only = form.get("action") == Some("validate");
    let outcome = if validate_only {
        flow::parse(&source)
            .map(|_| ())
            .map_err(FlowChangeError::Invalid)
    } else {
        state
            .engine
            .flows()
            .update(&key.namespace, &key.id, &source)
            .await
            .map(|_| ())
    };
    let (status, problems, note) = match outcome {
        Ok(()) if !validate_only => {
            return Ok(see_other(&format!(
                "{}?saved=1",
                flow_path(&key.namespace, &key.id)
            )));
        }
        Ok(()) => (StatusCode::OK, Vec::new(), Some("Valid.")),
        Err(FlowChangeError::Invalid(err)) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            super::locate_problem(&source, &err),
            None,
        ),
        Err(FlowChangeError::KeyMismatch) => (
            StatusCode::UNPROCESSABLE_ENTITY,
            vec![Located {
                line: 1,
                column: 1,
                message: "the flow's namespace and id must stay those of this page".into(),
            }],
            None,
        ),
        Err(other) => return Err(other.into()),
    };
    let editor = EditorState {
        source: Some(source),
        problems,
        note,
    };
    let page = flow_page(&state, &caller, &key, None, editor).await?;
    Ok((status, page).into_response())
}

/// `POST /ui/validate`: the problems of a flow source (the body, as
/// text), each at its line and column: what the editor marks.
/// Any signed-in caller may validate (as the API's `/flows/validate`).
pub(super) async fn validate_json(_caller: Page, body: Body) -> UiResult<Response> {
    let bytes = axum::body::to_bytes(body, crate::api::MAX_BODY_BYTES)
        .await
        .map_err(|_| UiError::new(StatusCode::PAYLOAD_TOO_LARGE, "the flow is too large"))?;
    let source = std::str::from_utf8(&bytes)
        .map_err(|_| UiError::new(StatusCode::BAD_REQUEST, "the flow must be UTF-8 text"))?;
    let problems = match flow::parse(source) {
        Ok(_) => Vec::new(),
        Err(err) => super::locate_problem(source, &err),
    };
    Ok(Json(problems).into_response())
}

const NEW_FLOW: &str = "id: hello\nnamespace: company.team\ntasks:\n  - id: hello\n    type: io.kestra.plugin.core.log.Log\n    message: Hello, {{ inputs.name }}!\ninputs:\n  - id: name\n    type: STRING\n    defaults: world\n";

/// `GET /ui/flows/new`.
pub(super) async fn new_form(State(state): State<AppState>, caller: Page) -> UiResult<Markup> {
    caller.require_editor()?;
    Ok(new_page(&state, &caller, NEW_FLOW, &EditorState::default()))
}

fn new_page(state: &AppState, caller: &Page, source: &str, editor: &EditorState) -> Markup {
    let body = html! {
        h1 { "New flow" }
        section.editor { (source_form(caller, "/ui/flows/new", source, editor)) }
    };
    layout::page(state, caller, "New flow", "Flows", body)
}

/// `POST /ui/flows/new`: validate, or create and go to the flow's page.
pub(super) async fn create(
    State(state): State<AppState>,
    caller: Page,
    form: Form,
) -> UiResult<Response> {
    caller.check_csrf(&form)?;
    caller.require_editor()?;
    let source = form.get("source").unwrap_or_default().replace("\r\n", "\n");
    let outcome = if form.get("action") == Some("validate") {
        flow::parse(&source)
            .map(|_| None)
            .map_err(FlowChangeError::Invalid)
    } else {
        state.engine.flows().create(&source).await.map(Some)
    };
    let editor = match outcome {
        Ok(Some(record)) => {
            return Ok(see_other(&format!(
                "{}?saved=1",
                flow_path(&record.namespace, &record.id)
            )));
        }
        Ok(None) => EditorState {
            note: Some("Valid."),
            ..EditorState::default()
        },
        Err(FlowChangeError::Invalid(err)) => EditorState {
            problems: super::locate_problem(&source, &err),
            ..EditorState::default()
        },
        Err(FlowChangeError::Exists { namespace, id }) => EditorState {
            problems: vec![Located {
                line: 1,
                column: 1,
                message: format!("flow {namespace}.{id} already exists; open it to edit it"),
            }],
            ..EditorState::default()
        },
        Err(other) => return Err(other.into()),
    };
    let status = if editor.problems.is_empty() {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, new_page(&state, &caller, &source, &editor)).into_response())
}

/// `POST /ui/flows/{namespace}/{id}/delete`: deletes the flow (its
/// revisions stay, as the API's delete leaves them), back to the list.
pub(super) async fn delete(
    State(state): State<AppState>,
    caller: Page,
    Path((namespace, id)): Path<(String, String)>,
    form: Form,
) -> UiResult<Response> {
    caller.check_csrf(&form)?;
    caller.require_editor()?;
    let key = key_of(namespace, id)?;
    if state.engine.flows().delete(&key.namespace, &key.id).await? {
        Ok(see_other("/ui/flows"))
    } else {
        Err(UiError::not_found("flow"))
    }
}
