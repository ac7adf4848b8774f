//! What callers do to triggers through the API, as Kestra offers it:
//! disable and enable one, forget its state (delete), restart and unlock
//! it, and backfill a schedule (the executions it would have started
//! between two past dates). Stored in the trigger's controls (see
//! `store::trigger_controls`), so they survive restarts; the trigger loop
//! honours them (`schedule.rs`, `backfill.rs`).

use std::collections::HashMap;

use jiff::Timestamp;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{FlowIndex, TriggerView, list};
use crate::engine::{Engine, EngineError, Inner};
use crate::flow::{Label, Trigger, TriggerKind};
use crate::store::{Repository, TriggerControl, TriggerKey};

/// A schedule's backfill (Kestra's `Backfill`), with its progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Backfill {
    /// The first tick replayed (inclusive).
    #[schemars(with = "String")]
    pub start: Timestamp,
    /// The last tick replayed (inclusive).
    #[schemars(with = "Option<String>")]
    pub end: Option<Timestamp>,
    /// The last tick handled so far (none yet: just before `start`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub current_date: Option<Timestamp>,
    #[serde(default)]
    pub paused: bool,
    /// Inputs of the executions, over the trigger's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inputs: Option<Map<String, Value>>,
    /// Labels of the executions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<Vec<BackfillLabel>>,
    /// When it was created: names its trigger events, so a second backfill
    /// over the same dates replays them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub created: Option<Timestamp>,
}

/// A label given to a backfill's executions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BackfillLabel {
    pub key: String,
    pub value: String,
}

impl From<&BackfillLabel> for Label {
    fn from(l: &BackfillLabel) -> Label {
        Label {
            key: l.key.clone(),
            value: l.value.clone(),
        }
    }
}

/// Why a trigger action was refused.
#[derive(Debug, thiserror::Error)]
pub enum TriggerActionError {
    #[error("no trigger {0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for TriggerActionError {
    fn from(err: crate::store::StoreError) -> Self {
        TriggerActionError::Engine(err.into())
    }
}

/// A trigger as Kestra's trigger search lists it: the trigger as declared
/// (`abstractTrigger`) and its context (`triggerContext`), beside this
/// instance's flat view.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerDetail {
    /// This instance's flat view; its `date` is always given, so the
    /// object also reads as Kestra 1's `Trigger` context.
    #[serde(flatten)]
    pub view: TriggerView,
    /// With `namespace`, `flowId` and `triggerId` above, Kestra 2's
    /// `ApiTriggerState` (what its single-trigger calls answer).
    #[schemars(with = "String")]
    pub updated_at: Timestamp,
    /// The backfill in progress (in both releases' single-trigger shapes).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
    /// Kestra 1's search shape.
    pub abstract_trigger: AbstractTriggerView,
    pub trigger_context: TriggerContextView,
    /// Kestra 2's search shape (`ApiTriggerAndState`).
    pub trigger: AbstractTriggerView,
    pub state: TriggerStateView,
}

/// Kestra 2's `ApiTriggerState`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStateView {
    pub namespace: String,
    pub flow_id: String,
    pub trigger_id: String,
    #[schemars(with = "String")]
    pub updated_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub next_evaluation_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
    pub disabled: bool,
    /// Triggers here never hold a lock.
    pub locked: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub last_triggered_date: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
    /// SCHEDULE for schedules (Kestra's `TriggerType`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// The trigger as the flow declares it (Kestra's `AbstractTrigger`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AbstractTriggerView {
    pub id: String,
    #[serde(rename = "type")]
    pub type_name: String,
    /// Disabled in the flow's source.
    pub disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cron: Option<String>,
}

/// What the trigger has done and what callers set (Kestra's `Trigger`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerContextView {
    pub namespace: String,
    pub flow_id: String,
    pub trigger_id: String,
    /// When the trigger was last evaluated (its last tick or firing).
    #[schemars(with = "String")]
    pub date: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<String>")]
    pub next_execution_date: Option<Timestamp>,
    pub disabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_id: Option<String>,
}

/// Every trigger's controls, by trigger.
pub(super) async fn controls(
    inner: &Inner,
) -> Result<HashMap<TriggerKey, TriggerControl>, EngineError> {
    Ok(inner
        .store
        .trigger_controls()
        .await?
        .into_iter()
        .map(|c| (c.key.clone(), c))
        .collect())
}

