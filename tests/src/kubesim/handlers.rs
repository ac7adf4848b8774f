//! One handler per verb: each reads what it needs from the request, calls
//! the store, and answers JSON (or a `Table` for kubectl), saying whether
//! the store changed. Handlers of writes get the store locked by the
//! caller, which logs the request before it lets go of the lock (see
//! `routes::serve_write`); they must not lock it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::kubesim::PodLogRequest;
use crate::kubesim::error::{ApiError, ApiResult, Cause};
use crate::kubesim::fields::{self, Part, Writer};
use crate::kubesim::log::Verb;
use crate::kubesim::patch;
use crate::kubesim::routes::{Access, Shared, Target, content_type};
use crate::kubesim::selectors::{FieldSelector, LabelSelector};
use crate::kubesim::store::{DeleteOptions, Store, WriteOptions, present, served, set_name};
use crate::kubesim::table;
use crate::kubesim::watch::{self, WatchRequest};

/// A response and whether the store changed.
pub(crate) type Served = ApiResult<(Response, bool)>;

/// Everything a handler may look at.
pub(crate) struct Request<'a> {
    pub(crate) shared: &'a Arc<Shared>,
    pub(crate) target: &'a Target,
    /// Authorization beyond the request's own verb (a PATCH that creates).
    pub(crate) access: &'a Access,
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) query: &'a HashMap<String, String>,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a Bytes,
    pub(crate) options: WriteOptions,
    pub(crate) output: Output,
    /// An injected limit on how long a watch stream lives.
    pub(crate) watch_lifetime: Option<Duration>,
}

/// How objects are rendered, from the `Accept` header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Output {
    /// The objects themselves.
    Full,
    /// `meta.k8s.io/v1` `Table` (kubectl's server-side printing).
    Table,
    /// `PartialObjectMetadata` (metadata-only clients and watches).
    Metadata,
}

impl Output {
    /// Picks the rendering an `Accept` header asks for.
    pub(crate) fn from_accept(accept: &str) -> Self {
        if accept.contains("as=Table") {
            Self::Table
        } else if accept.contains("as=PartialObjectMetadata") {
            Self::Metadata
        } else {
            Self::Full
        }
    }
}

fn partial(object: &Value) -> Value {
    let mut metadata = object["metadata"].clone();
    if let Some(m) = metadata.as_object_mut() {
        m.remove("managedFields");
    }
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": metadata})
}

/// Rewrites a watch stream so each event carries only metadata.
fn watch_as_metadata(
    stream: impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static,
) -> impl futures::Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    futures::StreamExt::map(stream, |line| {
        let Ok(bytes) = line;
        let Ok(mut event) = serde_json::from_slice::<Value>(&bytes) else {
            return Ok(bytes);
        };
        if matches!(
            event["type"].as_str(),
            Some("ADDED" | "MODIFIED" | "DELETED")
        ) {
            event["object"] = partial(&event["object"]);
        }
        let mut text = event.to_string();
        text.push('\n');
        Ok(Bytes::from(text))
    })
}

/// A boolean query parameter.
pub(crate) fn flag(query: &HashMap<String, String>, key: &str) -> bool {
    matches!(query.get(key).map(String::as_str), Some("true" | "1"))
}

/// A JSON or YAML body (`Null` when empty).
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

fn json_response(code: StatusCode, value: &impl serde::Serialize) -> Response {
    (code, axum::Json(value)).into_response()
}

/// A list answer, borrowing its items.
#[derive(serde::Serialize)]
struct ListOut<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: Vec<&'a Value>,
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

/// GET of one object.
pub(crate) fn get(r: Request<'_>) -> Served {
    let rt = &r.target.rt;
    let object = r.shared.lock().get(rt, &r.namespace, &r.name)?;
    let response = match r.output {
        Output::Table => json_response(StatusCode::OK, &table::table(rt, &[object], None, None)),
        Output::Metadata => json_response(StatusCode::OK, &partial(&object)),
        Output::Full => json_response(StatusCode::OK, &*object),
    };
    Ok((response, false))
}

