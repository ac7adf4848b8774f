//! The executions list: filters (namespace, flow, state, labels, time
//! range), paging, and bulk restart, kill, replay and delete of the rows
//! selected (through the API's bulk code, with its checks).

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;
use maud::{Markup, html};

use super::{
    Form, Page, UiError, UiResult, encode, flow_path, layout, see_other, state_badge, when,
};
use crate::api::{AppState, BulkAnswer};
use crate::execution::Execution;
use crate::store::{ExecutionFilter, MAX_LABEL_FILTERS};
use crate::vocabulary::State as ExecState;

/// Rows of a page.
const PAGE_SIZE: u32 = 25;
/// The bulk actions offered, with their button labels.
const ACTIONS: [(&str, &str); 4] = [
    ("restart", "Restart"),
    ("replay", "Replay"),
    ("kill", "Kill"),
    ("delete", "Delete"),
];

/// The list's query: what the filter form sends.
#[derive(Debug, Default)]
struct ListQuery {
    namespace: String,
    flow_id: String,
    states: Vec<String>,
    labels: String,
    from: String,
    until: String,
    page: u32,
    done: Option<(String, String)>,
}

impl ListQuery {
    fn read(raw: Option<&str>) -> UiResult<ListQuery> {
        let form = Form::parse(raw.unwrap_or_default().as_bytes())?;
        let text = |name: &str| form.text(name).unwrap_or_default().to_owned();
        Ok(ListQuery {
            namespace: text("namespace"),
            flow_id: text("flowId"),
            states: form
                .all("state")
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect(),
            labels: text("labels"),
            from: text("from"),
            until: text("until"),
            page: form
                .text("page")
                .and_then(|p| p.parse().ok())
                .unwrap_or(1)
                .max(1),
            done: form.text("done").map(|d| (d.to_owned(), text("count"))),
        })
    }

    /// The query string of these filters (without the page).
    fn filters(&self) -> String {
        let mut pairs = vec![
            ("namespace", self.namespace.as_str()),
            ("flowId", self.flow_id.as_str()),
            ("labels", self.labels.as_str()),
            ("from", self.from.as_str()),
            ("until", self.until.as_str()),
        ];
        pairs.extend(self.states.iter().map(|s| ("state", s.as_str())));
        pairs
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    fn filter(&self) -> UiResult<ExecutionFilter> {
        let bad = |m: String| UiError::new(StatusCode::BAD_REQUEST, m);
        let mut states = Vec::new();
        for s in &self.states {
            states.push(ExecState::parse(s).ok_or_else(|| bad(format!("unknown state {s:?}")))?);
        }
        let labels = crate::api::parse_labels(Some(&self.labels))?;
        if labels.len() > MAX_LABEL_FILTERS {
            return Err(bad(format!(
                "at most {MAX_LABEL_FILTERS} labels can be searched at once"
            )));
        }
        let namespace = (!self.namespace.is_empty()).then(|| self.namespace.clone());
        if let Some(ns) = &namespace
            && !crate::flow::is_valid_namespace(ns)
        {
            return Err(bad(format!("{ns:?} is not a namespace name")));
        }
        Ok(ExecutionFilter {
            namespace,
            flow_id: (!self.flow_id.is_empty()).then(|| self.flow_id.clone()),
            states,
            labels,
            created_from: instant(&self.from)?,
            created_until: instant(&self.until)?,
            limit: PAGE_SIZE,
            offset: (self.page - 1).saturating_mul(PAGE_SIZE),
        })
    }
}

/// A time of the range: RFC 3339, or a form's `YYYY-MM-DDTHH:MM` (UTC).
pub(super) fn instant(text: &str) -> UiResult<Option<Timestamp>> {
    if text.is_empty() {
        return Ok(None);
    }
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(Some(ts));
    }
    text.parse::<jiff::civil::DateTime>()
        .ok()
        .and_then(|dt| dt.to_zoned(jiff::tz::TimeZone::UTC).ok())
        .map(|z| Some(z.timestamp()))
        .ok_or_else(|| {
            UiError::new(
                StatusCode::BAD_REQUEST,
                format!("{text:?} is not a date and time (YYYY-MM-DDTHH:MM, UTC)"),
            )
        })
}

/// `GET /ui/executions`.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Page,
    RawQuery(raw): RawQuery,
) -> UiResult<Markup> {
    let query = ListQuery::read(raw.as_deref())?;
    let filter = query.filter()?;
    let (rows, total) = state.engine.search_executions(&filter).await?;
    let body = html! {
        h1 { "Executions" }
        (filter_form(&query))
        @if let Some((action, count)) = &query.done {
            p.notice role="status" { (action) ": " (count) " execution(s)." }
        }
        (table(&caller, &query, &rows))
        (pager(&query, total))
    };
    Ok(layout::page(
        &state,
        &caller,
        "Executions",
        "Executions",
        body,
    ))
}

