//! What API callers set on a trigger (table `trigger_controls`): disabled
//! by a caller, and the backfill in progress (JSON, read by the engine).
//! Separate from what the trigger has done (`trigger_state`), which the
//! trigger loop writes.

use jiff::Timestamp;
use sqlx::Row;

use super::dialect::Dialect;
use super::query::micros;
use super::sql::SqlRepository;
use super::{Store, StoreError, TriggerKey, query_error};

/// The controls of one trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct TriggerControl {
    pub key: TriggerKey,
    /// Disabled by a caller: a schedule does not fire until enabled again.
    pub disabled: bool,
    /// The backfill in progress, as the engine wrote it.
    pub backfill: Option<serde_json::Value>,
    /// Bumped by every write (see [`Store::advance_trigger_backfill`]).
    pub version: i64,
}

const UPSERT_DISABLED: &str =
    "INSERT INTO trigger_controls (namespace, flow_id, trigger_id, disabled, updated_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (namespace, flow_id, trigger_id)
     DO UPDATE SET disabled = excluded.disabled, updated_at = excluded.updated_at,
                   version = trigger_controls.version + 1";

const UPSERT_BACKFILL: &str =
    "INSERT INTO trigger_controls (namespace, flow_id, trigger_id, backfill, updated_at)
     VALUES ($1, $2, $3, $4, $5)
     ON CONFLICT (namespace, flow_id, trigger_id)
     DO UPDATE SET backfill = excluded.backfill, updated_at = excluded.updated_at,
                   version = trigger_controls.version + 1";

impl<DB> SqlRepository<DB>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: sqlx::Executor<'c, Database = DB>,
    for<'c> &'c sqlx::Pool<DB>: sqlx::Executor<'c, Database = DB>,
    DB::Arguments: sqlx::IntoArguments<DB>,
    for<'a> &'a str:
        sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB> + sqlx::ColumnIndex<DB::Row>,
    for<'a> Option<&'a str>: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
    for<'a> i64: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> bool: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<String>: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
{
    async fn trigger_controls(&self) -> Result<Vec<TriggerControl>, StoreError> {
        let rows = sqlx::query(
            "SELECT namespace, flow_id, trigger_id, disabled, backfill, version FROM trigger_controls",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(query_error("read trigger controls"))?;
        rows.iter()
            .map(|row| {
                let backfill: Option<String> = row.get("backfill");
                Ok(TriggerControl {
                    key: TriggerKey {
                        namespace: row.get("namespace"),
                        flow_id: row.get("flow_id"),
                        trigger_id: row.get("trigger_id"),
                    },
                    disabled: row.get("disabled"),
                    version: row.get("version"),
                    backfill: backfill
                        .map(|text| serde_json::from_str(&text))
                        .transpose()
                        .map_err(|source| StoreError::Corrupt {
                            what: "trigger backfill",
                            source,
                        })?,
                })
            })
            .collect()
    }

    async fn upsert_control(
        &self,
        statement: &'static str,
        key: &TriggerKey,
        bind: ControlValue<'_>,
    ) -> Result<(), StoreError> {
        let query = sqlx::query(statement)
            .bind(key.namespace.as_str())
            .bind(key.flow_id.as_str())
            .bind(key.trigger_id.as_str());
        let query = match bind {
            ControlValue::Disabled(disabled) => query.bind(disabled),
            ControlValue::Backfill(backfill) => query.bind(backfill),
        };
        query
            .bind(micros(Timestamp::now()))
            .execute(&self.pool)
            .await
            .map_err(query_error("write trigger controls"))?;
        Ok(())
    }

    async fn advance_backfill(
        &self,
        key: &TriggerKey,
        version: i64,
        backfill: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE trigger_controls SET backfill = $4, updated_at = $5, version = version + 1
             WHERE namespace = $1 AND flow_id = $2 AND trigger_id = $3 AND version = $6",
        )
        .bind(key.namespace.as_str())
        .bind(key.flow_id.as_str())
        .bind(key.trigger_id.as_str())
        .bind(backfill)
        .bind(micros(Timestamp::now()))
        .bind(version)
        .execute(&self.pool)
        .await
        .map_err(query_error("write backfill progress"))?;
        Ok(DB::rows_affected(&done) > 0)
    }

    async fn forget_trigger(&self, key: &TriggerKey) -> Result<bool, StoreError> {
        let action = "delete trigger state";
        let mut tx = DB::begin_write(&self.pool, None, action).await?;
        let mut deleted = 0;
        for statement in [
            "DELETE FROM trigger_state WHERE namespace = $1 AND flow_id = $2 AND trigger_id = $3",
            "DELETE FROM trigger_controls WHERE namespace = $1 AND flow_id = $2 AND trigger_id = $3",
        ] {
            let done = sqlx::query(statement)
                .bind(key.namespace.as_str())
                .bind(key.flow_id.as_str())
                .bind(key.trigger_id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(query_error(action))?;
            deleted += DB::rows_affected(&done);
        }
        tx.commit().await.map_err(query_error(action))?;
        Ok(deleted > 0)
    }
}

enum ControlValue<'a> {
    Disabled(bool),
    Backfill(Option<&'a str>),
}

macro_rules! on_store {
    ($self:ident, $repo:ident => $call:expr) => {
        match $self {
            Store::Sqlite($repo) => $call.await,
            Store::Postgres($repo) => $call.await,
        }
    };
}

impl Store {
    /// The controls of every trigger that has some.
    pub async fn trigger_controls(&self) -> Result<Vec<TriggerControl>, StoreError> {
        on_store!(self, r => r.trigger_controls())
    }

    /// Disables (or enables again) a trigger, as a caller asked.
    pub async fn set_trigger_disabled(
        &self,
        key: &TriggerKey,
        disabled: bool,
    ) -> Result<(), StoreError> {
        on_store!(self, r => r.upsert_control(UPSERT_DISABLED, key, ControlValue::Disabled(disabled)))
    }

    /// Records a trigger's backfill (its progress included), or removes it.
    pub async fn set_trigger_backfill(
        &self,
        key: &TriggerKey,
        backfill: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let text = backfill.map(serde_json::Value::to_string);
        let value = ControlValue::Backfill(text.as_deref());
        on_store!(self, r => r.upsert_control(UPSERT_BACKFILL, key, value))
    }

    /// Writes a backfill's progress (or removes it, finished) only if the
    /// trigger's controls are still at `version`: false, and nothing
    /// written, when a caller changed them meanwhile.
    pub async fn advance_trigger_backfill(
        &self,
        key: &TriggerKey,
        version: i64,
        backfill: Option<&serde_json::Value>,
    ) -> Result<bool, StoreError> {
        let text = backfill.map(serde_json::Value::to_string);
        on_store!(self, r => r.advance_backfill(key, version, text.as_deref()))
    }

    /// Forgets everything about a trigger (its state and controls); the
    /// trigger loop starts it afresh. False when there was nothing.
    pub async fn forget_trigger(&self, key: &TriggerKey) -> Result<bool, StoreError> {
        on_store!(self, r => r.forget_trigger(key))
    }
}
