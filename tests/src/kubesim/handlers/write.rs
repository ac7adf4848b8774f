//! The handlers of writes: create, update, patch, apply, scale, delete
//! and deletecollection, and TokenRequest.

use std::collections::HashMap;

use axum::body::Bytes;
use http::StatusCode;
use serde_json::{Value, json};

use super::{Request, Served, flag, json_response, parse_body, selectors};
use crate::kubesim::error::{ApiError, ApiResult, Cause};
use crate::kubesim::fields::{self, Part, Writer};
use crate::kubesim::log::Verb;
use crate::kubesim::patch;
use crate::kubesim::routes::content_type;
use crate::kubesim::store::{DeleteOptions, Store, WriteOptions, present, served, set_name};

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
    let manager = apply_manager(&r, &applied)?;
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
            let new = fields::apply(Some(&current), &applied, schema, &writer, force)
                .map_err(|conflicts| apply_conflict(&r, conflicts))?;
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

/// The apply's field manager (required), once the body is an object
/// naming the object of the URL (or none).
fn apply_manager<'a>(r: &'a Request<'_>, applied: &Value) -> ApiResult<&'a str> {
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
    let name = r.name.as_str();
    if let Some(body_name) = applied["metadata"]["name"].as_str()
        && body_name != name
    {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    Ok(manager)
}

/// 409 naming every conflicting field and its manager.
fn apply_conflict(r: &Request<'_>, conflicts: Vec<fields::Conflict>) -> ApiError {
    let causes = conflicts
        .into_iter()
        .map(|c| Cause {
            reason: "FieldManagerConflict".into(),
            message: format!("conflict with \"{}\": {}", c.manager, c.field),
            field: c.field,
        })
        .collect();
    ApiError::apply_conflict(r.target.rt.subject(), &r.name, causes)
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
