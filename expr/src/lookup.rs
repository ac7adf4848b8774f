//! Functions whose answer is platform data (`secret()`, `kv()`, `read()`,
//! `fileExists()`, `fileSize()`, `isFileEmpty()`). The evaluator stays
//! pure: a call it has no answer for stops the render with
//! [`ErrorKind::Lookup`](crate::ErrorKind::Lookup) and the [`Call`]; the
//! caller resolves it (reads its secrets, its KV store, its storage), adds
//! the answer to its [`Lookups`] and renders again.

use std::collections::HashMap;

use crate::value::Value;

/// The lookup functions and their declared parameters (as Kestra names
/// them, so named and positional arguments bind alike).
pub(crate) const FUNCTIONS: &[(&str, &[&str])] = &[
    ("secret", &["key", "namespace", "subkey", "full"]),
    ("kv", &["key", "namespace", "errorOnMissing"]),
    ("read", &["path", "namespace"]),
    ("fileExists", &["path"]),
    ("fileSize", &["path"]),
    ("isFileEmpty", &["path"]),
    ("fileEmpty", &["path"]),
];

/// The parameters of lookup function `name`, if it is one.
pub(crate) fn params(name: &str) -> Option<&'static [&'static str]> {
    FUNCTIONS.iter().find(|(n, _)| *n == name).map(|(_, p)| *p)
}

/// One call of a lookup function: its name (`fileEmpty` is said
/// `isFileEmpty`) and the arguments given, by parameter name, in the
/// declared order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub function: String,
    pub args: Vec<(String, serde_json::Value)>,
}

impl Call {
    /// The argument named `name`, if given and not null.
    pub fn arg(&self, name: &str) -> Option<&serde_json::Value> {
        self.args
            .iter()
            .find(|(n, v)| n == name && !v.is_null())
            .map(|(_, v)| v)
    }

    /// The argument named `name` as text (a string as is, other values as
    /// JSON).
    pub fn text(&self, name: &str) -> Option<String> {
        self.arg(name).map(|v| match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    }

    fn key(&self) -> String {
        let mut key = self.function.clone();
        for (name, value) in &self.args {
            key.push('\u{1}');
            key.push_str(name);
            key.push('=');
            key.push_str(&value.to_string());
        }
        key
    }
}

impl std::fmt::Display for Call {
    /// `kv(key="MY_KEY")`; the arguments are names and literals of the
    /// template or values of the flow, never looked-up data.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(", self.function)?;
        for (i, (name, value)) in self.args.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{name}={value}")?;
        }
        f.write_str(")")
    }
}

/// Answers to lookup calls, gathered by the caller between renders: a
/// value, or why there is none (the render then fails with that message).
#[derive(Debug, Clone, Default)]
pub struct Lookups {
    answers: HashMap<String, Result<Value, String>>,
}

impl Lookups {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the answer to `call`.
    pub fn insert(&mut self, call: &Call, answer: Result<serde_json::Value, String>) {
        self.answers
            .insert(call.key(), answer.map(|v| Value::from(&v)));
    }

    /// The answer to `call`, if known.
    pub(crate) fn get(&self, call: &Call) -> Option<&Result<Value, String>> {
        self.answers.get(&call.key())
    }

    /// How many answers are known.
    pub fn len(&self) -> usize {
        self.answers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.answers.is_empty()
    }
}

/// The call to ask the caller about, from arguments bound to `params`.
pub(crate) fn call(name: &str, params: &[&str], bound: &[Option<Value>]) -> Call {
    let function = if name == "fileEmpty" {
        "isFileEmpty"
    } else {
        name
    };
    Call {
        function: function.to_owned(),
        args: params
            .iter()
            .zip(bound)
            .filter_map(|(p, v)| v.as_ref().map(|v| ((*p).to_owned(), v.to_serde())))
            .collect(),
    }
}

/// The `kestra:///` URI of namespace file `path` of `namespace`
/// (`kestra:///company/team/_files/path`, Kestra's layout).
pub fn file_uri(namespace: &str, path: &str) -> String {
    format!(
        "kestra:///{}/_files/{}",
        namespace.replace('.', "/"),
        path.trim_start_matches('/')
    )
}
