//! The operator's backup settings (#19): the image whose binary archives
//! WAL and runs the agent sidecar, the platform's object store (used by
//! Tenants whose `spec.backup` names none), the Secret of the operator's
//! namespace holding that store's credentials, and who the database pods
//! may talk to for backups. Parsed once at start with the rest of
//! [`crate::config::OperatorConfig`]; the credentials themselves are read
//! from the Secret at reconcile time and never held here.

use crate::config::Labels;

/// The default backup image: this release's `atoll/atoll-backup`.
pub const DEFAULT_BACKUP_IMAGE: &str = concat!("atoll/atoll-backup:", env!("CARGO_PKG_VERSION"));

/// A day between two retention sweeps.
pub const DEFAULT_RETENTION_SWEEP_SECONDS: u64 = 24 * 60 * 60;

/// Backup settings of the operator.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct BackupConfig {
    /// Image with tag holding `/usr/local/bin/atoll-backup`: an init
    /// container copies it into each backed-up database pod, where
    /// PostgreSQL's archive_command and the backup-agent sidecar run it.
    #[arg(long, env = "ATOLL_BACKUP_IMAGE", default_value = DEFAULT_BACKUP_IMAGE)]
    pub backup_image: String,

    /// The platform's object store: endpoint URL (`https://host[:port]`,
    /// or `http://` for a store inside the cluster). Unset: Tenants must
    /// name a store of their own in spec.backup.objectStore.
    #[arg(long, env = "ATOLL_BACKUP_ENDPOINT", value_parser = parse_endpoint)]
    pub backup_endpoint: Option<String>,

    /// The platform store's bucket (it must exist).
    #[arg(long, env = "ATOLL_BACKUP_BUCKET")]
    pub backup_bucket: Option<String>,

    /// The platform store's region.
    #[arg(long, env = "ATOLL_BACKUP_REGION", default_value = "us-east-1")]
    pub backup_region: String,

    /// Address the platform store's bucket in the URL path instead of the
    /// host name (most self-hosted stores need it).
    #[arg(long, env = "ATOLL_BACKUP_PATH_STYLE")]
    pub backup_path_style: bool,

    /// Key prefix in the platform store's bucket (each tenant's objects go
    /// under `<prefix>/tenants/<uid>/`).
    #[arg(long, env = "ATOLL_BACKUP_PREFIX", value_parser = parse_prefix)]
    pub backup_prefix: Option<String>,

    /// Secret of the operator's namespace holding the platform store's
    /// credentials under the keys `accessKeyId` and `secretAccessKey`. The
    /// operator copies them into each backed-up tenant's
    /// `backup-object-store` Secret. Unset: anonymous requests (tests).
    #[arg(long, env = "ATOLL_BACKUP_CREDENTIALS_SECRET")]
    pub backup_credentials_secret: Option<String>,

    /// Seconds between two retention sweeps of the platform store (the
    /// leader sweeps once at start, then at this interval): every tenant
    /// there, deleted ones included, keeps only what its retention covers.
    #[arg(
        long,
        env = "ATOLL_BACKUP_RETENTION_SWEEP_SECONDS",
        default_value_t = DEFAULT_RETENTION_SWEEP_SECONDS,
        value_parser = clap::value_parser!(u64).range(1..)
    )]
    pub backup_retention_sweep_seconds: u64,

    /// Labels (k=v,k=v) selecting the namespace of an object store that
    /// runs inside the cluster, which database pods may then reach on
    /// `backup-store-port`. Unset: only stores outside the cluster (minus
    /// the blocked ranges) are reachable.
    #[arg(long, env = "ATOLL_BACKUP_STORE_NAMESPACE_SELECTOR", default_value = "", value_parser = crate::config::parse_labels)]
    pub backup_store_namespace_selector: Labels,

    /// Labels (k=v,k=v) selecting that store's pods in its namespace
    /// (empty: every pod there).
    #[arg(long, env = "ATOLL_BACKUP_STORE_POD_SELECTOR", default_value = "", value_parser = crate::config::parse_labels)]
    pub backup_store_pod_selector: Labels,

    /// The in-cluster store's pod port (what a NetworkPolicy matches).
    #[arg(long, env = "ATOLL_BACKUP_STORE_PORT", default_value_t = 9000)]
    pub backup_store_port: u16,

    /// Labels (k=v,k=v) selecting the operator's namespace: only the
    /// operator's pods there may reach a database pod's backup agent.
    #[arg(
        long,
        env = "ATOLL_OPERATOR_NAMESPACE_SELECTOR",
        default_value = "kubernetes.io/metadata.name=atoll-system",
        value_parser = crate::config::parse_labels
    )]
    pub operator_namespace_selector: Labels,

    /// Labels (k=v,k=v) selecting the operator's pods in that namespace.
    #[arg(
        long,
        env = "ATOLL_OPERATOR_POD_SELECTOR",
        default_value = "app.kubernetes.io/name=atoll-operator",
        value_parser = crate::config::parse_labels
    )]
    pub operator_pod_selector: Labels,
}

