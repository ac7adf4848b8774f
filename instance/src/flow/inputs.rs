//! Execution inputs: the values a caller gives, checked and converted against
//! the flow's declared inputs, with defaults applied.
//!
//! Kestra's API receives every input as a string; typed JSON values are
//! accepted too. Messages never echo the value (it may be a secret).

use serde_json::{Map, Value};

use super::model::{FlowOutput, Input, InputType};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("input `{id}` is required and was not given")]
    Missing { id: String },
    #[error("input `{id}` must be {expected}")]
    Invalid { id: String, expected: String },
}

/// Resolves the given values against the declarations. Values for inputs the
/// flow does not declare are dropped; optional inputs without a value or
/// default stay absent.
pub fn resolve_inputs(
    declared: &[Input],
    given: &Map<String, Value>,
) -> Result<Map<String, Value>, InputError> {
    let mut out = Map::new();
    for input in declared {
        let value = match given.get(&input.id).filter(|v| !v.is_null()) {
            Some(value) => value.clone(),
            None => match &input.defaults {
                Some(default) => default.clone(),
                None if input.required => {
                    return Err(InputError::Missing {
                        id: input.id.clone(),
                    });
                }
                None => continue,
            },
        };
        let converted = convert(input, input.kind, value)?;
        out.insert(input.id.clone(), converted);
    }
    Ok(out)
}

/// A flow output's value converted to its declared type, as Kestra types
/// flow outputs: `"24"` of an `INT` output becomes the number 24.
pub fn typed_output(output: &FlowOutput, value: Value) -> Result<Value, InputError> {
    let declared = Input {
        id: output.id.clone(),
        kind: output.kind,
        required: output.required,
        defaults: None,
        description: None,
        values: output.values.clone(),
        item_type: output.item_type,
    };
    convert(&declared, output.kind, value)
}

fn convert(input: &Input, kind: InputType, value: Value) -> Result<Value, InputError> {
    let invalid = |expected: &str| InputError::Invalid {
        id: input.id.clone(),
        expected: expected.to_owned(),
    };
    Ok(match kind {
        InputType::String | InputType::Secret => match value {
            Value::String(s) => Value::String(s),
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            _ => return Err(invalid("a string")),
        },
        InputType::Int => match &value {
            Value::Number(n) if n.is_i64() || n.is_u64() => value,
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| invalid("an integer"))?,
            _ => return Err(invalid("an integer")),
        },
        InputType::Float => match &value {
            Value::Number(_) => value,
            Value::String(s) => s
                .trim()
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| invalid("a number"))?,
            _ => return Err(invalid("a number")),
        },
        InputType::Boolean => match &value {
            Value::Bool(_) => value,
            Value::String(s) if s.eq_ignore_ascii_case("true") => Value::Bool(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Value::Bool(false),
            _ => return Err(invalid("true or false")),
        },
        InputType::Datetime => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid("an RFC 3339 date-time"))?;
            let ts: jiff::Timestamp = text.parse().map_err(|_| invalid("an RFC 3339 date-time"))?;
            Value::String(ts.to_string())
        }
        InputType::Json => match value {
            Value::String(s) => serde_json::from_str(&s).map_err(|_| invalid("valid JSON"))?,
            other => other,
        },
        InputType::Select => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid("one of the allowed values"))?;
            if !input.values.iter().any(|v| v == text) {
                return Err(invalid(&format!("one of: {}", input.values.join(", "))));
            }
            value
        }
        InputType::File => {
            let uri = value
                .as_str()
                .ok_or_else(|| invalid("a kestra:/// URI of a file"))?;
            let path = crate::storage::StoragePath::from_uri(uri.trim())
                .map_err(|_| invalid("a kestra:/// URI of a file"))?;
            Value::String(path.uri())
        }
        InputType::Array => convert_array(input, value)?,
        InputType::MultiSelect => convert_multiselect(input, value)?,
        InputType::Date
        | InputType::Time
        | InputType::Duration
        | InputType::Uri
        | InputType::Email => convert_text(input, kind, value)?,
    })
}

