//! `io.kestra.plugin.core.execution.Assert`: renders each of `conditions`
//! and fails when any is falsy (Kestra's truthiness), after logging each
//! failed one; `errorMessage` adds context to the failure.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{Context, TaskType, is_truthy};
use crate::flow::error::ProblemKind;
use crate::flow::model::LogLevel;
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Assert {
    /// Templates, each of which must render truthy.
    pub conditions: Vec<String>,
    pub error_message: Option<String>,
}

impl TaskType for Assert {
    const NAME: &'static str = "io.kestra.plugin.core.execution.Assert";
    const REPEATABLE: bool = true;

    fn parse(f: &mut Fields<'_>) -> Self {
        let present = f.has("conditions");
        let conditions = f.strings("conditions");
        if !present {
            f.missing("conditions");
        } else if conditions.is_empty() && !f.problem_at("conditions") {
            f.report(
                "conditions",
                ProblemKind::Field,
                "must hold at least one condition".into(),
            );
        }
        Assert {
            conditions,
            error_message: f.string("errorMessage"),
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut out: Vec<_> = self
            .conditions
            .iter()
            .map(|c| ("conditions", c.as_str()))
            .collect();
        out.extend(self.error_message.as_deref().map(|m| ("errorMessage", m)));
        out
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let mut failed = 0;
        for condition in &self.conditions {
            match cx.render(condition).await {
                Ok(text) if is_truthy(&text) => {}
                Ok(_) => {
                    failed += 1;
                    cx.log(LogLevel::Error, format!("Assertion `{condition}` failed!"));
                }
                Err(err) => {
                    failed += 1;
                    cx.log(
                        LogLevel::Error,
                        format!("Assertion `{condition}` failed, failed to render `{err}`"),
                    );
                }
            }
        }
        if failed == 0 {
            return Ok(Map::new());
        }
        let plural = if failed > 1 { "s" } else { "" };
        let mut message = format!("{failed} assertion{plural} failed!");
        if let Some(extra) = &self.error_message {
            message.push('\n');
            message.push_str(&cx.render(extra).await?);
        }
        Err(message)
    }
}

#[cfg(test)]
mod tests {
    use crate::flow::{FlowError, parse};

    #[test]
    fn conditions_are_required() {
        let source = "id: a\nnamespace: t\ntasks:\n  - id: check\n    type: io.kestra.plugin.core.execution.Assert\n";
        let Err(FlowError::Invalid { problems }) = parse(source) else {
            panic!("an Assert without conditions is refused");
        };
        assert_eq!(problems[0].path, "tasks[0].conditions");
    }
}
