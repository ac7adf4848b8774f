//! Kestra's `::{...}::` lines, read as Kestra reads them: a line that is
//! `::` + a JSON object + `::` talks to the engine (it is not logged
//! itself). Its `outputs` set outputs, its `metrics` are metrics
//! (`counter`, `timer`, `gauge`), its `logs` are log lines at their level,
//! its `assets` are accepted (the instance keeps no asset catalog). What
//! Kestra's Python library (`from kestra import Kestra`) prints is such
//! lines.

use serde_json::{Map, Value};

use crate::flow::model::LogLevel;

/// One `::{...}::` line, read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Message {
    /// The outputs it sets (merged over earlier ones, key by key).
    pub outputs: Map<String, Value>,
    /// Its metrics, in order.
    pub metrics: Vec<Metric>,
    /// Its log lines, in order.
    pub logs: Vec<(LogLevel, String)>,
    /// Whether it declared assets (accepted, not kept).
    pub assets: bool,
    /// What in it could not be read (each said as a warning).
    pub problems: Vec<String>,
}

/// A metric a script sent: `{"name", "type", "value", "tags"}`.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub name: String,
    pub kind: MetricKind,
    /// A count, a gauge's value, or a timer's duration in seconds.
    pub value: f64,
    /// Its tags by name, values as text (as Kestra keeps them).
    pub tags: Vec<(String, String)>,
}

/// Kestra's metric types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Timer,
    Gauge,
}

impl MetricKind {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "counter" => Some(MetricKind::Counter),
            "timer" => Some(MetricKind::Timer),
            "gauge" => Some(MetricKind::Gauge),
            _ => None,
        }
    }

    /// Kestra's name of the type.
    pub fn name(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Timer => "timer",
            MetricKind::Gauge => "gauge",
        }
    }
}

impl std::fmt::Display for Metric {
    /// `metric counter rows = 3 (table=users)`; a timer's value in seconds.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = if self.kind == MetricKind::Timer {
            "s"
        } else {
            ""
        };
        let kind = self.kind.name();
        write!(f, "metric {kind} {} = {}{unit}", self.name, self.value)?;
        if !self.tags.is_empty() {
            let tags: Vec<String> = self.tags.iter().map(|(k, v)| format!("{k}={v}")).collect();
            write!(f, " ({})", tags.join(", "))?;
        }
        Ok(())
    }
}

/// `Some` when `line` is a `::{...}::` line (surrounding blanks aside):
/// the message read, or what is wrong with its JSON. `None` for any
/// other line, which is an ordinary log line.
pub fn read(line: &str) -> Option<Message> {
    let inner = line.trim().strip_prefix("::")?.strip_suffix("::")?;
    if !(inner.starts_with('{') && inner.ends_with('}')) {
        return None;
    }
    let map = match serde_json::from_str::<Map<String, Value>>(inner) {
        Ok(map) => map,
        Err(e) => {
            return Some(Message {
                problems: vec![format!("invalid `::{{...}}::` line: {e}")],
                ..Message::default()
            });
        }
    };
    let mut message = Message::default();
    match map.get("outputs") {
        Some(Value::Object(outputs)) => message.outputs = outputs.clone(),
        Some(Value::Null) | None => {}
        Some(_) => message.problems.push("`outputs` must be an object".into()),
    }
    for item in list(&map, "metrics", &mut message.problems) {
        match metric(item) {
            Ok(metric) => message.metrics.push(metric),
            Err(problem) => message.problems.push(problem),
        }
    }
    for item in list(&map, "logs", &mut message.problems) {
        let level = item.get("level").and_then(Value::as_str).unwrap_or("INFO");
        let level = LogLevel::from_name(level)
            .or_else(|| (level == "WARNING").then_some(LogLevel::Warn))
            .unwrap_or(LogLevel::Info);
        match item.get("message") {
            Some(Value::String(text)) => message.logs.push((level, text.clone())),
            Some(Value::Null) | None => {}
            Some(other) => message.logs.push((level, other.to_string())),
        }
    }
    message.assets = map.get("assets").is_some_and(|a| !a.is_null());
    Some(message)
}

/// The array under `key` (none when absent or null).
fn list<'m>(map: &'m Map<String, Value>, key: &str, problems: &mut Vec<String>) -> &'m [Value] {
    match map.get(key) {
        Some(Value::Array(items)) => items,
        Some(Value::Null) | None => &[],
        Some(_) => {
            problems.push(format!("`{key}` must be a list"));
            &[]
        }
    }
}

/// One metric; what is wrong with it, naming it.
fn metric(item: &Value) -> Result<Metric, String> {
    let name = item
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or("a metric without `name` was ignored")?;
    let kind = item.get("type").and_then(Value::as_str).unwrap_or_default();
    let kind = MetricKind::from_name(kind).ok_or_else(|| {
        format!(
            "metric `{name}` ignored: `type` must be `counter`, `timer` or `gauge`, not `{kind}`"
        )
    })?;
    let value = item
        .get("value")
        .and_then(Value::as_f64)
        .ok_or_else(|| format!("metric `{name}` ignored: `value` must be a number"))?;
    let tags = match item.get("tags") {
        Some(Value::Object(tags)) => tags
            .iter()
            .map(|(k, v)| {
                let text = v.as_str().map(str::to_owned).unwrap_or(v.to_string());
                (k.clone(), text)
            })
            .collect(),
        Some(Value::Null) | None => Vec::new(),
        Some(_) => return Err(format!("metric `{name}` ignored: `tags` must be an object")),
    };
    Ok(Metric {
        name: name.to_owned(),
        kind,
        value,
        tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn kestra_lines_are_recognised() {
        let message = read(r#"::{"outputs":{"n":1,"s":"x"}}::"#).expect("message");
        assert_eq!(Value::Object(message.outputs), json!({"n": 1, "s": "x"}));
        let logs = read(r#"  ::{"logs":[{"level":"WARN","message":"m"}]}::"#).expect("logs");
        assert_eq!(logs.logs, vec![(LogLevel::Warn, "m".to_owned())]);
        assert_eq!(read("plain"), None);
        assert_eq!(read("::not json::"), None);
        let other = read(r#"::{"other":1}::"#).expect("an object is a message");
        assert_eq!(other, Message::default());
        let broken = read(r#"::{"outputs": }::"#).expect("broken");
        assert!(broken.problems[0].starts_with("invalid `::{...}::` line"));
    }

    #[test]
    fn metrics_of_each_type_are_read_and_bad_ones_said() {
        let line = r#"::{"metrics": [
            {"name": "rows", "type": "counter", "value": 3, "tags": {"table": "users", "n": 2}},
            {"name": "took", "type": "timer", "value": 1.5, "tags": {}},
            {"name": "ratio", "type": "gauge", "value": 0.25},
            {"name": "odd", "type": "histogram", "value": 1},
            {"name": "text", "type": "counter", "value": "3"}
        ]}::"#
            .replace('\n', " ");
        let message = read(&line).expect("message");
        let shown: Vec<String> = message.metrics.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "metric counter rows = 3 (n=2, table=users)",
                "metric timer took = 1.5s",
                "metric gauge ratio = 0.25",
            ]
        );
        assert_eq!(message.problems.len(), 2, "{:?}", message.problems);
        assert!(message.problems[0].contains("`odd`"));
        assert!(message.problems[1].contains("`text`"));
    }

    #[test]
    fn assets_are_accepted() {
        let message = read(r#"::{"assets": {"id": "t", "type": "TABLE"}}::"#).expect("assets");
        assert!(message.assets && message.problems.is_empty());
    }
}
