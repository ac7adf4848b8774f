//! `io.kestra.plugin.core.kv.Set`: stores a typed value in the KV store of
//! a namespace (the flow's by default), optionally with a time to live.
//! Also what the KV tasks share: the namespace and key they address.

use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Context, TaskType, strings_in, template_error};
use crate::flow::parse::Fields;
use crate::store::{KvEntry, KvType, MAX_KV_VALUE_BYTES, check_kv_key};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvSet {
    pub key: String,
    pub value: Value,
    pub namespace: Option<String>,
    pub overwrite: bool,
    pub ttl: Option<String>,
    pub kv_type: Option<String>,
    pub description: Option<String>,
}

impl TaskType for KvSet {
    const NAME: &'static str = "io.kestra.plugin.core.kv.Set";

    fn parse(f: &mut Fields<'_>) -> Self {
        let key = f.required_string("key");
        let value = f.value("value").unwrap_or_else(|| {
            f.missing("value");
            Value::Null
        });
        KvSet {
            key,
            value,
            namespace: f.string("namespace"),
            overwrite: f.bool("overwrite", true),
            ttl: f.string("ttl"),
            kv_type: f.string("kvType"),
            description: f.string("description"),
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("key", self.key.as_str())];
        out.extend(strings_in(&self.value).into_iter().map(|s| ("value", s)));
        out.extend(self.namespace.as_deref().map(|s| ("namespace", s)));
        out.extend(self.ttl.as_deref().map(|s| ("ttl", s)));
        out.extend(self.kv_type.as_deref().map(|s| ("kvType", s)));
        out.extend(self.description.as_deref().map(|s| ("description", s)));
        out
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let (namespace, key) = address(cx, self.namespace.as_deref(), &self.key).await?;
        let kind = match &self.kv_type {
            Some(t) => {
                let name = cx.render(t).await?;
                Some(KvType::parse(&name).ok_or_else(|| {
                    format!("unknown kvType `{name}` (STRING, NUMBER, BOOLEAN, DATETIME, DATE, DURATION or JSON)")
                })?)
            }
            None => None,
        };
        let value = crate::lookups::evaluate_json(cx.templates, cx.lookups, &self.value, cx.vars)
            .await
            .map_err(|e| {
                let template = strings_in(&self.value)
                    .into_iter()
                    .next()
                    .unwrap_or_default();
                template_error(cx.task, template, &e)
            })?;
        let (value, kind) = typed(value, kind)?;
        if value.to_string().len() > MAX_KV_VALUE_BYTES {
            return Err(format!(
                "the value of KV key `{key}` is larger than {MAX_KV_VALUE_BYTES} bytes"
            ));
        }
        let now = Timestamp::now();
        let expires = match &self.ttl {
            Some(ttl) => Some(expiry(now, &cx.render(ttl).await?)?),
            None => None,
        };
        let description = match &self.description {
            Some(d) => Some(cx.render(d).await?),
            None => None,
        };
        let entry = KvEntry {
            namespace: namespace.clone(),
            key: key.clone(),
            value,
            kind,
            description,
            expires,
            created: now,
            updated: now,
        };
        let written = cx
            .lookups
            .kv_store()?
            .kv_put(&entry, self.overwrite)
            .await
            .map_err(|e| format!("the KV store could not be written: {e}"))?;
        if !written {
            return Err(format!(
                "cannot set the value of key `{key}` in namespace `{namespace}`: the key already exists and `overwrite` is false"
            ));
        }
        Ok(Map::new())
    }
}

/// The entry a `Get` or `Delete` names: `key`, `namespace` (the flow's
/// when not given) and `errorOnMissing`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyRef {
    pub key: String,
    pub namespace: Option<String>,
    pub error_on_missing: bool,
}

impl KeyRef {
    pub(super) fn parse(f: &mut Fields<'_>) -> KeyRef {
        KeyRef {
            key: f.required_string("key"),
            namespace: f.string("namespace"),
            error_on_missing: f.bool("errorOnMissing", false),
        }
    }

    pub(super) fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("key", self.key.as_str())];
        out.extend(self.namespace.as_deref().map(|s| ("namespace", s)));
        out
    }

    /// The rendered, checked namespace and key.
    pub(super) async fn address(&self, cx: &Context<'_>) -> Result<(String, String), String> {
        address(cx, self.namespace.as_deref(), &self.key).await
    }
}

/// Why a missing key fails (with `errorOnMissing`).
pub(crate) fn missing(namespace: &str, key: &str) -> String {
    format!("the key `{key}` does not exist in the namespace `{namespace}`")
}

