//! `io.kestra.plugin.core.kv.Delete`: deletes a KV entry; the output
//! `deleted` says whether there was one (a missing key fails with
//! `errorOnMissing`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::kv_set::{KeyRef, missing};
use super::{Context, TaskType};
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KvDelete(pub KeyRef);

impl TaskType for KvDelete {
    const NAME: &'static str = "io.kestra.plugin.core.kv.Delete";
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        KvDelete(KeyRef::parse(f))
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        self.0.templates()
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let (namespace, key) = self.0.address(cx).await?;
        let deleted = cx
            .lookups
            .kv_store()?
            .kv_delete(&namespace, &key)
            .await
            .map_err(|e| format!("the KV store could not be written: {e}"))?;
        if !deleted && self.0.error_on_missing {
            return Err(missing(&namespace, &key));
        }
        let mut outputs = Map::new();
        outputs.insert("deleted".into(), Value::Bool(deleted));
        Ok(outputs)
    }
}
