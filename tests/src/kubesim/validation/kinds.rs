//! Validation of the built-in kinds' own fields, as the API server's
//! `pkg/apis/*/validation` does it for the rules Atoll's objects meet:
//! workload selectors, Ingress path types, EndpointSlices, and Events
//! (stored in their core form, so causes name core fields, as the real
//! server's do).

use serde_json::Value;

use super::cause;
use super::endpointslice::endpoint_slice;
use crate::kubesim::conversion::EVENTS_GROUP;
use crate::kubesim::error::Cause;
use crate::kubesim::resources::ResourceType;

/// Rules on every write of a built-in object (`old`: the object it
/// replaces, on an update).
pub fn spec(rt: &ResourceType, object: &Value, old: Option<&Value>) -> Vec<Cause> {
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("apps", "deployments" | "statefulsets") => workload_selector(object),
        ("networking.k8s.io", "ingresses") => ingress_paths(object),
        ("discovery.k8s.io", "endpointslices") => endpoint_slice(object, old),
        _ => Vec::new(),
    }
}

/// A selector is required and must select the template's labels.
fn workload_selector(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let selector = &object["spec"]["selector"];
    if selector.is_null() {
        causes.push(cause(
            "FieldValueRequired",
            "spec.selector",
            "Required value".into(),
        ));
    }
    let labels = &object["spec"]["template"]["metadata"]["labels"];
    let selected = !selector.is_null()
        && selector["matchLabels"]
            .as_object()
            .into_iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v));
    if !selected {
        causes.push(cause(
            "FieldValueInvalid",
            "spec.template.metadata.labels",
            format!("Invalid value: {labels}: `selector` does not match template `labels`"),
        ));
    }
    causes
}

/// Every HTTP path needs a `pathType`.
fn ingress_paths(object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    for (i, rule) in object["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let paths = rule["http"]["paths"].as_array().into_iter().flatten();
        for (j, path) in paths.enumerate() {
            if path["pathType"].is_null() {
                causes.push(cause(
                    "FieldValueRequired",
                    &format!("spec.rules[{i}].http.paths[{j}].pathType"),
                    "Required value: pathType must be specified".into(),
                ));
            }
        }
    }
    causes
}

/// Rules on creating an Event, through either version (`event` in its core
/// form): without `eventTime` (a legacy Event) the involved object's
/// namespace must be the Event's (or empty, for an Event in `default`);
/// with one, the reporting fields, action and reason are required. Through
/// `events.k8s.io/v1`, `eventTime` and a `Normal` or `Warning` type are
/// required, and the deprecated fields must be unset.
pub fn event_create(rt: &ResourceType, event: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let strict = rt.group == EVENTS_GROUP;
    if event["eventTime"].is_null() {
        let namespace = text(&event["metadata"]["namespace"]);
        let involved = text(&event["involvedObject"]["namespace"]);
        let fits = if involved.is_empty() {
            namespace.is_empty() || namespace == "default"
        } else {
            involved == namespace
        };
        if !fits {
            causes.push(cause(
                "FieldValueInvalid",
                "involvedObject.namespace",
                format!("Invalid value: \"{involved}\": does not match event.namespace"),
            ));
        }
    } else {
        let controller = if strict {
            "reportingController"
        } else {
            "reportingComponent"
        };
        for (field, stored) in [
            (controller, "reportingComponent"),
            ("reportingInstance", "reportingInstance"),
            ("action", "action"),
            ("reason", "reason"),
        ] {
            if text(&event[stored]).is_empty() {
                causes.push(cause("FieldValueRequired", field, "Required value".into()));
            }
        }
    }
    if strict {
        causes.extend(strict_event(event));
    }
    causes
}

/// What `events.k8s.io/v1` adds.
fn strict_event(event: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    if event["eventTime"].is_null() {
        causes.push(cause(
            "FieldValueRequired",
            "eventTime",
            "Required value".into(),
        ));
    }
    let kind = event["type"].as_str().unwrap_or_default();
    if kind != "Normal" && kind != "Warning" {
        causes.push(cause(
            "FieldValueInvalid",
            "type",
            format!("Invalid value: \"\": has invalid value: {kind}"),
        ));
    }
    for field in ["firstTimestamp", "lastTimestamp", "count"] {
        if !event[field].is_null() {
            causes.push(cause(
                "FieldValueInvalid",
                field,
                "Invalid value: \"\": needs to be unset".into(),
            ));
        }
    }
    let source = &event["source"];
    if !source["component"].as_str().unwrap_or_default().is_empty()
        || !source["host"].as_str().unwrap_or_default().is_empty()
    {
        causes.push(cause(
            "FieldValueInvalid",
            "source",
            "Invalid value: \"\": needs to be unset".into(),
        ));
    }
    causes
}