/// The rendered namespace (the flow's when not given) and key of a KV
/// task, both checked.
pub(super) async fn address(
    cx: &Context<'_>,
    namespace: Option<&str>,
    key: &str,
) -> Result<(String, String), String> {
    let namespace = match namespace {
        Some(ns) => cx.render(ns).await?,
        None => cx
            .lookups
            .flow_namespace()
            .ok_or("no namespace: the flow's is not known here")?
            .to_owned(),
    };
    if !crate::flow::is_valid_namespace(&namespace) {
        return Err(format!(
            "invalid namespace `{}`",
            namespace.chars().take(100).collect::<String>()
        ));
    }
    let key = cx.render(key).await?;
    check_kv_key(&key)?;
    Ok((namespace, key))
}

/// When an entry written at `now` with time to live `ttl` (ISO-8601,
/// `PT1H`, `P1D`) expires.
pub(crate) fn expiry(now: Timestamp, ttl: &str) -> Result<Timestamp, String> {
    let ttl = ttl.trim();
    let duration = match crate::flow::parse_duration(ttl) {
        Ok(d) => d,
        Err(err) => match ttl
            .strip_prefix('P')
            .and_then(|d| d.strip_suffix('D'))
            .and_then(|d| d.parse::<u64>().ok())
        {
            Some(days) => Duration::from_secs(days.saturating_mul(86_400)),
            None => return Err(format!("ttl: {err}")),
        },
    };
    let signed = jiff::SignedDuration::try_from(duration).map_err(|_| "ttl: too long")?;
    now.checked_add(signed).map_err(|_| "ttl: too long".into())
}

/// The value as type `kind` (Kestra's conversions), or its own type.
pub(crate) fn typed(value: Value, kind: Option<KvType>) -> Result<(Value, KvType), String> {
    let text = || match &value {
        Value::String(s) => s.trim().to_owned(),
        other => other.to_string(),
    };
    let bad = |what: &str| format!("the value is not {what}");
    let kind = match kind {
        Some(kind) => kind,
        None => {
            let inferred = match &value {
                Value::String(_) | Value::Null => KvType::String,
                Value::Number(_) => KvType::Number,
                Value::Bool(_) => KvType::Boolean,
                Value::Array(_) | Value::Object(_) => KvType::Json,
            };
            return Ok((value, inferred));
        }
    };
    let converted = match kind {
        KvType::String => match &value {
            Value::String(_) => value.clone(),
            other => Value::String(other.to_string()),
        },
        KvType::Number => match &value {
            Value::Number(_) => value.clone(),
            _ => serde_json::from_str::<serde_json::Number>(&text())
                .map(Value::Number)
                .map_err(|_| bad("a number"))?,
        },
        KvType::Boolean => match text().as_str() {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => return Err(bad("a boolean")),
        },
        KvType::Datetime => {
            let t = text();
            let ok = t.parse::<Timestamp>().is_ok() || t.parse::<jiff::civil::DateTime>().is_ok();
            if !ok {
                return Err(bad("a date-time (ISO-8601)"));
            }
            Value::String(t)
        }
        KvType::Date => {
            let t = text();
            t.parse::<jiff::civil::Date>()
                .map_err(|_| bad("a date (YYYY-MM-DD)"))?;
            Value::String(t)
        }
        KvType::Duration => {
            let t = text();
            expiry(Timestamp::UNIX_EPOCH, &t).map_err(|_| bad("an ISO-8601 duration"))?;
            Value::String(t)
        }
        KvType::Json => match &value {
            Value::String(s) => serde_json::from_str(s).map_err(|_| bad("JSON"))?,
            other => other.clone(),
        },
    };
    Ok((converted, kind))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_take_their_kv_type() {
        assert_eq!(
            typed(json!("42"), Some(KvType::Number)),
            Ok((json!(42), KvType::Number))
        );
        assert_eq!(typed(json!(true), None), Ok((json!(true), KvType::Boolean)));
        assert_eq!(
            typed(json!("{\"a\": 1}"), Some(KvType::Json)),
            Ok((json!({"a": 1}), KvType::Json))
        );
        assert!(typed(json!("x"), Some(KvType::Boolean)).is_err());
        assert!(typed(json!("2024-13-01"), Some(KvType::Date)).is_err());
        assert_eq!(
            typed(json!("PT5M"), Some(KvType::Duration)),
            Ok((json!("PT5M"), KvType::Duration))
        );
    }

    #[test]
    fn ttls_are_iso_durations_with_days() {
        let now = Timestamp::UNIX_EPOCH;
        assert_eq!(expiry(now, "PT1H").map(|t| t.as_second()), Ok(3600));
        assert_eq!(expiry(now, "P2D").map(|t| t.as_second()), Ok(172_800));
        assert!(expiry(now, "soon").is_err());
    }
}
