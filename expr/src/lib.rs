//! Kestra's expression language: Pebble 3.2.2 as Kestra configures it
//! (strict variables, no autoescaping, no newline trimming, `??`/`???`),
//! with Kestra's filters, functions and tests.
//!
//! ```
//! use atoll_expr::{Engine, Value};
//! let engine = Engine::new();
//! let context = Engine::context(&serde_json::json!({"name": "Bob"}));
//! assert_eq!(engine.render("Hello {{ name | upper }}", &context).unwrap(), "Hello BOB");
//! ```
//!
//! The instance calls it through its `Templates` adapter: contexts are a
//! [`Map`] built with [`Engine::context_from_map`] from the engine's
//! `serde_json` variables, and its `TemplateError` converts from [`Error`]
//! (message, line and column). [`Engine::evaluate`] gives a typed [`Value`]
//! for typed flow outputs. Errors quote template
//! literals and, like Kestra's, sometimes the input value they could not
//! read (a date, a number).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

mod builtins;
mod error;
mod eval;
mod lexer;
mod lookup;
mod methods;
mod ops;
mod parser;
mod value;

pub use builtins::names as builtin_names;
pub use error::{Error, ErrorKind, Pos};
pub use lookup::{Call, Lookups, file_uri};
pub use parser::Template;
pub use value::{Map, Value, java_double, java_float};

/// Steps (expression evaluations and loop iterations) one render may take,
/// so a hostile template cannot keep a thread busy.
pub const MAX_FUEL: u64 = 2_000_000;

/// Names of context entries the engine sets for `currentEachOutput()` and
/// `errorLogs()`.
pub const LOOP_VALUES_VAR: &str = "__loopValues";
pub const ERROR_LOGS_VAR: &str = "__errorLogs";

/// Parsed templates kept per engine, and the largest source kept (so the
/// cache stays within a few tens of MiB).
const CACHE_SIZE: usize = 1024;
const CACHE_MAX_SOURCE: usize = 16 * 1024;

/// The configured engine; cheap to share between threads.
#[derive(Debug)]
pub struct Engine {
    cache: Mutex<HashMap<String, Arc<Template>>>,
    fuel: u64,
}

impl Default for Engine {
    fn default() -> Self {
        Engine {
            cache: Mutex::default(),
            fuel: MAX_FUEL,
        }
    }
}

impl Engine {
    pub fn new() -> Self {
        Self::default()
    }

    /// The same engine with another step budget per render.
    pub fn with_fuel(mut self, fuel: u64) -> Self {
        self.fuel = fuel;
        self
    }

    /// A render context from a JSON object (other JSON values give an
    /// empty context).
    pub fn context(json: &serde_json::Value) -> Map {
        match Value::from(json) {
            Value::Map(map) => Arc::unwrap_or_clone(map),
            _ => Map::new(),
        }
    }

    /// A render context from a JSON map, as the instance builds its
    /// variables (`flow`, `execution`, `outputs`, ...).
    pub fn context_from_map(map: &serde_json::Map<String, serde_json::Value>) -> Map {
        map.iter()
            .map(|(k, v)| (k.clone(), Value::from(v)))
            .collect()
    }

    /// Parses a template (cached by source text).
    pub fn parse(&self, source: &str) -> Result<Arc<Template>, Error> {
        if let Ok(cache) = self.cache.lock()
            && let Some(t) = cache.get(source)
        {
            return Ok(t.clone());
        }
        let template = Arc::new(parser::parse(source)?);
        if source.len() > CACHE_MAX_SOURCE {
            return Ok(template);
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(source.to_owned(), template.clone());
        }
        Ok(template)
    }

    /// Renders one template string. Text without `{{`, `{%` or `{#` is
    /// returned as is.
    pub fn render(&self, source: &str, context: &Map) -> Result<String, Error> {
        self.render_with(source, context, &Lookups::new())
    }

    /// Renders one template string with the answers known so far to its
    /// lookup calls (`secret()`, `kv()`, `read()`...). A call without an
    /// answer fails the render with [`ErrorKind::Lookup`]; the caller
    /// answers [`Error::lookup`] and renders again.
    pub fn render_with(
        &self,
        source: &str,
        context: &Map,
        lookups: &Lookups,
    ) -> Result<String, Error> {
        if !source.contains("{{") && !source.contains("{%") && !source.contains("{#") {
            return Ok(source.to_owned());
        }
        let template = self.parse(source)?;
        eval::Renderer::new(self, context, lookups, template, self.fuel).render_template()
    }

    /// Renders every string inside a JSON value (map keys stay as they are).
    pub fn render_json(
        &self,
        value: &serde_json::Value,
        context: &Map,
    ) -> Result<serde_json::Value, Error> {
        self.render_json_with(value, context, &Lookups::new())
    }

    /// [`Engine::render_json`] with the answers known so far to lookup
    /// calls (see [`Engine::render_with`]).
    pub fn render_json_with(
        &self,
        value: &serde_json::Value,
        context: &Map,
        lookups: &Lookups,
    ) -> Result<serde_json::Value, Error> {
        use serde_json::Value as J;
        Ok(match value {
            J::String(s) => J::String(self.render_with(s, context, lookups)?),
            J::Array(items) => J::Array(
                items
                    .iter()
                    .map(|item| self.render_json_with(item, context, lookups))
                    .collect::<Result<_, _>>()?,
            ),
            J::Object(map) => J::Object(
                map.iter()
                    .map(|(k, v)| Ok((k.clone(), self.render_json_with(v, context, lookups)?)))
                    .collect::<Result<_, Error>>()?,
            ),
            other => other.clone(),
        })
    }

    /// Evaluates a template that is exactly one `{{ expression }}` to its
    /// typed value (a list stays a list); any other template renders to a
    /// string value.
    pub fn evaluate(&self, source: &str, context: &Map) -> Result<Value, Error> {
        self.evaluate_with(source, context, &Lookups::new())
    }

    /// [`Engine::evaluate`] with the answers known so far to lookup calls
    /// (see [`Engine::render_with`]).
    pub fn evaluate_with(
        &self,
        source: &str,
        context: &Map,
        lookups: &Lookups,
    ) -> Result<Value, Error> {
        let template = self.parse(source)?;
        if let [parser::Node::Print(e)] = template.nodes.as_slice() {
            let e = e.clone();
            return eval::Renderer::new(self, context, lookups, template, self.fuel).eval(&e);
        }
        self.render_with(source, context, lookups).map(Value::from)
    }
}
