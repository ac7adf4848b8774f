//! Kestra routes Atoll does not implement, and will not: they answer 501
//! naming the feature and why, after authentication (a stranger still gets
//! 401), instead of a 404 that reads like a typo. Taken from Kestra's
//! official clients (1.3 and 2.0); everything about flows, executions,
//! logs, triggers, KV and namespace files is implemented or on its way,
//! and is not listed here.

use axum::Router;
use axum::http::Method;
use axum::routing::{MethodFilter, MethodRouter, any, on};
use serde_json::{Value, json};

use super::{ApiError, AppState, Viewer};

/// One unimplemented route, under `/api/v1` and `/api/v1/{tenant}`.
#[derive(Debug, Clone, Copy)]
pub struct Unimplemented {
    /// The methods answered 501; empty for any method.
    pub methods: &'static [&'static str],
    /// The route; a path ending in `/*` also covers everything below it.
    pub path: &'static str,
    pub feature: &'static str,
    pub why: &'static str,
}

const IDENTITY: &str = "People and their roles (Viewer, Editor, Admin) come from Identity's tokens; the instance keeps no users, groups or roles.";
const SECRETS: &str =
    "Secrets are Kubernetes Secrets named in the Tenant's spec.secrets, read with secret().";
const ADMIN: &str =
    "An Atoll instance is set up and administered through its Tenant resource in Kubernetes.";
const NAMESPACES: &str = "A namespace exists when a flow names it; it has no settings of its own.";

const QUEUE: &str =
    "Atoll has no execution queue to skip or leave: an execution starts when created.";
const TASK_RUN: &str =
    "A task run's state follows its attempts; change the execution's with change-status.";
const CSV: &str =
    "Search results are served as JSON; export flows as YAML with /flows/export/by-query.";
const FLOW_FILES: &str =
    "Flows are saved, replaced and deleted one at a time (`/flows/{namespace}/{id}`).";
const DISABLED: &str =
    "A flow is disabled by `disabled: true` in its source; save the flow to change it.";
const SOURCE: &str = "Keep flows as YAML in your repository and search or edit them there.";
const LOGS: &str =
    "Logs are read per execution (`/logs/{execution_id}`) and go with their execution.";

const fn all(path: &'static str, feature: &'static str, why: &'static str) -> Unimplemented {
    Unimplemented {
        methods: &[],
        path,
        feature,
        why,
    }
}

const fn some(
    methods: &'static [&'static str],
    path: &'static str,
    feature: &'static str,
    why: &'static str,
) -> Unimplemented {
    Unimplemented {
        methods,
        path,
        feature,
        why,
    }
}

