//! Pod admission by LimitRange and ResourceQuota, and the quota status the
//! quota controller keeps (`status.hard` and `status.used`), refreshed on
//! every write of a pod or quota in the namespace. See
//! [`crate::kubesim::quota`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::Store;
use crate::kubesim::error::{ApiError, ApiResult};
use crate::kubesim::quota::{
    Amount, Usage, apply_limit_ranges, charged, counts_pods, format_amount, missing_resources,
    parse_quantity, pod_usage, pretty,
};
use crate::kubesim::resources::{ResourceType, StoreKind};

fn core(plural: &str) -> StoreKind {
    StoreKind {
        group: String::new(),
        plural: plural.to_owned(),
    }
}

/// Whether `rt` is core v1 pods.
pub(super) fn is_pods(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "pods"
}

/// Whether writes of this kind change what quotas count.
pub(super) fn counted(kind: &StoreKind) -> bool {
    kind.group.is_empty()
        && matches!(
            kind.plural.as_str(),
            "pods" | "persistentvolumeclaims" | "resourcequotas"
        )
}

/// A quota's `spec.hard`, parsed.
fn hard_of(quota: &Value) -> Usage {
    quota["spec"]["hard"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), parse_quantity(v.as_str()?)?)))
        .collect()
}

/// Quotas with scopes are not simulated (they never refuse).
fn unscoped(quota: &Value) -> bool {
    quota["spec"]["scopes"].as_array().is_none_or(Vec::is_empty)
        && quota["spec"]["scopeSelector"].is_null()
}

impl Store {
    /// What the charged pods of a namespace use, under every quota name.
    fn pods_usage(&self, namespace: &str) -> Usage {
        let mut used = Usage::new();
        for pod in self.objects(&core("pods"), Some(namespace)) {
            if !charged(&pod) {
                continue;
            }
            for (name, amount) in pod_usage(&pod) {
                let entry = used.entry(name).or_default();
                entry.milli += amount.milli;
                entry.binary |= amount.binary;
            }
        }
        used
    }

    /// LimitRanger and ResourceQuota on a pod being created: fills its
    /// containers' defaults, then refuses it (403) when a quota of the
    /// namespace lacks room or the pod lacks a request or limit a quota
    /// constrains.
    pub(super) fn admit_pod(&self, namespace: &str, name: &str, pod: &mut Value) -> ApiResult<()> {
        let ranges = self.objects(&core("limitranges"), Some(namespace));
        apply_limit_ranges(pod, &ranges.iter().map(Arc::as_ref).collect::<Vec<_>>());
        let quotas = self.objects(&core("resourcequotas"), Some(namespace));
        if quotas.is_empty() {
            return Ok(());
        }
        let forbidden = |why: String| {
            ApiError::forbidden_by_rbac(
                pod_subject(),
                name,
                format!("pods \"{name}\" is forbidden: {why}"),
            )
        };
        let requested = pod_usage(pod);
        let used = self.pods_usage(namespace);
        for quota in quotas.iter().filter(|q| unscoped(q)) {
            let quota_name = quota["metadata"]["name"].as_str().unwrap_or_default();
            let hard: Usage = hard_of(quota)
                .into_iter()
                .filter(|(k, _)| counts_pods(k))
                .collect();
            let names: Vec<String> = hard.keys().cloned().collect();
            if let Some(missing) = missing_resources(pod, &names) {
                return Err(forbidden(format!(
                    "failed quota: {quota_name}: must specify {missing}"
                )));
            }
            let mut failed: [Usage; 3] = Default::default();
            for (resource, limit) in &hard {
                let Some(want) = requested.get(resource) else {
                    continue;
                };
                let have = used.get(resource).copied().unwrap_or_default();
                if have.milli + want.milli > limit.milli {
                    failed[0].insert(resource.clone(), *want);
                    failed[1].insert(resource.clone(), have);
                    failed[2].insert(resource.clone(), *limit);
                }
            }
            if !failed[0].is_empty() {
                return Err(forbidden(format!(
                    "exceeded quota: {quota_name}, requested: {}, used: {}, limited: {}",
                    pretty(&failed[0]),
                    pretty(&failed[1]),
                    pretty(&failed[2]),
                )));
            }
        }
        Ok(())
    }

    /// Writes `status.hard` and `status.used` of the namespace's quotas
    /// where they changed, as the quota controller does.
    pub(super) fn refresh_quotas(&mut self, namespace: &str) {
        let quotas = self.objects(&core("resourcequotas"), Some(namespace));
        if quotas.is_empty() {
            return;
        }
        let Some(rt) = self.registry.find("", "v1", "resourcequotas") else {
            return;
        };
        let pods = self.pods_usage(namespace);
        let claims = self.claims_usage(namespace);
        for quota in quotas {
            let hard = quota["spec"]["hard"].clone();
            let used: BTreeMap<String, String> = hard_of(&quota)
                .keys()
                .map(|k| {
                    let amount = pods
                        .get(k)
                        .or_else(|| claims.get(k))
                        .copied()
                        .unwrap_or_default();
                    (k.clone(), format_amount(amount))
                })
                .collect();
            let status = json!({"hard": hard, "used": used});
            if quota["status"] == status {
                continue;
            }
            let mut new = (*quota).clone();
            new["status"] = status;
            let name = quota["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            self.put(&rt, namespace, &name, new, Some(quota));
        }
    }

    /// `persistentvolumeclaims` and `requests.storage` of a namespace.
    fn claims_usage(&self, namespace: &str) -> Usage {
        let claims = self.objects(&core("persistentvolumeclaims"), Some(namespace));
        let storage: i128 = claims
            .iter()
            .filter_map(|c| c["spec"]["resources"]["requests"]["storage"].as_str())
            .filter_map(parse_quantity)
            .map(|a| a.milli)
            .sum();
        Usage::from([
            (
                "persistentvolumeclaims".to_owned(),
                Amount {
                    milli: 1000 * claims.len() as i128,
                    binary: false,
                },
            ),
            (
                "requests.storage".to_owned(),
                Amount {
                    milli: storage,
                    binary: true,
                },
            ),
        ])
    }
}

fn pod_subject() -> crate::kubesim::error::Subject<'static> {
    crate::kubesim::error::Subject {
        group: "",
        resource: "pods",
    }
}
