//! YAML text → [`Flow`], collecting every problem instead of stopping at the
//! first one. Structural checks across the whole flow (ids, references,
//! cycles) live in `validate`.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::{FlowError, Problem, ProblemKind};
use super::model::*;
use super::types::{TaskType, TriggerType, lookup_task_type, lookup_trigger_type};
use super::validate::{IdRule, check_id, is_valid_id};
use crate::vocabulary::Label;

/// Largest flow source accepted, in bytes.
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;

/// Deepest nesting of flow collections (`[...]`, `{...}`) accepted. The YAML
/// parser's work grows with the square of this depth (it rechecks every open
/// level at each token): 100,000 levels in 200 KB keep a core busy for a
/// minute. Real flows nest a handful of levels.
pub const MAX_FLOW_NESTING: usize = 100;

/// The deepest nesting of flow collections in `source`, counting the
/// brackets outside quoted scalars and comments. A plain scalar may hold an
/// unmatched bracket, which can only over-count by one per bracket.
fn flow_nesting(source: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut quote: Option<char> = None;
    let mut in_comment = false;
    let mut previous = '\n';
    let mut chars = source.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (_, '\n') if in_comment => in_comment = false,
            _ if in_comment => {}
            (Some('\''), '\'') if chars.peek() == Some(&'\'') => {
                chars.next();
            }
            (Some('"'), '\\') => {
                chars.next();
            }
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(c),
            (None, '#') if previous.is_whitespace() => in_comment = true,
            (None, '[' | '{') => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        previous = c;
    }
    deepest
}

/// Parses YAML into a flow without the cross-task checks of `validate`.
pub(super) fn parse_flow(source: &str) -> Result<Flow, FlowError> {
    if source.len() > MAX_SOURCE_BYTES {
        return Err(invalid(
            "$",
            ProblemKind::Field,
            format!("flow source is larger than {MAX_SOURCE_BYTES} bytes"),
        ));
    }
    if flow_nesting(source) > MAX_FLOW_NESTING {
        return Err(invalid(
            "$",
            ProblemKind::Field,
            format!(
                "flow collections ([...], {{...}}) are nested deeper than {MAX_FLOW_NESTING} levels"
            ),
        ));
    }
    let mut yaml: serde_norway::Value = serde_norway::from_str(source).map_err(yaml_error)?;
    yaml.apply_merge().map_err(yaml_error)?;
    let mut problems = Vec::new();
    let json = to_json(yaml, "$", &mut problems);
    let Value::Object(map) = json else {
        if problems.is_empty() {
            problems.push(problem(
                "$",
                None,
                ProblemKind::Field,
                "a flow must be a YAML mapping".into(),
            ));
        }
        return Err(FlowError::Invalid { problems });
    };
    let flow = {
        let mut fields = Fields::new(map, String::new(), None, &mut problems);
        let flow = flow_from_fields(&mut fields);
        fields.finish();
        flow
    };
    if problems.is_empty() {
        Ok(flow)
    } else {
        Err(FlowError::Invalid { problems })
    }
}

fn yaml_error(err: serde_norway::Error) -> FlowError {
    let (line, column) = err
        .location()
        .map(|l| (l.line(), l.column()))
        .unwrap_or((1, 1));
    let mut message = err.to_string();
    // The library appends the location to its message; it is reported apart.
    if let Some(at) = message.find(" at line ") {
        message.truncate(at);
    }
    FlowError::Yaml {
        line,
        column,
        message,
    }
}

fn invalid(path: &str, kind: ProblemKind, message: String) -> FlowError {
    FlowError::Invalid {
        problems: vec![problem(path, None, kind, message)],
    }
}

pub(super) fn problem(
    path: &str,
    task: Option<&str>,
    kind: ProblemKind,
    message: String,
) -> Problem {
    Problem {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.into()
        },
        task: task.map(str::to_owned),
        kind,
        message,
    }
}

/// YAML values as JSON: mapping keys that are scalars become strings (a
/// Switch case written `1:` matches the value "1"), anything else is refused.
fn to_json(value: serde_norway::Value, path: &str, problems: &mut Vec<Problem>) -> Value {
    use serde_norway::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                match n.as_f64().and_then(serde_json::Number::from_f64) {
                    Some(f) => Value::Number(f),
                    None => {
                        problems.push(problem(
                            path,
                            None,
                            ProblemKind::Field,
                            "numbers must be finite".into(),
                        ));
                        Value::Null
                    }
                }
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| to_json(item, &format!("{path}[{i}]"), problems))
                .collect(),
        ),
        Y::Mapping(mapping) => {
            let mut map = Map::new();
            for (key, item) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    Y::Bool(b) => b.to_string(),
                    Y::Number(n) => n.to_string(),
                    _ => {
                        problems.push(problem(
                            path,
                            None,
                            ProblemKind::Field,
                            "mapping keys must be strings, numbers or booleans".into(),
                        ));
                        continue;
                    }
                };
                let child = to_json(item, &format!("{path}.{key}"), problems);
                map.insert(key, child);
            }
            Value::Object(map)
        }
        Y::Tagged(tagged) => {
            problems.push(problem(
                path,
                None,
                ProblemKind::Field,
                format!("YAML tags are not supported (found `{}`)", tagged.tag),
            ));
            Value::Null
        }
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The properties of one YAML mapping being read, remembering which were
/// consumed so leftovers can be reported as unknown.
struct Fields<'p> {
    map: Map<String, Value>,
    path: String,
    task: Option<String>,
    known: Vec<&'static str>,
    problems: &'p mut Vec<Problem>,
}