/// The backfill recorded in a control, if any (one that no longer reads
/// is dropped, with a warning).
pub(super) fn backfill_of(control: Option<&TriggerControl>) -> Option<Backfill> {
    let value = control?.backfill.clone()?;
    serde_json::from_value(value)
        .inspect_err(|err| tracing::warn!(error = %err, "a stored backfill does not read; ignored"))
        .ok()
}

fn key_string(key: &TriggerKey) -> String {
    format!("{}/{}/{}", key.namespace, key.flow_id, key.trigger_id)
}

fn detail(
    mut view: TriggerView,
    trigger: &Trigger,
    control: Option<&TriggerControl>,
) -> TriggerDetail {
    let cron = match &trigger.kind {
        TriggerKind::Schedule(spec) => Some(spec.cron.clone()),
        _ => None,
    };
    let context = TriggerContextView {
        namespace: view.namespace.clone(),
        flow_id: view.flow_id.clone(),
        trigger_id: view.trigger_id.clone(),
        date: view
            .date
            .or(view.last_triggered_date)
            .unwrap_or_else(Timestamp::now),
        next_execution_date: view.next_execution_date,
        disabled: view.disabled,
        backfill: backfill_of(control),
        execution_id: view.execution_id.clone(),
    };
    let declared = AbstractTriggerView {
        id: trigger.id.clone(),
        type_name: trigger.kind.type_name().to_owned(),
        disabled: trigger.disabled,
        cron,
    };
    let state = TriggerStateView {
        namespace: view.namespace.clone(),
        flow_id: view.flow_id.clone(),
        trigger_id: view.trigger_id.clone(),
        updated_at: context.date,
        next_evaluation_date: view.next_execution_date,
        backfill: context.backfill.clone(),
        disabled: view.disabled,
        locked: false,
        last_triggered_date: view.last_triggered_date,
        execution_id: view.execution_id.clone(),
        kind: declared.cron.as_ref().map(|_| "SCHEDULE".to_owned()),
    };
    view.date = Some(context.date);
    TriggerDetail {
        updated_at: context.date,
        backfill: context.backfill.clone(),
        abstract_trigger: declared.clone(),
        trigger: declared,
        trigger_context: context,
        state,
        view,
    }
}

impl Engine {
    /// Every trigger of the flows under `namespace` (all when `None`) that
    /// `keep` selects, in Kestra's trigger search shape.
    pub async fn trigger_details(
        &self,
        namespace: Option<&str>,
        keep: impl Fn(&str, &str, &str) -> bool,
    ) -> Result<Vec<TriggerDetail>, EngineError> {
        let inner = &self.inner;
        let index = FlowIndex::load(inner, namespace).await?;
        let views = list(inner, namespace).await?;
        let controls = controls(inner).await?;
        let mut out = Vec::new();
        for view in views {
            if !keep(&view.namespace, &view.flow_id, &view.trigger_id) {
                continue;
            }
            let Some(trigger) = index
                .flows()
                .iter()
                .find(|(f, _)| f.namespace == view.namespace && f.id == view.flow_id)
                .and_then(|(f, _)| f.triggers.iter().find(|t| t.id == view.trigger_id))
            else {
                continue;
            };
            let key = TriggerKey {
                namespace: view.namespace.clone(),
                flow_id: view.flow_id.clone(),
                trigger_id: view.trigger_id.clone(),
            };
            out.push(detail(view, trigger, controls.get(&key)));
        }
        Ok(out)
    }

