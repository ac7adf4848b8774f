//! The instance's endpoints for the isolation matrix, read from the
//! OpenAPI document the instance serves (`/api/v1/openapi.json`), so every
//! route, including routes added later, is checked for tokens, roles and
//! other tenants. Path and required query parameters get sample values
//! that name the tenant's flow `team/hello` and its execution;
//! `x-atoll-role: Editor` marks what a Viewer must be refused.
//!
//! Operations with no role mark take no token by design (webhooks: the
//! key in the path is the secret) and are left to their own tests.

use serde_json::Value;

use crate::harness::Instance;

/// One operation of the document.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    /// The path template, `/api/v1/{tenant}/flows/{namespace}/{id}`.
    pub template: String,
    /// Only an Editor (or Admin) may call it.
    pub editor: bool,
    /// The required query parameters' names.
    pub query: Vec<String>,
}

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

/// The operations that need a token, from `instance`'s document.
pub async fn from_document(instance: &Instance) -> Vec<Operation> {
    let answer = instance
        .call("GET", "/api/v1/openapi.json", None, None)
        .await
        .expect("the instance answers");
    assert_eq!(
        answer.status, 200,
        "GET /api/v1/openapi.json: {}",
        answer.body
    );
    let doc = answer.json();
    let mut operations = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("the document's paths") {
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let editor = match op["x-atoll-role"].as_str() {
                Some("Editor" | "Admin") => true,
                Some(_) => false,
                None => continue,
            };
            let query = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query" && p["required"] == Value::Bool(true))
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            operations.push(Operation {
                method: method.to_uppercase(),
                template: template.clone(),
                editor,
                query,
            });
        }
    }
    operations
}

/// A path parameter's sample value.
fn path_value(template: &str, name: &str, tenant: &str, execution: &str) -> String {
    match name {
        "tenant" => tenant.to_owned(),
        "namespace" => "team".to_owned(),
        "id" if template.contains("/executions/{id}") => execution.to_owned(),
        "id" | "flow_id" => "hello".to_owned(),
        "execution_id" | "task_run_id" => execution.to_owned(),
        "key" => "k".to_owned(),
        _ => "x".to_owned(),
    }
}

/// A required query parameter's sample value.
fn query_value(template: &str, name: &str, execution: &str) -> String {
    match name {
        "path" if template.contains("/executions/") => {
            format!("kestra:///team/hello/executions/{execution}/inputs/f/a.txt")
        }
        "path" => "/a.txt".to_owned(),
        "namespace" => "team".to_owned(),
        "taskRunId" => execution.to_owned(),
        _ => "x".to_owned(),
    }
}

/// Every operation as (method, URL path with samples, needs Editor), for
/// `tenant`'s URL form and the bare `/api/v1` one.
pub fn endpoints(
    operations: &[Operation],
    tenant: &str,
    execution: &str,
) -> Vec<(String, String, bool)> {
    operations
        .iter()
        .map(|op| {
            let mut path: Vec<String> = Vec::new();
            for segment in op.template.split('/') {
                match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => path.push(path_value(&op.template, name, tenant, execution)),
                    None => path.push(segment.to_owned()),
                }
            }
            let mut url = path.join("/");
            for (i, name) in op.query.iter().enumerate() {
                let sep = if i == 0 { '?' } else { '&' };
                url.push_str(&format!(
                    "{sep}{name}={}",
                    query_value(&op.template, name, execution)
                ));
            }
            (op.method.clone(), url, op.editor)
        })
        .collect()
}

/// The status a refused request must get: 401 for a credential that is
/// missing, forged, expired or another tenant's (authentication comes
/// first, whatever the path); for a valid token of this tenant, 404 on a
/// path naming another tenant (the instance knows no such tenant: the
/// answer of an unknown path, which tells nothing of other tenants) and
/// 403 for a Viewer on an Editor route of its own tenant.
pub fn refusal(valid_viewer_token: bool, names_other_tenant: bool) -> u16 {
    match (valid_viewer_token, names_other_tenant) {
        (false, _) => 401,
        (true, true) => 404,
        (true, false) => 403,
    }
}
