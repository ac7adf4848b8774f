//! Checks the real server makes on every object, and the immutability rules
//! of the built-in kinds an operator most easily trips over: names, label
//! and annotation syntax, `immutable` ConfigMaps and Secrets, workload
//! selectors, StatefulSet specs, PersistentVolumeClaim specs and
//! EndpointSlice address types.

mod endpointslice;
mod kinds;

pub use kinds::{event_create, spec};

use serde_json::Value;

use crate::kubesim::error::Cause;
use crate::kubesim::resources::ResourceType;

fn cause(reason: &str, field: &str, message: String) -> Cause {
    Cause {
        reason: reason.into(),
        field: field.into(),
        message: format!("{field}: {message}"),
    }
}

fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Lower-case RFC 1123 subdomain, as object names must be.
pub fn dns_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(dns_label)
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters.
fn qualified_part(text: &str) -> bool {
    let bytes = text.as_bytes();
    !text.is_empty()
        && text.len() <= 63
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn qualified_name(key: &str) -> bool {
    match key.split_once('/') {
        Some((prefix, name)) => dns_subdomain(prefix) && qualified_part(name),
        None => qualified_part(key),
    }
}

const NAME_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const LABEL_NAME_RULE: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const QUALIFIED_RULE: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character, with an optional DNS subdomain prefix and '/'";
const VALUE_RULE: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (at most 63 characters)";

/// Name, label and annotation syntax.
pub fn metadata(rt: &ResourceType, object: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let meta = &object["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let label_named = !rt.custom && matches!(rt.plural.as_str(), "namespaces" | "services");
    if label_named && !dns_label(name) {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": {LABEL_NAME_RULE}"),
        ));
    } else if !dns_subdomain(name) {
        causes.push(cause(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": {NAME_RULE}"),
        ));
    }
    if let Some(labels) = meta["labels"].as_object() {
        for (key, value) in labels {
            if !qualified_name(key) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.labels",
                    format!("Invalid value: \"{key}\": {QUALIFIED_RULE}"),
                ));
            }
            let value = value.as_str().unwrap_or("<not a string>");
            if !(value.is_empty() || qualified_part(value)) {
                causes.push(cause(
                    "FieldValueInvalid",
                    "metadata.labels",
                    format!("Invalid value: \"{value}\": {VALUE_RULE}"),
                ));
            }
        }
    }
    if let Some(annotations) = meta["annotations"].as_object() {
        for key in annotations.keys().filter(|k| !qualified_name(k)) {
            causes.push(cause(
                "FieldValueInvalid",
                "metadata.annotations",
                format!("Invalid value: \"{key}\": {QUALIFIED_RULE}"),
            ));
        }
    }
    causes
}