impl<'p> Fields<'p> {
    fn new(
        map: Map<String, Value>,
        path: String,
        task: Option<String>,
        problems: &'p mut Vec<Problem>,
    ) -> Self {
        Fields {
            map,
            path,
            task,
            known: Vec::new(),
            problems,
        }
    }

    fn field_path(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    fn report(&mut self, key: &str, kind: ProblemKind, message: String) {
        let path = self.field_path(key);
        self.problems
            .push(problem(&path, self.task.as_deref(), kind, message));
    }

    fn take(&mut self, key: &'static str) -> Option<Value> {
        self.known.push(key);
        self.map.remove(key)
    }

    fn has(&self, key: &str) -> bool {
        self.map.contains_key(key)
    }

    fn wrong_type(&mut self, key: &str, expected: &str, found: &Value) {
        let message = format!("must be {expected}, found {}", type_name(found));
        self.report(key, ProblemKind::Field, message);
    }

    fn missing(&mut self, key: &str) {
        self.report(key, ProblemKind::Field, "is required".into());
    }

    fn string(&mut self, key: &'static str) -> Option<String> {
        match self.take(key)? {
            Value::String(s) => Some(s),
            Value::Null => None,
            // Scalars written unquoted (`value: 12`) are their text, as in Kestra.
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            other => {
                self.wrong_type(key, "a string", &other);
                None
            }
        }
    }

    fn required_string(&mut self, key: &'static str) -> String {
        let value = self.string(key);
        if value.is_none() && !self.problem_at(key) {
            self.missing(key);
        }
        value.unwrap_or_default()
    }

    fn problem_at(&self, key: &str) -> bool {
        let path = self.field_path(key);
        self.problems.iter().any(|p| p.path == path)
    }

    fn bool(&mut self, key: &'static str, default: bool) -> bool {
        match self.take(key) {
            None | Some(Value::Null) => default,
            Some(Value::Bool(b)) => b,
            Some(Value::String(s)) if s == "true" || s == "false" => s == "true",
            Some(other) => {
                self.wrong_type(key, "a boolean", &other);
                default
            }
        }
    }

    fn u32(&mut self, key: &'static str) -> Option<u32> {
        let value = self.take(key)?;
        match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
            Some(n) => Some(n),
            None if value.is_null() => None,
            None => {
                self.wrong_type(key, "a non-negative integer", &value);
                None
            }
        }
    }

    fn f64(&mut self, key: &'static str) -> Option<f64> {
        let value = self.take(key)?;
        match value.as_f64() {
            Some(n) if n.is_finite() && n > 0.0 => Some(n),
            _ if value.is_null() => None,
            _ => {
                self.wrong_type(key, "a positive number", &value);
                None
            }
        }
    }

    fn duration(&mut self, key: &'static str) -> Option<Duration> {
        let text = self.string(key)?;
        match parse_duration(&text) {
            Ok(d) => Some(d),
            Err(message) => {
                self.report(key, ProblemKind::Field, message);
                None
            }
        }
    }

    fn required_duration(&mut self, key: &'static str) -> Duration {
        let value = self.duration(key);
        if value.is_none() && !self.problem_at(key) {
            self.missing(key);
        }
        value.unwrap_or_default()
    }

    fn value(&mut self, key: &'static str) -> Option<Value> {
        self.take(key).filter(|v| !v.is_null())
    }

