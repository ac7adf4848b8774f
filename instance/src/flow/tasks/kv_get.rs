//! `io.kestra.plugin.core.kv.Get`: reads a KV entry into the output
//! `value` (null when missing, or an error with `errorOnMissing`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::kv_set::address;
use super::{Context, TaskType};
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvGet {
    pub key: String,
    pub namespace: Option<String>,
    pub error_on_missing: bool,
}

impl TaskType for KvGet {
    const NAME: &'static str = "io.kestra.plugin.core.kv.Get";
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        KvGet {
            key: f.required_string("key"),
            namespace: f.string("namespace"),
            error_on_missing: f.bool("errorOnMissing", false),
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("key", self.key.as_str())];
        out.extend(self.namespace.as_deref().map(|s| ("namespace", s)));
        out
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let (namespace, key) = address(cx, self.namespace.as_deref(), &self.key).await?;
        let entry = cx
            .lookups
            .kv_store()?
            .kv_get(&namespace, &key)
            .await
            .map_err(|e| format!("the KV store could not be read: {e}"))?;
        let value = match entry {
            Some(entry) => entry.value,
            None if self.error_on_missing => {
                return Err(format!(
                    "the key `{key}` does not exist in the namespace `{namespace}`"
                ));
            }
            None => Value::Null,
        };
        let mut outputs = Map::new();
        outputs.insert("value".into(), value);
        Ok(outputs)
    }
}
