//! The HTTP face of kubesim: an axum router that parses Kubernetes API
//! paths and query parameters, applies injected faults, dispatches to the
//! verbs, logs each request, and answers JSON (or `Table`s for kubectl).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Method, StatusCode, Uri, header};
use serde_json::{Value, json};

use crate::kubesim::discovery;
use crate::kubesim::error::{ApiError, ApiResult, Cause};
use crate::kubesim::faults::Faults;
use crate::kubesim::fields::{self, Part, Writer};
use crate::kubesim::log::{RequestLog, RequestRecord, Verb};
use crate::kubesim::openapi;
use crate::kubesim::patch;
use crate::kubesim::resources::ResourceType;
use crate::kubesim::selectors::{FieldSelector, LabelSelector};
use crate::kubesim::store::{DeleteOptions, Store, WriteOptions, Written};
use crate::kubesim::table;
use crate::kubesim::watch::{self, WatchRequest};
use crate::kubesim::{PodLogRequest, PodLogs};

/// State shared by every request.
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) log: RequestLog,
    pub(crate) faults: Faults,
    pub(crate) pod_logs: RwLock<Option<Arc<dyn PodLogs>>>,
    pub(crate) bookmark_interval: Duration,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The router: discovery and OpenAPI routes, everything else parsed as a
/// resource path.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/api",
            get(|| async { axum::Json(discovery::core_versions()) }),
        )
        .route("/apis", get(apis))
        .route("/api/{version}", get(core_resources))
        .route("/apis/{group}", get(api_group))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_root))
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .fallback(resource)
        .with_state(shared)
}

async fn apis(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.lock();
    axum::Json(discovery::group_list(&store.registry)).into_response()
}

async fn core_resources(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(version): axum::extract::Path<String>,
) -> Response {
    let found = discovery::resource_list(&shared.lock().registry, "", &version);
    found.map_or_else(
        || ApiError::no_route(&format!("/api/{version}")).into_response(),
        |list| axum::Json(list).into_response(),
    )
}

async fn api_group(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(group): axum::extract::Path<String>,
) -> Response {
    let found = discovery::group(&shared.lock().registry, &group);
    found.map_or_else(
        || ApiError::no_route(&format!("/apis/{group}")).into_response(),
        |g| axum::Json(g).into_response(),
    )
}

async fn group_resources(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
) -> Response {
    let found = discovery::resource_list(&shared.lock().registry, &group, &version);
    found.map_or_else(
        || ApiError::no_route(&format!("/apis/{group}/{version}")).into_response(),
        |list| axum::Json(list).into_response(),
    )
}

async fn openapi_v2(State(shared): State<Arc<Shared>>) -> Response {
    let registry = shared.lock().registry.clone();
    axum::Json(openapi::v2(&registry)).into_response()
}

async fn openapi_v3_root(State(shared): State<Arc<Shared>>) -> Response {
    let registry = shared.lock().registry.clone();
    axum::Json(openapi::v3_root(&registry)).into_response()
}

async fn openapi_v3(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let registry = shared.lock().registry.clone();
    match openapi::v3_group(&registry, &path) {
        Some(doc) => axum::Json(doc).into_response(),
        None => ApiError::no_route(&format!("/openapi/v3/{path}")).into_response(),
    }
}