    fn object(&mut self, key: &'static str) -> Map<String, Value> {
        match self.take(key) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(map)) => map,
            Some(other) => {
                self.wrong_type(key, "a mapping", &other);
                Map::new()
            }
        }
    }

    /// A list of strings; a single string is a list of one.
    fn strings(&mut self, key: &'static str) -> Vec<String> {
        match self.take(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(s)) => vec![s],
            Some(Value::Array(items)) => {
                let mut out = Vec::with_capacity(items.len());
                for (i, item) in items.into_iter().enumerate() {
                    match item {
                        Value::String(s) => out.push(s),
                        Value::Number(n) => out.push(n.to_string()),
                        Value::Bool(b) => out.push(b.to_string()),
                        other => {
                            let message = format!("must be a string, found {}", type_name(&other));
                            self.report(&format!("{key}[{i}]"), ProblemKind::Field, message);
                        }
                    }
                }
                out
            }
            Some(other) => {
                self.wrong_type(key, "a list of strings", &other);
                Vec::new()
            }
        }
    }

    fn list(&mut self, key: &'static str) -> Vec<Value> {
        match self.take(key) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.wrong_type(key, "a list", &other);
                Vec::new()
            }
        }
    }

    fn tasks(&mut self, key: &'static str) -> Vec<Task> {
        let items = self.list(key);
        let base = self.field_path(key);
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, item)| parse_task(item, format!("{base}[{i}]"), self.problems))
            .collect()
    }

    fn required_tasks(&mut self, key: &'static str) -> Vec<Task> {
        let present = self.has(key);
        let tasks = self.tasks(key);
        if !present {
            self.missing(key);
        } else if tasks.is_empty() && !self.problem_at(key) {
            let flagged = self
                .problems
                .iter()
                .any(|p| p.path.starts_with(&self.field_path(key)));
            if !flagged {
                self.report(
                    key,
                    ProblemKind::Field,
                    "must hold at least one task".into(),
                );
            }
        }
        tasks
    }

    fn retry(&mut self, key: &'static str) -> Option<Retry> {
        let value = self.value(key)?;
        let Value::Object(map) = value else {
            self.wrong_type(key, "a mapping", &value);
            return None;
        };
        let path = self.field_path(key);
        let mut fields = Fields::new(map, path, self.task.clone(), self.problems);
        let retry = retry_from_fields(&mut fields);
        fields.finish();
        retry
    }

    /// Reports every property that was not consumed.
    fn finish(mut self) {
        let leftovers: Vec<String> = self.map.keys().cloned().collect();
        if leftovers.is_empty() {
            return;
        }
        let mut known = self.known.clone();
        known.sort_unstable();
        known.dedup();
        for key in leftovers {
            let message = format!("unknown property; expected one of: {}", known.join(", "));
            self.report(&key, ProblemKind::UnknownField, message);
        }
        self.map.clear();
    }
}

/// An ISO-8601 duration (`PT1S`, `PT0.250S`, `PT15M`, `P1D`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let signed: jiff::SignedDuration = text
        .parse()
        .map_err(|_| format!("`{text}` is not an ISO-8601 duration such as PT30S or PT1H"))?;
    Duration::try_from(signed).map_err(|_| format!("`{text}` must not be negative"))
}

fn flow_from_fields(f: &mut Fields<'_>) -> Flow {
    let id = f.required_string("id");
    let namespace = f.required_string("namespace");
    // Exported flows carry the revision the server gave them; it is the
    // store's to assign, so the written value is ignored.
    let _ = f.take("revision");
    let description = f.string("description");
    let labels = labels_from(f);
    let inputs = inputs_from(f, "inputs");
    let variables = f.object("variables");
    let tasks = f.required_tasks("tasks");
    let errors = f.tasks("errors");
    let finally = f.tasks("finally");
    let outputs = outputs_from(f);
    let disabled = f.bool("disabled", false);
    let retry = f.retry("retry");
    let triggers = triggers_from(f);
    let concurrency = concurrency_from(f);
    Flow {
        id,
        namespace,
        description,
        labels,
        inputs,
        variables,
        tasks,
        errors,
        finally,
        outputs,
        disabled,
        retry,
        triggers,
        concurrency,
    }
}

fn labels_from(f: &mut Fields<'_>) -> Vec<Label> {
    let mut labels = Vec::new();
    match f.take("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match scalar_text(&value) {
                    Some(value) => labels.push(Label { key, value }),
                    None => f.report(
                        &format!("labels.{key}"),
                        ProblemKind::Field,
                        "label values must be strings".into(),
                    ),
                }
            }
        }
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                let key = item.get("key").and_then(scalar_text);
                let value = item.get("value").and_then(scalar_text);
                match (key, value) {
                    (Some(key), Some(value)) => labels.push(Label { key, value }),
                    _ => f.report(
                        &format!("labels[{i}]"),
                        ProblemKind::Field,
                        "must be a mapping with string `key` and `value`".into(),
                    ),
                }
            }
        }
        Some(other) => f.wrong_type("labels", "a mapping or a list", &other),
    }
    labels
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn inputs_from(f: &mut Fields<'_>, key: &'static str) -> Vec<Input> {
    let items = f.list(key);
    let mut inputs = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = f.field_path(&format!("{key}[{i}]"));
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                None,
                ProblemKind::Field,
                "an input must be a mapping".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path, None, f.problems);
        // `name` is Kestra's older spelling of `id`.
        let id = match g.string("id") {
            Some(id) => id,
            None => g.required_string("name"),
        };
        let kind = input_type(&mut g, "type", true);
        let required = g.bool("required", true);
        let defaults = g.value("defaults");
        let description = g.string("description");
        let values = g.strings("values");
        let item_type = if g.has("itemType") {
            input_type(&mut g, "itemType", false)
        } else {
            None
        };
        if kind == Some(InputType::Select) && values.is_empty() && !g.problem_at("values") {
            g.report(
                "values",
                ProblemKind::Field,
                "a SELECT input needs a non-empty `values` list".into(),
            );
        }
        g.finish();
        if let Some(kind) = kind {
            inputs.push(Input {
                id,
                kind,
                required,
                defaults,
                description,
                values,
                item_type,
            });
        }
    }
    inputs
}

