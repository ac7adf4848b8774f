//! Filters, functions and tests, by group. Each declares its argument
//! names as Kestra does, so positional and named arguments bind alike.

use crate::eval::Renderer;
use crate::value::Value;

mod collection;
mod date;
mod hash;
mod jq;
pub(crate) mod json;
mod misc;
mod number;
mod string;
mod yaml;

/// Arguments bound to a builtin's declared parameters (`None` = not given).
#[derive(Debug)]
pub(crate) struct Args(pub Vec<Option<Value>>);

impl Args {
    pub(crate) fn get(&self, i: usize) -> Option<&Value> {
        self.0.get(i).and_then(Option::as_ref)
    }

    /// A given, non-null argument.
    pub(crate) fn opt(&self, i: usize) -> Option<&Value> {
        self.get(i).filter(|v| !v.is_null())
    }

    pub(crate) fn req(&self, i: usize, name: &str) -> Result<&Value, String> {
        self.get(i)
            .ok_or_else(|| format!("the argument `{name}` is required"))
    }

    pub(crate) fn str(&self, i: usize, name: &str) -> Result<String, String> {
        match self.req(i, name)? {
            Value::String(s) => Ok(s.to_string()),
            other => Ok(other.to_print()),
        }
    }

    pub(crate) fn opt_str(&self, i: usize) -> Option<String> {
        self.opt(i).map(Value::to_print)
    }

    pub(crate) fn int(&self, i: usize, name: &str) -> Result<i64, String> {
        let v = self.req(i, name)?;
        v.as_i64()
            .or_else(|| v.as_f64().map(|f| f as i64))
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| format!("the argument `{name}` must be a number"))
    }

    pub(crate) fn bool(&self, i: usize) -> Option<bool> {
        match self.opt(i) {
            Some(Value::Bool(b)) => Some(*b),
            Some(Value::String(s)) => Some(s.as_ref() == "true"),
            _ => None,
        }
    }

    pub(crate) fn all(&self) -> impl Iterator<Item = &Value> {
        self.0.iter().flatten()
    }
}

pub(crate) type FilterFn = fn(&mut Renderer<'_>, Value, &Args) -> Result<Value, String>;
pub(crate) type FunctionFn = fn(&mut Renderer<'_>, &Args) -> Result<Value, String>;
pub(crate) type TestFn = fn(&Value, &Args) -> Result<bool, String>;

/// A builtin: its name, its parameter names (`["*"]` = any number of
/// positional arguments) and its implementation.
pub(crate) struct Def<F: 'static> {
    pub name: &'static str,
    pub params: &'static [&'static str],
    pub f: F,
}

pub(crate) const fn def<F>(name: &'static str, params: &'static [&'static str], f: F) -> Def<F> {
    Def { name, params, f }
}

const FILTER_GROUPS: &[&[Def<FilterFn>]] = &[
    string::FILTERS,
    number::FILTERS,
    collection::FILTERS,
    json::FILTERS,
    yaml::FILTERS,
    date::FILTERS,
    hash::FILTERS,
    jq::FILTERS,
    misc::FILTERS,
];

const FUNCTION_GROUPS: &[&[Def<FunctionFn>]] = &[
    number::FUNCTIONS,
    collection::FUNCTIONS,
    json::FUNCTIONS,
    yaml::FUNCTIONS,
    date::FUNCTIONS,
    misc::FUNCTIONS,
];

pub(crate) fn filter(name: &str) -> Option<&'static Def<FilterFn>> {
    FILTER_GROUPS
        .iter()
        .flat_map(|g| g.iter())
        .find(|d| d.name == name)
}

pub(crate) fn function(name: &str) -> Option<&'static Def<FunctionFn>> {
    FUNCTION_GROUPS
        .iter()
        .flat_map(|g| g.iter())
        .find(|d| d.name == name)
}

pub(crate) fn test(name: &str) -> Option<&'static Def<TestFn>> {
    misc::TESTS.iter().find(|d| d.name == name)
}

/// Pebble filters Kestra removes, and why.
pub(crate) fn removed_filter(name: &str) -> Option<&'static str> {
    match name {
        "escape" | "raw" => {
            Some("Kestra renders without autoescaping and removes this Pebble filter")
        }
        "numberformat" => Some("Kestra replaces it with `numberFormat`"),
        _ => None,
    }
}

/// Functions that need a platform feature this instance does not have
/// yet, with the feature's name. (The functions that read platform data,
/// `secret()`, `kv()`, `read()`..., are lookups: see `crate::lookup`.)
pub(crate) fn needs(name: &str) -> Option<&'static str> {
    Some(match name {
        "encrypt" | "decrypt" => "an encryption key",
        "http" => "the outbound http() function, which is not enabled",
        "env" => "envs variables (the instance's `envs` configuration)",
        "credential" => "credentials (Enterprise Edition)",
        "appLink" => "apps (Enterprise Edition)",
        "tasksWithState" => "task-run states in the expression context",
        "iterationOutput" => "Loop task iterations",
        "loopOutputs" => "the Loop task",
        "isPublicHoliday" => "public-holiday calendars",
        _ => return None,
    })
}

/// The name of every builtin, for the documentation table.
pub fn names() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = FILTER_GROUPS
        .iter()
        .flat_map(|g| g.iter().map(|d| d.name))
        .chain(
            FUNCTION_GROUPS
                .iter()
                .flat_map(|g| g.iter().map(|d| d.name)),
        )
        .chain(misc::TESTS.iter().map(|d| d.name))
        .chain(crate::lookup::FUNCTIONS.iter().map(|(name, _)| *name))
        .chain(["fileURI"])
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Text of a string input, or an error naming the filter.
pub(crate) fn input_str<'v>(
    v: &'v Value,
    filter: &str,
) -> Result<std::borrow::Cow<'v, str>, String> {
    match v {
        Value::String(s) => Ok(std::borrow::Cow::Borrowed(s)),
        Value::Null => Ok(std::borrow::Cow::Borrowed("")),
        Value::List(_) | Value::Map(_) => Err(format!("'{filter}' filter needs a string")),
        other => Ok(std::borrow::Cow::Owned(other.to_print())),
    }
}
