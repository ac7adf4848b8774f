//! A container's environment, resolved as kubelet does: `envFrom` first, then
//! `env` (later entries win), `$(VAR)` references expanded, values taken from
//! Secrets, ConfigMaps and the pod's own fields. Pure: the Secrets and
//! ConfigMaps come through [`ConfigLookup`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, Container, EnvVarSource, Secret};

/// Where a container's referenced Secrets and ConfigMaps come from (the pod's
/// namespace is implied).
pub trait ConfigLookup {
    /// The Secret of that name, if it exists.
    fn secret(&self, name: &str) -> Option<Secret>;
    /// The ConfigMap of that name, if it exists.
    fn config_map(&self, name: &str) -> Option<ConfigMap>;
}

/// The pod fields that `fieldRef` can read.
#[derive(Debug, Clone, Default)]
pub struct PodFields {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `status.podIP`.
    pub pod_ip: String,
    /// `spec.nodeName`.
    pub node_name: String,
    /// `spec.serviceAccountName`.
    pub service_account: String,
    /// `metadata.labels`.
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    pub annotations: BTreeMap<String, String>,
}

/// Why a container's environment cannot be built. Kubelet reports these as
/// `CreateContainerConfigError`; the messages follow kubelet's wording and
/// never contain a value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    /// A referenced Secret does not exist.
    #[error("secret \"{name}\" not found")]
    SecretNotFound {
        /// The Secret's name.
        name: String,
    },
    /// A referenced Secret lacks the key.
    #[error("couldn't find key {key} in Secret {namespace}/{name}")]
    SecretKeyNotFound {
        /// The pod's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A referenced ConfigMap does not exist.
    #[error("configmap \"{name}\" not found")]
    ConfigMapNotFound {
        /// The ConfigMap's name.
        name: String,
    },
    /// A referenced ConfigMap lacks the key.
    #[error("couldn't find key {key} in ConfigMap {namespace}/{name}")]
    ConfigMapKeyNotFound {
        /// The pod's namespace.
        namespace: String,
        /// The ConfigMap's name.
        name: String,
        /// The missing key.
        key: String,
    },
    /// A Secret value is not UTF-8, so it cannot be an environment value.
    #[error("key {key} in Secret {namespace}/{name} is not valid UTF-8")]
    SecretNotUtf8 {
        /// The pod's namespace.
        namespace: String,
        /// The Secret's name.
        name: String,
        /// The key.
        key: String,
    },
    /// `fieldRef` names a field nodesim does not provide.
    #[error("env {var}: unsupported fieldRef {path}")]
    UnsupportedFieldRef {
        /// The variable.
        var: String,
        /// The field path.
        path: String,
    },
    /// `resourceFieldRef` is not simulated.
    #[error("env {var}: resourceFieldRef is not supported by nodesim")]
    UnsupportedResourceFieldRef {
        /// The variable.
        var: String,
    },
}

/// One Secret's data as strings, `data` merged over `stringData` (the API
/// server folds `stringData` into `data`; a simulated one may not).
fn secret_entries(secret: &Secret) -> BTreeMap<String, Result<String, ()>> {
    let mut out: BTreeMap<String, Result<String, ()>> = secret
        .string_data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), Ok(v.clone())))
        .collect();
    for (k, v) in secret.data.iter().flatten() {
        out.insert(k.clone(), String::from_utf8(v.0.clone()).map_err(|_| ()));
    }
    out
}

fn config_map_entries(config_map: &ConfigMap) -> BTreeMap<String, String> {
    config_map.data.clone().unwrap_or_default()
}