fn filter_form(query: &ListQuery) -> Markup {
    html! {
        form.filters method="get" action="/ui/executions" role="search" {
            div.field { label for="f-namespace" { "Namespace" } input id="f-namespace" name="namespace" value=(query.namespace); }
            div.field { label for="f-flow" { "Flow" } input id="f-flow" name="flowId" value=(query.flow_id); }
            div.field {
                label for="f-state" { "State" }
                select id="f-state" name="state" {
                    option value="" { "any" }
                    @for s in ExecState::ALL { option value=(s.as_str()) selected[query.states.iter().any(|q| q == s.as_str())] { (s.as_str()) } }
                }
            }
            div.field { label for="f-labels" { "Labels (key:value, …)" } input id="f-labels" name="labels" value=(query.labels); }
            div.field { label for="f-from" { "Created from (UTC)" } input id="f-from" name="from" type="datetime-local" value=(query.from); }
            div.field { label for="f-until" { "Created before (UTC)" } input id="f-until" name="until" type="datetime-local" value=(query.until); }
            button type="submit" { "Filter" }
        }
    }
}

fn duration(execution: &Execution) -> String {
    match execution.state.end_date {
        Some(end) => {
            let ms = end.as_millisecond() - execution.state.start_date.as_millisecond();
            format!("{:.1} s", ms as f64 / 1000.0)
        }
        None => "—".into(),
    }
}

fn table(caller: &Page, query: &ListQuery, rows: &[Execution]) -> Markup {
    if rows.is_empty() {
        return html! { p.empty { "No executions match." } };
    }
    let editor = caller.can_edit();
    let table = html! {
        table.executions {
            caption.visually-hidden { "Executions, newest first" }
            thead { tr {
                @if editor { th scope="col" { input type="checkbox" data-select-all aria-label="Select every execution of this page"; } }
                th scope="col" { "Id" } th scope="col" { "Flow" } th scope="col" { "State" }
                th scope="col" { "Started" } th scope="col" { "Duration" } th scope="col" { "Labels" }
            } }
            tbody {
                @for e in rows {
                    tr {
                        @if editor { td { input type="checkbox" name="ids" value=(e.id) aria-label={"Select execution " (e.id)}; } }
                        td { a href={"/ui/executions/" (encode(&e.id))} { code.id { (e.id) } } }
                        td { a href=(flow_path(&e.namespace, &e.flow_id)) { (e.namespace) " / " (e.flow_id) } }
                        td { (state_badge(e.state.current)) }
                        td { (when(e.state.start_date)) }
                        td { (duration(e)) }
                        td { @for l in &e.labels { span.label { (l.key) ":" (l.value) } " " } }
                    }
                }
            }
        }
    };
    if !editor {
        return table;
    }
    html! {
        form method="post" action="/ui/executions/bulk" {
            (caller.csrf_field())
            input type="hidden" name="query" value=(query.filters());
            div.actions role="group" aria-label="Act on the selected executions" {
                @for (action, label) in ACTIONS {
                    button type="submit" name="action" value=(action) { (label) }
                }
            }
            (table)
        }
    }
}

fn pager(query: &ListQuery, total: u64) -> Markup {
    let pages = total.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let base = query.filters();
    let link = |page: u64| {
        if base.is_empty() {
            format!("/ui/executions?page={page}")
        } else {
            format!("/ui/executions?{base}&page={page}")
        }
    };
    let page = u64::from(query.page);
    html! {
        nav.pager aria-label="Pages" {
            @if page > 1 { a rel="prev" href=(link(page - 1)) { "← Newer" } }
            span { "Page " (page) " of " (pages) " · " (total) " execution(s)" }
            @if page < pages { a rel="next" href=(link(page + 1)) { "Older →" } }
        }
    }
}

/// `POST /ui/executions/bulk`: the action on the selected executions,
/// then back to the list with the count (or the reasons it was refused).
pub(super) async fn bulk(
    State(state): State<AppState>,
    caller: Page,
    form: Form,
) -> UiResult<Response> {
    caller.check_csrf(&form)?;
    caller.require_editor()?;
    let action = form.get("action").unwrap_or_default().to_owned();
    let ids = form.all("ids");
    if ids.is_empty() {
        return Err(UiError::new(
            StatusCode::BAD_REQUEST,
            "select at least one execution",
        ));
    }
    let answer = crate::api::bulk_by_name(&state, &action, ids)
        .await
        .ok_or_else(|| {
            UiError::new(
                StatusCode::BAD_REQUEST,
                format!("unknown action {action:?}"),
            )
        })??;
    // Re-encoded pair by pair: only the filters go back into the location.
    let back = ListQuery::read(form.get("query"))?.filters();
    match answer {
        // From an execution's own page: back to it.
        BulkAnswer::Done(_)
            if form.get("from") == Some("execution") && form.all("ids").len() == 1 =>
        {
            let id = form.all("ids").concat();
            Ok(see_other(&format!("/ui/executions/{}", encode(&id))))
        }
        BulkAnswer::Done(done) => {
            let sep = if back.is_empty() { "" } else { "&" };
            Ok(see_other(&format!(
                "/ui/executions?{back}{sep}done={}&count={}",
                encode(&action),
                done.count
            )))
        }
        BulkAnswer::Refused(refused) => {
            let body = html! {
                h1 { "Nothing was done" }
                p.error role="alert" { "The " (action) " was refused for these executions:" }
                ul { @for (id, why) in &refused.invalids { li { code { (id) } ": " (why) } } }
                p { a href={"/ui/executions?" (back)} { "Back to the executions" } }
            };
            Ok((
                StatusCode::BAD_REQUEST,
                layout::page(&state, &caller, "Refused", "Executions", body),
            )
                .into_response())
        }
    }
}