/// GET of a collection, with selectors and pages.
pub(crate) fn list(r: Request<'_>) -> Served {
    let rt = &r.target.rt;
    let (labels, fields) = selectors(r.query)?;
    let limit = r
        .query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0);
    let continue_from = match r.query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => Some(decode_continue(token)?),
        None => None,
    };
    let store = r.shared.lock();
    let rv = continue_from
        .as_ref()
        .map_or(store.resource_version(), |c| c.0);
    let (items, next) = store.list(
        rt,
        r.target.namespace.as_deref(),
        &labels,
        &fields,
        limit,
        continue_from.as_ref().map(|c| &c.1),
    );
    drop(store);
    let token = next.map(|key| encode_continue(rv, &key));
    if r.output == Output::Table {
        let out = table::table(rt, &items, Some(rv), token.as_deref());
        return Ok((json_response(StatusCode::OK, &out), false));
    }
    let mut metadata = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = &token {
        metadata["continue"] = json!(token);
    }
    let out = if r.output == Output::Metadata {
        json!({
            "kind": "PartialObjectMetadataList",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": metadata,
            "items": items.iter().map(|o| partial(o)).collect::<Vec<_>>(),
        })
    } else {
        // Serialized straight from the stored objects, without copies.
        let list = ListOut {
            kind: format!("{}List", rt.kind),
            api_version: rt.api_version(),
            metadata,
            items: items.iter().map(|o| &**o).collect(),
        };
        return Ok((json_response(StatusCode::OK, &list), false));
    };
    Ok((json_response(StatusCode::OK, &out), false))
}

/// GET with `watch=true`: a stream of events.
pub(crate) fn watch(r: Request<'_>) -> Served {
    let rt = &r.target.rt;
    let (labels, fields) = selectors(r.query)?;
    let resource_version = match r.query.get("resourceVersion").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(rv) => Some(parse_rv(rv)?),
    };
    let request = WatchRequest {
        rt: rt.clone(),
        namespace: r.target.namespace.clone(),
        labels,
        fields,
        resource_version,
        bookmarks: flag(r.query, "allowWatchBookmarks"),
        timeout: r
            .query
            .get("timeoutSeconds")
            .and_then(|t| t.parse::<u64>().ok())
            .map(Duration::from_secs)
            .into_iter()
            .chain(r.watch_lifetime)
            .min(),
        send_initial_events: flag(r.query, "sendInitialEvents"),
    };
    let shared = r.shared;
    let stream = watch::open(
        &shared.lock(),
        shared.faults.watch_closer(),
        request,
        shared.bookmark_interval,
    );
    let body = match r.output {
        Output::Table => Body::from_stream(table::watch_as_table(rt.clone(), stream)),
        Output::Metadata => Body::from_stream(watch_as_metadata(stream)),
        Output::Full => Body::from_stream(stream),
    };
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CACHE_CONTROL, "no-cache, private")
        .body(body)
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((response, false))
}

/// POST.
pub(crate) fn create(r: Request<'_>, store: &mut Store) -> Served {
    let object = parse_body(r.body)?;
    let written = store.create(&r.target.rt, &r.namespace, object, &r.options)?;
    Ok((
        json_response(StatusCode::CREATED, &*written.object),
        written.wrote,
    ))
}

/// TokenRequest (`POST serviceaccounts/<name>/token`): a bearer token that
/// authenticates as the service account. Tokens do not expire here; the
/// answer states the expiry the request asked for (default one hour).
pub(crate) fn token_request(r: Request<'_>, store: &Store) -> Served {
    let body = parse_body(r.body)?;
    store.get(&r.target.rt, &r.namespace, &r.name)?;
    let seconds = match &body["spec"]["expirationSeconds"] {
        Value::Null => 3600,
        value => value.as_i64().ok_or_else(|| {
            ApiError::bad_request("spec.expirationSeconds must be an integer".to_owned())
        })?,
    };
    if seconds < 600 {
        return Err(ApiError::invalid(
            "TokenRequest",
            "authentication.k8s.io",
            &r.name,
            vec![Cause {
                reason: "FieldValueInvalid".to_owned(),
                field: "spec.expirationSeconds".to_owned(),
                message: format!(
                    "spec.expirationSeconds: Invalid value: {seconds}: may not specify a duration less than 10 minutes"
                ),
            }],
        ));
    }
    let now = jiff::Timestamp::now();
    let format = |t: jiff::Timestamp| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let expires = now
        .checked_add(jiff::SignedDuration::from_secs(seconds))
        .map_err(|e| ApiError::bad_request(format!("spec.expirationSeconds: {e}")))?;
    let token = r
        .shared
        .issue_token(crate::kubesim::rbac::UserInfo::service_account(
            &r.namespace,
            &r.name,
        ));
    let mut spec = body["spec"].clone();
    if !spec.is_object() {
        spec = json!({});
    }
    spec["expirationSeconds"] = json!(seconds);
    if spec["audiences"].is_null() {
        spec["audiences"] = json!(["https://kubernetes.default.svc.cluster.local"]);
    }
    let answer = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": r.name, "namespace": r.namespace, "creationTimestamp": format(now)},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": format(expires)},
    });
    Ok((json_response(StatusCode::CREATED, &answer), false))
}

