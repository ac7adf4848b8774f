//! The triggers page: every flow's triggers with the next fire time of
//! schedules, enable and disable (kept when the flow is saved again, as
//! the engine keeps it), and a schedule's backfill over a time range.

use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};

use super::{Form, Page, UiError, UiResult, encode, flow_path, layout, see_other, when};
use crate::api::{AppState, FlowKey};
use crate::engine::{Backfill, TriggerDetail};
use crate::store::TriggerKey;

/// `?namespace=&flowId=` of the page.
#[derive(Debug, Default)]
struct Selection {
    namespace: String,
    flow_id: String,
}

impl Selection {
    fn read(raw: Option<&str>) -> UiResult<Selection> {
        let form = Form::parse(raw.unwrap_or_default().as_bytes())?;
        Ok(Selection {
            namespace: form.text("namespace").unwrap_or_default().to_owned(),
            flow_id: form.text("flowId").unwrap_or_default().to_owned(),
        })
    }

    /// The query string of the filters given (empty ones left out).
    fn query(&self) -> String {
        [("namespace", &self.namespace), ("flowId", &self.flow_id)]
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// `GET /ui/triggers`.
pub(super) async fn list(
    State(state): State<AppState>,
    caller: Page,
    RawQuery(raw): RawQuery,
) -> UiResult<Markup> {
    let sel = Selection::read(raw.as_deref())?;
    let namespace = (!sel.namespace.is_empty()).then_some(sel.namespace.as_str());
    if let Some(ns) = namespace
        && !crate::flow::is_valid_namespace(ns)
    {
        return Err(UiError::new(
            StatusCode::BAD_REQUEST,
            format!("{ns:?} is not a namespace name"),
        ));
    }
    let flow_id = sel.flow_id.clone();
    let triggers = state
        .engine
        .trigger_details(namespace, |_, f, _| flow_id.is_empty() || f == flow_id)
        .await?;
    let body = html! {
        h1 { "Triggers" }
        form.filters method="get" action="/ui/triggers" role="search" {
            div.field { label for="t-namespace" { "Namespace" } input id="t-namespace" name="namespace" value=(sel.namespace); }
            div.field { label for="t-flow" { "Flow" } input id="t-flow" name="flowId" value=(sel.flow_id); }
            button type="submit" { "Filter" }
        }
        @if triggers.is_empty() { p.empty { "No triggers." } }
        @for t in &triggers { (trigger_card(&caller, &sel, t)) }
    };
    Ok(layout::page(&state, &caller, "Triggers", "Triggers", body))
}

fn trigger_card(caller: &Page, sel: &Selection, t: &TriggerDetail) -> Markup {
    let v = &t.view;
    let schedule = t.abstract_trigger.cron.as_deref();
    html! {
        section.card aria-label={"Trigger " (v.trigger_id) " of " (v.namespace) "." (v.flow_id)} {
            h2 {
                (v.trigger_id) " "
                span.muted { "of " a href=(flow_path(&v.namespace, &v.flow_id)) { (v.namespace) " / " (v.flow_id) } }
                @if v.disabled { " " span.state.state-killed { "DISABLED" } }
            }
            dl.facts {
                dt { "Type" } dd { (v.type_name) }
                @if let Some(cron) = schedule { dt { "Schedule" } dd { code { (cron) } } }
                dt { "Next fire" } dd { @match v.next_execution_date { Some(n) => (when(n)), None => "—" } }
                dt { "Last fired" } dd { @match v.last_triggered_date { Some(n) => (when(n)), None => "—" } }
                @if let Some(id) = &v.execution_id { dt { "Last execution" } dd { a href={"/ui/executions/" (encode(id))} { code { (id) } } } }
                @if let Some(b) = &t.backfill { dt { "Backfill" } dd { (backfill_text(b)) } }
            }
            @if caller.can_edit() {
                form.inline method="post" action="/ui/triggers/disabled" {
                    (caller.csrf_field())
                    (hidden_key(v.namespace.as_str(), v.flow_id.as_str(), v.trigger_id.as_str(), sel))
                    input type="hidden" name="disabled" value=(if v.disabled { "false" } else { "true" });
                    button type="submit" { @if v.disabled { "Enable" } @else { "Disable" } }
                }
                @if schedule.is_some() && t.backfill.is_none() {
                    @let fid = format!("{}-{}-{}", v.namespace, v.flow_id, v.trigger_id);
                    form.backfill method="post" action="/ui/triggers/backfill" {
                        (caller.csrf_field())
                        (hidden_key(v.namespace.as_str(), v.flow_id.as_str(), v.trigger_id.as_str(), sel))
                        div.field { label for={"bf-start-" (fid)} { "Backfill from (UTC)" } input id={"bf-start-" (fid)} name="start" type="datetime-local" required; }
                        div.field { label for={"bf-end-" (fid)} { "to (UTC, optional)" } input id={"bf-end-" (fid)} name="end" type="datetime-local"; }
                        button type="submit" { "Backfill" }
                    }
                }
            }
        }
    }
}

fn backfill_text(b: &Backfill) -> String {
    let end = b.end.map_or_else(|| "now".to_owned(), when);
    let at = b
        .current_date
        .map_or_else(|| "not started".to_owned(), |d| format!("at {}", when(d)));
    format!(
        "{} → {end}, {at}{}",
        when(b.start),
        if b.paused { ", paused" } else { "" }
    )
}

fn hidden_key(namespace: &str, flow_id: &str, trigger_id: &str, sel: &Selection) -> Markup {
    html! {
        input type="hidden" name="namespace" value=(namespace);
        input type="hidden" name="flowId" value=(flow_id);
        input type="hidden" name="triggerId" value=(trigger_id);
        input type="hidden" name="back" value=(sel.query());
    }
}

fn key_of(form: &Form) -> UiResult<TriggerKey> {
    let flow = FlowKey::parse(
        form.get("namespace").unwrap_or_default().to_owned(),
        form.get("flowId").unwrap_or_default().to_owned(),
    );
    let trigger_id = form.get("triggerId").unwrap_or_default();
    match flow {
        Some(flow) if !trigger_id.is_empty() && trigger_id.len() <= 256 => Ok(TriggerKey {
            namespace: flow.namespace,
            flow_id: flow.id,
            trigger_id: trigger_id.to_owned(),
        }),
        _ => Err(UiError::not_found("trigger")),
    }
}

/// Back to the page with the filters it had (re-encoded).
fn back(form: &Form) -> UiResult<Response> {
    let sel = Selection::read(form.get("back"))?;
    Ok(see_other(&format!("/ui/triggers?{}", sel.query())))
}

/// `POST /ui/triggers/disabled`: enables or disables one trigger.
pub(super) async fn set_disabled(
    State(state): State<AppState>,
    caller: Page,
    form: Form,
) -> UiResult<Response> {
    caller.check_csrf(&form)?;
    caller.require_editor()?;
    let key = key_of(&form)?;
    let disabled = form.get("disabled") == Some("true");
    state.engine.set_trigger_disabled(&key, disabled).await?;
    back(&form)
}

/// `POST /ui/triggers/backfill`: backfills a schedule between two dates.
pub(super) async fn backfill(
    State(state): State<AppState>,
    caller: Page,
    form: Form,
) -> UiResult<Response> {
    caller.check_csrf(&form)?;
    caller.require_editor()?;
    let key = key_of(&form)?;
    let start = super::executions::instant(form.text("start").unwrap_or_default())?
        .ok_or_else(|| UiError::new(StatusCode::BAD_REQUEST, "a backfill needs its start"))?;
    let end = super::executions::instant(form.text("end").unwrap_or_default())?;
    let backfill = Backfill {
        start,
        end,
        current_date: None,
        paused: false,
        inputs: None,
        labels: None,
        created: None,
    };
    state.engine.create_backfill(&key, backfill).await?;
    back(&form)
}