/// The types given as checked text: ISO dates, times and durations (kept
/// in their normal form), URIs and email addresses.
fn convert_text(input: &Input, kind: InputType, value: Value) -> Result<Value, InputError> {
    let invalid = |expected: &str| InputError::Invalid {
        id: input.id.clone(),
        expected: expected.to_owned(),
    };
    Ok(match kind {
        InputType::Date => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid("an ISO date (2024-01-31)"))?;
            let date: jiff::civil::Date = text
                .trim()
                .parse()
                .map_err(|_| invalid("an ISO date (2024-01-31)"))?;
            Value::String(date.to_string())
        }
        InputType::Time => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid("an ISO time (13:45:00)"))?;
            let time: jiff::civil::Time = text
                .trim()
                .parse()
                .map_err(|_| invalid("an ISO time (13:45:00)"))?;
            Value::String(time.to_string())
        }
        InputType::Duration => {
            let text = value
                .as_str()
                .ok_or_else(|| invalid("an ISO-8601 duration (PT5M)"))?;
            let duration: jiff::SignedDuration = text
                .trim()
                .parse()
                .map_err(|_| invalid("an ISO-8601 duration (PT5M)"))?;
            Value::String(duration.to_string())
        }
        InputType::Uri => {
            let text = value.as_str().ok_or_else(|| invalid("a URI"))?;
            if !is_uri(text) {
                return Err(invalid("a URI"));
            }
            value
        }
        InputType::Email => {
            let text = value.as_str().ok_or_else(|| invalid("an email address"))?;
            if !is_email(text) {
                return Err(invalid("an email address"));
            }
            value
        }
        _ => value,
    })
}

/// `scheme:rest`, the scheme a letter then letters, digits, `+`, `-`, `.`.
fn is_uri(text: &str) -> bool {
    let Some((scheme, rest)) = text.split_once(':') else {
        return false;
    };
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && !rest.is_empty()
        && !text.chars().any(char::is_whitespace)
}

/// `local@domain.tld` without spaces.
fn is_email(text: &str) -> bool {
    let Some((local, domain)) = text.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && domain.contains('.')
        && !text.chars().any(char::is_whitespace)
}

/// A `MULTISELECT` input: a list (or a JSON array as text) of allowed values.
fn convert_multiselect(input: &Input, value: Value) -> Result<Value, InputError> {
    let expected = || InputError::Invalid {
        id: input.id.clone(),
        expected: format!("a list of: {}", input.values.join(", ")),
    };
    let items = match value {
        Value::Array(items) => items,
        Value::String(s) => match serde_json::from_str(&s) {
            Ok(Value::Array(items)) => items,
            _ => return Err(expected()),
        },
        _ => return Err(expected()),
    };
    for item in &items {
        let allowed = item
            .as_str()
            .is_some_and(|text| input.values.iter().any(|v| v == text));
        if !allowed {
            return Err(expected());
        }
    }
    Ok(Value::Array(items))
}