/// Resolves the environment of `container` in a pod with `fields`, in the
/// order kubelet builds it. Optional references that cannot be resolved are
/// skipped; required ones fail.
pub fn resolve_env(
    container: &Container,
    fields: &PodFields,
    lookup: &dyn ConfigLookup,
) -> Result<Vec<(String, String)>, EnvError> {
    let ns = &fields.namespace;
    let mut env = EnvList::default();
    for source in container.env_from.iter().flatten() {
        let prefix = source.prefix.as_deref().unwrap_or("");
        if let Some(r) = &source.secret_ref {
            match lookup.secret(&r.name) {
                Some(secret) => {
                    for (k, v) in secret_entries(&secret) {
                        let v = v.map_err(|()| EnvError::SecretNotUtf8 {
                            namespace: ns.clone(),
                            name: r.name.clone(),
                            key: k.clone(),
                        })?;
                        env.set(format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(EnvError::SecretNotFound {
                        name: r.name.clone(),
                    });
                }
            }
        }
        if let Some(r) = &source.config_map_ref {
            match lookup.config_map(&r.name) {
                Some(cm) => {
                    for (k, v) in config_map_entries(&cm) {
                        env.set(format!("{prefix}{k}"), v);
                    }
                }
                None if r.optional == Some(true) => {}
                None => {
                    return Err(EnvError::ConfigMapNotFound {
                        name: r.name.clone(),
                    });
                }
            }
        }
    }
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (_, Some(from)) => match value_from(&var.name, from, fields, lookup)? {
                Some(v) => v,
                None => continue,
            },
            (Some(v), None) => expand(v, &env),
            (None, None) => String::new(),
        };
        env.set(var.name.clone(), value);
    }
    Ok(env.0)
}

fn value_from(
    var: &str,
    from: &EnvVarSource,
    fields: &PodFields,
    lookup: &dyn ConfigLookup,
) -> Result<Option<String>, EnvError> {
    let ns = &fields.namespace;
    if let Some(r) = &from.secret_key_ref {
        let optional = r.optional == Some(true);
        let Some(secret) = lookup.secret(&r.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(EnvError::SecretNotFound {
                    name: r.name.clone(),
                })
            };
        };
        return match secret_entries(&secret).remove(&r.key) {
            Some(Ok(v)) => Ok(Some(v)),
            Some(Err(())) => Err(EnvError::SecretNotUtf8 {
                namespace: ns.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
            }),
            None if optional => Ok(None),
            None => Err(EnvError::SecretKeyNotFound {
                namespace: ns.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
            }),
        };
    }
    if let Some(r) = &from.config_map_key_ref {
        let optional = r.optional == Some(true);
        let Some(cm) = lookup.config_map(&r.name) else {
            return if optional {
                Ok(None)
            } else {
                Err(EnvError::ConfigMapNotFound {
                    name: r.name.clone(),
                })
            };
        };
        return match config_map_entries(&cm).remove(&r.key) {
            Some(v) => Ok(Some(v)),
            None if optional => Ok(None),
            None => Err(EnvError::ConfigMapKeyNotFound {
                namespace: ns.clone(),
                name: r.name.clone(),
                key: r.key.clone(),
            }),
        };
    }
    if let Some(r) = &from.field_ref {
        return field_value(&r.field_path, fields).map(Some).ok_or_else(|| {
            EnvError::UnsupportedFieldRef {
                var: var.to_owned(),
                path: r.field_path.clone(),
            }
        });
    }
    if from.resource_field_ref.is_some() {
        return Err(EnvError::UnsupportedResourceFieldRef {
            var: var.to_owned(),
        });
    }
    Ok(Some(String::new()))
}

/// The downward API fields kubelet offers through `fieldRef`.
fn field_value(path: &str, fields: &PodFields) -> Option<String> {
    let label_or_annotation = |prefix: &str, map: &BTreeMap<String, String>| {
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix("['"))
            .and_then(|rest| rest.strip_suffix("']"))
            .map(|key| map.get(key).cloned().unwrap_or_default())
    };
    match path {
        "metadata.name" => Some(fields.name.clone()),
        "metadata.namespace" => Some(fields.namespace.clone()),
        "metadata.uid" => Some(fields.uid.clone()),
        "status.podIP" | "status.podIPs" => Some(fields.pod_ip.clone()),
        "status.hostIP" | "status.hostIPs" => Some("127.0.0.1".to_owned()),
        "spec.nodeName" => Some(fields.node_name.clone()),
        "spec.serviceAccountName" => Some(fields.service_account.clone()),
        _ => label_or_annotation("metadata.labels", &fields.labels)
            .or_else(|| label_or_annotation("metadata.annotations", &fields.annotations)),
    }
}

