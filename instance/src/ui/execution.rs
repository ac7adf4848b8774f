//! An execution's page: state, a Gantt of its task runs, its logs (live
//! while it runs, filtered by level, downloadable), inputs, outputs,
//! labels, and resume while it is paused.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use jiff::Timestamp;
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{
    Form, Page, UiError, UiResult, encode, flow_path, layout, see_other, state_badge, when,
};
use crate::api::{AppState, ExecutionId};
use crate::execution::{Execution, LogEntry};
use crate::vocabulary::State as ExecState;

/// Log lines drawn with the page (the script follows the rest).
const FIRST_LOG_LINES: u32 = 1000;
/// The log levels, least to most severe.
const LEVELS: [&str; 5] = ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"];
/// The Gantt's width in SVG units.
const GANTT_W: f64 = 1000.0;

#[derive(Debug, Deserialize)]
pub(super) struct LogQuery {
    /// The least severe level shown.
    level: Option<String>,
}

async fn load(state: &AppState, id: String) -> UiResult<Execution> {
    let ExecutionId(id) = ExecutionId::parse(id).map_err(|_| UiError::not_found("execution"))?;
    state
        .engine
        .execution(&id)
        .await?
        .ok_or_else(|| UiError::not_found("execution"))
}

/// `GET /ui/executions/{id}`.
pub(super) async fn show(
    State(state): State<AppState>,
    caller: Page,
    Path(id): Path<String>,
    Query(query): Query<LogQuery>,
) -> UiResult<Markup> {
    let execution = load(&state, id).await?;
    let level = query
        .level
        .filter(|l| LEVELS.contains(&l.as_str()))
        .unwrap_or_else(|| "TRACE".into());
    let logs = state.engine.logs(&execution.id, 0, FIRST_LOG_LINES).await?;
    let inputs = masked_inputs(&state, &execution).await?;
    let title = format!("Execution {}", execution.id);
    let body = html! {
        (summary(&caller, &execution))
        section aria-labelledby="gantt-title" {
            h2 id="gantt-title" { "Task runs" }
            (gantt(&execution, Timestamp::now()))
        }
        section aria-labelledby="logs-title" {
            h2 id="logs-title" { "Logs" }
            (log_view(&execution, &logs, &level))
        }
        div.columns {
            section { h2 { "Inputs" } (json_block(&inputs)) }
            section {
                h2 { "Outputs" }
                @match &execution.outputs {
                    Some(outputs) => (json_block(outputs)),
                    None if execution.state.current.is_terminal() => p.muted { "None." },
                    None => p.muted { "None yet." },
                }
            }
        }
    };
    Ok(layout::page(&state, &caller, &title, "Executions", body))
}

fn summary(caller: &Page, execution: &Execution) -> Markup {
    let ended = execution.state.end_date;
    html! {
        div.titlebar {
            h1 { "Execution " code { (execution.id) } }
            span id="execution-state" { (state_badge(execution.state.current)) }
            @if caller.can_edit() && execution.state.current == ExecState::Paused {
                form.inline method="post" action={"/ui/executions/" (encode(&execution.id)) "/resume"} {
                    (caller.csrf_field())
                    button.primary type="submit" { "Resume" }
                }
            }
            @if caller.can_edit() { (actions(caller, execution)) }
        }
        dl.facts {
            dt { "Flow" } dd { a href=(flow_path(&execution.namespace, &execution.flow_id)) { (execution.namespace) " / " (execution.flow_id) } " (revision " (execution.flow_revision) ")" }
            dt { "Started" } dd { (when(execution.state.start_date)) }
            dt { "Ended" } dd { @match ended { Some(end) => (when(end)), None => "—" } }
            dt { "Labels" } dd { @for l in &execution.labels { span.label { (l.key) ":" (l.value) } " " } @if execution.labels.is_empty() { "—" } }
            @if let Some(error) = &execution.error { dt { "Error" } dd.error { (error) } }
        }
    }
}

/// Kill (running), restart (failed or killed), replay and delete (ended),
/// through the executions' bulk form, back to this page.
fn actions(caller: &Page, execution: &Execution) -> Markup {
    let state = execution.state.current;
    let ended = state.is_terminal();
    let offered = [
        ("kill", "Kill", !ended),
        (
            "restart",
            "Restart",
            matches!(state, ExecState::Failed | ExecState::Killed),
        ),
        ("replay", "Replay", ended),
    ];
    html! {
        form.inline method="post" action="/ui/executions/bulk" {
            (caller.csrf_field())
            input type="hidden" name="ids" value=(execution.id);
            input type="hidden" name="from" value="execution";
            @for (action, label, shown) in offered {
                @if shown { button type="submit" name="action" value=(action) { (label) } " " }
            }
        }
    }
}

fn seconds(from: Timestamp, to: Timestamp) -> f64 {
    (to.as_millisecond() - from.as_millisecond()) as f64 / 1000.0
}

