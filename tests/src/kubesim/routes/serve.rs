//! Serving one resource request: its path and verb, authentication and
//! authorization, injected faults, the handler, and its log record.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, Method, Uri, header};

use super::{Access, Shared, Target};
use crate::kubesim::admission::Requester;
use crate::kubesim::error::{ApiError, ApiResult};
use crate::kubesim::fields::Part;
use crate::kubesim::handlers::{self, Output, Request, Served, flag};
use crate::kubesim::log::{RequestLog, RequestRecord, Verb};
use crate::kubesim::rbac::UserInfo;
use crate::kubesim::store::{Store, WriteOptions};

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
            || (sub == "log" && rt.group.is_empty() && rt.plural == "pods")
            || (sub == "scale" && rt.scale_subresource())
            || (sub == "token" && rt.group.is_empty() && rt.plural == "serviceaccounts");
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
        // TokenRequest: POST serviceaccounts/<name>/token.
        ("POST", true) if target.subresource.as_deref() == Some("token") => Verb::Create,
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

pub(crate) fn content_type(headers: &HeaderMap) -> &str {
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

/// Refuses Protocol Buffers bodies (typed Go clients such as `kubectl create
/// configmap` send them); kubesim speaks JSON and YAML only.
fn check_media_type(headers: &HeaderMap) -> ApiResult<()> {
    let media = content_type(headers);
    if media.contains("protobuf") || media.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {media})"
        )));
    }
    Ok(())
}

/// Every resource request.
pub(super) async fn resource(
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
    let user = shared.authenticate(&headers);
    let mut record = new_record(&target, verb, &query);
    record.user = user
        .as_ref()
        .ok()
        .and_then(Option::as_ref)
        .map(|u| u.name.clone());
    let allowed = user.and_then(|user| match user {
        Some(user) if shared.rbac => shared
            .authorize(&user, &target, verb)
            .map(|()| (user, true)),
        Some(user) => Ok((user, false)),
        None => Ok((UserInfo::administrator(), false)),
    });
    let (user, rbac) = match allowed {
        Ok(allowed) => allowed,
        Err(error) => {
            record.code = error.code;
            shared.log.push(record);
            return error.into_response();
        }
    };
    let access = Access {
        rbac_user: rbac.then(|| user.clone()),
        also: Mutex::default(),
    };
    let requester = Requester {
        user,
        subresource: target.subresource.clone().unwrap_or_default(),
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
    let request = match prepare(
        &shared,
        (verb, &target, requester, &access),
        &query,
        &headers,
        &body,
        decision.watch_lifetime,
    ) {
        Ok(request) => request,
        Err(error) => return finish(&shared.log, record, &access, Err(error)),
    };
    if verb.is_write() {
        serve_write(&shared, verb, request, record, &access)
    } else {
        let outcome = serve_read(&shared, verb, request).await;
        finish(&shared.log, record, &access, outcome)
    }
}

/// The log record of a request, before its user and outcome are known.
fn new_record(target: &Target, verb: Verb, query: &HashMap<String, String>) -> RequestRecord {
    RequestRecord {
        user: None,
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
        also_authorized: Vec::new(),
    }
}

/// Completes a request's record from its outcome, logs it, and answers.
fn finish(
    log: &RequestLog,
    mut record: RequestRecord,
    access: &Access,
    outcome: Served,
) -> Response {
    record.also_authorized = access.take_verbs();
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
    tracing::debug!(
        verb = ?record.verb,
        resource = %record.resource,
        namespace = %record.namespace,
        name = %record.name,
        code = record.code,
        wrote = record.wrote,
        "kubesim request"
    );
    log.push(record);
    response
}

/// The handler's view of a request: 404 for a namespaced resource without
/// a namespace (collections apart), 415 for a body kubesim cannot read.
fn prepare<'a>(
    shared: &'a Arc<Shared>,
    (verb, target, requester, access): (Verb, &'a Target, Requester, &'a Access),
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    watch_lifetime: Option<Duration>,
) -> ApiResult<Request<'a>> {
    let rt = &target.rt;
    if rt.namespaced && target.namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(ApiError::no_route(
            "a namespaced resource needs a namespace",
        ));
    }
    let part = if target.subresource.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    if !body.is_empty() {
        check_media_type(headers)?;
    }
    Ok(Request {
        shared,
        target,
        access,
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
        query,
        headers,
        body,
        options: WriteOptions {
            manager: manager_of(query, headers),
            dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
            applied: false,
            part,
            strict: query.get("fieldValidation").is_some_and(|v| v == "Strict"),
            requester: Some(requester),
        },
        watch_lifetime,
        output: Output::from_accept(
            headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        ),
    })
}

/// Serves a write ([`Verb::is_write`]) under one hold of the store lock
/// and logs it before releasing the lock: no other request can see what
/// it changed (readers need the lock; watchers get changes when it is
/// released) before its record is in the log.
fn serve_write(
    shared: &Shared,
    verb: Verb,
    request: Request<'_>,
    record: RequestRecord,
    access: &Access,
) -> Response {
    let mut store = shared.lock();
    let outcome = match verb {
        Verb::Create if request.target.subresource.as_deref() == Some("token") => {
            handlers::token_request(request, &store)
        }
        Verb::Update | Verb::Patch if request.target.subresource.as_deref() == Some("scale") => {
            handlers::scale(request, verb, &mut store)
        }
        Verb::Create => handlers::create(request, &mut store),
        Verb::Update => handlers::update(request, &mut store),
        Verb::Patch => handlers::patch(request, &mut store),
        Verb::Apply => handlers::apply(request, &mut store),
        Verb::Delete => handlers::delete(request, &mut store),
        Verb::DeleteCollection => handlers::delete_collection(request, &mut store),
        Verb::Get | Verb::List | Verb::Watch => {
            Err(ApiError::internal(format!("{verb:?} is not a write")))
        }
    };
    let response = finish(&shared.log, record, access, outcome);
    // Only now may others see the write.
    drop(store);
    response
}

/// Serves a read; it is logged once answered, after any write it saw.
async fn serve_read(shared: &Shared, verb: Verb, request: Request<'_>) -> Served {
    match verb {
        Verb::Get if request.target.subresource.as_deref() == Some("log") => {
            handlers::pod_log(request).await
        }
        Verb::Get if request.target.subresource.as_deref() == Some("scale") => {
            handlers::scale(request, verb, &mut shared.lock())
        }
        Verb::Get => handlers::get(request),
        Verb::List => handlers::list(request),
        Verb::Watch => handlers::watch(request),
        _ => Err(ApiError::internal(format!("{verb:?} is not a read"))),
    }
}