fn input_type(f: &mut Fields<'_>, key: &'static str, required: bool) -> Option<InputType> {
    let name = if required {
        f.required_string(key)
    } else {
        f.string(key)?
    };
    if name.is_empty() {
        return None;
    }
    let kind = InputType::from_name(&name);
    if kind.is_none() {
        let known: Vec<&str> = InputType::NAMES.iter().map(|(n, _)| *n).collect();
        f.report(
            key,
            ProblemKind::Field,
            format!("unknown type `{name}`; supported: {}", known.join(", ")),
        );
    }
    kind
}

fn outputs_from(f: &mut Fields<'_>) -> Vec<FlowOutput> {
    let items = f.list("outputs");
    let mut outputs = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = f.field_path(&format!("outputs[{i}]"));
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                None,
                ProblemKind::Field,
                "an output must be a mapping".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path, None, f.problems);
        let id = g.required_string("id");
        let kind = input_type(&mut g, "type", true);
        let value = g.value("value");
        if value.is_none() && !g.problem_at("value") {
            g.missing("value");
        }
        let required = g.bool("required", true);
        let _description = g.string("description");
        g.finish();
        if let (Some(kind), Some(value)) = (kind, value) {
            outputs.push(FlowOutput {
                id,
                kind,
                value,
                required,
            });
        }
    }
    outputs
}

fn triggers_from(f: &mut Fields<'_>) -> Vec<Trigger> {
    let items = f.list("triggers");
    let mut triggers = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        let path = f.field_path(&format!("triggers[{i}]"));
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                None,
                ProblemKind::Field,
                "a trigger must be a mapping".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path, None, f.problems);
        let id = g.required_string("id");
        let id_path = g.field_path("id");
        check_id(&id, &id_path, IdRule::Task, g.problems);
        let type_name = g.required_string("type");
        let disabled = g.bool("disabled", false);
        let _description = g.string("description");
        let kind = if type_name.is_empty() {
            None
        } else {
            match lookup_trigger_type(&type_name) {
                Ok(TriggerType::Schedule) => schedule_from(&mut g),
                Ok(TriggerType::Webhook) => webhook_from(&mut g),
                Ok(TriggerType::Flow) => flow_trigger_from(&mut g),
                Err((kind, message)) => {
                    g.report("type", kind, message);
                    g.map.clear();
                    None
                }
            }
        };
        g.finish();
        if let Some(kind) = kind {
            triggers.push(Trigger {
                id,
                type_name,
                disabled,
                kind,
            });
        }
    }
    triggers
}

fn concurrency_from(f: &mut Fields<'_>) -> Option<Concurrency> {
    let value = f.value("concurrency")?;
    let Value::Object(map) = value else {
        f.wrong_type(
            "concurrency",
            "a mapping with `limit` and `behavior`",
            &value,
        );
        return None;
    };
    let path = f.field_path("concurrency");
    let mut g = Fields::new(map, path, None, f.problems);
    let limit = g.u32("limit");
    match limit {
        None if !g.problem_at("limit") => g.missing("limit"),
        Some(0) => g.report("limit", ProblemKind::Field, "must be at least 1".into()),
        _ => {}
    }
    let behavior = match g.string("behavior").as_deref() {
        None | Some("QUEUE") => ConcurrencyBehavior::Queue,
        Some("CANCEL") => ConcurrencyBehavior::Cancel,
        Some("FAIL") => ConcurrencyBehavior::Fail,
        Some(_) => {
            g.report(
                "behavior",
                ProblemKind::Field,
                "must be QUEUE, CANCEL or FAIL".into(),
            );
            ConcurrencyBehavior::Queue
        }
    };
    g.finish();
    Some(Concurrency {
        limit: limit.filter(|l| *l > 0)?,
        behavior,
    })
}

fn timestamp(f: &mut Fields<'_>, key: &'static str) -> Option<jiff::Timestamp> {
    let text = f.string(key)?;
    match text.parse::<jiff::Timestamp>() {
        Ok(ts) => Some(ts),
        Err(_) => {
            f.report(
                key,
                ProblemKind::Field,
                "must be an RFC 3339 date-time with an offset, such as 2024-01-01T00:00:00Z".into(),
            );
            None
        }
    }
}

fn schedule_from(f: &mut Fields<'_>) -> Option<TriggerKind> {
    let cron = f.required_string("cron");
    let with_seconds = f.bool("withSeconds", false);
    let timezone = f.string("timezone");
    let inputs = f.object("inputs");
    let recover = match f.string("recoverMissedSchedules").as_deref() {
        None | Some("ALL") => RecoverMissed::All,
        Some("LAST") => RecoverMissed::Last,
        Some("NONE") => RecoverMissed::None,
        Some(_) => {
            f.report(
                "recoverMissedSchedules",
                ProblemKind::Field,
                "must be ALL, LAST or NONE".into(),
            );
            RecoverMissed::All
        }
    };
    let (backfill_start, backfill_end) = match f.value("backfill") {
        None => (None, None),
        Some(Value::Object(map)) => {
            let path = f.field_path("backfill");
            let mut g = Fields::new(map, path, None, f.problems);
            let start = timestamp(&mut g, "start");
            if start.is_none() && !g.problem_at("start") {
                g.missing("start");
            }
            let end = timestamp(&mut g, "end");
            g.finish();
            (start, end)
        }
        Some(other) => {
            f.wrong_type(
                "backfill",
                "a mapping with `start` (and optional `end`)",
                &other,
            );
            (None, None)
        }
    };
    if cron.is_empty() {
        return None;
    }
    let spec = ScheduleTrigger {
        cron,
        with_seconds,
        timezone,
        backfill_start,
        backfill_end,
        inputs,
        recover,
    };
    if let Err(err) = spec.schedule() {
        let key = match err {
            crate::cron::ScheduleError::Cron { .. } => "cron",
            crate::cron::ScheduleError::TimeZone(_) => "timezone",
        };
        f.report(key, ProblemKind::Field, err.to_string());
        return None;
    }
    Some(TriggerKind::Schedule(spec))
}

