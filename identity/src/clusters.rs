//! Cluster credentials: who may write the tenant directory, and as which
//! cluster.
//!
//! Every cluster's operator presents its own token; identity derives the
//! cluster from the token alone (never from a request), and scopes every
//! directory write to that cluster. Tokens come from
//!
//! - `ATOLL_IDENTITY_CLUSTER_TOKENS_DIR`: a directory (a mounted Secret)
//!   where each file is named after a cluster and holds its token. Re-read
//!   on use at most once per `cluster_tokens_reload` (5 s), so adding a
//!   cluster needs no restart, and removing one revokes its token;
//! - `ATOLL_IDENTITY_SERVICE_TOKEN`: one cluster's token, the cluster named
//!   by `ATOLL_IDENTITY_SERVICE_CLUSTER` (`default`), for single-cluster and
//!   development setups.
//!
//! Only SHA-256 digests of the tokens are kept, compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::config::{Config, MIN_CLUSTER_TOKEN_LEN};
use crate::sessions::{secrets_equal, token_hash};

/// What a cluster name may be.
pub const CLUSTER_NAME_RULE: &str =
    "a cluster name must be a DNS label (lowercase letters, digits, '-', 1 to 63 characters)";

/// A DNS label, like a Tenant name.
pub fn is_cluster_name(name: &str) -> bool {
    crate::api::is_dns_label(name)
}

#[derive(Debug, thiserror::Error)]
#[error("reading the cluster credentials in {dir} failed")]
pub struct ClusterTokensError {
    pub dir: PathBuf,
    #[source]
    pub source: std::io::Error,
}

#[derive(Clone)]
struct Entry {
    cluster: String,
    /// SHA-256 of the token, hex.
    hash: String,
}

