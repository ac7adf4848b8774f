//! The instance's OpenAPI document, generated from the handlers: aide reads
//! each route's extractors and return type (their schemars schemas), the
//! role extractors add the bearer token and the role a route needs
//! (`x-atoll-role`), and [`finish`] names the path parameters from the
//! route templates and describes both forms of every route, `/api/v1/...`
//! and Kestra's `/api/v1/{tenant}/...`.
//!
//! Routes join [`Routes`] with `.route(path, get(handler))`, `get` being
//! `aide::axum::routing::get` (documented); a plain `axum::routing::get`
//! still compiles and serves, undocumented, and the `every_route_is_documented`
//! test names it until it is converted (swap the import).
//!
//! The document is served without a token at `/api/v1/openapi.json` and
//! `/api/v1/{tenant}/openapi.json`: it describes routes and holds nothing
//! of the tenant (not even its name), and generated clients and API tools
//! fetch it before they have a token.

pub(super) mod describe;
#[cfg(test)]
mod tests;

use aide::axum::ApiRouter;
use aide::axum::routing::ApiMethodRouter;
use aide::openapi::{Info, OpenApi, Operation};
use serde_json::{Map, Value, json};

use super::{AppState, unimplemented};
use crate::auth::Role;

/// The extension naming the least role an operation needs.
pub const ROLE_EXTENSION: &str = "x-atoll-role";
/// The document-level extension listing the Kestra routes answered 501.
pub const UNIMPLEMENTED_EXTENSION: &str = "x-atoll-unimplemented";
/// The security scheme every authenticated operation requires.
const BEARER: &str = "bearer";

/// Marks `operation` as needing a bearer token with at least `role`.
pub(super) fn require_role(operation: &mut Operation, role: Role) {
    let name = match role {
        Role::Viewer => "Viewer",
        Role::Editor => "Editor",
        Role::Admin => "Admin",
    };
    operation
        .extensions
        .insert(ROLE_EXTENSION.into(), Value::String(name.into()));
    operation.security = vec![[(BEARER.to_owned(), Vec::new())].into_iter().collect()];
}

/// What the role extractors answer before the handler runs.
pub(super) fn refusals(
    ctx: &mut aide::generate::GenContext,
) -> Vec<(Option<aide::openapi::StatusCode>, aide::openapi::Response)> {
    vec![
        super::error::error_response(ctx, 401, "no valid bearer token for this tenant"),
        super::error::error_response(ctx, 403, "the token's role does not allow this"),
    ]
}

/// The routes under `/api/v1` (and `/api/v1/{tenant}`), each recorded so
/// the tests can check that the document describes every one.
#[derive(Debug)]
pub struct Routes {
    router: ApiRouter<AppState>,
    paths: Vec<String>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new()
    }
}

impl Routes {
    pub fn new() -> Routes {
        Routes {
            router: ApiRouter::new(),
            paths: Vec::new(),
        }
    }

    /// Serves `path` with `methods`: documented when built with aide's
    /// `get`/`post`… (`aide::axum::routing`), served but undocumented when
    /// built with axum's.
    pub fn route(mut self, path: &str, methods: impl Into<ApiMethodRouter<AppState>>) -> Routes {
        self.paths.push(path.to_owned());
        self.router = self.router.api_route(path, methods.into());
        self
    }

    /// Every path registered, in order.
    pub fn paths(&self) -> &[String] {
        &self.paths
    }

    pub fn into_router(self) -> ApiRouter<AppState> {
        self.router
    }
}

/// The document of `api` (the routes under `/api/v1`, described under both
/// prefixes) and `public` (routes with their full path, e.g. webhooks).
pub fn document(api: ApiRouter<AppState>, public: ApiRouter<AppState>) -> Value {
    let mut openapi = OpenApi {
        info: Info {
            title: "Atoll instance API".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            description: Some(DESCRIPTION.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let _router = ApiRouter::new()
        .nest("/api/v1", api.clone())
        .nest("/api/v1/{tenant}", api)
        .merge(public)
        .finish_api(&mut openapi);
    let mut doc = match serde_json::to_value(&openapi) {
        Ok(doc) => doc,
        Err(err) => {
            tracing::error!(error = %err, "the OpenAPI document could not be written");
            return json!({});
        }
    };
    finish(&mut doc);
    doc
}

const DESCRIPTION: &str = "The REST API of one Atoll instance, shaped like Kestra's. \
Every route is served under `/api/v1/...` and under Kestra's tenant form \
`/api/v1/{tenant}/...` (only this instance's tenant answers). Calls need a \
bearer token from Identity; `x-atoll-role` names the least role an operation \
needs (Viewer reads, Editor changes). Kestra routes Atoll does not implement \
answer 501 naming the feature; `x-atoll-unimplemented` lists them.";

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// What aide cannot know: the path parameters' names (routes name the same
/// extractor's segments differently, tuples have none), operation ids, the
/// bearer scheme and the 501 table.
fn finish(doc: &mut Value) {
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        // axum's catch-all `{*rest}` is OpenAPI's `{rest}` (which matches
        // one segment in the document; the route takes any number).
        *paths = std::mem::take(paths)
            .into_iter()
            .map(|(path, item)| (path.replace("{*", "{"), item))
            .collect();
        for (path, item) in paths.iter_mut() {
            for method in METHODS {
                if let Some(operation) = item.get_mut(method).and_then(Value::as_object_mut) {
                    name_path_parameters(path, operation);
                    operation
                        .entry("operationId")
                        .or_insert_with(|| Value::String(operation_id(method, path)));
                }
            }
        }
    }
    let components = doc
        .as_object_mut()
        .map(|d| d.entry("components").or_insert_with(|| json!({})));
    if let Some(components) = components.and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".into(),
            json!({BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                "description": "A token from Identity for this tenant."}}),
        );
    }
    if let Some(doc) = doc.as_object_mut() {
        doc.insert(UNIMPLEMENTED_EXTENSION.into(), unimplemented::described());
    }
    bound_integers(doc);
}