fn state_list(f: &mut Fields<'_>, key: &'static str) -> Vec<crate::vocabulary::State> {
    let names = f.strings(key);
    let mut states = Vec::new();
    for name in names {
        match crate::vocabulary::State::parse(&name) {
            Some(state) => states.push(state),
            None => f.report(
                key,
                ProblemKind::Field,
                "names an unknown state; use SUCCESS, WARNING, FAILED, KILLED, CANCELLED…".into(),
            ),
        }
    }
    states
}

const CONDITION_TYPES: &[(&str, &str)] = &[
    ("io.kestra.plugin.core.condition.ExecutionFlow", "flow"),
    (
        "io.kestra.plugin.core.condition.ExecutionFlowCondition",
        "flow",
    ),
    (
        "io.kestra.core.models.conditions.types.ExecutionFlowCondition",
        "flow",
    ),
    (
        "io.kestra.plugin.core.condition.ExecutionNamespace",
        "namespace",
    ),
    (
        "io.kestra.plugin.core.condition.ExecutionNamespaceCondition",
        "namespace",
    ),
    (
        "io.kestra.core.models.conditions.types.ExecutionNamespaceCondition",
        "namespace",
    ),
    ("io.kestra.plugin.core.condition.ExecutionStatus", "status"),
    (
        "io.kestra.plugin.core.condition.ExecutionStatusCondition",
        "status",
    ),
    (
        "io.kestra.core.models.conditions.types.ExecutionStatusCondition",
        "status",
    ),
];

fn flow_trigger_from(f: &mut Fields<'_>) -> Option<TriggerKind> {
    let states = state_list(f, "states");
    let inputs = f.object("inputs");
    let mut conditions = Vec::new();
    // Conditions are a list, or (older flows) a mapping of name to condition.
    let items: Vec<Value> = match f.take("conditions") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items,
        Some(Value::Object(map)) => map.into_iter().map(|(_, v)| v).collect(),
        Some(other) => {
            f.wrong_type("conditions", "a list of conditions", &other);
            Vec::new()
        }
    };
    for (i, item) in items.into_iter().enumerate() {
        let path = f.field_path(&format!("conditions[{i}]"));
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                None,
                ProblemKind::Field,
                "a condition must be a mapping".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path, None, f.problems);
        let kind = g.required_string("type");
        let known = CONDITION_TYPES.iter().find(|(name, _)| *name == kind);
        match known.map(|(_, k)| *k) {
            Some("flow") => {
                let namespace = g.required_string("namespace");
                let flow_id = g.required_string("flowId");
                conditions.push(FlowCondition::Flow { namespace, flow_id });
            }
            Some("namespace") => {
                let namespace = g.required_string("namespace");
                let prefix = g.bool("prefix", false);
                conditions.push(FlowCondition::Namespace { namespace, prefix });
            }
            Some(_) => {
                let within = state_list(&mut g, "in");
                let except = state_list(&mut g, "notIn");
                conditions.push(FlowCondition::Status { within, except });
            }
            None if kind.is_empty() => {}
            None => {
                let supported: Vec<&str> = CONDITION_TYPES
                    .iter()
                    .filter(|(name, _)| name.starts_with("io.kestra.plugin"))
                    .map(|(name, _)| *name)
                    .collect();
                g.report(
                    "type",
                    ProblemKind::Unsupported,
                    format!(
                        "this condition type is not supported; supported: {}",
                        supported.join(", ")
                    ),
                );
                g.map.clear();
            }
        }
        g.finish();
    }
    // Kestra's newer form: preconditions.flows (one upstream flow here).
    if let Some(value) = f.value("preconditions") {
        let path = f.field_path("preconditions");
        match value {
            Value::Object(map) => {
                let mut g = Fields::new(map, path, None, f.problems);
                let _id = g.string("id");
                let flows = g.list("flows");
                if flows.len() > 1 {
                    g.report(
                        "flows",
                        ProblemKind::Unsupported,
                        "preconditions on several flows (all within a time window) are not supported yet; use one".into(),
                    );
                }
                for (i, item) in flows.into_iter().enumerate() {
                    let path = g.field_path(&format!("flows[{i}]"));
                    let Value::Object(map) = item else {
                        g.report(
                            &format!("flows[{i}]"),
                            ProblemKind::Field,
                            "must be a mapping with namespace, flowId and states".into(),
                        );
                        continue;
                    };
                    let mut h = Fields::new(map, path, None, g.problems);
                    let namespace = h.required_string("namespace");
                    let flow_id = h.string("flowId");
                    let within = state_list(&mut h, "states");
                    h.finish();
                    match flow_id {
                        Some(flow_id) => {
                            conditions.push(FlowCondition::Flow { namespace, flow_id })
                        }
                        None => conditions.push(FlowCondition::Namespace {
                            namespace,
                            prefix: false,
                        }),
                    }
                    if !within.is_empty() {
                        conditions.push(FlowCondition::Status {
                            within,
                            except: Vec::new(),
                        });
                    }
                }
                g.finish();
            }
            other => f.wrong_type("preconditions", "a mapping", &other),
        }
    }
    if conditions.is_empty() && !f.problem_at("conditions") {
        f.report(
            "conditions",
            ProblemKind::Field,
            "a Flow trigger needs `conditions` (or `preconditions`) naming the upstream flow or namespace".into(),
        );
        return None;
    }
    Some(TriggerKind::Flow(FlowTrigger {
        states,
        conditions,
        inputs,
    }))
}

