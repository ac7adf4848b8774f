//! Tests, `default`, `className`, ids, context access, `render()` and the
//! engine-provided `currentEachOutput()` / `errorLogs()`.

use super::{Args, Def, FilterFn, FunctionFn, TestFn, def};
use crate::eval::Renderer;
use crate::value::Value;
use crate::{ERROR_LOGS_VAR, LOOP_VALUES_VAR};

pub(crate) const FILTERS: &[Def<FilterFn>] = &[
    def("default", &["default"], default),
    def("className", &[], |_, v, _| {
        Ok(match v {
            Value::Null => Value::Null,
            other => Value::from(other.class_name()),
        })
    }),
];

pub(crate) const FUNCTIONS: &[Def<FunctionFn>] = &[
    def("uuid", &[], |_, _| {
        Ok(Value::from(uuid::Uuid::new_v4().to_string()))
    }),
    def("id", &[], |_, _| {
        Ok(Value::from(base62(&random_bytes(16), 22)))
    }),
    def("ksuid", &[], |_, _| Ok(Value::from(ksuid()))),
    def("nanoId", &["length", "alphabet"], nano_id),
    def("randomPort", &[], |_, _| {
        let r = u16::from_le_bytes([random_bytes(2)[0], random_bytes(2)[1]]);
        Ok(Value::Int(i32::from(1024 + r % (65535 - 1024))))
    }),
    // Kestra registers the same function under both names.
    def("printContext", &[], |r, _| Ok(Value::map(r.visible()))),
    def("fetchContext", &[], |r, _| Ok(Value::map(r.visible()))),
    def("render", &["expression", "recursive"], |r, a| {
        let recursive = a.bool(1).unwrap_or(true);
        render(r, a.req(0, "expression")?.clone(), recursive)
    }),
    def("renderOnce", &["expression"], |r, a| {
        render(r, a.req(0, "expression")?.clone(), false)
    }),
    def("block", &["name"], block),
    def("currentEachOutput", &["outputs"], current_each_output),
    def("errorLogs", &[], |r, _| {
        Ok(r.root
            .get(ERROR_LOGS_VAR)
            .cloned()
            .unwrap_or_else(|| Value::list(Vec::new())))
    }),
];

pub(crate) const TESTS: &[Def<TestFn>] = &[
    def("null", &[], |v, _| Ok(v.is_null())),
    def("empty", &[], |v, _| {
        Ok(match v {
            Value::Null => true,
            Value::String(s) => s.trim().is_empty(),
            Value::List(items) => items.is_empty(),
            Value::Map(map) => map.is_empty(),
            _ => false,
        })
    }),
    def("even", &[], |v, _| parity(v, 0)),
    def("odd", &[], |v, _| parity(v, 1)),
    def("iterable", &[], |v, _| Ok(matches!(v, Value::List(_)))),
    def("map", &[], |v, _| Ok(matches!(v, Value::Map(_)))),
    def("json", &[], |v, _| {
        Ok(match v {
            Value::String(s) => serde_json::from_str::<serde::de::IgnoredAny>(s).is_ok(),
            _ => false,
        })
    }),
];

fn parity(v: &Value, want: i64) -> Result<bool, String> {
    let n = v
        .as_i64()
        .or_else(|| v.as_f64().map(|f| f as i64))
        .ok_or_else(|| format!("needs a number, not {}", v.type_name()))?;
    Ok(n.rem_euclid(2) == want)
}

/// `default`: replaces null, a blank string, an empty list or map, and an
/// undefined input (the evaluator passes undefined as null).
fn default(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let empty = match &v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::List(items) => items.is_empty(),
        Value::Map(map) => map.is_empty(),
        _ => false,
    };
    Ok(if empty {
        a.get(0).cloned().unwrap_or(Value::Null)
    } else {
        v
    })
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        out.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
    }
    out.truncate(n);
    out
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn base62(bytes: &[u8], width: usize) -> String {
    let mut n: Vec<u8> = bytes.to_vec();
    let mut digits = Vec::new();
    while n.iter().any(|b| *b != 0) {
        let mut rem = 0u32;
        for b in n.iter_mut() {
            let cur = (rem << 8) | u32::from(*b);
            *b = (cur / 62) as u8;
            rem = cur % 62;
        }
        digits.push(BASE62[rem as usize]);
    }
    while digits.len() < width {
        digits.push(b'0');
    }
    digits.reverse();
    String::from_utf8_lossy(&digits).into_owned()
}

