//! The task-runner, internal-storage and secrets variables of the contract
//! (`ATOLL_TASK_*`, `ATOLL_STORAGE_*`, `ATOLL_SECRETS_DIR`,
//! `ATOLL_NAMESPACE`, `ATOLL_INSTANCE_IMAGE`): how script tasks run, where
//! files go, where secrets are read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use atoll_crds::contract;

use super::{ConfigError, Env, invalid};

/// Where script tasks run unless a task says otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RunnerKind {
    /// A local process in the instance's container (the sandbox, trusted
    /// setups).
    #[default]
    Process,
    /// One pod per task attempt in the tenant's namespace.
    Kubernetes,
}

impl RunnerKind {
    pub fn name(self) -> &'static str {
        match self {
            RunnerKind::Process => "Process",
            RunnerKind::Kubernetes => "Kubernetes",
        }
    }
}

/// Most task pods running at once unless configured.
pub const DEFAULT_MAX_TASK_PODS: usize = 4;

/// How script tasks run.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TaskSettings {
    /// The tenant's namespace (task pods are created there).
    pub namespace: Option<String>,
    /// The instance's own image (the file helper containers of task pods).
    pub instance_image: Option<String>,
    /// Where task pods reach the instance's API.
    pub api_url: Option<String>,
    /// The default runner.
    pub runner: RunnerKind,
    /// The default image of script tasks that name none.
    pub image: Option<String>,
    /// Default resources of task pods: `requests`/`limits` → resource name
    /// → quantity.
    pub resources: BTreeMap<String, BTreeMap<String, String>>,
    /// Most task pods at once.
    pub max_pods: usize,
    /// Image patterns task pods may use (`*` any run of characters); empty:
    /// any image.
    pub allowed_images: Vec<String>,
    /// Longest a task pod runs unless the task sets its own timeout.
    pub timeout: Option<Duration>,
    /// One file per secret, named after it.
    pub secrets_dir: Option<PathBuf>,
}

/// Where the internal storage (files of executions, namespace files) is.
#[derive(Clone, PartialEq, Eq)]
pub enum StorageSettings {
    /// A directory (a volume in a cluster).
    Dir(PathBuf),
    /// An S3-compatible object store.
    S3(S3Settings),
}

#[derive(Clone, PartialEq, Eq)]
pub struct S3Settings {
    pub endpoint: String,
    pub bucket: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StorageSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StorageSettings::Dir(dir) => f.debug_tuple("Dir").field(dir).finish(),
            StorageSettings::S3(s3) => f.debug_tuple("S3").field(s3).finish(),
        }
    }
}

/// The credentials are never printed.
impl std::fmt::Debug for S3Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Settings")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &"<redacted>")
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

pub(super) fn tasks<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
) -> Result<TaskSettings, ConfigError> {
    let namespace = env.get(contract::NAMESPACE)?;
    if let Some(ns) = &namespace
        && !super::is_dns_label(ns)
    {
        return Err(invalid(contract::NAMESPACE, "must be a DNS label"));
    }
    let instance_image = env.get(contract::INSTANCE_IMAGE)?;
    if instance_image.as_deref().is_some_and(|i| !is_image(i)) {
        return Err(invalid(
            contract::INSTANCE_IMAGE,
            "expected an image reference",
        ));
    }
    let api_url = env.get(contract::TASK_API_URL)?;
    if api_url
        .as_deref()
        .is_some_and(|u| !(u.starts_with("http://") || u.starts_with("https://")))
    {
        return Err(invalid(contract::TASK_API_URL, "expected an http(s) URL"));
    }
    let runner = match env.get(contract::TASK_RUNNER)?.as_deref() {
        None => RunnerKind::default(),
        Some("Process") => RunnerKind::Process,
        Some("Kubernetes") => RunnerKind::Kubernetes,
        Some(_) => {
            return Err(invalid(
                contract::TASK_RUNNER,
                "expected Process or Kubernetes",
            ));
        }
    };
    let image = env.get(contract::TASK_IMAGE)?;
    if image.as_deref().is_some_and(|i| !is_image(i)) {
        return Err(invalid(contract::TASK_IMAGE, "expected an image reference"));
    }
    let resources = match env.get(contract::TASK_RESOURCES)? {
        None => BTreeMap::new(),
        Some(text) => resources(&text).ok_or_else(|| {
            invalid(
                contract::TASK_RESOURCES,
                r#"expected JSON such as {"requests":{"cpu":"100m","memory":"128Mi"},"limits":{"memory":"256Mi"}}"#,
            )
        })?,
    };
    let max_pods = match env.get(contract::TASK_MAX_PODS)? {
        None => DEFAULT_MAX_TASK_PODS,
        Some(text) => text
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| {
                invalid(
                    contract::TASK_MAX_PODS,
                    "expected a whole number between 1 and 10000",
                )
            })?,
    };
    let allowed_images = match env.get(contract::TASK_ALLOWED_IMAGES)? {
        None => Vec::new(),
        Some(text) => {
            let patterns: Vec<String> = text
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect();
            if patterns
                .iter()
                .any(|p| p.chars().any(|c| c.is_whitespace() || c.is_control()))
            {
                return Err(invalid(
                    contract::TASK_ALLOWED_IMAGES,
                    "expected comma-separated image patterns such as python:*,alpine:*",
                ));
            }
            patterns
        }
    };
    let timeout = match env.get(contract::TASK_TIMEOUT)? {
        None => None,
        Some(text) => Some(iso_duration(&text).ok_or_else(|| {
            invalid(
                contract::TASK_TIMEOUT,
                "expected an ISO-8601 duration such as PT1H",
            )
        })?),
    };
    let secrets_dir = env.get(contract::SECRETS_DIR)?.map(PathBuf::from);
    if secrets_dir.as_ref().is_some_and(|d| !d.is_absolute()) {
        return Err(invalid(contract::SECRETS_DIR, "expected an absolute path"));
    }
    Ok(TaskSettings {
        namespace,
        instance_image,
        api_url,
        runner,
        image,
        resources,
        max_pods,
        allowed_images,
        timeout,
        secrets_dir,
    })
}

