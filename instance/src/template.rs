//! Templates in Kestra's expression language, rendered with `atoll-expr`
//! (Pebble as Kestra configures it: strict variables, Kestra's filters,
//! functions and tests, jq, Java date patterns). This module is the thin
//! adapter the engine and the task types call.

pub use atoll_expr::{ERROR_LOGS_VAR, LOOP_VALUES_VAR};

/// The variables a template sees (`flow`, `execution`, `outputs`, ...).
pub type Vars = atoll_expr::Map;

/// A template that did not render. The message names the problem and its
/// line and column in the template; it never contains the values being
/// rendered, except where a filter must quote the input it could not read
/// (`date` on text that is not a date, `number` on text that is not a
/// number), as Kestra's messages do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

impl From<atoll_expr::Error> for TemplateError {
    fn from(err: atoll_expr::Error) -> Self {
        // A lookup reaching here was rendered without the render loop of
        // `lookups` (a flowable's condition, a trigger's inputs...).
        if let Some(call) = err.lookup() {
            return TemplateError(format!(
                "{}() is only available in the properties of a runnable task, at line {}, column {}",
                call.function, err.pos.line, err.pos.column
            ));
        }
        TemplateError(format!(
            "{} at line {}, column {}",
            err.message, err.pos.line, err.pos.column
        ))
    }
}

impl TemplateError {
    /// The same error said of one property: `task `fmt` (tasks[2].format): ...`.
    pub fn in_property(&self, task: Option<&str>, property: &str) -> String {
        match task {
            Some(task) => format!("task `{task}` ({property}): {}", self.0),
            None => format!("{property}: {}", self.0),
        }
    }
}

/// The configured template engine; cheap to share.
#[derive(Debug, Default)]
pub struct Templates {
    engine: atoll_expr::Engine,
}

impl Templates {
    pub fn new() -> Self {
        Self::default()
    }

    /// The expression engine (the render loop of `lookups` renders with it).
    pub(crate) fn engine(&self) -> &atoll_expr::Engine {
        &self.engine
    }

    /// Variables from a JSON map, in the map's key order.
    pub fn vars(map: &serde_json::Map<String, serde_json::Value>) -> Vars {
        atoll_expr::Engine::context_from_map(map)
    }

    /// Renders one template string. Text without `{{`, `{%` or `{#` is
    /// returned as is.
    pub fn render(&self, source: &str, vars: &Vars) -> Result<String, TemplateError> {
        Ok(self.engine.render(source, vars)?)
    }

    /// Renders every string inside a JSON value.
    pub fn render_json(
        &self,
        value: &serde_json::Value,
        vars: &Vars,
    ) -> Result<serde_json::Value, TemplateError> {
        Ok(self.engine.render_json(value, vars)?)
    }

    /// Renders a JSON value keeping types: a string that is exactly one
    /// `{{ expression }}` becomes the expression's value (a number stays a
    /// number, a list a list); other strings render to strings; lists and
    /// maps are rendered item by item.
    pub fn evaluate_json(
        &self,
        value: &serde_json::Value,
        vars: &Vars,
    ) -> Result<serde_json::Value, TemplateError> {
        Ok(self.evaluate_json_with(value, vars, &atoll_expr::Lookups::new())?)
    }

    /// [`Templates::evaluate_json`] with the answers known so far to lookup
    /// calls (see `crate::lookups`).
    pub(crate) fn evaluate_json_with(
        &self,
        value: &serde_json::Value,
        vars: &Vars,
        lookups: &atoll_expr::Lookups,
    ) -> Result<serde_json::Value, atoll_expr::Error> {
        use serde_json::Value as J;
        Ok(match value {
            J::String(s) if s.contains("{{") => {
                self.engine.evaluate_with(s, vars, lookups)?.to_serde()
            }
            J::String(s) => J::String(self.engine.render_with(s, vars, lookups)?),
            J::Array(items) => J::Array(
                items
                    .iter()
                    .map(|item| self.evaluate_json_with(item, vars, lookups))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(map) => J::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.evaluate_json_with(v, vars, lookups)?)))
                    .collect::<Result<_, atoll_expr::Error>>()?,
            ),
            other => other.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(source: &str, ctx: serde_json::Value) -> Result<String, TemplateError> {
        let serde_json::Value::Object(map) = ctx else {
            panic!("context must be an object")
        };
        Templates::new().render(source, &Templates::vars(&map))
    }

