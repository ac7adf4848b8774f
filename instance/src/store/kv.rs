//! The KV store (Kestra's): typed values by namespace and key, with an
//! optional expiry. An expired entry reads as missing and is deleted when
//! met. Values are stored as JSON text with their type's name.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use sqlx::Row;

use super::dialect::Dialect;
use super::query::{from_micros, micros};
use super::sql::SqlRepository;
use super::{Store, StoreError, query_error};

/// The type of a stored value, as Kestra names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum KvType {
    String,
    Number,
    Boolean,
    Datetime,
    Date,
    Duration,
    Json,
}

impl KvType {
    pub fn name(self) -> &'static str {
        match self {
            KvType::String => "STRING",
            KvType::Number => "NUMBER",
            KvType::Boolean => "BOOLEAN",
            KvType::Datetime => "DATETIME",
            KvType::Date => "DATE",
            KvType::Duration => "DURATION",
            KvType::Json => "JSON",
        }
    }

    /// The type named `name` (any case).
    pub fn parse(name: &str) -> Option<KvType> {
        [
            KvType::String,
            KvType::Number,
            KvType::Boolean,
            KvType::Datetime,
            KvType::Date,
            KvType::Duration,
            KvType::Json,
        ]
        .into_iter()
        .find(|t| t.name().eq_ignore_ascii_case(name))
    }
}

/// One stored value.
#[derive(Debug, Clone, PartialEq)]
pub struct KvEntry {
    pub namespace: String,
    pub key: String,
    pub value: serde_json::Value,
    pub kind: KvType,
    pub description: Option<String>,
    /// When it expires; `None`: never.
    pub expires: Option<Timestamp>,
    pub created: Timestamp,
    pub updated: Timestamp,
}

/// Longest key kept (Kestra's keys are file names in its storage).
pub const MAX_KEY: usize = 255;
/// Largest value kept, as JSON text.
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// Checks a key as Kestra does: letters, digits, `_`, `.` and `-`.
pub fn check_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(format!("a KV key must be 1 to {MAX_KEY} characters long"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(format!(
            "invalid KV key `{}`: `{c}` is not allowed (only letters, digits, `_`, `.` and `-`)",
            key.chars().take(100).collect::<String>()
        ));
    }
    Ok(())
}

const GET: &str =
    "SELECT namespace, key, value, type, description, expires_at, created_at, updated_at
     FROM kv WHERE namespace = $1 AND key = $2";

const LIST: &str =
    "SELECT namespace, key, value, type, description, expires_at, created_at, updated_at
     FROM kv WHERE namespace = $1 ORDER BY key";

const LIST_ALL: &str =
    "SELECT namespace, key, value, type, description, expires_at, created_at, updated_at
     FROM kv WHERE expires_at IS NULL OR expires_at > $1 ORDER BY namespace, key LIMIT $2";

/// Most entries a search across namespaces reads.
pub const MAX_KV_SEARCH: usize = 10_000;

