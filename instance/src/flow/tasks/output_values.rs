//! `io.kestra.plugin.core.output.OutputValues`: renders `values` into the output `values`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Context, TaskType, strings_in};
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputValues {
    pub values: Map<String, Value>,
}

impl TaskType for OutputValues {
    const NAME: &'static str = "io.kestra.plugin.core.output.OutputValues";
    const ALIASES: &'static [&'static str] = &["io.kestra.core.tasks.outputs.OutputValues"];
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        OutputValues {
            values: f.object("values"),
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        self.values
            .values()
            .flat_map(strings_in)
            .map(|s| ("values", s))
            .collect()
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let rendered = cx.render_json(&Value::Object(self.values.clone())).await?;
        let mut outputs = Map::new();
        outputs.insert("values".into(), rendered);
        Ok(outputs)
    }
}
