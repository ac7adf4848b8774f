//! What the real server fills in on every write of a built-in kind, so an
//! object read back looks as it would in a cluster (and a controller that
//! compares whole objects instead of applying its own fields shows the
//! endless updates it would cause there): the namespace name label, Secret
//! `stringData` folded into `data`, Service types, ports and cluster IPs,
//! EndpointSlice port names and protocols, workload and pod template
//! defaults.

use serde_json::{Map, Value, json};

use crate::kubesim::resources::ResourceType;

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> shift) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn set_default(map: &mut Map<String, Value>, key: &str, value: Value) {
    if map.get(key).is_none_or(Value::is_null) {
        map.insert(key.into(), value);
    }
}

/// Applies the defaults of a built-in kind. `next_cluster_ip` gives a new
/// Service address when one is needed (an update keeps the old one).
pub fn apply(
    rt: &ResourceType,
    old: Option<&Value>,
    object: &mut Value,
    next_cluster_ip: &mut dyn FnMut() -> String,
) {
    if rt.custom {
        return;
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            // Set on every write, so network policies can select namespaces by name.
            let name = object["metadata"]["name"].clone();
            if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
                let labels = meta.entry("labels").or_insert_with(|| json!({}));
                if let Some(labels) = labels.as_object_mut() {
                    labels.insert("kubernetes.io/metadata.name".into(), name);
                }
            }
        }
        ("", "secrets") => secret(object),
        ("", "services") => {
            if let (Some(old), Some(spec)) =
                (old, object.get_mut("spec").and_then(Value::as_object_mut))
            {
                for key in ["clusterIP", "clusterIPs"] {
                    if let Some(kept) = old["spec"].get(key) {
                        set_default(spec, key, kept.clone());
                    }
                }
            }
            service(object, next_cluster_ip);
        }
        ("", "pods") => {
            if let Some(spec) = object.get_mut("spec") {
                pod_spec(spec);
            }
        }
        ("", "persistentvolumeclaims") => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        ("discovery.k8s.io", "endpointslices") => {
            let ports = object.get_mut("ports").and_then(Value::as_array_mut);
            for port in ports.into_iter().flatten().filter_map(Value::as_object_mut) {
                set_default(port, "name", json!(""));
                set_default(port, "protocol", json!("TCP"));
            }
        }
        ("apps", "deployments") => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "progressDeadlineSeconds", json!(600));
                set_default(
                    spec,
                    "strategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}),
                );
                template(spec);
            }
        }
        ("apps", "statefulsets") => {
            if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
                set_default(spec, "replicas", json!(1));
                set_default(spec, "revisionHistoryLimit", json!(10));
                set_default(spec, "podManagementPolicy", json!("OrderedReady"));
                set_default(
                    spec,
                    "updateStrategy",
                    json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
                );
                set_default(
                    spec,
                    "persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
                );
                template(spec);
            }
        }
        _ => {}
    }
}

/// `stringData` is write-only: merged into `data` (base64), then dropped.
fn secret(object: &mut Value) {
    let Some(map) = object.as_object_mut() else {
        return;
    };
    if let Some(Value::Object(strings)) = map.remove("stringData") {
        let data = map
            .entry("data")
            .or_insert_with(|| json!({}))
            .as_object_mut();
        if let Some(data) = data {
            for (k, v) in strings {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                data.insert(k, json!(base64(text.as_bytes())));
            }
        }
    }
    set_default(map, "type", json!("Opaque"));
}

fn service(object: &mut Value, next_cluster_ip: &mut dyn FnMut() -> String) {
    let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    set_default(spec, "type", json!("ClusterIP"));
    set_default(spec, "sessionAffinity", json!("None"));
    if spec["type"] != "ExternalName" {
        if spec
            .get("clusterIP")
            .is_none_or(|ip| ip.as_str().is_none_or(str::is_empty))
        {
            spec.insert("clusterIP".into(), json!(next_cluster_ip()));
        }
        let ip = spec["clusterIP"].clone();
        set_default(spec, "clusterIPs", json!([ip]));
        set_default(spec, "ipFamilies", json!(["IPv4"]));
        set_default(spec, "ipFamilyPolicy", json!("SingleStack"));
        set_default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
        for port in ports.iter_mut().filter_map(Value::as_object_mut) {
            set_default(port, "protocol", json!("TCP"));
            if let Some(number) = port.get("port").cloned() {
                set_default(port, "targetPort", number);
            }
        }
    }
}

fn template(workload_spec: &mut Map<String, Value>) {
    if let Some(pod) = workload_spec
        .get_mut("template")
        .and_then(|t| t.get_mut("spec"))
    {
        pod_spec(pod);
    }
}

fn pod_spec(spec: &mut Value) {
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "terminationGracePeriodSeconds", json!(30));
    set_default(spec, "securityContext", json!({}));
    for key in ["containers", "initContainers"] {
        if let Some(containers) = spec.get_mut(key).and_then(Value::as_array_mut) {
            for c in containers.iter_mut().filter_map(Value::as_object_mut) {
                let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
                let last = image.rsplit('/').next().unwrap_or_default();
                let latest = !last.contains(':') || last.ends_with(":latest");
                let pull = if latest && !image.contains('@') {
                    "Always"
                } else {
                    "IfNotPresent"
                };
                set_default(c, "imagePullPolicy", json!(pull));
                set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
                set_default(c, "terminationMessagePolicy", json!("File"));
                set_default(c, "resources", json!({}));
                if let Some(ports) = c.get_mut("ports").and_then(Value::as_array_mut) {
                    for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                        set_default(p, "protocol", json!("TCP"));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kubesim::resources::Registry;

    fn rt(group: &str, plural: &str) -> ResourceType {
        (*Registry::builtin()
            .find(group, "v1", plural)
            .expect("built in"))
        .clone()
    }

    #[test]
    fn base64_matches_the_standard_encoding() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("hunter22", "aHVudGVyMjI="),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded);
        }
    }

    #[test]
    fn secrets_fold_string_data_into_data() {
        let mut s = json!({"data": {"a": "YQ=="}, "stringData": {"password": "hunter22"}});
        apply(&rt("", "secrets"), None, &mut s, &mut || unreachable!());
        assert_eq!(
            s,
            json!({"data": {"a": "YQ==", "password": "aHVudGVyMjI="}, "type": "Opaque"})
        );
    }

    #[test]
    fn services_get_an_address_and_port_defaults_once() {
        let mut svc = json!({"spec": {"ports": [{"port": 80}], "selector": {"app": "x"}}});
        let mut next = 0;
        let mut ip = || {
            next += 1;
            format!("10.96.0.{next}")
        };
        apply(&rt("", "services"), None, &mut svc, &mut ip);
        let again = {
            let mut copy = svc.clone();
            apply(&rt("", "services"), None, &mut copy, &mut ip);
            copy
        };
        assert_eq!(svc, again, "defaults are stable");
        assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
        assert_eq!(
            svc["spec"]["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
    }
}
