//! The OpenAPI documents kubectl reads (`/openapi/v2`, `/openapi/v3` and
//! one v3 document per group/version): each served kind with its
//! `x-kubernetes-group-version-kind`; custom resources carry their CRD
//! schema, built-in kinds an open object schema.

use serde_json::{Map, Value, json};

use crate::kubesim::discovery::KUBERNETES_VERSION;
use crate::kubesim::resources::{Registry, ResourceType};

fn definition_name(t: &ResourceType) -> String {
    if t.custom {
        let reversed: Vec<&str> = t.group.split('.').rev().collect();
        format!("{}.{}.{}", reversed.join("."), t.version, t.kind)
    } else {
        let group = match t.group.as_str() {
            "" => "core",
            g => g.split('.').next().unwrap_or(g),
        };
        let prefix = if t.group == "apiextensions.k8s.io" {
            "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions"
        } else {
            "io.k8s.api"
        };
        format!("{prefix}.{group}.{}.{}", t.version, t.kind)
    }
}

fn schema_of(t: &ResourceType) -> Value {
    let mut schema = match &t.schema {
        Some(s) => (**s).clone(),
        None => json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    };
    schema["x-kubernetes-group-version-kind"] =
        json!([{"group": t.group, "version": t.version, "kind": t.kind}]);
    schema
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": format!("v{}.{}.0", KUBERNETES_VERSION.0, KUBERNETES_VERSION.1)})
}

/// `/openapi/v2`.
pub fn v2(registry: &Registry) -> Value {
    let definitions: Map<String, Value> = registry
        .all()
        .iter()
        .map(|t| (definition_name(t), schema_of(t)))
        .collect();
    json!({"swagger": "2.0", "info": info(), "paths": {}, "definitions": definitions})
}

fn group_path(t: &ResourceType) -> String {
    if t.group.is_empty() {
        format!("api/{}", t.version)
    } else {
        format!("apis/{}/{}", t.group, t.version)
    }
}

/// `/openapi/v3`: where each group/version's document is.
pub fn v3_root(registry: &Registry) -> Value {
    let mut paths = Map::new();
    for t in registry.all() {
        let path = group_path(t);
        let url = format!("/openapi/v3/{path}");
        paths.insert(path, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// The operations on one object, with the query parameters kubectl looks
/// for before it relies on server-side field validation and dry runs.
fn object_path(t: &ResourceType) -> (String, Value) {
    let namespace = if t.namespaced {
        "namespaces/{namespace}/"
    } else {
        ""
    };
    let path = format!("/{}/{namespace}{}/{{name}}", group_path(t), t.plural);
    let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
    let param = |name: &str| json!({"name": name, "in": "query", "uniqueItems": true, "schema": {"type": "string"}});
    let operation = |action: &str| {
        json!({
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
            "parameters": [param("dryRun"), param("fieldManager"), param("fieldValidation"), param("force")],
            "responses": {"200": {"description": "OK"}},
        })
    };
    (
        path,
        json!({"get": operation("get"), "put": operation("put"), "patch": operation("patch"), "delete": operation("delete")}),
    )
}

/// `/openapi/v3/{api/v1 | apis/group/version}`.
pub fn v3_group(registry: &Registry, path: &str) -> Option<Value> {
    let types: Vec<_> = registry
        .all()
        .iter()
        .filter(|t| group_path(t) == path)
        .collect();
    if types.is_empty() {
        return None;
    }
    let schemas: Map<String, Value> = types
        .iter()
        .map(|t| (definition_name(t), schema_of(t)))
        .collect();
    let paths: Map<String, Value> = types.iter().map(|t| object_path(t)).collect();
    Some(json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {"schemas": schemas},
    }))
}