fn ksuid() -> String {
    let ts = (jiff::Timestamp::now().as_second() - 1_400_000_000) as u32;
    let mut bytes = ts.to_be_bytes().to_vec();
    bytes.extend(random_bytes(16));
    base62(&bytes, 27)
}

fn nano_id(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let length = if a.opt(0).is_some() {
        a.int(0, "length")?
    } else {
        21
    };
    let length = usize::try_from(length).map_err(|_| "length must be positive")?;
    let alphabet: Vec<char> = a
        .opt_str(1)
        .unwrap_or_else(|| {
            "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ".into()
        })
        .chars()
        .collect();
    if alphabet.is_empty() || length > 10_000 {
        return Err("nanoId needs a non-empty alphabet and a length up to 10000".into());
    }
    let bytes = random_bytes(length * 2);
    Ok(Value::from(
        bytes
            .chunks(2)
            .map(|c| alphabet[(usize::from(c[0]) << 8 | usize::from(c[1])) % alphabet.len()])
            .collect::<String>(),
    ))
}

/// Attempts `render()` makes before giving up on a template that keeps
/// changing (it renders to itself through a cycle).
const MAX_RENDER_ATTEMPTS: usize = 100;

pub(crate) fn render(r: &mut Renderer<'_>, v: Value, recursive: bool) -> Result<Value, String> {
    Ok(match v {
        Value::String(s) => {
            let mut current = s.to_string();
            let mut attempts = 0;
            loop {
                let next = r
                    .render_nested(&current, crate::error::Pos::default())
                    .map_err(|e| e.message)?;
                if !recursive || next == current {
                    break Value::from(next);
                }
                attempts += 1;
                if attempts >= MAX_RENDER_ATTEMPTS {
                    return Err(format!(
                        "Too many rendering attempts ({MAX_RENDER_ATTEMPTS})"
                    ));
                }
                current = next;
            }
        }
        Value::List(items) => Value::list(
            items
                .iter()
                .map(|i| render(r, i.clone(), recursive))
                .collect::<Result<_, _>>()?,
        ),
        Value::Map(map) => {
            let mut out = crate::value::Map::new();
            for (k, item) in map.iter() {
                out.insert(k.clone(), render(r, item.clone(), recursive)?);
            }
            Value::map(out)
        }
        other => other,
    })
}

fn block(r: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let name = a.str(0, "name")?;
    let body = r
        .template_block(&name)
        .ok_or_else(|| format!("no block named `{name}`"))?;
    let mut out = String::new();
    r.nodes(&body, &mut out).map_err(|e| e.message)?;
    Ok(Value::from(out))
}

/// The output of a looped task for the current iteration: `outputs.t`
/// nested by loop values, walked down with the current ones (the engine's
/// loop values, or `parents[*].taskrun.value` then `taskrun.value`).
fn current_each_output(r: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let mut current = a.req(0, "outputs")?.clone();
    let keys: Vec<String> = match r.root.get(LOOP_VALUES_VAR) {
        Some(Value::List(values)) => values.iter().map(Value::to_print).collect(),
        _ => {
            let mut keys = Vec::new();
            if let Some(Value::List(parents)) = r.root.get("parents") {
                for p in parents.iter().rev() {
                    if let Value::Map(p) = p
                        && let Some(Value::Map(tr)) = p.get("taskrun")
                        && let Some(v) = tr.get("value")
                    {
                        keys.push(v.to_print());
                    }
                }
            }
            if let Some(Value::Map(tr)) = r.root.get("taskrun")
                && let Some(v) = tr.get("value")
            {
                keys.push(v.to_print());
            }
            keys
        }
    };
    for key in keys {
        match &current {
            Value::Map(m) if m.contains_key(&key) => current = m[&key].clone(),
            _ => break,
        }
    }
    Ok(current)
}