/// Shortest webhook key accepted: the key is the only secret of the URL.
const MIN_WEBHOOK_KEY: usize = 8;

fn webhook_from(f: &mut Fields<'_>) -> Option<TriggerKind> {
    let key = f.required_string("key");
    let wait = f.bool("wait", false);
    let return_outputs = f.bool("returnOutputs", false);
    let inputs = f.object("inputs");
    if key.is_empty() {
        return None;
    }
    let key_ok = key.len() >= MIN_WEBHOOK_KEY
        && key.len() <= 256
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c));
    if !key_ok {
        // The key is a secret: it is never echoed.
        f.report(
            "key",
            ProblemKind::Field,
            format!(
                "must be {MIN_WEBHOOK_KEY} to 256 URL-safe characters (letters, digits, `-`, `_`, `.`, `~`)"
            ),
        );
        return None;
    }
    Some(TriggerKind::Webhook(WebhookTrigger {
        key,
        wait,
        return_outputs,
        inputs,
    }))
}

fn retry_from_fields(f: &mut Fields<'_>) -> Option<Retry> {
    let kind = f.required_string("type");
    // Kestra spells it `maxAttempt`; `maxAttempts` is accepted too.
    let max_attempts = match f.u32("maxAttempt") {
        Some(n) => Some(n),
        None => f.u32("maxAttempts"),
    };
    let max_duration = f.duration("maxDuration");
    let warning_on_retry = f.bool("warningOnRetry", false);
    let behavior = match f.string("behavior").as_deref() {
        None | Some("RETRY_FAILED_TASK") => RetryBehavior::RetryFailedTask,
        Some("CREATE_NEW_EXECUTION") => RetryBehavior::CreateNewExecution,
        Some(other) => {
            f.report(
                "behavior",
                ProblemKind::Field,
                format!("`{other}` is not RETRY_FAILED_TASK or CREATE_NEW_EXECUTION"),
            );
            RetryBehavior::RetryFailedTask
        }
    };
    if max_attempts.is_none() && max_duration.is_none() && !f.problem_at("maxAttempt") {
        f.report(
            "maxAttempt",
            ProblemKind::Field,
            "a retry needs `maxAttempt` or `maxDuration`".into(),
        );
    }
    if max_attempts == Some(0) {
        f.report(
            "maxAttempt",
            ProblemKind::Field,
            "must be at least 1".into(),
        );
    }
    let backoff = match kind.as_str() {
        "constant" => Backoff::Constant {
            interval: f.required_duration("interval"),
        },
        "exponential" => {
            let interval = f.required_duration("interval");
            let max_interval = f.required_duration("maxInterval");
            let delay_factor = f.f64("delayFactor").unwrap_or(2.0);
            Backoff::Exponential {
                interval,
                max_interval,
                delay_factor,
            }
        }
        "random" => Backoff::Random {
            min_interval: f.required_duration("minInterval"),
            max_interval: f.required_duration("maxInterval"),
        },
        "" => return None,
        other => {
            f.report(
                "type",
                ProblemKind::Field,
                format!("unknown retry type `{other}`; supported: constant, exponential, random"),
            );
            return None;
        }
    };
    Some(Retry {
        backoff,
        max_attempts,
        max_duration,
        warning_on_retry,
        behavior,
    })
}

fn parse_task(item: Value, path: String, problems: &mut Vec<Problem>) -> Option<Task> {
    let Value::Object(map) = item else {
        problems.push(problem(
            &path,
            None,
            ProblemKind::Field,
            format!("a task must be a mapping, found {}", type_name(&item)),
        ));
        return None;
    };
    // Only a well-formed id is quoted in messages about this task.
    let task_id = map
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| is_valid_id(id, IdRule::Task))
        .map(str::to_owned);
    let mut f = Fields::new(map, path, task_id, problems);
    let id = f.required_string("id");
    let id_path = f.field_path("id");
    check_id(&id, &id_path, IdRule::Task, f.problems);
    let type_name = f.required_string("type");
    let description = f.string("description");
    let retry = f.retry("retry");
    let timeout = f.duration("timeout");
    let allow_failure = f.bool("allowFailure", false);
    let disabled = f.bool("disabled", false);
    let kind = if type_name.is_empty() {
        None
    } else {
        match lookup_task_type(&type_name) {
            Ok(task_type) => Some(kind_from_fields(task_type, &mut f)),
            Err(problem) => {
                f.report("type", problem.0, problem.1);
                // The rest of the task cannot be checked without its type.
                f.map.clear();
                None
            }
        }
    };
    let (errors, finally) = match &kind {
        Some(kind) if kind.is_flowable() => (f.tasks("errors"), f.tasks("finally")),
        _ => (Vec::new(), Vec::new()),
    };
    f.finish();
    Some(Task {
        id,
        type_name,
        description,
        retry,
        timeout,
        allow_failure,
        disabled,
        errors,
        finally,
        kind: kind?,
    })
}

