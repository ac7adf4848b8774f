//! Execution inputs: the values a caller gives, checked and converted against
//! the flow's declared inputs, with defaults applied.
//!
//! Kestra's API receives every input as a string; typed JSON values are
//! accepted too. Messages never echo the value (it may be a secret).

use serde_json::{Map, Value};

use super::model::{Input, InputType};

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

fn convert(input: &Input, kind: InputType, value: Value) -> Result<Value, InputError> {
    let invalid = |expected: &str| InputError::Invalid {
        id: input.id.clone(),
        expected: expected.to_owned(),
    };
    Ok(match kind {
        InputType::String => match value {
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
        InputType::Array => convert_array(input, value)?,
    })
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
    if matches!(item_type, InputType::Array | InputType::Select) {
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
}
