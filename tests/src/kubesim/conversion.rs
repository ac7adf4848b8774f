//! One resource served in several groups, as the API server does: an
//! Event is stored once, as a core `v1` Event, and served both as
//! `v1` `events` and as `events.k8s.io/v1` `events`, converted field by
//! field the way Kubernetes converts them (`pkg/apis/events/v1`):
//!
//! | `events.k8s.io/v1`         | core `v1`          |
//! |----------------------------|--------------------|
//! | `note`                     | `message`          |
//! | `regarding`                | `involvedObject`   |
//! | `reportingController`      | `reportingComponent` |
//! | `deprecatedSource`         | `source`           |
//! | `deprecatedFirstTimestamp` | `firstTimestamp`   |
//! | `deprecatedLastTimestamp`  | `lastTimestamp`    |
//! | `deprecatedCount`          | `count`            |
//!
//! Everything else (`metadata`, `eventTime`, `series`, `reason`, `type`,
//! `action`, `related`, `reportingInstance`) has the same name in both.

use serde_json::Value;

use crate::kubesim::resources::ResourceType;
use crate::kubesim::selectors::FieldSelector;

/// The group served as a view of core Events.
pub const EVENTS_GROUP: &str = "events.k8s.io";

/// `(events.k8s.io/v1 name, core v1 name)` of the fields that differ.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("note", "message"),
    ("regarding", "involvedObject"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

/// Whether `group`/`plural` is stored as another resource; the one it is
/// stored as.
pub fn stored_as<'a>(group: &'a str, plural: &'a str) -> (&'a str, &'a str) {
    if group == EVENTS_GROUP && plural == "events" {
        ("", "events")
    } else {
        (group, plural)
    }
}

/// Whether objects of `rt` are converted to and from their stored form.
pub fn converts(rt: &ResourceType) -> bool {
    rt.group == EVENTS_GROUP && rt.plural == "events"
}

/// The apiVersion objects of `rt` are stored with.
pub fn storage_api_version(rt: &ResourceType) -> String {
    if converts(rt) {
        "v1".to_owned()
    } else {
        rt.api_version()
    }
}

/// An object written through `rt`, in its stored form. A core Event
/// always has `reportingComponent` and `reportingInstance` (empty when
/// unset: core v1 serializes them without `omitempty`).
pub fn to_storage(rt: &ResourceType, object: Value) -> Value {
    let core_event = rt.group.is_empty() && rt.plural == "events";
    if !converts(rt) && !core_event {
        return object;
    }
    let mut object = if core_event {
        object
    } else {
        let mut object = rename(object, EVENT_FIELDS.iter().map(|(from, to)| (*from, *to)));
        object["apiVersion"] = Value::String("v1".to_owned());
        object
    };
    if let Some(map) = object.as_object_mut() {
        for field in ["reportingComponent", "reportingInstance"] {
            map.entry(field)
                .or_insert_with(|| Value::String(String::new()));
        }
    }
    object
}

/// A stored object as served through `rt` (apiVersion apart).
pub fn from_storage(rt: &ResourceType, object: Value) -> Value {
    if !converts(rt) {
        return object;
    }
    let mut object = rename(object, EVENT_FIELDS.iter().map(|(to, from)| (*from, *to)));
    // `omitempty` in events.k8s.io/v1.
    if let Some(map) = object.as_object_mut() {
        map.retain(|k, v| {
            !(matches!(k.as_str(), "reportingController" | "reportingInstance")
                && v.as_str() == Some(""))
        });
    }
    object
}

/// Whether a stored object matches a field selector written for `rt`
/// (with its field names).
pub fn fields_match(fields: &FieldSelector, object: &Value, rt: &ResourceType) -> bool {
    if converts(rt) && !fields.is_empty() {
        fields.matches(&from_storage(rt, object.clone()))
    } else {
        fields.matches(object)
    }
}

/// Moves each `from` key to `to`; a `to` key the object already had is
/// dropped (it has no counterpart in the other version).
fn rename<'a>(mut object: Value, pairs: impl Iterator<Item = (&'a str, &'a str)>) -> Value {
    let Some(map) = object.as_object_mut() else {
        return object;
    };
    let pairs: Vec<(&str, &str)> = pairs.collect();
    let moved: Vec<(&str, Option<Value>)> = pairs
        .iter()
        .map(|(from, to)| (*to, map.remove(*from)))
        .collect();
    for (_, to) in &pairs {
        map.remove(*to);
    }
    for (to, value) in moved {
        if let Some(value) = value {
            map.insert(to.to_owned(), value);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::kubesim::resources::Registry;

    #[test]
    fn an_event_converts_both_ways_with_the_kubernetes_field_names() {
        let registry = Registry::builtin();
        let rt = registry
            .find(EVENTS_GROUP, "v1", "events")
            .expect("events.k8s.io is served");
        let written = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns"},
            "note": "Reconciled", "reason": "Ready", "type": "Normal", "action": "Reconcile",
            "regarding": {"kind": "Tenant", "name": "acme"},
            "reportingController": "atoll-operator", "reportingInstance": "op-1",
            "deprecatedCount": 2, "eventTime": "2026-01-01T00:00:00.000000Z",
        });
        let stored = to_storage(&rt, written.clone());
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(stored["message"], "Reconciled");
        assert_eq!(stored["involvedObject"]["name"], "acme");
        assert_eq!(stored["reportingComponent"], "atoll-operator");
        assert_eq!(stored["count"], 2);
        assert!(stored.get("note").is_none() && stored.get("regarding").is_none());
        let mut back = from_storage(&rt, stored);
        back["apiVersion"] = json!("events.k8s.io/v1");
        assert_eq!(back, written);
    }
}