/// A parsed resource path.
#[derive(Debug)]
struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn parse_path(store: &Store, path: &str) -> ApiResult<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route(path)),
    };
    let registry = &store.registry;
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, more @ ..]
            if registry
                .find(group, version, resource)
                .is_some_and(|t| t.namespaced) =>
        {
            (
                Some(ns.to_string()),
                std::iter::once(*resource)
                    .chain(more.iter().copied())
                    .collect::<Vec<_>>(),
            )
        }
        other => (None, other.to_vec()),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route(path)),
    };
    let rt = registry
        .find(group, version, resource)
        .ok_or_else(|| ApiError::no_route(path))?;
    if !rt.namespaced && namespace.is_some() {
        return Err(ApiError::no_route(path));
    }
    if let Some(sub) = subresource {
        let known = (sub == "status" && rt.status_subresource)
            || (sub == "log" && rt.group.is_empty() && rt.plural == "pods");
        if !known {
            return Err(ApiError::no_route(path));
        }
    }
    Ok(Target {
        rt,
        namespace,
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

fn flag(query: &HashMap<String, String>, key: &str) -> bool {
    matches!(query.get(key).map(String::as_str), Some("true" | "1"))
}

fn verb_of(
    method: &Method,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> ApiResult<Verb> {
    let has_name = target.name.is_some();
    Ok(match (method.as_str(), has_name) {
        ("GET", false) if flag(query, "watch") => Verb::Watch,
        ("GET", false) => Verb::List,
        ("GET", true) => Verb::Get,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => {
            if content_type(headers).starts_with("application/apply-patch") {
                Verb::Apply
            } else {
                Verb::Patch
            }
        }
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
    })
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

fn manager_of(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn parse_body(body: &Bytes) -> ApiResult<Value> {
    if body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(body).or_else(|json_error| {
        serde_norway::from_slice::<Value>(body).map_err(|_| {
            ApiError::bad_request(format!(
                "the request body is neither JSON nor YAML: {json_error}"
            ))
        })
    })
}

fn wants_table(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("as=Table"))
}

/// Every resource request.
async fn resource(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let target = match parse_path(&shared.lock(), uri.path()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let verb = match verb_of(&method, &target, &query, &headers) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut record = RequestRecord {
        verb,
        group: target.rt.group.clone(),
        resource: target.rt.plural.clone(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
        field_manager: query.get("fieldManager").cloned().unwrap_or_default(),
        code: 200,
        wrote: false,
        faulted: false,
    };
    let decision = shared.faults.decide(verb, &target.rt.plural);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(error) = decision.error {
        record.code = error.code;
        record.faulted = true;
        shared.log.push(record);
        return error.into_response();
    }
    let outcome = serve(&shared, verb, &target, &query, &headers, &body).await;
    let response = match outcome {
        Ok((response, wrote)) => {
            record.wrote = wrote;
            record.code = response.status().as_u16();
            response
        }
        Err(error) => {
            record.code = error.code;
            error.into_response()
        }
    };
    shared.log.push(record);
    response
}

fn json_response(code: StatusCode, value: &Value) -> Response {
    (code, axum::Json(value)).into_response()
}

fn selectors(query: &HashMap<String, String>) -> ApiResult<(LabelSelector, FieldSelector)> {
    let labels = LabelSelector::parse(query.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map_or("", String::as_str))?;
    Ok((labels, fields))
}

fn parse_rv(text: &str) -> ApiResult<u64> {
    text.parse()
        .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {text:?}")))
}

async fn serve(
    shared: &Arc<Shared>,
    verb: Verb,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &Bytes,
) -> ApiResult<(Response, bool)> {
    let rt = &target.rt;
    let ns = target.namespace.clone().unwrap_or_default();
    let name = target.name.clone().unwrap_or_default();
    if rt.namespaced && ns.is_empty() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(ApiError::no_route(
            "a namespaced resource needs a namespace",
        ));
    }
    let part = if target.subresource.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    let options = WriteOptions {
        manager: manager_of(query, headers),
        dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
        applied: false,
        part,
    };
    let table = wants_table(headers);
    match verb {
        Verb::Get if target.subresource.as_deref() == Some("log") => {
            pod_log(shared, &ns, &name, query).await.map(|r| (r, false))
        }
        Verb::Get => {
            let object = shared.lock().get(rt, &ns, &name)?;
            let out = if table {
                table::table(rt, &[object], None, None)
            } else {
                object
            };
            Ok((json_response(StatusCode::OK, &out), false))
        }
        Verb::List => {
            let (labels, fields) = selectors(query)?;
            let limit = query
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0);
            let continue_from = match query.get("continue").filter(|c| !c.is_empty()) {
                Some(token) => Some(decode_continue(token)?),
                None => None,
            };
            let store = shared.lock();
            let rv = continue_from
                .as_ref()
                .map_or(store.resource_version(), |c| c.0);
            let (items, next) = store.list(
                rt,
                target.namespace.as_deref(),
                &labels,
                &fields,
                limit,
                continue_from.as_ref().map(|c| &c.1),
            );
            drop(store);
            let token = next.map(|key| encode_continue(rv, &key));
            let out = if table {
                table::table(rt, &items, Some(rv), token.as_deref())
            } else {
                let mut metadata = json!({"resourceVersion": rv.to_string()});
                if let Some(token) = &token {
                    metadata["continue"] = json!(token);
                }
                json!({
                    "kind": format!("{}List", rt.kind),
                    "apiVersion": rt.api_version(),
                    "metadata": metadata,
                    "items": items,
                })
            };
            Ok((json_response(StatusCode::OK, &out), false))
        }
        Verb::Watch => {
            let (labels, fields) = selectors(query)?;
            let resource_version = match query.get("resourceVersion").map(String::as_str) {
                None | Some("") | Some("0") => None,
                Some(rv) => Some(parse_rv(rv)?),
            };
            let request = WatchRequest {
                rt: rt.clone(),
                namespace: target.namespace.clone(),
                labels,
                fields,
                resource_version,
                bookmarks: flag(query, "allowWatchBookmarks"),
                timeout: query
                    .get("timeoutSeconds")
                    .and_then(|t| t.parse::<u64>().ok())
                    .map(Duration::from_secs),
            };
            let stream = watch::open(
                &shared.store,
                shared.faults.watch_closer(),
                request,
                shared.bookmark_interval,
            );
            let stream: std::pin::Pin<
                Box<dyn futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send>,
            > = if table {
                Box::pin(table::watch_as_table(rt.clone(), stream))
            } else {
                Box::pin(stream)
            };
            let response = Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::CACHE_CONTROL, "no-cache, private")
                .body(Body::from_stream(stream))
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok((response, false))
        }
        Verb::Create => {
            let object = parse_body(body)?;
            let written = shared.lock().create(rt, &ns, object, &options)?;
            Ok((
                json_response(StatusCode::CREATED, &written.object),
                written.wrote,
            ))
        }
        Verb::Update => {
            let object = parse_body(body)?;
            let written = shared.lock().update(rt, &ns, &name, object, &options)?;
            Ok((
                json_response(StatusCode::OK, &written.object),
                written.wrote,
            ))
        }
        Verb::Patch => {
            let patch = parse_body(body)?;
            let kind = content_type(headers)
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string();
            let mut store = shared.lock();
            let old = store
                .object(&rt.store_key(), &ns, &name)
                .ok_or_else(|| ApiError::not_found(rt.subject(), &name))?;
            let mut new = crate::kubesim::store::present(&old, rt);
            match kind.as_str() {
                "application/merge-patch+json" => patch::merge_patch(&mut new, &patch),
                "application/json-patch+json" => patch::json_patch(&mut new, &patch)?,
                "application/strategic-merge-patch+json" if !rt.custom => {
                    patch::strategic_merge_patch(&mut new, &patch);
                }
                other => {
                    return Err(ApiError::unsupported_media_type(format!(
                        "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml (got {other})"
                    )));
                }
            }
            let written = store.replace_with(rt, &ns, &name, old, new, &options)?;
            Ok((
                json_response(StatusCode::OK, &written.object),
                written.wrote,
            ))
        }
        Verb::Apply => {
            let applied = parse_body(body)?;
            let written = apply(shared, rt, &ns, &name, &applied, query, options)?;
            let code = if written.1 {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok((json_response(code, &written.0.object), written.0.wrote))
        }
        Verb::Delete => {
            let options = delete_options(query, body)?;
            let (object, gone) = shared.lock().delete(rt, &ns, &name, &options)?;
            let out = if gone && !options.dry_run {
                json!({
                    "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": rt.group, "kind": rt.plural,
                                "uid": object["metadata"]["uid"]},
                })
            } else {
                object
            };
            Ok((json_response(StatusCode::OK, &out), !options.dry_run))
        }
        Verb::DeleteCollection => {
            let (labels, fields) = selectors(query)?;
            let options = delete_options(query, body)?;
            let mut store = shared.lock();
            let (items, _) = store.list(
                rt,
                target.namespace.as_deref(),
                &labels,
                &fields,
                None,
                None,
            );
            let mut deleted = Vec::new();
            for item in &items {
                let item_ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
                let item_name = item["metadata"]["name"].as_str().unwrap_or_default();
                if let Ok((object, _)) = store.delete(rt, item_ns, item_name, &options) {
                    deleted.push(object);
                }
            }
            let wrote = !deleted.is_empty() && !options.dry_run;
            let out = json!({
                "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
                "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": deleted,
            });
            Ok((json_response(StatusCode::OK, &out), wrote))
        }
    }
}

fn apply(
    shared: &Shared,
    rt: &ResourceType,
    ns: &str,
    name: &str,
    applied: &Value,
    query: &HashMap<String, String>,
    mut options: WriteOptions,
) -> ApiResult<(Written, bool)> {
    let part = options.part;
    let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
        return Err(ApiError::invalid(
            "PatchOptions",
            "meta.k8s.io",
            "",
            vec![Cause {
                reason: "FieldValueRequired".into(),
                field: "fieldManager".into(),
                message: "fieldManager: Required value: is required for apply patch".into(),
            }],
        ));
    };
    if !applied.is_object() {
        return Err(ApiError::bad_request("an apply patch must be an object"));
    }
    if let Some(body_name) = applied["metadata"]["name"].as_str()
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let force = flag(query, "force");
    options.applied = true;
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let api_version = rt.api_version();
    let writer = Writer {
        manager,
        api_version: &api_version,
        part,
        now: &now,
    };
    let schema = rt.schema.as_deref();
    let mut store = shared.lock();
    match store.object(&rt.store_key(), ns, name) {
        Some(old) => {
            let current = crate::kubesim::store::present(&old, rt);
            let new = fields::apply(Some(&current), applied, schema, &writer, force).map_err(
                |conflicts| {
                    ApiError::apply_conflict(
                        rt.subject(),
                        name,
                        conflicts
                            .into_iter()
                            .map(|c| Cause {
                                reason: "FieldManagerConflict".into(),
                                message: format!("conflict with \"{}\": {}", c.manager, c.field),
                                field: c.field,
                            })
                            .collect(),
                    )
                },
            )?;
            Ok((store.replace_with(rt, ns, name, old, new, &options)?, false))
        }
        None if part == Part::Status => Err(ApiError::not_found(rt.subject(), name)),
        None => {
            let mut new = fields::apply(None, applied, schema, &writer, true)
                .unwrap_or_else(|_| applied.clone());
            crate::kubesim::store::set_name(&mut new, name);
            Ok((store.create(rt, ns, new, &options)?, true))
        }
    }
}

fn delete_options(query: &HashMap<String, String>, body: &Bytes) -> ApiResult<DeleteOptions> {
    let body = parse_body(body)?;
    let dry_run = query.get("dryRun").is_some_and(|d| d == "All")
        || body["dryRun"]
            .as_array()
            .is_some_and(|d| d.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        propagation: query
            .get("propagationPolicy")
            .cloned()
            .or_else(|| body["propagationPolicy"].as_str().map(str::to_string))
            .or_else(|| match body["orphanDependents"].as_bool() {
                Some(true) => Some("Orphan".into()),
                _ => None,
            }),
        uid: body["preconditions"]["uid"].as_str().map(str::to_string),
        resource_version: body["preconditions"]["resourceVersion"]
            .as_str()
            .map(str::to_string),
        dry_run,
    })
}

fn encode_continue(rv: u64, key: &(String, String)) -> String {
    format!("{rv}:{}/{}", key.0, key.1)
}

fn decode_continue(token: &str) -> ApiResult<(u64, (String, String))> {
    let bad = || ApiError::bad_request(format!("invalid continue token {token:?}"));
    let (rv, key) = token.split_once(':').ok_or_else(bad)?;
    let (ns, name) = key.split_once('/').ok_or_else(bad)?;
    Ok((
        rv.parse().map_err(|_| bad())?,
        (ns.to_string(), name.to_string()),
    ))
}

async fn pod_log(
    shared: &Arc<Shared>,
    ns: &str,
    name: &str,
    query: &HashMap<String, String>,
) -> ApiResult<Response> {
    let pods = shared
        .lock()
        .registry
        .find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = shared.lock().get(&pods, ns, name)?;
    let provider = shared
        .pod_logs
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let request = PodLogRequest {
        namespace: ns.to_string(),
        pod: name.to_string(),
        container: query.get("container").cloned().or_else(|| {
            pod["spec"]["containers"][0]["name"]
                .as_str()
                .map(str::to_string)
        }),
        follow: flag(query, "follow"),
        tail_lines: query.get("tailLines").and_then(|t| t.parse().ok()),
        previous: flag(query, "previous"),
    };
    let Some(provider) = provider else {
        return Ok((StatusCode::OK, "").into_response());
    };
    let stream = provider.logs(request).map_err(ApiError::bad_request)?;
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(futures::StreamExt::map(
            stream,
            Ok::<Bytes, std::convert::Infallible>,
        )))
        .map_err(|e| ApiError::internal(e.to_string()))
}