/// The table: (methods, path, feature, why). A method Atoll does not serve
/// on a path it does serve (say DELETE of `/logs/{execution_id}`) is not
/// here: it answers 405 with the served methods in `Allow`, as the OpenAPI
/// document describes that path (a 501 there, undocumented, fails
/// schemathesis' server-error, undeclared-method and Allow checks).
pub const TABLE: &[Unimplemented] = &[
    all(
        "/apps/*",
        "apps",
        "Atoll runs flows and executions; it has no apps.",
    ),
    all(
        "/blueprints/*",
        "blueprints",
        "Atoll ships no blueprint catalog; keep flows as YAML in your repository.",
    ),
    all(
        "/dashboards/*",
        "dashboards",
        "The instance exports Prometheus metrics for your own dashboards.",
    ),
    all(
        "/tests/*",
        "flow test suites",
        "Test flows by running them on a test instance.",
    ),
    all("/assets/*", "assets", "Atoll keeps no asset catalog."),
    all("/ai/*", "AI flow generation", "Atoll has no AI assistant."),
    all("/mcp/*", "MCP servers", "Atoll has no MCP server."),
    all("/mcp-servers/*", "MCP servers", "Atoll has no MCP server."),
    all("/cases/*", "cases", "Atoll has no case management."),
    all(
        "/case-templates/*",
        "cases",
        "Atoll has no case management.",
    ),
    all("/users/*", "users", IDENTITY),
    all("/me/*", "users", IDENTITY),
    all("/groups/*", "groups", IDENTITY),
    all("/roles/*", "roles", IDENTITY),
    all("/bindings/*", "role bindings", IDENTITY),
    all("/invitations/*", "invitations", IDENTITY),
    all("/service-accounts/*", "service accounts", IDENTITY),
    all("/tenant-access/*", "tenant access", IDENTITY),
    all(
        "/security-integrations/*",
        "security integrations",
        IDENTITY,
    ),
    all(
        "/auditlogs/*",
        "audit logs",
        "The Kubernetes audit log and the instance's own logs record changes.",
    ),
    all("/secrets/*", "secrets", SECRETS),
    all("/credentials/*", "credentials", SECRETS),
    all(
        "/policies/*",
        "policies",
        "Atoll has no policy engine; review flows where they are kept.",
    ),
    all(
        "/promotion-targets/*",
        "flow promotions",
        "A flow moves between instances through your repository and each instance's API.",
    ),
    all(
        "/concurrency-limit/*",
        "concurrency limits",
        "A flow's limit is its `concurrency` property, set in its source.",
    ),
    all(
        "/quota-limits/*",
        "quotas",
        "The Tenant's Kubernetes resources bound what it uses.",
    ),
    all(
        "/worker-groups/*",
        "worker groups",
        "Tasks run as pods of the Tenant's namespace, or in the instance.",
    ),
    all(
        "/worker-queues/*",
        "worker groups",
        "Tasks run as pods of the Tenant's namespace, or in the instance.",
    ),
    all(
        "/worker-selectors/*",
        "worker groups",
        "Tasks run as pods of the Tenant's namespace, or in the instance.",
    ),
    all(
        "/reusable-inputs/*",
        "reusable inputs",
        "Declare inputs in each flow.",
    ),
    all(
        "/stats/*",
        "usage reports",
        "The instance exports Prometheus metrics instead.",
    ),
    all(
        "/plugins/*",
        "plugin catalog",
        "Atoll runs a fixed set of Kestra task types, listed in its documentation.",
    ),
    all("/instance/*", "instance administration", ADMIN),
    all("/tenants/*", "tenant administration", ADMIN),
    all("/notifications/*", "instance administration", ADMIN),
    all("/banners/*", "instance administration", ADMIN),
    all("/kill-switches/*", "instance administration", ADMIN),
    all("/configs/*", "instance administration", ADMIN),
    all("/setup/*", "instance administration", ADMIN),
    all("/license-info/*", "instance administration", ADMIN),
    all("/license/*", "instance administration", ADMIN),
    all("/auths/*", "instance administration", ADMIN),
    all("/basicAuth/*", "instance administration", ADMIN),
    some(&["POST"], "/namespaces", "namespace management", NAMESPACES),
    some(
        &["GET"],
        "/namespaces/search",
        "namespace management",
        NAMESPACES,
    ),
    some(
        &["POST"],
        "/namespaces/autocomplete",
        "namespace management",
        NAMESPACES,
    ),
    some(
        &["GET", "PUT", "DELETE"],
        "/namespaces/{namespace}",
        "namespace management",
        NAMESPACES,
    ),
    some(
        &["GET"],
        "/namespaces/{namespace}/inherited-variables",
        "namespace variables",
        "Declare variables in each flow.",
    ),
    some(
        &["GET"],
        "/namespaces/{namespace}/inherited-plugindefaults",
        "plugin defaults",
        "Set task properties in each flow.",
    ),
    all(
        "/namespaces/{namespace}/plugindefaults/*",
        "plugin defaults",
        "Set task properties in each flow.",
    ),
    all("/namespaces/{namespace}/secrets/*", "secrets", SECRETS),
    some(
        &["GET"],
        "/namespaces/{namespace}/inherited-secrets",
        "secrets",
        SECRETS,
    ),
    all(
        "/namespaces/{namespace}/credentials/*",
        "credentials",
        SECRETS,
    ),
    some(
        &["GET"],
        "/namespaces/{namespace}/dependencies",
        "flow dependencies",
        "Atoll does not track dependencies between flows.",
    ),
    some(
        &["GET"],
        "/flows/{namespace}/{id}/dependencies",
        "flow dependencies",
        "Atoll does not track dependencies between flows.",
    ),
    some(
        &["POST"],
        "/flows/{namespace}/{id}/promote",
        "flow promotions",
        "A flow moves between instances through your repository and each instance's API.",
    ),
    all(
        "/flows/{namespace}/{id}/promotions/*",
        "flow promotions",
        "A flow moves between instances through your repository and each instance's API.",
    ),
    some(
        &["POST"],
        "/flows/promote/by-ids",
        "flow promotions",
        "A flow moves between instances through your repository and each instance's API.",
    ),
    some(
        &["POST"],
        "/flows/policies/preview",
        "policies",
        "Atoll has no policy engine; review flows where they are kept.",
    ),
    // Calls of Kestra's clients on flows, executions and logs that Atoll
    // does not serve (checked by tests/kestra_clients/routes_served.py).
    some(
        &["POST"],
        "/executions/force-run/by-ids",
        "force-run",
        QUEUE,
    ),
    some(
        &["POST"],
        "/executions/force-run/by-query",
        "force-run",
        QUEUE,
    ),
    some(&["POST"], "/executions/unqueue/by-ids", "unqueue", QUEUE),
    some(&["POST"], "/executions/unqueue/by-query", "unqueue", QUEUE),
    some(&["POST"], "/executions/{id}/force-run", "force-run", QUEUE),
    some(
        &["POST"],
        "/executions/{id}/actions/force-run",
        "force-run",
        QUEUE,
    ),
    some(&["POST"], "/executions/{id}/unqueue", "unqueue", QUEUE),
    some(
        &["POST"],
        "/executions/{id}/actions/unqueue",
        "unqueue",
        QUEUE,
    ),
    some(
        &["POST"],
        "/executions/{id}/state",
        "task run state change",
        TASK_RUN,
    ),
    some(
        &["POST"],
        "/executions/{id}/actions/state",
        "task run state change",
        TASK_RUN,
    ),
    some(
        &["POST"],
        "/executions/{id}/actions/eval/{task_run_id}",
        "expression evaluation in a task run",
        "Expressions are evaluated against the whole execution (`/eval`).",
    ),
    some(
        &["POST"],
        "/executions/{id}/actions/resume-from-breakpoint",
        "breakpoints",
        "Atoll runs executions to the end; it does not stop at breakpoints.",
    ),
    some(
        &["POST"],
        "/executions/{id}/actions/resume/validate",
        "validation of resume inputs",
        "A paused execution is resumed with `/resume`, which checks its inputs.",
    ),
    some(
        &["GET"],
        "/executions/{id}/graph",
        "execution graph",
        "Atoll draws no graphs of executions; the flow's graph is served under /flows.",
    ),
    some(
        &["GET"],
        "/executions/{id}/flow",
        "flow of an execution",
        "Read the flow with /flows/{namespace}/{id}?revision= from the execution's flowRevision.",
    ),
    some(
        &["GET"],
        "/executions/flows/{namespace}/{id}",
        "flow of an execution",
        "Read the flow with /flows/{namespace}/{id}.",
    ),
    some(
        &["GET"],
        "/executions/{id}/follow-dependencies",
        "flow dependencies",
        "Atoll does not track dependencies between flows.",
    ),
    some(
        &["GET"],
        "/executions/{id}/file/preview",
        "output file preview",
        "Download the file with /executions/{id}/file.",
    ),
    some(
        &["GET"],
        "/executions/distinct-field-values",
        "distinct execution field values",
        "Search executions with /executions/search.",
    ),
    some(
        &["GET"],
        "/executions/export/by-query/csv",
        "execution CSV export",
        CSV,
    ),
    some(
        &["GET"],
        "/flows/export/by-query/csv",
        "flow CSV export",
        CSV,
    ),
    some(
        &["GET"],
        "/triggers/export/by-query/csv",
        "trigger CSV export",
        CSV,
    ),
    some(
        &["GET"],
        "/executions/namespaces/{namespace}/flows/{id}/average-duration",
        "average execution duration",
        "The instance exports execution durations as Prometheus metrics.",
    ),
    some(&["POST"], "/flows/bulk", "flow bulk update", FLOW_FILES),
    some(
        &["POST"],
        "/flows/enable/by-ids",
        "enabling and disabling flows",
        DISABLED,
    ),
    some(
        &["POST"],
        "/flows/enable/by-query",
        "enabling and disabling flows",
        DISABLED,
    ),
    some(
        &["POST"],
        "/flows/disable/by-ids",
        "enabling and disabling flows",
        DISABLED,
    ),
    some(
        &["POST"],
        "/flows/disable/by-query",
        "enabling and disabling flows",
        DISABLED,
    ),
    some(
        &["DELETE"],
        "/flows/delete/by-query",
        "flow deletion by query",
        "Delete flows by ids (`/flows/delete/by-ids`) or one at a time.",
    ),
    some(
        &["POST"],
        "/flows/export/by-ids",
        "flow export by ids",
        "Export flows with /flows/export/by-query.",
    ),
    some(
        &["POST"],
        "/flows/hashes/by-ids",
        "flow hashes",
        "Compare flows by their source (/flows/{namespace}/{id}).",
    ),
    some(
        &["POST"],
        "/flows/expressions",
        "expression autocompletion",
        "Atoll has no flow editor.",
    ),
    some(&["GET"], "/flows/source", "flow source search", SOURCE),
    some(
        &["POST"],
        "/flows/source/replace/preview",
        "flow source replace",
        SOURCE,
    ),
    some(
        &["POST"],
        "/flows/source/replace/apply",
        "flow source replace",
        SOURCE,
    ),
    some(
        &["POST"],
        "/flows/source/replace/line",
        "flow source replace",
        SOURCE,
    ),
    some(
        &["GET"],
        "/flows/deprecated",
        "deprecated plugin report",
        "Atoll runs a fixed set of Kestra task types, listed in its documentation.",
    ),
    some(&["GET"], "/logs/search", "log search", LOGS),
    some(&["DELETE"], "/logs/{namespace}/{id}", "log deletion", LOGS),
    all(
        "/namespaces/{namespace}/policies/*",
        "policies",
        "Atoll has no policy engine; review flows where they are kept.",
    ),
    all(
        "/namespaces/{namespace}/reusable-inputs/*",
        "reusable inputs",
        "Declare inputs in each flow.",
    ),
    all("/invitation/*", "invitations", IDENTITY),
    all(
        "/basicAuthValidationErrors",
        "instance administration",
        ADMIN,
    ),
    all(
        "/pebble/*",
        "expression function catalog",
        "Atoll's expressions are described in its documentation.",
    ),
];

