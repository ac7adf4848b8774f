//! `io.kestra.plugin.core.kv.Delete`: deletes a KV entry; the output
//! `deleted` says whether there was one (a missing key fails with
//! `errorOnMissing`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::kv_set::address;
use super::{Context, TaskType};
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvDelete {
    pub key: String,
    pub namespace: Option<String>,
    pub error_on_missing: bool,
}

impl TaskType for KvDelete {
    const NAME: &'static str = "io.kestra.plugin.core.kv.Delete";
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        KvDelete {
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
        let deleted = cx
            .lookups
            .kv_store()?
            .kv_delete(&namespace, &key)
            .await
            .map_err(|e| format!("the KV store could not be written: {e}"))?;
        if !deleted && self.error_on_missing {
            return Err(format!(
                "the key `{key}` does not exist in the namespace `{namespace}`"
            ));
        }
        let mut outputs = Map::new();
        outputs.insert("deleted".into(), Value::Bool(deleted));
        Ok(outputs)
    }
}