/// Gives every sized integer (`format: uint32`…) the bounds of its Rust
/// type, where its schema has none: a number past them is refused (400),
/// so the document must not offer it.
fn bound_integers(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let bounds = match map.get("format").and_then(Value::as_str) {
                Some("uint8") => Some((json!(0), json!(u8::MAX))),
                Some("uint16") => Some((json!(0), json!(u16::MAX))),
                Some("uint32") => Some((json!(0), json!(u32::MAX))),
                Some("uint64" | "uint") => Some((json!(0), json!(u64::MAX))),
                Some("int8") => Some((json!(i8::MIN), json!(i8::MAX))),
                Some("int16") => Some((json!(i16::MIN), json!(i16::MAX))),
                Some("int32") => Some((json!(i32::MIN), json!(i32::MAX))),
                Some("int64" | "int") => Some((json!(i64::MIN), json!(i64::MAX))),
                _ => None,
            };
            if let Some((min, max)) = bounds {
                map.entry("minimum").or_insert(min);
                map.entry("maximum").or_insert(max);
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// The `{name}` segments of a route template.
pub fn template_parameters(path: &str) -> Vec<&str> {
    path.split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// Path parameters exactly as the template names them, all required
/// strings unless the handler described them.
fn name_path_parameters(path: &str, operation: &mut Map<String, Value>) {
    let names = template_parameters(path);
    let params = operation
        .entry("parameters")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(params) = params.as_array_mut() else {
        return;
    };
    params.retain(|p| p["in"] != "path" || names.iter().any(|n| p["name"] == *n));
    for param in params.iter_mut().filter(|p| p["in"] == "path") {
        param["required"] = Value::Bool(true);
        if let Some(schema) = param["name"]
            .as_str()
            .and_then(|n| parameter_schema(path, n))
        {
            param["schema"] = schema;
        }
    }
    for name in names {
        if !params
            .iter()
            .any(|p| p["in"] == "path" && p["name"] == name)
        {
            params.push(json!({
                "name": name,
                "in": "path",
                "required": true,
                "description": parameter_description(name),
                "schema": parameter_schema(path, name).unwrap_or_else(|| json!({"type": "string"})),
            }));
        }
    }
}

/// What the handlers accept of a segment where a refusal is a 400 rather
/// than a 404: namespaces (as flows name them) and KV keys.
fn parameter_schema(path: &str, name: &str) -> Option<Value> {
    match name {
        "namespace" => Some(json!({"type": "string", "maxLength": 150,
            "pattern": "^[a-z0-9][a-z0-9_-]*(\\.[a-z0-9][a-z0-9_-]*)*(?!\\n)$"})),
        "key" if path.contains("/kv/") => Some(json!({"type": "string",
            "pattern": "^[A-Za-z0-9_.-]{1,255}(?!\\n)$"})),
        _ => None,
    }
}

fn parameter_description(name: &str) -> &'static str {
    match name {
        "tenant" => "This instance's tenant (any other answers 404).",
        "namespace" => "A namespace, e.g. `company.team`.",
        "id" | "flow_id" => "A flow id, or an execution id on /executions/{id} routes.",
        "execution_id" => "An execution id.",
        "key" => "A key (a webhook's key is its secret).",
        _ => "A path segment.",
    }
}

/// `get_tenant_flows_namespace_id` for `GET /api/v1/{tenant}/flows/{namespace}/{id}`.
fn operation_id(method: &str, path: &str) -> String {
    let mut id = method.to_owned();
    for segment in path.trim_start_matches("/api/v1").split('/') {
        let word: String = segment
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let word = word.trim_matches('_');
        if !word.is_empty() {
            id.push('_');
            id.push_str(word);
        }
    }
    id
}