const STATEFULSET_MUTABLE: &[&str] = &[
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

fn without(spec: &Value, keep_out: &[&str]) -> Value {
    let mut spec = spec.clone();
    if let Some(m) = spec.as_object_mut() {
        m.retain(|k, _| !keep_out.contains(&k.as_str()));
    }
    spec
}

/// Rules on changing an existing built-in object.
pub fn update(rt: &ResourceType, old: &Value, new: &Value) -> Vec<Cause> {
    if rt.custom {
        return Vec::new();
    }
    let plural = rt.plural.as_str();
    match rt.group.as_str() {
        "" => core_update(plural, old, new),
        "apps" => apps_update(plural, old, new),
        "discovery.k8s.io"
            if plural == "endpointslices" && old["addressType"] != new["addressType"] =>
        {
            vec![cause(
                "FieldValueInvalid",
                "addressType",
                format!("Invalid value: {}: field is immutable", new["addressType"]),
            )]
        }
        "rbac.authorization.k8s.io"
            if matches!(plural, "rolebindings" | "clusterrolebindings")
                && old["roleRef"] != new["roleRef"] =>
        {
            vec![cause(
                "FieldValueInvalid",
                "roleRef",
                format!("Invalid value: {}: cannot change roleRef", new["roleRef"]),
            )]
        }
        _ => Vec::new(),
    }
}

/// [`update`] for the core group (ConfigMaps, Secrets, Services, PVCs).
fn core_update(plural: &str, old: &Value, new: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    match plural {
        "configmaps" | "secrets" if old["immutable"].as_bool() == Some(true) => {
            for field in ["data", "binaryData", "stringData", "immutable"] {
                if old.get(field) != new.get(field) {
                    causes.push(cause(
                        "FieldValueForbidden",
                        field,
                        "Forbidden: field is immutable when `immutable` is set".into(),
                    ));
                }
            }
        }
        "secrets" if old.get("type") != new.get("type") => causes.push(cause(
            "FieldValueInvalid",
            "type",
            format!("Invalid value: {}: field is immutable", new["type"]),
        )),
        "services"
            if old["spec"]["clusterIP"]
                .as_str()
                .is_some_and(|ip| !ip.is_empty() && ip != "None")
                && new["spec"]["clusterIP"] != old["spec"]["clusterIP"] =>
        {
            causes.push(cause(
                "FieldValueInvalid",
                "spec.clusterIPs[0]",
                format!(
                    "Invalid value: {}: may not change once set",
                    new["spec"]["clusterIP"]
                ),
            ));
        }
        "persistentvolumeclaims" => {
            let strip = |spec: &Value| {
                let mut spec = without(spec, &["volumeAttributesClassName"]);
                if let Some(resources) = spec.get_mut("resources").and_then(Value::as_object_mut) {
                    resources.remove("requests");
                }
                spec
            };
            if strip(&old["spec"]) != strip(&new["spec"]) {
                causes.push(cause(
                    "FieldValueForbidden",
                    "spec",
                    "Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims".into(),
                ));
            }
        }
        _ => {}
    }
    causes
}

/// [`update`] for the apps group (Deployments, StatefulSets).
fn apps_update(plural: &str, old: &Value, new: &Value) -> Vec<Cause> {
    match plural {
        "deployments" if old["spec"]["selector"] != new["spec"]["selector"] => vec![cause(
            "FieldValueInvalid",
            "spec.selector",
            format!(
                "Invalid value: {}: field is immutable",
                new["spec"]["selector"]
            ),
        )],
        "statefulsets"
            if without(&old["spec"], STATEFULSET_MUTABLE)
                != without(&new["spec"], STATEFULSET_MUTABLE) =>
        {
            vec![cause(
                "FieldValueForbidden",
                "spec",
                "Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden".into(),
            )]
        }
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubesim::resources::Registry;
    use serde_json::json;

    fn rt(group: &str, plural: &str) -> ResourceType {
        let registry = Registry::builtin();
        let t = registry.find(group, "v1", plural).expect("built in");
        (*t).clone()
    }

    #[test]
    fn names_and_labels() {
        let cm = rt("", "configmaps");
        let ok = json!({"metadata": {"name": "a.b-c", "labels": {"app.kubernetes.io/name": "x_y.z", "empty": ""}, "annotations": {"example.com/a": "anything at all"}}});
        assert!(metadata(&cm, &ok).is_empty());
        let bad = json!({"metadata": {"name": "Bad", "labels": {"-x": "ok", "y": "not ok!"}}});
        let fields: Vec<String> = metadata(&cm, &bad).into_iter().map(|c| c.field).collect();
        assert_eq!(
            fields,
            ["metadata.name", "metadata.labels", "metadata.labels"]
        );
        let ns = rt("", "namespaces");
        assert_eq!(
            metadata(&ns, &json!({"metadata": {"name": "a.b"}})).len(),
            1,
            "namespaces are DNS labels"
        );
    }

    #[test]
    fn immutable_fields() {
        let sts = rt("apps", "statefulsets");
        let old = json!({"spec": {"replicas": 1, "serviceName": "db", "volumeClaimTemplates": [{"spec": {"x": 1}}]}});
        let scaled = json!({"spec": {"replicas": 3, "serviceName": "db", "volumeClaimTemplates": [{"spec": {"x": 1}}]}});
        assert!(update(&sts, &old, &scaled).is_empty());
        let resized = json!({"spec": {"replicas": 1, "serviceName": "db", "volumeClaimTemplates": [{"spec": {"x": 2}}]}});
        assert_eq!(update(&sts, &old, &resized)[0].field, "spec");
        let cm = rt("", "configmaps");
        let frozen = json!({"immutable": true, "data": {"a": "1"}});
        assert_eq!(
            update(
                &cm,
                &frozen,
                &json!({"immutable": true, "data": {"a": "2"}})
            )[0]
            .field,
            "data"
        );
        let pvc = rt("", "persistentvolumeclaims");
        let claim = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let grown = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}});
        assert!(update(&pvc, &claim, &grown).is_empty());
        let other = json!({"spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}}});
        assert_eq!(update(&pvc, &claim, &other).len(), 1);
    }
}
