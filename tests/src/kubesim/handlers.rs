//! One handler per verb: each reads what it needs from the request, calls
//! the store, and answers JSON (or a `Table` for kubectl), saying whether
//! the store changed. Handlers of writes get the store locked by the
//! caller, which logs the request before it lets go of the lock (see
//! `routes::serve::serve_write`); they must not lock it again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};

use crate::kubesim::PodLogRequest;
use crate::kubesim::error::{ApiError, ApiResult};
use crate::kubesim::routes::{Access, Shared, Target};
use crate::kubesim::selectors::{FieldSelector, LabelSelector};
use crate::kubesim::store::WriteOptions;
use crate::kubesim::table;
use crate::kubesim::watch::{self, WatchRequest};

mod write;

pub(crate) use write::{
    apply, create, delete, delete_collection, patch, scale, token_request, update,
};

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
