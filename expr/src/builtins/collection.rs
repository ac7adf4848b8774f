//! List and map filters, and `range()`.

use super::{Args, Def, FilterFn, FunctionFn, def};
use crate::eval::Renderer;
use crate::ops;
use crate::value::Value;

pub(crate) const FILTERS: &[Def<FilterFn>] = &[
    def("first", &[], |_, v, _| ends(v, true)),
    def("last", &[], |_, v, _| ends(v, false)),
    def("length", &[], length),
    def("join", &["separator"], join),
    def("merge", &["items"], merge),
    def("reverse", &[], reverse),
    def("sort", &[], |_, v, _| sort(v, false)),
    def("rsort", &[], |_, v, _| sort(v, true)),
    def("slice", &["fromIndex", "toIndex"], slice),
    def("chunk", &["size"], chunk),
    def("keys", &[], keys),
    def("values", &[], values),
    def("flatten", &[], flatten),
    def("distinct", &[], distinct),
    // `uniq`: an older name outside the documentation; non-lists pass through.
    def("uniq", &[], |r, v, a| match v {
        Value::List(_) => distinct(r, v, a),
        other => Ok(other),
    }),
];

pub(crate) const FUNCTIONS: &[Def<FunctionFn>] =
    &[def("range", &["start", "end", "increment"], range)];

fn ends(v: Value, first: bool) -> Result<Value, String> {
    Ok(match v {
        Value::List(items) => {
            let item = if first { items.first() } else { items.last() };
            item.cloned().unwrap_or(Value::Null)
        }
        Value::String(s) => {
            let c = if first {
                s.chars().next()
            } else {
                s.chars().last()
            };
            c.map_or(Value::Null, |c| Value::from(c.to_string()))
        }
        Value::Map(map) => {
            let item = if first { map.first() } else { map.last() };
            item.map_or(Value::Null, |(_, v)| v.clone())
        }
        Value::Null => Value::Null,
        other => other,
    })
}

fn length(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    Ok(Value::Long(match &v {
        Value::Null => 0,
        Value::String(s) => s.chars().count() as i64,
        Value::List(items) => items.len() as i64,
        Value::Map(map) => map.len() as i64,
        other => other.to_print().chars().count() as i64,
    }))
}

fn join(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let sep = a.opt_str(0).unwrap_or_default();
    match v {
        Value::List(items) => Ok(Value::from(
            items
                .iter()
                .map(Value::to_print)
                .collect::<Vec<_>>()
                .join(&sep),
        )),
        Value::Null => Ok(Value::Null),
        other => Ok(other),
    }
}

fn merge(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let other = a.req(0, "items")?;
    match (&v, other) {
        (Value::List(x), Value::List(y)) => {
            Ok(Value::list(x.iter().chain(y.iter()).cloned().collect()))
        }
        (Value::List(x), y) => {
            let mut out = x.as_ref().clone();
            out.push(y.clone());
            Ok(Value::list(out))
        }
        (Value::Map(x), Value::Map(y)) => {
            let mut out = x.as_ref().clone();
            for (k, val) in y.iter() {
                out.insert(k.clone(), val.clone());
            }
            Ok(Value::map(out))
        }
        _ => Err("merge needs two lists or two maps".into()),
    }
}

fn reverse(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    Ok(match v {
        Value::List(items) => Value::list(items.iter().rev().cloned().collect()),
        Value::String(s) => Value::from(s.chars().rev().collect::<String>()),
        other => other,
    })
}

fn sort(v: Value, reverse: bool) -> Result<Value, String> {
    let Value::List(items) = v else {
        return Err("sort needs a list".into());
    };
    let mut items = items.as_ref().clone();
    let mut failed = false;
    items.sort_by(|a, b| {
        let o = match (a.as_str(), b.as_str()) {
            (Some(x), Some(y)) => Some(x.cmp(y)),
            _ => ops::compare(a, b).ok().flatten(),
        };
        o.unwrap_or_else(|| {
            failed = true;
            std::cmp::Ordering::Equal
        })
    });
    if failed {
        return Err("sort needs a list of numbers or of strings".into());
    }
    if reverse {
        items.reverse();
    }
    Ok(Value::list(items))
}

fn slice(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let len = match &v {
        Value::List(items) => items.len(),
        Value::String(s) => s.chars().count(),
        _ => return Err("slice needs a list or a string".into()),
    };
    let from = if a.opt(0).is_some() {
        a.int(0, "fromIndex")?
    } else {
        0
    };
    let to = if a.opt(1).is_some() {
        a.int(1, "toIndex")?
    } else {
        len as i64
    };
    if from < 0 || to < from || to as usize > len {
        return Err(format!(
            "slice({from}, {to}) is out of bounds for length {len}"
        ));
    }
    let (from, to) = (from as usize, to as usize);
    Ok(match v {
        Value::List(items) => Value::list(items[from..to].to_vec()),
        Value::String(s) => Value::from(s.chars().skip(from).take(to - from).collect::<String>()),
        _ => Value::Null,
    })
}

fn chunk(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let Value::List(items) = v else {
        return Err("'chunk' filter can only be applied to List".into());
    };
    let size = usize::try_from(a.int(0, "size")?)
        .ok()
        .filter(|s| *s > 0)
        .ok_or("chunk size must be positive")?;
    Ok(Value::list(
        items
            .chunks(size)
            .map(|c| Value::list(c.to_vec()))
            .collect(),
    ))
}

fn keys(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    match v {
        Value::Map(map) => Ok(Value::list(
            map.keys().map(|k| Value::from(k.as_str())).collect(),
        )),
        Value::List(items) => Ok(Value::list(
            (0..items.len()).map(|i| Value::Int(i as i32)).collect(),
        )),
        _ => Err("'keys' filter can only be applied to List, Map, Array".into()),
    }
}

fn values(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    match v {
        Value::Map(map) => Ok(Value::list(map.values().cloned().collect())),
        Value::List(items) => Ok(Value::List(items)),
        _ => Err("'values' filter can only be applied to Map".into()),
    }
}

fn flatten(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    let Value::List(items) = v else {
        return Err("The 'flatten' filter can only be applied to lists".into());
    };
    let mut out = Vec::new();
    for item in items.iter() {
        match item {
            Value::List(inner) => out.extend(inner.iter().cloned()),
            other => out.push(other.clone()),
        }
    }
    Ok(Value::list(out))
}

fn distinct(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    let Value::List(items) = v else {
        return Err("Input must be a list".into());
    };
    let mut out: Vec<Value> = Vec::new();
    for item in items.iter() {
        if !out.iter().any(|o| o.java_eq(item)) {
            out.push(item.clone());
        }
    }
    Ok(Value::list(out))
}

fn range(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let start = a.req(0, "start")?;
    let end = a.req(1, "end")?;
    let step = if a.opt(2).is_some() {
        a.int(2, "increment")?
    } else {
        1
    };
    ops::range(start, end, step)
}
