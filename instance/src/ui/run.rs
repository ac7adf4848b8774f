//! The run form: one field per input of the flow (its type, default and
//! whether it is required), then the new execution's page.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde_json::{Map, Value};

use super::{Form, Page, UiError, UiResult, flow_path, layout, see_other};
use crate::api::{AppState, FlowKey};
use crate::engine::Engine;
use crate::flow::{self, Flow, Input, InputType};

async fn latest_flow(state: &AppState, key: &FlowKey) -> UiResult<Flow> {
    let record = state
        .engine
        .flows()
        .get(&key.namespace, &key.id, None)
        .await?
        .filter(|r| !r.deleted)
        .ok_or_else(|| UiError::not_found("flow"))?;
    flow::parse(&record.source).map_err(|e| {
        UiError::new(
            StatusCode::CONFLICT,
            format!("the stored flow no longer parses: {e}"),
        )
    })
}

fn key_of(namespace: String, id: String) -> UiResult<FlowKey> {
    FlowKey::parse(namespace, id).ok_or_else(|| UiError::not_found("flow"))
}

/// `GET /ui/flows/{namespace}/{id}/run`.
pub(super) async fn form(
    State(state): State<AppState>,
    caller: Page,
    Path((namespace, id)): Path<(String, String)>,
) -> UiResult<Markup> {
    caller.require_editor()?;
    let key = key_of(namespace, id)?;
    let flow = latest_flow(&state, &key).await?;
    Ok(run_page(&state, &caller, &flow, &Form::default(), None))
}

fn default_text(input: &Input) -> String {
    match &input.defaults {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// One input's field, pre-filled with what was posted or the default.
fn field(input: &Input, posted: &Form) -> Markup {
    let name = format!("input.{}", input.id);
    let fid = format!("input-{}", input.id);
    // A secret typed in is never sent back in a page.
    let value = match posted.get(&name) {
        _ if input.kind == InputType::Secret => String::new(),
        Some(posted) => posted.to_owned(),
        None => default_text(input),
    };
    let required = input.required && input.defaults.is_none();
    let kind = match input.kind {
        InputType::Int | InputType::Float => "number",
        InputType::Date => "date",
        InputType::Time => "time",
        InputType::Uri => "url",
        InputType::Email => "email",
        InputType::Secret => "password",
        _ => "text",
    };
    html! {
        div.field {
            label for=(fid) {
                (input.id) " "
                span.muted { (format!("{:?}", input.kind).to_uppercase()) }
                @if required { " " span.required { "(required)" } }
            }
            @if let Some(description) = &input.description { p.hint { (description) } }
            @match input.kind {
                InputType::Select => {
                    select id=(fid) name=(name) required[required] {
                        @if !required { option value="" { "—" } }
                        @for v in &input.values { option value=(v) selected[*v == value] { (v) } }
                    }
                }
                InputType::MultiSelect => {
                    select id=(fid) name=(name) multiple required[required] {
                        @for v in &input.values { option value=(v) selected[value.contains(&format!("\"{v}\""))] { (v) } }
                    }
                }
                InputType::Boolean => {
                    select id=(fid) name=(name) required[required] {
                        @if !required { option value="" { "—" } }
                        option value="true" selected[value == "true"] { "true" }
                        option value="false" selected[value == "false"] { "false" }
                    }
                }
                InputType::Json | InputType::Array => {
                    textarea id=(fid) name=(name) rows="4" required[required] { (value) }
                }
                InputType::File => {
                    input id=(fid) name=(name) type="text" value=(value) required[required] placeholder="kestra:///… (upload files through the API)";
                }
                _ => {
                    input id=(fid) name=(name) type=(kind) step=[(input.kind == InputType::Float).then_some("any")] value=(value) required[required]
                        placeholder=[placeholder(input.kind)];
                }
            }
        }
    }
}

fn placeholder(kind: InputType) -> Option<&'static str> {
    match kind {
        InputType::Datetime => Some("2024-01-31T13:45:00Z"),
        InputType::Duration => Some("PT5M"),
        _ => None,
    }
}

fn run_page(
    state: &AppState,
    caller: &Page,
    flow: &Flow,
    posted: &Form,
    error: Option<&str>,
) -> Markup {
    let path = flow_path(&flow.namespace, &flow.id);
    let body = html! {
        h1 { "Run " span.muted { (flow.namespace) " / " } (flow.id) }
        @if let Some(error) = error { p.error role="alert" { (error) } }
        form.run method="post" action={(path) "/run"} {
            (caller.csrf_field())
            @if flow.inputs.is_empty() { p { "This flow has no inputs." } }
            @for input in &flow.inputs { (field(input, posted)) }
            div.field {
                label for="labels" { "Labels " span.muted { "key:value, comma-separated (optional)" } }
                input id="labels" name="labels" type="text" value=(posted.get("labels").unwrap_or_default());
            }
            div.actions {
                button.primary type="submit" { "Run" }
                a href=(path) { "Cancel" }
            }
        }
    };
    layout::page(state, caller, &format!("Run {}", flow.id), "Flows", body)
}

/// The inputs of the form: each non-empty field of a declared input
/// (empty ones are left out so defaults apply).
fn posted_inputs(flow: &Flow, form: &Form) -> Map<String, Value> {
    let mut inputs = Map::new();
    for input in &flow.inputs {
        let name = format!("input.{}", input.id);
        if input.kind == InputType::MultiSelect {
            let values = form.all(&name);
            if !values.is_empty() {
                inputs.insert(
                    input.id.clone(),
                    Value::Array(values.into_iter().map(Value::String).collect()),
                );
            }
        } else if let Some(value) = form.get(&name).filter(|v| !v.is_empty()) {
            inputs.insert(input.id.clone(), Value::String(value.to_owned()));
        }
    }
    inputs
}

/// `POST /ui/flows/{namespace}/{id}/run`: starts the execution and opens it.
pub(super) async fn start(
    State(state): State<AppState>,
    caller: Page,
    Path((namespace, id)): Path<(String, String)>,
    form: Form,
) -> UiResult<Response> {
    caller.check_csrf(&form)?;
    caller.require_editor()?;
    let key = key_of(namespace, id)?;
    let flow = latest_flow(&state, &key).await?;
    let inputs = posted_inputs(&flow, &form);
    let labels = match crate::api::parse_labels(form.text("labels")) {
        Ok(labels) => labels,
        Err(err) => {
            let err = UiError::from(err);
            return Ok((
                err.status,
                run_page(&state, &caller, &flow, &form, Some(&err.message)),
            )
                .into_response());
        }
    };
    let started = state
        .engine
        .start_execution_with_id(
            &key.namespace,
            &key.id,
            Engine::new_execution_id(),
            &inputs,
            labels,
            None,
        )
        .await;
    match started {
        Ok(execution) => {
            state.metrics.executions_started.inc();
            Ok(see_other(&format!(
                "/ui/executions/{}",
                super::encode(&execution.id)
            )))
        }
        Err(err) => {
            let err = UiError::from(err);
            if err.status.is_server_error() {
                return Err(err);
            }
            Ok((
                err.status,
                run_page(&state, &caller, &flow, &form, Some(&err.message)),
            )
                .into_response())
        }
    }
}