/// The most of a request body read before answering 501.
const DRAINED: usize = 1 << 20;

/// The answer of every route of the table. The request's body is read
/// first (up to [`DRAINED`]): answered with its body unread, the
/// connection is closed after the answer, and a client reusing it for its
/// next call (keep-alive, as Kestra's clients do) finds it closed
/// ("Remote end closed connection without response").
fn refuse(entry: Unimplemented) -> MethodRouter<AppState> {
    let handler = move |_: Viewer, body: axum::body::Body| async move {
        let _ = axum::body::to_bytes(body, DRAINED).await;
        ApiError::NotImplemented {
            feature: entry.feature,
            why: entry.why,
        }
    };
    if entry.methods.is_empty() {
        return any(handler);
    }
    let filter = entry
        .methods
        .iter()
        .filter_map(|m| Method::from_bytes(m.as_bytes()).ok())
        .filter_map(|m| MethodFilter::try_from(m).ok())
        .reduce(MethodFilter::or);
    match filter {
        Some(filter) => on(filter, handler),
        None => any(handler),
    }
}

/// The routes of [`TABLE`] (to nest under both prefixes, behind
/// authentication).
pub(super) fn routes() -> Router<AppState> {
    let mut router = Router::new();
    for entry in TABLE {
        match entry.path.strip_suffix("/*") {
            Some(base) => {
                router = router
                    .route(base, refuse(*entry))
                    .route(&format!("{base}/{{*rest}}"), refuse(*entry));
            }
            None => router = router.route(entry.path, refuse(*entry)),
        }
    }
    router
}

/// The table as the OpenAPI document lists it (`x-atoll-unimplemented`).
pub(super) fn described() -> Value {
    TABLE
        .iter()
        .map(|e| json!({"methods": e.methods, "path": e.path, "feature": e.feature, "why": e.why}))
        .collect()
}
