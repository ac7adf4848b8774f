//! ResourceQuota and LimitRange for pods, as the API server's admission
//! plugins judge them (pure functions; the store applies them in
//! `store/quota.rs`):
//!
//! - **LimitRange** (`LimitRanger`): a container without a `limits` or
//!   `requests` entry gets the `Container` item's `default` and
//!   `defaultRequest` (a request also defaults to its limit).
//! - **ResourceQuota**: a pod is charged `pods`/`count/pods` = 1 and, for
//!   `cpu`/`memory` (and `ephemeral-storage`), the pod's requests and
//!   limits: the larger of the sum over its containers and the largest
//!   init container. Pods in phase `Succeeded` or `Failed` are not
//!   charged. A create that would take a quota past `hard` is refused with
//!   the API server's `exceeded quota` message; one that lacks a request
//!   or limit the quota constrains, with its `must specify` message.
//!   Quotas with scopes are not simulated.

use std::collections::BTreeMap;

use serde_json::Value;

/// An amount in thousandths (`500m` is 500, `1` is 1000, `1Ki` 1 024 000),
/// with whether it was written with a binary suffix (for printing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Amount {
    /// Thousandths of the unit.
    pub milli: i128,
    /// Written as `Ki`, `Mi`, ...
    pub binary: bool,
}

/// Parses a Kubernetes quantity (`500m`, `2`, `1.5Gi`, `128M`, `1e3`).
pub fn parse_quantity(text: &str) -> Option<Amount> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let (multiplier, divisor, binary): (i128, i128, bool) = match suffix {
        "" => (1000, 1, false),
        "m" => (1, 1, false),
        "k" => (1_000_000, 1, false),
        "M" => (1_000_000_000, 1, false),
        "G" => (1_000_000_000_000, 1, false),
        "T" => (1_000_000_000_000_000, 1, false),
        "P" => (1_000_000_000_000_000_000, 1, false),
        "E" => (1_000_000_000_000_000_000_000, 1, false),
        "Ki" => (1000 << 10, 1, true),
        "Mi" => (1000 << 20, 1, true),
        "Gi" => (1000 << 30, 1, true),
        "Ti" => (1000 << 40, 1, true),
        "Pi" => (1000 << 50, 1, true),
        "Ei" => (1000 << 60, 1, true),
        s if s.starts_with(['e', 'E']) => {
            let exp: u32 = s[1..].parse().ok()?;
            (1000 * 10i128.checked_pow(exp)?, 1, false)
        }
        _ => return None,
    };
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let negative = whole.starts_with('-');
    let whole: i128 = whole
        .trim_start_matches(['+', '-'])
        .parse()
        .ok()
        .or_else(|| whole.trim_start_matches(['+', '-']).is_empty().then_some(0))?;
    let mut milli = whole.checked_mul(multiplier)? / divisor;
    let mut scale = multiplier;
    for digit in fraction.chars() {
        scale /= 10;
        milli += i128::from(digit.to_digit(10)?) * scale;
    }
    Some(Amount {
        milli: if negative { -milli } else { milli },
        binary,
    })
}

/// Prints an amount as the API server's canonical quantity: `500m`, `4`,
/// `2Gi`, `1500M`.
pub fn format_amount(amount: Amount) -> String {
    let milli = amount.milli;
    if milli % 1000 != 0 {
        return format!("{milli}m");
    }
    let units = milli / 1000;
    if units == 0 {
        return "0".to_owned();
    }
    let (base, suffixes): (i128, &[&str]) = if amount.binary {
        (1024, &["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
    } else {
        (1000, &["k", "M", "G", "T", "P", "E"])
    };
    let mut value = units;
    let mut suffix = "";
    for s in suffixes {
        if value % base != 0 {
            break;
        }
        value /= base;
        suffix = s;
    }
    format!("{value}{suffix}")
}

/// Resource amounts by name.
pub type Usage = BTreeMap<String, Amount>;

fn add(usage: &mut Usage, name: &str, amount: Amount) {
    let entry = usage.entry(name.to_owned()).or_default();
    entry.milli += amount.milli;
    entry.binary |= amount.binary;
}

/// The `requests` (or `limits`) of one container, a request defaulting to
/// the limit as the API server defaults it.
fn container_amounts(container: &Value, key: &str) -> Usage {
    let mut out = Usage::new();
    let resources = &container["resources"];
    let mut names: Vec<&String> = Vec::new();
    for part in ["requests", "limits"] {
        if let Some(map) = resources[part].as_object() {
            names.extend(map.keys());
        }
    }
    for name in names {
        let value = resources[key][name.as_str()].as_str().or_else(|| {
            (key == "requests").then(|| resources["limits"][name.as_str()].as_str())?
        });
        if let Some(amount) = value.and_then(parse_quantity) {
            out.insert(name.clone(), amount);
        }
    }
    out
}

/// The pod's `requests` or `limits`: the larger of the sum over its
/// containers and the largest init container, per resource.
fn pod_amounts(pod: &Value, key: &str) -> Usage {
    let mut sum = Usage::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        for (name, amount) in container_amounts(c, key) {
            add(&mut sum, &name, amount);
        }
    }
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (name, amount) in container_amounts(c, key) {
            let entry = sum.entry(name).or_default();
            if amount.milli > entry.milli {
                *entry = amount;
            }
        }
    }
    sum
}

/// Whether a pod is charged to quotas (not `Succeeded` or `Failed`).
pub fn charged(pod: &Value) -> bool {
    !matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    )
}