/// The task runs as bars between the execution's start and its end (or
/// now), one row each with its name, state and duration; the script
/// redraws the rows from the execution's event stream.
fn gantt(execution: &Execution, now: Timestamp) -> Markup {
    let start = execution.state.start_date;
    let end = execution.state.end_date.unwrap_or(now);
    let span = seconds(start, end).max(0.001);
    html! {
        div.gantt data-follow={"/api/v1/executions/" (encode(&execution.id)) "/follow"} data-ended=[execution.state.current.is_terminal().then_some("true")] {
            @if execution.task_run_list.is_empty() { p.muted.gantt-empty { "No task run yet." } }
            div.gantt-rows {
                @for run in &execution.task_run_list {
                    @let from = seconds(start, run.state.start_date).max(0.0);
                    @let to = seconds(start, run.state.end_date.unwrap_or(end)).max(from);
                    @let x = from / span * GANTT_W;
                    @let w = ((to - from) / span * GANTT_W).max(4.0);
                    @let name = match &run.value { Some(v) => format!("{} [{v}]", run.task_id), None => run.task_id.clone() };
                    div.gantt-row {
                        span.gantt-name { (name) " " (state_badge(run.state.current)) }
                        svg.gantt-track role="img" aria-label={(name) ": " (run.state.current.as_str()) ", from " (format!("{from:.1}")) " s to " (format!("{to:.1}")) " s"} viewBox={"0 0 " (GANTT_W) " 20"} preserveAspectRatio="none" xmlns="http://www.w3.org/2000/svg" {
                            rect class={"bar state-" (run.state.current.as_str().to_ascii_lowercase())} x=(format!("{x:.1}")) y="3" width=(format!("{w:.1}")) height="14" {}
                        }
                        span.gantt-time { (format!("{:.1}", to - from)) " s" }
                    }
                }
            }
        }
    }
}

/// Longest log message drawn with the page (the download has it all).
const LOG_LINE_BYTES: usize = 2048;

fn clipped(message: &str) -> std::borrow::Cow<'_, str> {
    if message.len() <= LOG_LINE_BYTES {
        return message.into();
    }
    let cut = (0..=LOG_LINE_BYTES)
        .rev()
        .find(|i| message.is_char_boundary(*i))
        .unwrap_or(0);
    format!(
        "{}… (cut; download the logs for the whole line)",
        &message[..cut]
    )
    .into()
}

fn level_rank(level: &str) -> usize {
    LEVELS.iter().position(|l| *l == level).unwrap_or(2)
}

fn log_view(execution: &Execution, logs: &[LogEntry], level: &str) -> Markup {
    let id = encode(&execution.id);
    let least = level_rank(level);
    let last_seq = logs.last().map_or(0, |l| l.seq);
    html! {
        form.filters method="get" action={"/ui/executions/" (id)} {
            label for="log-level" { "Least severe level shown" }
            select id="log-level" name="level" data-log-filter {
                @for l in LEVELS { option value=(l) selected[l == level] { (l) } }
            }
            button type="submit" { "Filter" }
            a href={"/api/v1/logs/" (id) "/download"} download { "Download the logs" }
        }
        ol.logs id="logs" aria-live="polite" data-follow={"/api/v1/logs/" (id) "/follow"} data-after=(last_seq)
            data-ended=[execution.state.current.is_terminal().then_some("true")] {
            @for entry in logs.iter().filter(|e| level_rank(&e.level) >= least) {
                li class={"log level-" (entry.level.to_ascii_lowercase())} data-level=(entry.level) {
                    time { (entry.timestamp.strftime("%H:%M:%S%.3f").to_string()) }
                    " " span.level { (entry.level) }
                    @if let Some(task) = &entry.task_id { " " span.task { (task) } }
                    " " span.message { (clipped(&entry.message)) }
                }
            }
        }
        @if logs.len() as u32 >= FIRST_LOG_LINES {
            p.muted { "The first " (FIRST_LOG_LINES) " lines are shown; download the logs for all of them." }
        }
    }
}

/// The execution's inputs with those its flow declares SECRET masked, as
/// Kestra's UI shows them.
async fn masked_inputs(state: &AppState, execution: &Execution) -> UiResult<Map<String, Value>> {
    let mut inputs = execution.inputs.clone();
    let revision = state
        .engine
        .flows()
        .get(
            &execution.namespace,
            &execution.flow_id,
            Some(execution.flow_revision),
        )
        .await?;
    let declared = revision.and_then(|r| crate::flow::parse(&r.source).ok());
    for input in declared.iter().flat_map(|f| &f.inputs) {
        if input.kind == crate::flow::InputType::Secret
            && let Some(value) = inputs.get_mut(&input.id)
        {
            *value = Value::String("******".into());
        }
    }
    Ok(inputs)
}

/// Most bytes of JSON shown in a block (the API has it all).
const JSON_BYTES: usize = 256 * 1024;

fn json_block(map: &Map<String, Value>) -> Markup {
    if map.is_empty() {
        return html! { p.muted { "None." } };
    }
    let mut text = serde_json::to_string_pretty(map).unwrap_or_default();
    if text.len() > JSON_BYTES {
        let cut = (0..=JSON_BYTES)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
        text.push_str("\n… (cut here; the API has all of it)");
    }
    html! { pre.json tabindex="0" { code { (text) } } }
}

/// `POST /ui/executions/{id}/resume`: resumes a paused execution.
pub(super) async fn resume(
    State(state): State<AppState>,
    caller: Page,
    Path(id): Path<String>,
    form: Form,
) -> UiResult<Response> {
    caller.check_csrf(&form)?;
    caller.require_editor()?;
    let execution = load(&state, id).await?;
    state.engine.resume(&execution.id, &Map::new()).await?;
    Ok(see_other(&format!(
        "/ui/executions/{}",
        encode(&execution.id)
    )))
}
