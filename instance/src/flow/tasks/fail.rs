//! `io.kestra.plugin.core.execution.Fail`: fails (when `condition` holds, if given).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Context, TaskType, is_truthy};
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fail {
    pub condition: Option<String>,
    pub error_message: String,
}

impl TaskType for Fail {
    const NAME: &'static str = "io.kestra.plugin.core.execution.Fail";
    const ALIASES: &'static [&'static str] = &["io.kestra.core.tasks.executions.Fail"];
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        Fail {
            condition: f.string("condition"),
            error_message: f
                .string("errorMessage")
                .unwrap_or_else(|| "Task failure".into()),
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<_> = self
            .condition
            .iter()
            .map(|c| ("condition", c.as_str()))
            .collect();
        out.push(("errorMessage", self.error_message.as_str()));
        out
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let fail = match &self.condition {
            Some(condition) => is_truthy(&cx.render(condition).await?),
            None => true,
        };
        if fail {
            return Err(cx.render(&self.error_message).await?);
        }
        Ok(Map::new())
    }
}
