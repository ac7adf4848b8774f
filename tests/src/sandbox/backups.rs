//! The sandbox's backup store (#19): a [`TestS3`] on a loopback port, used
//! as the platform's object store (what the chart's `backup.objectStore`
//! values configure in a cluster). Its credentials go into a Secret of the
//! operator's namespace, which the operator reads; the operator is told
//! only that Secret's name. Without the s3s-fs binary the sandbox runs
//! without a platform store, and says so.

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use super::{FIELD_MANAGER, SandboxError};
use crate::s3::TestS3;

/// The operator's namespace (its default `POD_NAMESPACE`).
const OPERATOR_NAMESPACE: &str = "atoll-system";
/// The Secret with the store's credentials (the chart's
/// `backup.objectStore.credentialsSecret`).
const BACKUP_CREDENTIALS_SECRET: &str = "atoll-backup-credentials";

/// The running store.
pub(super) struct SandboxStore {
    s3: TestS3,
}

impl SandboxStore {
    /// Starts the store and writes its credentials Secret; `None` when the
    /// s3s-fs binary is missing (reported by [`TestS3::start`]).
    pub(super) async fn start(client: &Client) -> Result<Option<Self>, SandboxError> {
        let Some(s3) = TestS3::start("the sandbox's backup store") else {
            return Ok(None);
        };
        let apply = |what: &str, source: kube::Error| SandboxError::Platform {
            what: "the backup store",
            message: format!("applying {what}: {source}"),
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": OPERATOR_NAMESPACE},
        }))
        .map_err(|e| SandboxError::Platform {
            what: "the backup store",
            message: e.to_string(),
        })?;
        Api::<Namespace>::all(client.clone())
            .patch(OPERATOR_NAMESPACE, &params, &Patch::Apply(&namespace))
            .await
            .map_err(|e| apply("the operator's namespace", e))?;
        let secret: Secret = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": BACKUP_CREDENTIALS_SECRET, "namespace": OPERATOR_NAMESPACE},
            "stringData": {
                "accessKeyId": s3.access_key_id,
                "secretAccessKey": s3.secret_access_key,
            },
        }))
        .map_err(|e| SandboxError::Platform {
            what: "the backup store",
            message: e.to_string(),
        })?;
        Api::<Secret>::namespaced(client.clone(), OPERATOR_NAMESPACE)
            .patch(BACKUP_CREDENTIALS_SECRET, &params, &Patch::Apply(&secret))
            .await
            .map_err(|e| apply("the store's credentials Secret", e))?;
        Ok(Some(Self { s3 }))
    }

    /// The operator's settings for this store (no credentials: the
    /// Secret's name only).
    pub(super) fn operator_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("ATOLL_BACKUP_ENDPOINT", self.s3.endpoint.clone()),
            ("ATOLL_BACKUP_BUCKET", self.s3.bucket.clone()),
            ("ATOLL_BACKUP_REGION", self.s3.region.clone()),
            ("ATOLL_BACKUP_PATH_STYLE", "true".to_owned()),
            (
                "ATOLL_BACKUP_CREDENTIALS_SECRET",
                BACKUP_CREDENTIALS_SECRET.to_owned(),
            ),
        ]
    }

    /// One line for the summary.
    pub(super) fn summary(&self) -> String {
        format!(
            "atoll-sandbox: backups go to {} bucket {} (objects in {})\n",
            self.s3.endpoint,
            self.s3.bucket,
            self.s3.dir().join(&self.s3.bucket).display()
        )
    }
}