fn kind_from_fields(task_type: TaskType, f: &mut Fields<'_>) -> TaskKind {
    match task_type {
        TaskType::Log => {
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
                        format!(
                            "unknown level `{name}`; supported: TRACE, DEBUG, INFO, WARN, ERROR"
                        ),
                    );
                    LogLevel::Info
                }),
            };
            TaskKind::Log { messages, level }
        }
        TaskType::Return => TaskKind::Return {
            format: f.string("format"),
        },
        TaskType::OutputValues => TaskKind::OutputValues {
            values: f.object("values"),
        },
        TaskType::Fail => TaskKind::Fail {
            condition: f.string("condition"),
            error_message: f
                .string("errorMessage")
                .unwrap_or_else(|| "Task failure".into()),
        },
        TaskType::Sleep => TaskKind::Sleep {
            duration: f.required_duration("duration"),
        },
        TaskType::Sequential => TaskKind::Sequential {
            tasks: f.required_tasks("tasks"),
        },
        TaskType::Parallel => {
            let tasks = f.required_tasks("tasks");
            TaskKind::Parallel {
                tasks,
                concurrent: f.u32("concurrent").unwrap_or(0),
            }
        }
        TaskType::AllowFailure => TaskKind::AllowFailure {
            tasks: f.required_tasks("tasks"),
        },
        TaskType::If => {
            let condition = f.required_string("condition");
            let then = f.required_tasks("then");
            let otherwise = f.tasks("else");
            TaskKind::If {
                condition,
                then,
                otherwise,
            }
        }
        TaskType::Switch => switch_from(f),
        TaskType::ForEach => {
            let values = each_values(f, "values");
            let concurrency_limit = f.u32("concurrencyLimit").unwrap_or(1);
            TaskKind::ForEach {
                values,
                concurrency_limit,
                tasks: f.required_tasks("tasks"),
            }
        }
        TaskType::EachSequential => {
            let values = each_values(f, "value");
            TaskKind::ForEach {
                values,
                concurrency_limit: 1,
                tasks: f.required_tasks("tasks"),
            }
        }
        TaskType::EachParallel => {
            let values = each_values(f, "value");
            let concurrency_limit = f.u32("concurrent").unwrap_or(0);
            TaskKind::ForEach {
                values,
                concurrency_limit,
                tasks: f.required_tasks("tasks"),
            }
        }
        TaskType::Dag => dag_from(f),
        TaskType::Subflow => {
            let namespace = f.required_string("namespace");
            let flow_id = f.required_string("flowId");
            let inputs = f.object("inputs");
            let wait = f.bool("wait", true);
            let transmit_failed = f.bool("transmitFailed", true);
            let inherit_labels = f.bool("inheritLabels", false);
            let labels = labels_from(f);
            let outputs = f.object("outputs");
            if f.has("revision") {
                f.report(
                    "revision",
                    ProblemKind::Unsupported,
                    "a fixed subflow `revision` is not supported yet; the latest revision runs"
                        .into(),
                );
                let _ = f.take("revision");
            }
            TaskKind::Subflow(SubflowSpec {
                namespace,
                flow_id,
                inputs,
                wait,
                transmit_failed,
                inherit_labels,
                labels,
                outputs,
            })
        }
        TaskType::Exit => {
            use crate::vocabulary::State;
            let state = match f.string("state").as_deref() {
                None | Some("SUCCESS") => State::Success,
                Some("WARNING") => State::Warning,
                Some("FAILED") => State::Failed,
                Some("KILLED") => State::Killed,
                Some("CANCELLED") => State::Cancelled,
                Some(_) => {
                    f.report(
                        "state",
                        ProblemKind::Field,
                        "must be SUCCESS, WARNING, FAILED, KILLED or CANCELLED".into(),
                    );
                    State::Success
                }
            };
            TaskKind::Exit { state }
        }
        TaskType::Pause => {
            // `pauseDuration` is Kestra's newer name for `delay`.
            let delay = match f.duration("delay") {
                Some(delay) => Some(delay),
                None => f.duration("pauseDuration"),
            };
            TaskKind::Pause {
                delay,
                on_resume: inputs_from(f, "onResume"),
                tasks: f.tasks("tasks"),
            }
        }
        TaskType::Commands => commands_from(f),
        TaskType::HttpRequest => {
            let uri = f.required_string("uri");
            let method = f
                .string("method")
                .unwrap_or_else(|| "GET".into())
                .to_ascii_uppercase();
            const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];
            if !METHODS.contains(&method.as_str()) {
                f.report(
                    "method",
                    ProblemKind::Field,
                    format!(
                        "unknown method `{method}`; supported: {}",
                        METHODS.join(", ")
                    ),
                );
            }
            TaskKind::HttpRequest(HttpRequestSpec {
                uri,
                method,
                body: f.string("body"),
                content_type: f.string("contentType"),
                headers: f.object("headers"),
                allow_failed: f.bool("allowFailed", false),
            })
        }
    }
}