    #[test]
    fn pebble_ternary_coalesce_and_equals() {
        let ctx = serde_json::json!({"n": 3, "v": "value 2", "outputs": {}});
        assert_eq!(
            render("{{ n == 3 ? 'ok' : ko }}", ctx.clone()).as_deref(),
            Ok("ok")
        );
        assert!(render("{{ n == 2 ? 'ok' : ko }}", ctx.clone()).is_err());
        assert_eq!(
            render("{{ v equals 'value 2' }}", ctx.clone()).as_deref(),
            Ok("true")
        );
        assert_eq!(
            render("{{ outputs.missing.value ?? 'fallback' }}", ctx.clone()).as_deref(),
            Ok("fallback")
        );
        assert_eq!(
            render("{{ outputs.not_existing ?? '' }}", ctx).as_deref(),
            Ok("")
        );
    }

    #[test]
    fn undefined_variables_fail_when_printed() {
        let err = render("{{ missingVar }}", serde_json::json!({})).expect_err("strict");
        assert!(err.to_string().contains("missingVar"), "{err}");
        assert_eq!(
            render("{{ x is defined }}", serde_json::json!({})).as_deref(),
            Ok("false")
        );
    }

    #[test]
    fn maps_print_as_compact_json_and_filters_work() {
        let ctx = serde_json::json!({"o": {"value": "x"}, "s": "{\"key\": \"k\"}"});
        assert_eq!(
            render("{{ o }}", ctx.clone()).as_deref(),
            Ok("{\"value\":\"x\"}")
        );
        assert_eq!(
            render("{{ s | jq('.key') }}", ctx.clone()).as_deref(),
            Ok("[\"k\"]")
        );
        assert_eq!(
            render("{{ s is json }}", ctx.clone()).as_deref(),
            Ok("true")
        );
        assert_eq!(render("{{ json(s).key }}", ctx.clone()).as_deref(), Ok("k"));
        assert_eq!(
            render("{{ o | toJson }}", ctx).as_deref(),
            Ok("{\"value\":\"x\"}")
        );
    }

    #[test]
    fn current_each_output_walks_loop_values() {
        let ctx = serde_json::json!({
            "outputs": {"t": {"a": {"b": {"value": "ab"}}}},
            LOOP_VALUES_VAR: ["a", "b"],
        });
        assert_eq!(
            render("{{ currentEachOutput(outputs['t']).value }}", ctx).as_deref(),
            Ok("ab")
        );
    }

    #[test]
    fn whitespace_control_and_error_logs() {
        let ctx =
            serde_json::json!({ERROR_LOGS_VAR: [{"taskId": "failed", "message": "Task failure"}]});
        let source = "{%- for log in errorLogs() -%}\n- task: {{ log.taskId }}, message: {{ log.message }}\n{%- endfor -%}\n";
        assert_eq!(
            render(source, ctx).as_deref(),
            Ok("- task: failed, message: Task failure")
        );
    }

    #[test]
    fn runaway_templates_run_out_of_fuel() {
        let err = render(
            "{% for i in range(0, 100000) %}{% for j in range(0, 100000) %}{% endfor %}{% endfor %}",
            serde_json::json!({}),
        );
        assert!(err.is_err());
    }

    #[test]
    fn errors_name_the_filter_and_where_it_is() {
        let err = render("{{ 'x' | dtae }}", serde_json::json!({})).expect_err("unknown filter");
        let message = err.in_property(Some("fmt"), "tasks[2].format");
        assert!(
            message.starts_with("task `fmt` (tasks[2].format): "),
            "{message}"
        );
        assert!(message.contains("dtae"), "{message}");
        assert!(message.contains("line 1, column"), "{message}");
    }

    #[test]
    fn single_expressions_keep_their_type() {
        let vars = Templates::vars(
            &serde_json::from_str(r#"{"a": 11, "b": [1, 2]}"#).expect("a JSON object"),
        );
        let t = Templates::new();
        let value = serde_json::json!({"n": "{{ a + 13 }}", "l": "{{ b }}", "s": "n={{ a }}"});
        assert_eq!(
            t.evaluate_json(&value, &vars),
            Ok(serde_json::json!({"n": 24, "l": [1, 2], "s": "n=11"}))
        );
    }
}