pub(super) fn storage<F: Fn(&str) -> Option<String>>(
    env: &Env<F>,
    data_dir: &std::path::Path,
) -> Result<StorageSettings, ConfigError> {
    let Some(endpoint) = env.get(contract::STORAGE_S3_ENDPOINT)? else {
        let dir = match env.get(contract::STORAGE_DIR)? {
            Some(dir) if dir.chars().any(char::is_control) => {
                return Err(invalid(contract::STORAGE_DIR, "expected a directory path"));
            }
            Some(dir) => PathBuf::from(dir),
            None => data_dir.join("storage"),
        };
        return Ok(StorageSettings::Dir(dir));
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://")) {
        return Err(invalid(
            contract::STORAGE_S3_ENDPOINT,
            "expected an http(s) URL",
        ));
    }
    let required = |name: &'static str| -> Result<String, ConfigError> {
        env.get(name)?.ok_or_else(|| ConfigError::Missing {
            name,
            reason: format!("required with {}", contract::STORAGE_S3_ENDPOINT),
        })
    };
    let bucket = required(contract::STORAGE_S3_BUCKET)?;
    if !is_bucket(&bucket) {
        return Err(invalid(
            contract::STORAGE_S3_BUCKET,
            "expected a bucket name (3-63 lowercase letters, digits, '.' and '-')",
        ));
    }
    let region = env
        .get(contract::STORAGE_S3_REGION)?
        .unwrap_or_else(|| "us-east-1".into());
    if region
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(invalid(
            contract::STORAGE_S3_REGION,
            "expected a region such as us-east-1",
        ));
    }
    // Credentials are checked for presence only: never echoed.
    let access_key_id = required(contract::STORAGE_S3_ACCESS_KEY_ID)?;
    let secret_access_key = required(contract::STORAGE_S3_SECRET_ACCESS_KEY)?;
    for (name, value) in [
        (contract::STORAGE_S3_ACCESS_KEY_ID, &access_key_id),
        (contract::STORAGE_S3_SECRET_ACCESS_KEY, &secret_access_key),
    ] {
        if value.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(invalid(
                name,
                "must not contain spaces or control characters",
            ));
        }
    }
    Ok(StorageSettings::S3(S3Settings {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        bucket,
        region,
        access_key_id,
        secret_access_key,
    }))
}

fn is_image(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 512
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "./:_-@".contains(c))
}

fn is_bucket(name: &str) -> bool {
    (3..=63).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
}

fn resources(text: &str) -> Option<BTreeMap<String, BTreeMap<String, String>>> {
    let value: BTreeMap<String, BTreeMap<String, String>> = serde_json::from_str(text).ok()?;
    let known = |k: &str| matches!(k, "requests" | "limits");
    let quantity = |q: &str| {
        !q.is_empty() && q.len() <= 64 && q.chars().all(|c| c.is_ascii_alphanumeric() || c == '.')
    };
    value
        .iter()
        .all(|(k, amounts)| known(k) && amounts.values().all(|q| quantity(q)))
        .then_some(value)
}

/// An ISO-8601 duration as Kestra writes them (`PT1H30M`, `P1D`, `PT0.5S`).
pub fn iso_duration(text: &str) -> Option<Duration> {
    let span: jiff::SignedDuration = text.trim().parse().ok()?;
    let d = Duration::try_from(span).ok()?;
    (!d.is_zero()).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_resources_are_read() {
        assert_eq!(iso_duration("PT1H"), Some(Duration::from_secs(3600)));
        assert_eq!(iso_duration("PT0S"), None);
        assert_eq!(iso_duration("soon"), None);
        let r = resources(r#"{"requests":{"cpu":"100m"},"limits":{"memory":"1Gi"}}"#);
        assert_eq!(r.map(|r| r["limits"]["memory"].clone()), Some("1Gi".into()));
        assert_eq!(resources(r#"{"limitz":{"cpu":"1"}}"#), None);
        assert_eq!(resources(r#"{"limits":{"cpu":"1; rm"}}"#), None);
    }

    #[test]
    fn s3_credentials_are_not_printed() {
        let s = StorageSettings::S3(S3Settings {
            endpoint: "http://s3.test".into(),
            bucket: "b".into(),
            region: "r".into(),
            access_key_id: "AKIDSECRET".into(),
            secret_access_key: "VERYSECRET".into(),
        });
        let text = format!("{s:?}");
        assert!(!text.contains("SECRET"), "{text}");
    }
}