fn each_values(f: &mut Fields<'_>, key: &'static str) -> Value {
    match f.value(key) {
        Some(v @ (Value::String(_) | Value::Array(_))) => v,
        Some(other) => {
            f.wrong_type(key, "a JSON array string or a list", &other);
            Value::Array(Vec::new())
        }
        None => {
            if !f.problem_at(key) {
                f.missing(key);
            }
            Value::Array(Vec::new())
        }
    }
}

fn switch_from(f: &mut Fields<'_>) -> TaskKind {
    let value = f.required_string("value");
    let cases_value = f.take("cases");
    let mut cases = Vec::new();
    match cases_value {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            let base = f.field_path("cases");
            for (key, item) in map {
                let Value::Array(items) = item else {
                    f.report(
                        &format!("cases.{key}"),
                        ProblemKind::Field,
                        "a case must be a list of tasks".into(),
                    );
                    continue;
                };
                let tasks = items
                    .into_iter()
                    .enumerate()
                    .filter_map(|(i, item)| {
                        parse_task(item, format!("{base}.{key}[{i}]"), f.problems)
                    })
                    .collect();
                cases.push((key, tasks));
            }
        }
        Some(other) => f.wrong_type("cases", "a mapping of value to tasks", &other),
    }
    let defaults = f.tasks("defaults");
    if cases.is_empty() && defaults.is_empty() && !f.problem_at("cases") {
        f.report(
            "cases",
            ProblemKind::Field,
            "a Switch needs `cases` or `defaults`".into(),
        );
    }
    TaskKind::Switch {
        value,
        cases,
        defaults,
    }
}

fn dag_from(f: &mut Fields<'_>) -> TaskKind {
    let items = f.list("tasks");
    let base = f.field_path("tasks");
    let mut tasks = Vec::new();
    if items.is_empty() && !f.problem_at("tasks") {
        f.report(
            "tasks",
            ProblemKind::Field,
            "must hold at least one task".into(),
        );
    }
    for (i, item) in items.into_iter().enumerate() {
        let path = format!("{base}[{i}]");
        let Value::Object(map) = item else {
            f.problems.push(problem(
                &path,
                f.task.as_deref(),
                ProblemKind::Field,
                "a Dag entry must be a mapping with `task` and optional `dependsOn`".into(),
            ));
            continue;
        };
        let mut g = Fields::new(map, path.clone(), f.task.clone(), f.problems);
        let task = match g.take("task") {
            Some(task) => parse_task(task, format!("{path}.task"), g.problems),
            None => {
                g.missing("task");
                None
            }
        };
        let depends_on = g.strings("dependsOn");
        g.finish();
        if let Some(task) = task {
            tasks.push(DagTask { task, depends_on });
        }
    }
    TaskKind::Dag {
        tasks,
        concurrent: f.u32("concurrent").unwrap_or(0),
    }
}

fn commands_from(f: &mut Fields<'_>) -> TaskKind {
    let present = f.has("commands");
    let commands = f.strings("commands");
    if !present {
        f.missing("commands");
    } else if commands.is_empty() && !f.problem_at("commands") {
        f.report(
            "commands",
            ProblemKind::Field,
            "must hold at least one command".into(),
        );
    }
    let before_commands = f.strings("beforeCommands");
    let mut interpreter = f.strings("interpreter");
    if interpreter.is_empty() {
        interpreter = vec!["/bin/sh".into(), "-c".into()];
    }
    let env = f.object("env");
    // Commands always run as local processes; a process task runner is the
    // only one that can be asked for.
    if let Some(runner) = f.value("taskRunner") {
        let kind = runner.get("type").and_then(Value::as_str).unwrap_or("");
        if kind != "io.kestra.plugin.core.runner.Process" {
            f.report(
                "taskRunner",
                ProblemKind::Unsupported,
                format!(
                    "task runner `{kind}` is not supported; commands run as local processes (io.kestra.plugin.core.runner.Process)"
                ),
            );
        }
    }
    TaskKind::Commands(CommandsSpec {
        commands,
        before_commands,
        interpreter,
        env,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_nesting_counts_brackets_outside_quotes_and_comments() {
        assert_eq!(flow_nesting("a: [1, {b: [2]}]\n"), 3);
        assert_eq!(flow_nesting("a: '[[[['\nb: \"{{{\\\"{\"\n"), 0);
        assert_eq!(flow_nesting("a: 1 # [[[[\nb: [x]\n"), 1);
        assert_eq!(flow_nesting("a: 'it''s [' \nb: [[]]\n"), 2);
    }
}