/// An `ARRAY` input: a list (or a JSON array as text) whose items are
/// converted to the declared `itemType` (strings by default).
fn convert_array(input: &Input, value: Value) -> Result<Value, InputError> {
    let invalid = |expected: &str| InputError::Invalid {
        id: input.id.clone(),
        expected: expected.to_owned(),
    };
    let items = match value {
        Value::Array(items) => items,
        Value::String(s) => match serde_json::from_str(&s) {
            Ok(Value::Array(items)) => items,
            _ => return Err(invalid("a JSON array")),
        },
        _ => return Err(invalid("a list")),
    };
    let item_type = input.item_type.unwrap_or(InputType::String);
    if matches!(
        item_type,
        InputType::Array | InputType::Select | InputType::MultiSelect
    ) {
        Ok(Value::Array(items))
    } else {
        Ok(Value::Array(
            items
                .into_iter()
                .map(|item| convert(input, item_type, item))
                .collect::<Result<_, _>>()?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn input(id: &str, kind: InputType, required: bool, defaults: Option<Value>) -> Input {
        Input {
            id: id.into(),
            kind,
            required,
            defaults,
            description: None,
            values: vec!["A".into(), "B".into()],
            item_type: Some(InputType::Int),
        }
    }

    fn given(value: Value) -> Map<String, Value> {
        value.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn converts_strings_to_declared_types() {
        let declared = [
            input("i", InputType::Int, true, None),
            input("f", InputType::Float, true, None),
            input("b", InputType::Boolean, true, None),
            input("j", InputType::Json, true, None),
            input("s", InputType::Select, true, None),
            input("a", InputType::Array, true, None),
            input("d", InputType::Datetime, true, None),
        ];
        let out = resolve_inputs(
            &declared,
            &given(
                json!({"i": "42", "f": "1.5", "b": "true", "j": "{\"k\": [1]}",
                "s": "B", "a": "[1, \"2\"]", "d": "2024-01-02T03:04:05Z"}),
            ),
        );
        assert_eq!(
            out,
            Ok(given(json!({"i": 42, "f": 1.5, "b": true, "j": {"k": [1]},
                "s": "B", "a": [1, 2], "d": "2024-01-02T03:04:05Z"})))
        );
    }

    #[test]
    fn applies_defaults_and_reports_missing_required() {
        let declared = [
            input("def", InputType::String, true, Some(json!("amazing"))),
            input("opt", InputType::String, false, None),
            input("req", InputType::String, true, None),
        ];
        assert_eq!(
            resolve_inputs(&declared, &Map::new()),
            Err(InputError::Missing { id: "req".into() })
        );
        let out = resolve_inputs(&declared, &given(json!({"req": "x", "extra": "dropped"})));
        assert_eq!(out, Ok(given(json!({"def": "amazing", "req": "x"}))));
    }

    #[test]
    fn invalid_values_are_named_without_echoing_them() {
        let declared = [input("n", InputType::Int, true, None)];
        let err =
            resolve_inputs(&declared, &given(json!({"n": "s3cr3t"}))).expect_err("must be refused");
        assert_eq!(err.to_string(), "input `n` must be an integer");
        let declared = [input("s", InputType::Select, true, None)];
        let err =
            resolve_inputs(&declared, &given(json!({"s": "C"}))).expect_err("must be refused");
        assert_eq!(err.to_string(), "input `s` must be one of: A, B");
    }

    #[test]
    fn checks_dates_times_durations_choices_and_addresses() {
        let declared = [
            input("d", InputType::Date, true, None),
            input("t", InputType::Time, true, None),
            input("p", InputType::Duration, true, None),
            input("m", InputType::MultiSelect, true, None),
            input("u", InputType::Uri, true, None),
            input("e", InputType::Email, true, None),
            input("k", InputType::Secret, true, None),
        ];
        let out = resolve_inputs(
            &declared,
            &given(json!({"d": "2024-01-31", "t": "13:45:00", "p": "PT5M",
                "m": "[\"B\", \"A\"]", "u": "https://kestra.io/docs", "e": "ops@example.com",
                "k": "hunter2"})),
        );
        assert_eq!(
            out,
            Ok(given(
                json!({"d": "2024-01-31", "t": "13:45:00", "p": "PT5M",
                "m": ["B", "A"], "u": "https://kestra.io/docs", "e": "ops@example.com",
                "k": "hunter2"})
            ))
        );
        for (id, bad, expected) in [
            ("d", "31/01/2024", "an ISO date (2024-01-31)"),
            ("p", "five minutes", "an ISO-8601 duration (PT5M)"),
            ("m", "[\"C\"]", "a list of: A, B"),
            ("u", "not a uri", "a URI"),
            ("e", "nobody", "an email address"),
        ] {
            let declared: Vec<Input> = declared.iter().filter(|i| i.id == id).cloned().collect();
            let err = resolve_inputs(&declared, &given(json!({id: bad}))).expect_err(bad);
            assert_eq!(err.to_string(), format!("input `{id}` must be {expected}"));
        }
    }

    #[test]
    fn flow_outputs_take_their_declared_type() {
        let output = |kind, item_type| FlowOutput {
            id: "o".into(),
            kind,
            value: Value::Null,
            required: true,
            item_type,
            values: Vec::new(),
        };
        let int = output(InputType::Int, None);
        assert_eq!(typed_output(&int, json!("11")), Ok(json!(11)));
        assert_eq!(typed_output(&int, json!(13)), Ok(json!(13)));
        assert!(typed_output(&int, json!("eleven")).is_err());
        let list = output(InputType::Array, Some(InputType::Int));
        assert_eq!(typed_output(&list, json!(["1", 2])), Ok(json!([1, 2])));
        let flag = output(InputType::Boolean, None);
        assert_eq!(typed_output(&flag, json!("true")), Ok(json!(true)));
    }
}
