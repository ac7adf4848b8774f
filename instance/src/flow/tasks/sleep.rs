//! `io.kestra.plugin.core.flow.Sleep`: waits for `duration`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Context, TaskType};
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sleep {
    pub duration: Duration,
}

impl TaskType for Sleep {
    const NAME: &'static str = "io.kestra.plugin.core.flow.Sleep";
    const ALIASES: &'static [&'static str] = &["io.kestra.core.tasks.flows.Sleep"];
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        Sleep {
            duration: f.required_duration("duration"),
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        Vec::new()
    }

    async fn run(&self, _cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        tokio::time::sleep(self.duration).await;
        Ok(Map::new())
    }
}