/// PUT.
pub(crate) fn update(r: Request<'_>, store: &mut Store) -> Served {
    let object = parse_body(r.body)?;
    let written = store.update(&r.target.rt, &r.namespace, &r.name, object, &r.options)?;
    Ok((
        json_response(StatusCode::OK, &*written.object),
        written.wrote,
    ))
}

/// PATCH: merge, JSON or strategic merge (built-in kinds only, as in the
/// real server).
pub(crate) fn patch(r: Request<'_>, store: &mut Store) -> Served {
    let rt = &r.target.rt;
    let patch = parse_body(r.body)?;
    let media = content_type(r.headers)
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let old = store
        .object(&rt.store_key(), &r.namespace, &r.name)
        .ok_or_else(|| ApiError::not_found(rt.subject(), &r.name))?;
    let mut new = present(&old, rt);
    match media.as_str() {
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
    let written = store.replace_with(rt, &r.namespace, &r.name, old, new, &r.options)?;
    Ok((
        json_response(StatusCode::OK, &*written.object),
        written.wrote,
    ))
}

/// PATCH with `application/apply-patch+yaml`: server-side apply; creates
/// the object when missing, which the user must also be allowed to
/// `create` (other patches of a missing object answer 404).
pub(crate) fn apply(r: Request<'_>, store: &mut Store) -> Served {
    let rt = &r.target.rt;
    let name = r.name.as_str();
    let applied = parse_body(r.body)?;
    let Some(manager) = r.query.get("fieldManager").filter(|m| !m.is_empty()) else {
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
    let force = flag(r.query, "force");
    let options = WriteOptions {
        applied: true,
        ..r.options.clone()
    };
    let now = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let api_version = rt.api_version();
    let writer = Writer {
        manager,
        api_version: &api_version,
        part: options.part,
        now: &now,
    };
    let schema = rt.schema.as_deref();
    let (written, created) = match store.object(&rt.store_key(), &r.namespace, name) {
        Some(old) => {
            let current = served(&old, rt);
            let new = fields::apply(Some(&current), &applied, schema, &writer, force).map_err(
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
            let written = store.replace_with(rt, &r.namespace, name, old, new, &options)?;
            (written, false)
        }
        None if options.part == Part::Status => {
            return Err(ApiError::not_found(rt.subject(), name));
        }
        None => {
            // Nothing to conflict with on create.
            let mut new = fields::apply(None, &applied, schema, &writer, true)
                .unwrap_or_else(|_| applied.clone());
            set_name(&mut new, name);
            // As the API server: `create` is authorized too, with the name
            // (so `resourceNames` apply), once the patch has made the
            // object. (The API server validates the new object first, so a
            // refused and invalid create is 422 there, 403 here.)
            r.access.also_authorize(store, r.target, "create")?;
            (store.create(rt, &r.namespace, new, &options)?, true)
        }
    };
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((json_response(code, &*written.object), written.wrote))
}

/// The `autoscaling/v1` `Scale` view of a workload.
fn scale_of(object: &Value) -> Value {
    let selector = object["spec"]["selector"]["matchLabels"]
        .as_object()
        .map(|labels| {
            labels
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    let meta = &object["metadata"];
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": {"replicas": object["spec"]["replicas"].as_i64().unwrap_or(1)},
        "status": {"replicas": object["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
    })
}

/// GET, PUT or PATCH of `deployments|statefulsets/{name}/scale`: reads or
/// sets `spec.replicas`.
pub(crate) fn scale(r: Request<'_>, verb: Verb, store: &mut Store) -> Served {
    let rt = &r.target.rt;
    let old = store
        .object(&rt.store_key(), &r.namespace, &r.name)
        .ok_or_else(|| ApiError::not_found(rt.subject(), &r.name))?;
    let mut wanted = scale_of(&old);
    match verb {
        Verb::Get => return Ok((json_response(StatusCode::OK, &wanted), false)),
        Verb::Update => wanted = parse_body(r.body)?,
        _ => {
            let patch = parse_body(r.body)?;
            match content_type(r.headers)
                .split(';')
                .next()
                .unwrap_or_default()
                .trim()
            {
                "application/json-patch+json" => patch::json_patch(&mut wanted, &patch)?,
                _ => patch::merge_patch(&mut wanted, &patch),
            }
        }
    }
    let replicas = wanted["spec"]["replicas"]
        .as_i64()
        .ok_or_else(|| ApiError::bad_request("a Scale needs spec.replicas"))?;
    let mut new = present(&old, rt);
    new["spec"]["replicas"] = json!(replicas);
    let options = WriteOptions {
        part: Part::Main,
        ..r.options.clone()
    };
    let written = store.replace_with(rt, &r.namespace, &r.name, old, new, &options)?;
    Ok((
        json_response(StatusCode::OK, &scale_of(&written.object)),
        written.wrote,
    ))
}

/// DELETE of one object: the object while finalizers hold it, a `Status`
/// once it is gone.
pub(crate) fn delete(r: Request<'_>, store: &mut Store) -> Served {
    let rt = &r.target.rt;
    let mut options = delete_options(r.query, r.body)?;
    options.requester = r.options.requester.clone();
    let (object, gone) = store.delete(rt, &r.namespace, &r.name, &options)?;
    let out = if gone && !options.dry_run {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": r.name, "group": rt.group, "kind": rt.plural,
                        "uid": object["metadata"]["uid"]},
        })
    } else {
        object
    };
    Ok((json_response(StatusCode::OK, &out), !options.dry_run))
}

/// DELETE of a collection (with selectors).
pub(crate) fn delete_collection(r: Request<'_>, store: &mut Store) -> Served {
    let rt = &r.target.rt;
    let (labels, fields) = selectors(r.query)?;
    let mut options = delete_options(r.query, r.body)?;
    options.requester = r.options.requester.clone();
    let (items, _) = store.list(
        rt,
        r.target.namespace.as_deref(),
        &labels,
        &fields,
        None,
        None,
    );
    let mut deleted = Vec::new();
    for item in items.iter().map(|i| &**i) {
        let item_ns = item["metadata"]["namespace"].as_str().unwrap_or_default();
        let item_name = item["metadata"]["name"].as_str().unwrap_or_default();
        match store.delete(rt, item_ns, item_name, &options) {
            Ok((object, _)) => deleted.push(object),
            // An admission policy refusing one item fails the request, as
            // in the API server; the items deleted before it stay deleted.
            Err(e) if e.code != 404 && options.requester.is_some() => return Err(e),
            Err(_) => {}
        }
    }
    let wrote = !deleted.is_empty() && !options.dry_run;
    let out = json!({
        "kind": format!("{}List", rt.kind), "apiVersion": rt.api_version(),
        "metadata": {"resourceVersion": store.resource_version().to_string()}, "items": deleted,
    });
    Ok((json_response(StatusCode::OK, &out), wrote))
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
        grace_period: query
            .get("gracePeriodSeconds")
            .and_then(|g| g.parse().ok())
            .or_else(|| body["gracePeriodSeconds"].as_i64()),
        requester: None,
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

/// GET of `pods/{name}/log`, answered by the pod log provider (empty when
/// none is set).
pub(crate) async fn pod_log(r: Request<'_>) -> Served {
    let shared = r.shared;
    let pods = shared
        .lock()
        .registry
        .find("", "v1", "pods")
        .ok_or_else(|| ApiError::internal("pods are not served"))?;
    let pod = shared.lock().get(&pods, &r.namespace, &r.name)?;
    let provider = shared
        .pod_logs
        .read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .clone();
    let request = PodLogRequest {
        namespace: r.namespace.clone(),
        pod: r.name.clone(),
        container: r.query.get("container").cloned().or_else(|| {
            pod["spec"]["containers"][0]["name"]
                .as_str()
                .map(str::to_string)
        }),
        follow: flag(r.query, "follow"),
        tail_lines: r.query.get("tailLines").and_then(|t| t.parse().ok()),
        previous: flag(r.query, "previous"),
    };
    let Some(provider) = provider else {
        return Ok(((StatusCode::OK, "").into_response(), false));
    };
    let stream = provider.logs(request).map_err(ApiError::bad_request)?;
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/plain")
        .body(Body::from_stream(futures::StreamExt::map(
            stream,
            Ok::<Bytes, std::convert::Infallible>,
        )))
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((response, false))
}
