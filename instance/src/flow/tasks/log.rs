//! `io.kestra.plugin.core.log.Log`: logs one or several messages.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Context, TaskType};
use crate::flow::error::ProblemKind;
use crate::flow::model::LogLevel;
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// One or several message templates.
    pub messages: Vec<String>,
    pub level: LogLevel,
}

impl TaskType for Log {
    const NAME: &'static str = "io.kestra.plugin.core.log.Log";
    const ALIASES: &'static [&'static str] = &["io.kestra.core.tasks.log.Log"];
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        let present = f.has("message");
        let messages = f.strings("message");
        if !present {
            f.missing("message");
        }
        let level = match f.string("level") {
            None => LogLevel::Info,
            Some(name) => LogLevel::from_name(&name).unwrap_or_else(|| {
                f.report(
                    "level",
                    ProblemKind::Field,
                    format!("unknown level `{name}`; supported: TRACE, DEBUG, INFO, WARN, ERROR"),
                );
                LogLevel::Info
            }),
        };
        Log { messages, level }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        self.messages
            .iter()
            .map(|m| ("message", m.as_str()))
            .collect()
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        for message in &self.messages {
            let text = cx.render(message).await?;
            cx.log(self.level, text);
        }
        Ok(Map::new())
    }
}