impl Default for BackupConfig {
    fn default() -> Self {
        let labels = |k: &str, v: &str| Labels([(k.to_owned(), v.to_owned())].into());
        Self {
            backup_image: DEFAULT_BACKUP_IMAGE.to_owned(),
            backup_endpoint: None,
            backup_bucket: None,
            backup_region: "us-east-1".to_owned(),
            backup_path_style: false,
            backup_prefix: None,
            backup_credentials_secret: None,
            backup_retention_sweep_seconds: DEFAULT_RETENTION_SWEEP_SECONDS,
            backup_store_namespace_selector: Labels::default(),
            backup_store_pod_selector: Labels::default(),
            backup_store_port: 9000,
            operator_namespace_selector: labels("kubernetes.io/metadata.name", "atoll-system"),
            operator_pod_selector: labels("app.kubernetes.io/name", "atoll-operator"),
        }
    }
}

impl BackupConfig {
    /// Whether the platform store is configured (an endpoint and a bucket).
    pub fn platform_store(&self) -> Option<(&str, &str)> {
        let endpoint = self.backup_endpoint.as_deref().filter(|e| !e.is_empty())?;
        let bucket = self.backup_bucket.as_deref().filter(|b| !b.is_empty())?;
        Some((endpoint, bucket))
    }
}

/// `http(s)://host[:port]` with an optional trailing `/`: no path, query
/// or user info (the bucket and prefix are their own settings, the
/// credentials a Secret).
fn parse_endpoint(text: &str) -> Result<String, String> {
    let rest = text
        .strip_prefix("https://")
        .or_else(|| text.strip_prefix("http://"))
        .ok_or_else(|| format!("{text:?} must start with https:// or http://"))?;
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty()
        || !authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
    {
        return Err(format!(
            "{text:?} must be scheme://host[:port], without a path, query or user info"
        ));
    }
    Ok(text.trim_end_matches('/').to_owned())
}

/// `/`-separated segments of letters, digits, `.`, `_` and `-`, none empty
/// and none starting with `.`.
fn parse_prefix(text: &str) -> Result<String, String> {
    let ok = text.split('/').all(|segment| {
        !segment.is_empty()
            && !segment.starts_with('.')
            && segment
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    });
    if ok {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "{text:?}: a prefix is '/'-separated segments of letters, digits, '.', '_' and '-', without a leading or trailing '/' and without '.' or '..' segments"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_prefixes_are_checked() {
        assert_eq!(
            parse_endpoint("http://127.0.0.1:9000/").as_deref(),
            Ok("http://127.0.0.1:9000")
        );
        assert!(parse_endpoint("https://s3.example.com").is_ok());
        for bad in [
            "s3.example.com",
            "https://user:pw@s3.example.com",
            "https://s3.example.com/bucket",
            "https://",
            "ftp://x",
        ] {
            assert!(parse_endpoint(bad).is_err(), "{bad}");
        }
        assert!(parse_prefix("atoll/backups").is_ok());
        for bad in ["/atoll", "atoll/", "a//b", "a/../b", ".hidden", "a b"] {
            assert!(parse_prefix(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_platform_store_needs_an_endpoint_and_a_bucket() {
        let mut config = BackupConfig::default();
        assert_eq!(config.platform_store(), None);
        config.backup_endpoint = Some("http://127.0.0.1:9000".into());
        assert_eq!(config.platform_store(), None);
        config.backup_bucket = Some("backups".into());
        assert_eq!(
            config.platform_store(),
            Some(("http://127.0.0.1:9000", "backups"))
        );
        assert!(DEFAULT_BACKUP_IMAGE.starts_with("atoll/atoll-backup:"));
    }
}