/// The clusters that may write the directory, by credential.
pub struct ClusterCredentials {
    fixed: Vec<Entry>,
    dir: Option<PathBuf>,
    reload_every: Duration,
    loaded: RwLock<Arc<Vec<Entry>>>,
    /// When the directory was last read, and the problems found then (so a
    /// re-read logs only new ones).
    last_read: Mutex<(Option<Instant>, Vec<String>)>,
}

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials")
            .field("clusters", &self.clusters())
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl ClusterCredentials {
    /// From the configuration; reads the directory once (an unreadable
    /// directory is a start-up error).
    pub fn from_config(config: &Config) -> Result<Self, ClusterTokensError> {
        let fixed = config
            .service_token
            .iter()
            .map(|token| Entry {
                cluster: config.service_cluster.clone(),
                hash: token_hash(token.expose()),
            })
            .collect();
        let credentials = ClusterCredentials {
            fixed,
            dir: config.cluster_tokens_dir.clone(),
            reload_every: config.cluster_tokens_reload,
            loaded: RwLock::new(Arc::new(Vec::new())),
            last_read: Mutex::new((None, Vec::new())),
        };
        if let Some(dir) = &credentials.dir {
            let (entries, problems) = read_dir(dir)?;
            credentials.install(entries, problems);
        }
        Ok(credentials)
    }

    /// The cluster names that have a credential (no tokens).
    pub fn clusters(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .fixed
            .iter()
            .chain(self.snapshot().iter())
            .map(|e| e.cluster.clone())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    fn snapshot(&self) -> Arc<Vec<Entry>> {
        self.loaded
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The cluster whose credential `token` is. Re-reads the directory
    /// first when the last read is older than `reload_every`: a token that
    /// matches none then finds a cluster added since, and a removed
    /// cluster's token stops working.
    pub async fn cluster_of(&self, token: &str) -> Option<String> {
        let hash = token_hash(token);
        if let Some(dir) = self.dir.clone()
            && self.reload_due()
        {
            match tokio::task::spawn_blocking(move || read_dir(&dir)).await {
                Ok(Ok((entries, problems))) => self.install(entries, problems),
                Ok(Err(error)) => tracing::warn!(
                    error = %crate::server::error_chain(&error),
                    "re-reading the cluster credentials failed; keeping the ones loaded"
                ),
                Err(error) => tracing::warn!(%error, "re-reading the cluster credentials failed"),
            }
        }
        self.find(&hash)
    }

    /// Compares with every credential (no early exit on a match).
    fn find(&self, hash: &str) -> Option<String> {
        let loaded = self.snapshot();
        let mut found = None;
        for entry in self.fixed.iter().chain(loaded.iter()) {
            if secrets_equal(entry.hash.as_bytes(), hash.as_bytes()) && found.is_none() {
                found = Some(entry.cluster.clone());
            }
        }
        found
    }

    fn reload_due(&self) -> bool {
        let mut last = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if last
            .0
            .is_some_and(|at| now.duration_since(at) < self.reload_every)
        {
            return false;
        }
        last.0 = Some(now);
        true
    }

    fn install(&self, entries: Vec<Entry>, problems: Vec<String>) {
        {
            let mut last = self.last_read.lock().unwrap_or_else(|p| p.into_inner());
            last.0 = Some(Instant::now());
            for problem in problems.iter().filter(|p| !last.1.contains(p)) {
                tracing::warn!("cluster credentials: {problem}");
            }
            last.1 = problems;
        }
        let before: Vec<String> = self.snapshot().iter().map(|e| e.cluster.clone()).collect();
        let after: Vec<String> = entries.iter().map(|e| e.cluster.clone()).collect();
        if before != after {
            tracing::info!(clusters = ?after, "loaded cluster credentials");
        }
        *self.loaded.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(entries);
    }
}

/// The credentials in `dir` and what was wrong with the files skipped.
/// Dot files (the `..data` links of a mounted Secret) are not clusters.
fn read_dir(dir: &Path) -> Result<(Vec<Entry>, Vec<String>), ClusterTokensError> {
    let error = |source| ClusterTokensError {
        dir: dir.to_owned(),
        source,
    };
    let mut entries = Vec::new();
    let mut problems = Vec::new();
    let mut names: Vec<(String, PathBuf)> = Vec::new();
    for item in std::fs::read_dir(dir).map_err(error)? {
        let item = item.map_err(error)?;
        let Some(name) = item.file_name().to_str().map(str::to_owned) else {
            problems.push(format!(
                "ignoring {}: the file name is not UTF-8",
                item.path().display()
            ));
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        names.push((name, item.path()));
    }
    names.sort();
    for (name, path) in names {
        // Follows the symbolic links a mounted Secret consists of.
        if !std::fs::metadata(&path).map_err(error)?.is_file() {
            continue;
        }
        if !is_cluster_name(&name) {
            problems.push(format!("ignoring {}: {CLUSTER_NAME_RULE}", path.display()));
            continue;
        }
        let content = std::fs::read_to_string(&path).map_err(error)?;
        let token = content.trim_end_matches(['\n', '\r']);
        if token.len() < MIN_CLUSTER_TOKEN_LEN {
            problems.push(format!(
                "ignoring the credential of cluster {name} ({}): shorter than {MIN_CLUSTER_TOKEN_LEN} characters",
                path.display()
            ));
            continue;
        }
        entries.push(Entry {
            cluster: name,
            hash: token_hash(token),
        });
    }
    // Two clusters with one token could not be told apart: neither is used.
    let mut shared = Vec::new();
    for (i, a) in entries.iter().enumerate() {
        for b in &entries[i + 1..] {
            if a.hash == b.hash {
                problems.push(format!(
                    "clusters {} and {} have the same credential; both are ignored",
                    a.cluster, b.cluster
                ));
                shared.push(a.hash.clone());
            }
        }
    }
    entries.retain(|e| !shared.contains(&e.hash));
    Ok((entries, problems))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;

    const A: &str = "token-of-cluster-a-0123456789abcdef";
    const B: &str = "token-of-cluster-b-0123456789abcdef";

    fn config(dir: Option<&Path>) -> Config {
        let mut config = Config::with_database("sqlite::memory:");
        config.cluster_tokens_dir = dir.map(Path::to_owned);
        config.cluster_tokens_reload = Duration::ZERO;
        config
    }

    #[tokio::test]
    async fn each_file_is_a_cluster_and_bad_files_are_skipped() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("east"), format!("{A}\n")).expect("write");
        std::fs::write(dir.path().join("west"), B).expect("write");
        std::fs::write(dir.path().join("Not_A_Label"), "x".repeat(40)).expect("write");
        std::fs::write(dir.path().join("short"), "too-short").expect("write");
        std::fs::write(dir.path().join(".hidden"), "y".repeat(40)).expect("write");
        let credentials = ClusterCredentials::from_config(&config(Some(dir.path()))).expect("ok");
        assert_eq!(credentials.clusters(), ["east", "west"]);
        assert_eq!(credentials.cluster_of(A).await.as_deref(), Some("east"));
        assert_eq!(credentials.cluster_of(B).await.as_deref(), Some("west"));
        assert_eq!(credentials.cluster_of(&"x".repeat(40)).await, None);
        assert_eq!(credentials.cluster_of("too-short").await, None);
        assert!(!format!("{credentials:?}").contains(A));
    }

    #[tokio::test]
    async fn a_cluster_added_later_is_found_without_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("east"), A).expect("write");
        let credentials = ClusterCredentials::from_config(&config(Some(dir.path()))).expect("ok");
        assert_eq!(credentials.cluster_of(B).await, None);
        std::fs::write(dir.path().join("west"), B).expect("write");
        assert_eq!(credentials.cluster_of(B).await.as_deref(), Some("west"));
        // A removed cluster's token stops working at the next re-read.
        std::fs::remove_file(dir.path().join("east")).expect("remove");
        assert_eq!(credentials.cluster_of(B).await.as_deref(), Some("west"));
        assert_eq!(credentials.cluster_of(A).await, None);
    }

    #[tokio::test]
    async fn re_reads_are_rate_limited() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut settings = config(Some(dir.path()));
        settings.cluster_tokens_reload = Duration::from_secs(3600);
        let credentials = ClusterCredentials::from_config(&settings).expect("ok");
        std::fs::write(dir.path().join("west"), B).expect("write");
        assert_eq!(
            credentials.cluster_of(B).await,
            None,
            "read at start-up less than reload_every ago"
        );
    }

    #[tokio::test]
    async fn one_token_for_two_clusters_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("east"), A).expect("write");
        std::fs::write(dir.path().join("west"), A).expect("write");
        let credentials = ClusterCredentials::from_config(&config(Some(dir.path()))).expect("ok");
        assert_eq!(credentials.cluster_of(A).await, None);
    }

    #[tokio::test]
    async fn the_service_token_is_one_named_cluster() {
        let mut settings = config(None);
        settings.service_token = Some(Secret::new(A));
        settings.service_cluster = "lab".into();
        let credentials = ClusterCredentials::from_config(&settings).expect("ok");
        assert_eq!(credentials.cluster_of(A).await.as_deref(), Some("lab"));
        assert_eq!(credentials.cluster_of(B).await, None);
    }

    #[test]
    fn an_unreadable_directory_is_an_error_naming_it() {
        let settings = config(Some(Path::new("/nonexistent/clusters")));
        let error = ClusterCredentials::from_config(&settings).expect_err("missing");
        assert!(error.to_string().contains("/nonexistent/clusters"));
    }
}