/// Expands `$(NAME)` with the variables defined so far; `$$` escapes a `$`;
/// unknown references stay as written (kubelet's rules).
pub fn expand(input: &str, env: &EnvList) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
        {
            let name = &inner[..end];
            match env.get(name) {
                Some(value) => out.push_str(value),
                None => {
                    out.push_str("$(");
                    out.push_str(name);
                    out.push(')');
                }
            }
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// An ordered environment where a later definition replaces an earlier one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvList(pub Vec<(String, String)>);

impl EnvList {
    /// Sets `name`, replacing an earlier value.
    pub fn set(&mut self, name: String, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use serde_json::json;

    #[derive(Default)]
    struct Maps {
        secrets: BTreeMap<String, Secret>,
        config_maps: BTreeMap<String, ConfigMap>,
    }

    impl ConfigLookup for Maps {
        fn secret(&self, name: &str) -> Option<Secret> {
            self.secrets.get(name).cloned()
        }
        fn config_map(&self, name: &str) -> Option<ConfigMap> {
            self.config_maps.get(name).cloned()
        }
    }

    fn maps() -> Maps {
        let mut m = Maps::default();
        let secret = Secret {
            data: Some(BTreeMap::from([(
                "password".to_owned(),
                ByteString(b"s3cret".to_vec()),
            )])),
            string_data: Some(BTreeMap::from([("user".to_owned(), "atoll".to_owned())])),
            ..Secret::default()
        };
        m.secrets.insert("db".to_owned(), secret);
        let cm = ConfigMap {
            data: Some(BTreeMap::from([
                ("LEVEL".to_owned(), "debug".to_owned()),
                ("MODE".to_owned(), "fast".to_owned()),
            ])),
            ..ConfigMap::default()
        };
        m.config_maps.insert("conf".to_owned(), cm);
        m
    }

    fn container(value: serde_json::Value) -> Container {
        serde_json::from_value(value).expect("container fixture")
    }

    fn fields() -> PodFields {
        PodFields {
            name: "web-0".into(),
            namespace: "atoll-acme".into(),
            pod_ip: "127.1.0.2".into(),
            ..PodFields::default()
        }
    }

    #[test]
    fn resolves_every_source_in_kubelet_order() {
        let c = container(json!({
            "name": "app",
            "envFrom": [{"configMapRef": {"name": "conf"}, "prefix": "CFG_"}, {"secretRef": {"name": "db"}}],
            "env": [
                {"name": "CFG_MODE", "value": "slow"},
                {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
                {"name": "LEVEL", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "LEVEL"}}},
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "URL", "value": "postgres://$(user):$(PASSWORD)@db/$(MISSING)$$(x)"},
                {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": true}}}
            ]
        }));
        let env = resolve_env(&c, &fields(), &maps()).expect("resolves");
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("CFG_LEVEL"), Some("debug"));
        assert_eq!(get("CFG_MODE"), Some("slow"), "env overrides envFrom");
        assert_eq!(get("user"), Some("atoll"), "stringData counts");
        assert_eq!(get("PASSWORD"), Some("s3cret"));
        assert_eq!(get("LEVEL"), Some("debug"));
        assert_eq!(get("POD"), Some("web-0"));
        assert_eq!(
            get("URL"),
            Some("postgres://atoll:s3cret@db/$(MISSING)$(x)")
        );
        assert_eq!(get("OPT"), None);
    }

    #[test]
    fn a_missing_key_fails_like_kubelet_without_leaking_values() {
        let c = container(json!({
            "name": "app",
            "env": [{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}]
        }));
        let err = resolve_env(&c, &fields(), &maps()).expect_err("missing key");
        assert_eq!(
            err.to_string(),
            "couldn't find key pw in Secret atoll-acme/db"
        );
        let c = container(json!({"name": "app", "envFrom": [{"secretRef": {"name": "other"}}]}));
        let err = resolve_env(&c, &fields(), &maps()).expect_err("missing secret");
        assert_eq!(err.to_string(), "secret \"other\" not found");
        let c = container(json!({
            "name": "app",
            "env": [{"name": "L", "valueFrom": {"configMapKeyRef": {"name": "conf", "key": "NOPE"}}}]
        }));
        let err = resolve_env(&c, &fields(), &maps()).expect_err("missing cm key");
        assert_eq!(
            err.to_string(),
            "couldn't find key NOPE in ConfigMap atoll-acme/conf"
        );
    }
}
