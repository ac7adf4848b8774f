//! `io.kestra.plugin.core.kv.Get`: reads a KV entry into the output
//! `value` (null when missing, or an error with `errorOnMissing`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::kv_set::{KeyRef, missing};
use super::{Context, TaskType};
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvGet(pub KeyRef);

impl TaskType for KvGet {
    const NAME: &'static str = "io.kestra.plugin.core.kv.Get";
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        KvGet(KeyRef::parse(f))
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        self.0.templates()
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let (namespace, key) = self.0.address(cx).await?;
        let entry = cx
            .lookups
            .kv_store()?
            .kv_get(&namespace, &key)
            .await
            .map_err(|e| format!("the KV store could not be read: {e}"))?;
        let value = match entry {
            Some(entry) => entry.value,
            None if self.0.error_on_missing => return Err(missing(&namespace, &key)),
            None => Value::Null,
        };
        let mut outputs = Map::new();
        outputs.insert("value".into(), value);
        Ok(outputs)
    }
}
