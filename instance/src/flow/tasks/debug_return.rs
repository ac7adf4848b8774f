//! `io.kestra.plugin.core.debug.Return`: renders `format` into the output `value`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Context, TaskType};
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Return {
    pub format: Option<String>,
}

impl TaskType for Return {
    const NAME: &'static str = "io.kestra.plugin.core.debug.Return";
    const ALIASES: &'static [&'static str] = &["io.kestra.core.tasks.debugs.Return"];
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        Return {
            format: f.string("format"),
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        self.format.iter().map(|f| ("format", f.as_str())).collect()
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let value = match &self.format {
            Some(format) => cx.render(format).await?,
            None => String::new(),
        };
        let mut outputs = Map::new();
        outputs.insert("value".into(), Value::String(value));
        Ok(outputs)
    }
}