/// Inserts or (with `$8` true, or over an expired entry) replaces.
const UPSERT: &str =
    "INSERT INTO kv (namespace, key, value, type, description, expires_at, created_at, updated_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
     ON CONFLICT (namespace, key) DO UPDATE
     SET value = excluded.value, type = excluded.type, description = excluded.description,
         expires_at = excluded.expires_at, updated_at = excluded.updated_at
     WHERE $8 OR (kv.expires_at IS NOT NULL AND kv.expires_at <= $7)";

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
    for<'a> Option<i64>: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> bool: sqlx::Encode<'a, DB> + sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> String: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
    for<'a> Option<String>: sqlx::Decode<'a, DB> + sqlx::Type<DB>,
{
    fn kv_entry(row: &DB::Row) -> Result<KvEntry, StoreError> {
        let value: String = row.get("value");
        let kind: String = row.get("type");
        Ok(KvEntry {
            namespace: row.get("namespace"),
            key: row.get("key"),
            value: serde_json::from_str(&value).map_err(|source| StoreError::Corrupt {
                what: "KV value",
                source,
            })?,
            kind: KvType::parse(&kind).unwrap_or(KvType::Json),
            description: row.get("description"),
            expires: row.get::<Option<i64>, _>("expires_at").map(from_micros),
            created: from_micros(row.get("created_at")),
            updated: from_micros(row.get("updated_at")),
        })
    }

    /// Deletes the expired entries of `namespace`.
    async fn kv_purge(&self, namespace: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM kv WHERE expires_at <= $1 AND namespace = $2")
            .bind(micros(Timestamp::now()))
            .bind(namespace)
            .execute(&self.pool)
            .await
            .map_err(query_error("purge expired KV entries"))?;
        Ok(())
    }

    pub(super) async fn kv_get(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<KvEntry>, StoreError> {
        let row = sqlx::query(GET)
            .bind(namespace)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(query_error("read KV entry"))?;
        let Some(row) = row else { return Ok(None) };
        let entry = Self::kv_entry(&row)?;
        if entry.expires.is_some_and(|at| at <= Timestamp::now()) {
            self.kv_purge(namespace).await?;
            return Ok(None);
        }
        Ok(Some(entry))
    }

    pub(super) async fn kv_list(&self, namespace: &str) -> Result<Vec<KvEntry>, StoreError> {
        self.kv_purge(namespace).await?;
        let rows = sqlx::query(LIST)
            .bind(namespace)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list KV entries"))?;
        rows.iter().map(Self::kv_entry).collect()
    }

    /// The live entries of every namespace, by namespace and key, at most
    /// [`MAX_KV_SEARCH`].
    pub(super) async fn kv_list_all(&self) -> Result<Vec<KvEntry>, StoreError> {
        let rows = sqlx::query(LIST_ALL)
            .bind(micros(Timestamp::now()))
            .bind(MAX_KV_SEARCH as i64)
            .fetch_all(&self.pool)
            .await
            .map_err(query_error("list KV entries"))?;
        rows.iter().map(Self::kv_entry).collect()
    }

    pub(super) async fn kv_put(
        &self,
        entry: &KvEntry,
        overwrite: bool,
    ) -> Result<bool, StoreError> {
        let value = entry.value.to_string();
        let done = sqlx::query(UPSERT)
            .bind(entry.namespace.as_str())
            .bind(entry.key.as_str())
            .bind(value.as_str())
            .bind(entry.kind.name())
            .bind(entry.description.as_deref())
            .bind(entry.expires.map(micros))
            .bind(micros(entry.updated))
            .bind(overwrite)
            .execute(&self.pool)
            .await
            .map_err(query_error("write KV entry"))?;
        Ok(DB::rows_affected(&done) > 0)
    }

    pub(super) async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        let now = micros(Timestamp::now());
        let done = sqlx::query(
            "DELETE FROM kv WHERE namespace = $1 AND key = $2
             RETURNING (expires_at IS NULL OR expires_at > $3) AS live",
        )
        .bind(namespace)
        .bind(key)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(query_error("delete KV entry"))?;
        Ok(done.is_some_and(|row| row.get::<bool, _>("live")))
    }
}

impl Store {
    /// The live entry of `key` in `namespace` (an expired one is deleted
    /// and reads as missing).
    pub async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<KvEntry>, StoreError> {
        match self {
            Store::Sqlite(r) => r.kv_get(namespace, key).await,
            Store::Postgres(r) => r.kv_get(namespace, key).await,
        }
    }

    /// The live entries of `namespace`, by key.
    pub async fn kv_list(&self, namespace: &str) -> Result<Vec<KvEntry>, StoreError> {
        match self {
            Store::Sqlite(r) => r.kv_list(namespace).await,
            Store::Postgres(r) => r.kv_list(namespace).await,
        }
    }

    /// The live entries of every namespace, by namespace and key (at most
    /// [`MAX_KV_SEARCH`]).
    pub async fn kv_list_all(&self) -> Result<Vec<KvEntry>, StoreError> {
        match self {
            Store::Sqlite(r) => r.kv_list_all().await,
            Store::Postgres(r) => r.kv_list_all().await,
        }
    }

    /// The live entry of `key` in `namespace` or, when it has none, in the
    /// nearest parent namespace that has one (`company.team`, then
    /// `company`), as Kestra's `kv()` reads a key without `namespace`.
    pub async fn kv_get_inherited(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<KvEntry>, StoreError> {
        let mut current = namespace;
        loop {
            if let Some(entry) = self.kv_get(current, key).await? {
                return Ok(Some(entry));
            }
            match current.rsplit_once('.') {
                Some((parent, _)) => current = parent,
                None => return Ok(None),
            }
        }
    }

    /// Writes `entry`; without `overwrite`, a live entry of the key is kept
    /// and `false` returned.
    pub async fn kv_put(&self, entry: &KvEntry, overwrite: bool) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(r) => r.kv_put(entry, overwrite).await,
            Store::Postgres(r) => r.kv_put(entry, overwrite).await,
        }
    }

    /// Deletes `key`; `false` when there was no live entry.
    pub async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        match self {
            Store::Sqlite(r) => r.kv_delete(namespace, key).await,
            Store::Postgres(r) => r.kv_delete(namespace, key).await,
        }
    }
}
