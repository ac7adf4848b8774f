//! The document against the router it is generated from, and against the
//! OpenAPI 3.1 specification (a Python validator, when the test command
//! installed one).

use std::collections::HashSet;

use serde_json::Value;

use super::{ROLE_EXTENSION, UNIMPLEMENTED_EXTENSION, template_parameters};
use crate::api::{api_routes, openapi_document};

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

fn operations(doc: &Value) -> Vec<(String, String, &Value)> {
    let mut out = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                out.push((method.to_owned(), path.clone(), op));
            }
        }
    }
    out
}

#[test]
fn every_route_is_documented_under_both_prefixes() {
    let doc = openapi_document();
    let paths = doc["paths"].as_object().expect("paths");
    let mut missing = Vec::new();
    for route in api_routes().paths() {
        for full in [
            format!("/api/v1{route}"),
            format!("/api/v1/{{tenant}}{route}"),
        ] {
            let documented = paths
                .get(&full)
                .is_some_and(|item| METHODS.iter().any(|m| item.get(m).is_some()));
            if !documented {
                missing.push(full);
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes served but not in the OpenAPI document (build them with \
         aide::axum::routing's get/post…, not axum's): {missing:?}"
    );
}

#[test]
fn operations_name_their_role_and_path_parameters() {
    let doc = openapi_document();
    let mut ids = HashSet::new();
    let mut undocumented = Vec::new();
    for (method, path, op) in operations(&doc) {
        let webhook = path.contains("/executions/webhook/");
        let role = op.get(ROLE_EXTENSION).and_then(Value::as_str);
        if webhook {
            assert_eq!(role, None, "{method} {path}: webhooks take no token");
        } else {
            assert!(
                matches!(role, Some("Viewer" | "Editor")),
                "{method} {path}: no role mark"
            );
            assert_eq!(
                op["security"][0]["bearer"],
                serde_json::json!([]),
                "{method} {path}"
            );
            for status in ["401", "403"] {
                assert!(
                    op["responses"].get(status).is_some(),
                    "{method} {path}: {status}"
                );
            }
        }
        let params: Vec<&str> = op["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["in"] == "path")
            .filter_map(|p| p["name"].as_str())
            .collect();
        let mut expected = template_parameters(&path);
        let mut got = params.clone();
        expected.sort_unstable();
        got.sort_unstable();
        assert_eq!(got, expected, "{method} {path}: path parameters");
        let id = op["operationId"].as_str().expect("operationId").to_owned();
        assert!(
            ids.insert(id.clone()),
            "{method} {path}: operationId {id} twice"
        );
        let responses = op["responses"].as_object().expect("responses");
        if !responses.keys().any(|s| s.starts_with('2')) {
            undocumented.push(format!("{method} {path}"));
        }
    }
    assert!(
        undocumented.is_empty(),
        "no success answer documented (describe it: a typed output or a `*_with`): {undocumented:#?}"
    );
    assert!(ids.len() > 40, "only {} operations", ids.len());
}

#[test]
fn roles_match_what_the_handlers_require() {
    let doc = openapi_document();
    let role = |method: &str, path: &str| {
        doc["paths"][path][method][ROLE_EXTENSION]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(role("get", "/api/v1/flows/{namespace}/{id}"), "Viewer");
    assert_eq!(
        role("put", "/api/v1/{tenant}/flows/{namespace}/{id}"),
        "Editor"
    );
    assert_eq!(role("post", "/api/v1/executions/{id}/kill"), "Editor");
    assert_eq!(role("get", "/api/v1/logs/{execution_id}"), "Viewer");
    let unimplemented = doc[UNIMPLEMENTED_EXTENSION].as_array().expect("table");
    assert!(unimplemented.iter().any(|e| e["feature"] == "secrets"));
}

/// The document validates against the OpenAPI 3.1 specification, with
/// `openapi-spec-validator` from the test command's schemathesis
/// environment (`ATOLL_SCHEMATHESIS`, its `python` beside it).
#[test]
fn document_validates_against_the_openapi_specification() {
    let Some(python) = validator_python() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    let text = serde_json::to_string_pretty(&openapi_document()).expect("json");
    std::fs::write(&file, text).expect("write");
    let out = std::process::Command::new(&python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("run openapi_spec_validator");
    assert!(
        out.status.success(),
        "the OpenAPI document does not validate:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `python` of the schemathesis environment the test command installs
/// (`ATOLL_SCHEMATHESIS=<venv>/bin/schemathesis`), where it also puts
/// `openapi-spec-validator`; the test is skipped, loudly, without it
/// unless `ATOLL_SCHEMATHESIS_REQUIRED=1`.
fn validator_python() -> Option<std::path::PathBuf> {
    let python = std::env::var_os("ATOLL_SCHEMATHESIS")
        .map(|bin| std::path::Path::new(&bin).with_file_name("python"))
        .filter(|python| python.exists());
    if python.is_none() {
        assert!(
            std::env::var("ATOLL_SCHEMATHESIS_REQUIRED").as_deref() != Ok("1"),
            "ATOLL_SCHEMATHESIS_REQUIRED=1 but ATOLL_SCHEMATHESIS names no schemathesis \
             environment with python beside it"
        );
        eprintln!(
            "SKIPPED: the OpenAPI validation needs ATOLL_SCHEMATHESIS (scripts/test installs it)"
        );
    }
    python
}

/// A route built with axum's own `get` still serves beside documented
/// ones; the document lists its path with no operation, which
/// `every_route_is_documented_under_both_prefixes` reports.
#[test]
fn a_plain_axum_route_coexists_and_is_reported_undocumented() {
    let routes = super::Routes::new()
        .route(
            "/flows/search",
            aide::axum::routing::get(crate::api::flows::search_flows),
        )
        .route("/plain", axum::routing::get(|| async { "plain" }));
    assert_eq!(routes.paths(), ["/flows/search", "/plain"]);
    let doc = super::document(routes.into_router(), aide::axum::ApiRouter::new());
    assert!(doc["paths"]["/api/v1/flows/search"]["get"].is_object());
    let plain = &doc["paths"]["/api/v1/plain"];
    assert!(METHODS.iter().all(|m| plain.get(m).is_none()), "{plain}");
}