    /// One trigger, or `NotFound`.
    pub async fn trigger_detail(
        &self,
        key: &TriggerKey,
    ) -> Result<TriggerDetail, TriggerActionError> {
        self.trigger_details(Some(&key.namespace), |n, f, t| {
            n == key.namespace && f == key.flow_id && t == key.trigger_id
        })
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| TriggerActionError::NotFound(key_string(key)))
    }

    /// Disables (or enables again) a trigger as a caller asks; a disabled
    /// schedule fires nothing until enabled, then starts from the present.
    pub async fn set_trigger_disabled(
        &self,
        key: &TriggerKey,
        disabled: bool,
    ) -> Result<TriggerDetail, TriggerActionError> {
        self.trigger_detail(key).await?;
        self.inner.store.set_trigger_disabled(key, disabled).await?;
        self.inner.flows_changed.notify_one();
        self.trigger_detail(key).await
    }

    /// Forgets a trigger's state and controls (Kestra's delete): the
    /// trigger loop starts it afresh from the present.
    pub async fn forget_trigger(&self, key: &TriggerKey) -> Result<bool, TriggerActionError> {
        self.trigger_detail(key).await?;
        let forgotten = self.inner.store.forget_trigger(key).await?;
        self.inner.flows_changed.notify_one();
        Ok(forgotten)
    }

    /// Restarts a trigger: a schedule goes on from the present (ticks
    /// missed so far are not caught up); its controls are kept.
    pub async fn restart_trigger(
        &self,
        key: &TriggerKey,
    ) -> Result<TriggerDetail, TriggerActionError> {
        self.trigger_detail(key).await?;
        self.inner
            .store
            .reset_trigger(key, Timestamp::now(), false)
            .await?;
        self.inner.flows_changed.notify_one();
        self.trigger_detail(key).await
    }

    /// Records a backfill of a schedule (checked: a schedule trigger, no
    /// backfill already in progress, `start <= end <= now`).
    pub async fn create_backfill(
        &self,
        key: &TriggerKey,
        mut backfill: Backfill,
    ) -> Result<TriggerDetail, TriggerActionError> {
        let detail = self.trigger_detail(key).await?;
        if detail.abstract_trigger.cron.is_none() {
            return Err(TriggerActionError::Invalid(format!(
                "trigger {} is a {}: only Schedule triggers can be backfilled",
                key_string(key),
                detail.abstract_trigger.type_name
            )));
        }
        if detail.trigger_context.backfill.is_some() {
            return Err(TriggerActionError::Conflict(format!(
                "trigger {} already has a backfill; delete it first",
                key_string(key)
            )));
        }
        let now = Timestamp::now();
        let end = backfill.end.unwrap_or(now);
        if backfill.start > end {
            return Err(TriggerActionError::Invalid(
                "the backfill's start is after its end".into(),
            ));
        }
        if end > now {
            return Err(TriggerActionError::Invalid(
                "the backfill must end in the past (the schedule itself fires from now on)".into(),
            ));
        }
        backfill.end = Some(end);
        backfill.current_date = None;
        backfill.created = Some(now);
        self.write_backfill(key, Some(&backfill)).await?;
        let mut detail = self.trigger_detail(key).await?;
        // The trigger loop may have fired a short backfill to its end and
        // forgotten it already: the answer still shows what was created.
        if detail.trigger_context.backfill.is_none() {
            detail.backfill = Some(backfill.clone());
            detail.trigger_context.backfill = Some(backfill.clone());
            detail.state.backfill = Some(backfill);
        }
        Ok(detail)
    }

    /// Pauses or unpauses a trigger's backfill.
    pub async fn pause_backfill(
        &self,
        key: &TriggerKey,
        paused: bool,
    ) -> Result<TriggerDetail, TriggerActionError> {
        let detail = self.trigger_detail(key).await?;
        let Some(mut backfill) = detail.trigger_context.backfill else {
            return Err(TriggerActionError::Conflict(format!(
                "trigger {} has no backfill",
                key_string(key)
            )));
        };
        backfill.paused = paused;
        self.write_backfill(key, Some(&backfill)).await?;
        self.trigger_detail(key).await
    }

    /// Stops and forgets a trigger's backfill (executions it started stay).
    pub async fn delete_backfill(
        &self,
        key: &TriggerKey,
    ) -> Result<TriggerDetail, TriggerActionError> {
        let detail = self.trigger_detail(key).await?;
        if detail.trigger_context.backfill.is_none() {
            return Err(TriggerActionError::Conflict(format!(
                "trigger {} has no backfill",
                key_string(key)
            )));
        }
        self.write_backfill(key, None).await?;
        self.trigger_detail(key).await
    }

    async fn write_backfill(
        &self,
        key: &TriggerKey,
        backfill: Option<&Backfill>,
    ) -> Result<(), TriggerActionError> {
        let value = backfill
            .map(serde_json::to_value)
            .transpose()
            .map_err(|err| TriggerActionError::Invalid(err.to_string()))?;
        self.inner
            .store
            .set_trigger_backfill(key, value.as_ref())
            .await?;
        self.inner.flows_changed.notify_one();
        Ok(())
    }
}