/// What a pod is charged, under every name a quota may use.
pub fn pod_usage(pod: &Value) -> Usage {
    let one = Amount {
        milli: 1000,
        binary: false,
    };
    let mut usage = Usage::from([("pods".to_owned(), one), ("count/pods".to_owned(), one)]);
    for (name, amount) in pod_amounts(pod, "requests") {
        if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            usage.insert(name.clone(), amount);
        }
        usage.insert(format!("requests.{name}"), amount);
    }
    for (name, amount) in pod_amounts(pod, "limits") {
        usage.insert(format!("limits.{name}"), amount);
    }
    usage
}

/// The resources a pod quota counts (others, such as `requests.storage`,
/// belong to other kinds).
pub fn counts_pods(resource: &str) -> bool {
    matches!(
        resource,
        "pods" | "count/pods" | "cpu" | "memory" | "ephemeral-storage"
    ) || resource.starts_with("requests.") && resource != "requests.storage"
        || resource.starts_with("limits.")
}

/// `limits.cpu for: a,b; requests.memory for: a`: the constrained
/// resources some container of `pod` does not set, or `None`.
pub fn missing_resources(pod: &Value, hard: &[String]) -> Option<String> {
    let mut missing: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let containers = ["initContainers", "containers"]
        .into_iter()
        .flat_map(|k| pod["spec"][k].as_array().into_iter().flatten());
    for c in containers {
        let name = c["name"].as_str().unwrap_or_default().to_owned();
        for resource in hard {
            let (key, res) = match resource.split_once('.') {
                Some(("requests", r)) if r != "storage" => ("requests", r),
                Some(("limits", r)) => ("limits", r),
                None if matches!(resource.as_str(), "cpu" | "memory") => {
                    ("requests", resource.as_str())
                }
                _ => continue,
            };
            if !container_amounts(c, key).contains_key(res) {
                missing
                    .entry(resource.clone())
                    .or_default()
                    .push(name.clone());
            }
        }
    }
    (!missing.is_empty()).then(|| {
        missing
            .into_iter()
            .map(|(r, names)| format!("{r} for: {}", names.join(",")))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

/// `a=1,b=2`, as the API server prints usage in quota messages.
pub fn pretty(usage: &Usage) -> String {
    usage
        .iter()
        .map(|(k, v)| format!("{k}={}", format_amount(*v)))
        .collect::<Vec<_>>()
        .join(",")
}

/// Fills a pod's containers' missing limits and requests from the
/// `Container` items of the namespace's LimitRanges.
pub fn apply_limit_ranges(pod: &mut Value, ranges: &[&Value]) {
    for range in ranges {
        let items = range["spec"]["limits"].as_array().into_iter().flatten();
        for item in items.filter(|i| i["type"] == "Container") {
            for key in ["initContainers", "containers"] {
                let Some(containers) = pod["spec"][key].as_array_mut() else {
                    continue;
                };
                for c in containers {
                    fill(c, "limits", &item["default"]);
                    let defaults = if item["defaultRequest"].is_object() {
                        &item["defaultRequest"]
                    } else {
                        &item["default"]
                    };
                    fill(c, "requests", defaults);
                }
            }
        }
    }
}

/// Sets `resources.<key>.<name>` from `defaults` where the container has
/// neither that entry nor (for requests) a limit for it.
fn fill(container: &mut Value, key: &str, defaults: &Value) {
    let Some(defaults) = defaults.as_object() else {
        return;
    };
    for (name, value) in defaults {
        let resources = &container["resources"];
        let has = !resources[key][name].is_null()
            || (key == "requests" && !resources["limits"][name].is_null());
        if has {
            continue;
        }
        if !container["resources"].is_object() {
            container["resources"] = Value::Object(serde_json::Map::new());
        }
        if !container["resources"][key].is_object() {
            container["resources"][key] = Value::Object(serde_json::Map::new());
        }
        container["resources"][key][name] = value.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quantities_parse_and_print_canonically() {
        let q = |s| parse_quantity(s).expect(s);
        assert_eq!(q("500m").milli, 500);
        assert_eq!(q("2").milli, 2000);
        assert_eq!(q("1.5").milli, 1500);
        assert_eq!(q("1Ki").milli, 1_024_000);
        assert_eq!(format_amount(q("256Mi")), "256Mi");
        assert_eq!(format_amount(q("1024Mi")), "1Gi");
        assert_eq!(format_amount(q("1500m")), "1500m");
        assert_eq!(format_amount(q("4")), "4");
        assert_eq!(format_amount(q("1e3")), "1k");
        assert_eq!(format_amount(Amount::default()), "0");
        assert_eq!(parse_quantity("lots"), None);
    }

    #[test]
    fn a_pod_is_charged_its_containers_or_its_largest_init_container() {
        let pod = json!({"spec": {
        "initContainers": [{"name": "i", "resources": {"limits": {"cpu": "2"}}}],
        "containers": [
            {"name": "a", "resources": {"limits": {"cpu": "500m", "memory": "128Mi"}}},
            {"name": "b", "resources": {"requests": {"cpu": "250m"}, "limits": {"cpu": "1"}}},
        ]}});
        let usage = pod_usage(&pod);
        assert_eq!(
            pretty(&usage),
            "count/pods=1,cpu=2,limits.cpu=2,limits.memory=128Mi,memory=128Mi,pods=1,requests.cpu=2,requests.memory=128Mi"
        );
        let hard = vec!["limits.memory".to_owned(), "pods".to_owned()];
        assert_eq!(
            missing_resources(&pod, &hard).as_deref(),
            Some("limits.memory for: i,b")
        );
    }
}
