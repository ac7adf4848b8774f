//! Java methods and bean properties Pebble reaches by reflection on the
//! values Kestra hands it: `text.length`, `list.size()`, `text.trim()`,
//! `map.containsKey('k')`... A fixed list of side-effect-free methods of
//! `String`, `List` and `Map`; anything else fails naming the method.
//! A map key always wins over a property of the same name.

use crate::value::{Map, Value};

/// `value.name` when `name` is not a key or index: `size`/`empty` of a
/// list, `length`/`empty`/`blank` of a string (Java getters and no-arg
/// methods, as Pebble resolves them). Maps have no properties: Pebble
/// only looks up their keys.
pub(crate) fn property(base: &Value, name: &str) -> Option<Value> {
    match (base, name) {
        (Value::List(items), "size") => Some(Value::Int(len(items.len()))),
        (Value::List(items), "empty") => Some(Value::Bool(items.is_empty())),
        (Value::String(s), "length") => Some(Value::Int(len(s.encode_utf16().count()))),
        (Value::String(s), "empty") => Some(Value::Bool(s.is_empty())),
        (Value::String(s), "blank") => Some(Value::Bool(s.trim().is_empty())),
        _ => None,
    }
}

fn len(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn arg<'a>(args: &'a [Value], i: usize, method: &str) -> Result<&'a Value, String> {
    args.get(i)
        .ok_or_else(|| format!("method `{method}` needs {} argument(s)", i + 1))
}

fn text_arg(args: &[Value], i: usize, method: &str) -> Result<String, String> {
    Ok(arg(args, i, method)?.to_print())
}

fn index_arg(args: &[Value], i: usize, method: &str) -> Result<usize, String> {
    arg(args, i, method)?
        .as_i64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("method `{method}` needs a non-negative integer"))
}

pub(crate) fn call(base: &Value, name: &str, args: &[Value]) -> Result<Value, String> {
    let result = match base {
        Value::String(s) => string_method(s, name, args)?,
        Value::List(items) => list_method(items, name, args)?,
        Value::Map(map) => map_method(map, name, args)?,
        _ => None,
    };
    result.ok_or_else(|| {
        format!(
            "method `{name}` is not available on a {} (Atoll supports a fixed list of String, List and Map methods)",
            base.type_name()
        )
    })
}

fn string_method(s: &str, name: &str, args: &[Value]) -> Result<Option<Value>, String> {
    let chars: Vec<char> = s.chars().collect();
    Ok(Some(match name {
        "length" => Value::Int(len(s.encode_utf16().count())),
        "isEmpty" => Value::Bool(s.is_empty()),
        "isBlank" => Value::Bool(s.trim().is_empty()),
        "trim" | "strip" => Value::from(s.trim()),
        "toUpperCase" => Value::from(s.to_uppercase()),
        "toLowerCase" => Value::from(s.to_lowercase()),
        "contains" => Value::Bool(s.contains(&text_arg(args, 0, name)?)),
        "startsWith" => Value::Bool(s.starts_with(&text_arg(args, 0, name)?)),
        "endsWith" => Value::Bool(s.ends_with(&text_arg(args, 0, name)?)),
        "equals" => Value::Bool(arg(args, 0, name)?.as_str() == Some(s)),
        "equalsIgnoreCase" => {
            Value::Bool(text_arg(args, 0, name)?.to_lowercase() == s.to_lowercase())
        }
        "indexOf" => {
            let needle = text_arg(args, 0, name)?;
            Value::Int(s.find(&needle).map_or(-1, |b| len(s[..b].chars().count())))
        }
        "replace" => Value::from(s.replace(&text_arg(args, 0, name)?, &text_arg(args, 1, name)?)),
        "substring" => {
            let from = index_arg(args, 0, name)?;
            let to = if args.len() > 1 {
                index_arg(args, 1, name)?
            } else {
                chars.len()
            };
            if from > to || to > chars.len() {
                return Err(format!(
                    "substring({from}, {to}) is out of bounds for length {}",
                    chars.len()
                ));
            }
            Value::from(chars[from..to].iter().collect::<String>())
        }
        "charAt" => {
            let i = index_arg(args, 0, name)?;
            let c = chars.get(i).ok_or_else(|| {
                format!("charAt({i}) is out of bounds for length {}", chars.len())
            })?;
            Value::from(c.to_string())
        }
        "toString" => Value::from(s),
        _ => return Ok(None),
    }))
}

fn list_method(items: &[Value], name: &str, args: &[Value]) -> Result<Option<Value>, String> {
    Ok(Some(match name {
        "size" => Value::Int(len(items.len())),
        "isEmpty" => Value::Bool(items.is_empty()),
        "contains" => {
            let x = arg(args, 0, name)?;
            Value::Bool(items.iter().any(|i| i.java_eq(x)))
        }
        "indexOf" => {
            let x = arg(args, 0, name)?;
            Value::Int(items.iter().position(|i| i.java_eq(x)).map_or(-1, len))
        }
        "get" => {
            let i = index_arg(args, 0, name)?;
            items
                .get(i)
                .cloned()
                .ok_or_else(|| format!("get({i}) is out of bounds for length {}", items.len()))?
        }
        _ => return Ok(None),
    }))
}

fn map_method(map: &Map, name: &str, args: &[Value]) -> Result<Option<Value>, String> {
    Ok(Some(match name {
        "size" => Value::Int(len(map.len())),
        "isEmpty" => Value::Bool(map.is_empty()),
        "containsKey" => Value::Bool(map.contains_key(&text_arg(args, 0, name)?)),
        "get" => map
            .get(&text_arg(args, 0, name)?)
            .cloned()
            .unwrap_or(Value::Null),
        "keySet" => Value::list(map.keys().map(|k| Value::from(k.as_str())).collect()),
        "values" => Value::list(map.values().cloned().collect()),
        _ => return Ok(None),
    }))
}
