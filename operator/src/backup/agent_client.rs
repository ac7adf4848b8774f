//! The client of a database pod's backup agent (contract §5):
//! `http://<pod IP>:9187` with the bearer token of the tenant's
//! `backup-agent` Secret. Timeouts are short (the agent answers from
//! memory) except for `POST /switch-wal`, which waits for archiving. Errors
//! name the request and the agent's message, never the token.

use std::time::Duration;

use atoll_backup::catalog::BackupInfo;
use atoll_backup::status::PushStatus;
use reqwest::StatusCode;
use serde::Deserialize;

/// Most requests.
const TIMEOUT: Duration = Duration::from_secs(5);
/// `POST /switch-wal` waits up to 60 s for the segment to be archived.
const SWITCH_TIMEOUT: Duration = Duration::from_secs(70);

/// `pg_stat_archiver` as the agent reports it.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Archiver {
    /// Files archived since the statistics were reset.
    #[serde(default)]
    pub archived_count: u64,
    /// The last file archived.
    #[serde(default)]
    pub last_archived_wal: Option<String>,
    /// When.
    #[serde(default)]
    pub last_archived_time: Option<jiff::Timestamp>,
    /// Failed attempts.
    #[serde(default)]
    pub failed_count: u64,
    /// The file of the last failure.
    #[serde(default)]
    pub last_failed_wal: Option<String>,
    /// When.
    #[serde(default)]
    pub last_failed_time: Option<jiff::Timestamp>,
}

/// `GET /status`, the parts the operator reads.
#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    /// `null` when PostgreSQL did not answer.
    #[serde(default)]
    pub archiver: Option<Archiver>,
    /// The last `wal-push` (its error text is already credential-free).
    #[serde(default)]
    pub last_push: Option<PushStatus>,
    /// Segments waiting to be archived.
    #[serde(default)]
    pub pending_segments: Option<u64>,
    /// Their bytes.
    #[serde(default)]
    pub pending_bytes: Option<u64>,
    /// When the report was made.
    #[serde(default)]
    pub time: Option<jiff::Timestamp>,
    /// What the agent could not read.
    #[serde(default)]
    pub error: Option<String>,
}

/// How a backup is doing (`GET /backups/{id}`).
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum AgentPhase {
    /// Being taken.
    Running,
    /// Complete in the store.
    Completed,
    /// Failed; see the message.
    Failed,
}

/// `GET /backups/{id}`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct BackupView {
    /// The id.
    pub id: String,
    /// Its phase.
    pub phase: AgentPhase,
    /// `backup.json` of a completed one.
    #[serde(default)]
    pub info: Option<BackupInfo>,
    /// Why it failed.
    #[serde(default)]
    pub message: Option<String>,
}

/// `POST /switch-wal`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Switched {
    /// When.
    pub time: jiff::Timestamp,
    /// The segment switched away from (now archived).
    pub wal: String,
    /// The switch LSN.
    pub lsn: String,
}

/// What `POST /backups` answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Started {
    /// 202: started.
    Started,
    /// 409: another backup (this id) runs.
    Busy(String),
}

/// A failed call to the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// No answer (connection refused, timeout).
    #[error("the backup agent at {url} did not answer {what}: {message}")]
    Unreachable {
        /// The agent's address.
        url: String,
        /// The request.
        what: &'static str,
        /// Why.
        message: String,
    },
    /// An error answer.
    #[error("the backup agent answered {what} with {status}: {message}")]
    Status {
        /// The request.
        what: &'static str,
        /// The HTTP status.
        status: u16,
        /// The agent's `message`.
        message: String,
    },
}

impl AgentError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            AgentError::Status { status, .. } => Some(*status),
            AgentError::Unreachable { .. } => None,
        }
    }
}

/// One agent. `Debug` hides the token.
#[derive(Clone)]
pub struct AgentClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// The agent at `http://<ip>:<port>` with `token`.
    pub fn new(http: reqwest::Client, ip: &str, port: i32, token: String) -> AgentClient {
        let host = if ip.contains(':') {
            format!("[{ip}]")
        } else {
            ip.to_owned()
        };
        AgentClient {
            http,
            base: format!("http://{host}:{port}"),
            token,
        }
    }

    /// `GET /status`.
    pub async fn status(&self) -> Result<AgentStatus, AgentError> {
        let response = self.send("GET /status", self.http.get(self.url("/status")), TIMEOUT);
        json(response.await?, "GET /status").await
    }

    /// `POST /backups {id, name}`.
    pub async fn start_backup(&self, id: &str, name: &str) -> Result<Started, AgentError> {
        const WHAT: &str = "POST /backups";
        let body = serde_json::json!({"id": id, "name": name});
        let request = self.http.post(self.url("/backups")).json(&body);
        let response = self.send(WHAT, request, TIMEOUT).await?;
        if response.status() == StatusCode::CONFLICT {
            #[derive(Deserialize)]
            struct Conflict {
                running: Option<String>,
            }
            let running = response
                .json::<Conflict>()
                .await
                .ok()
                .and_then(|c| c.running)
                .unwrap_or_default();
            return Ok(Started::Busy(running));
        }
        check(response, WHAT).await.map(|_| Started::Started)
    }

    /// `GET /backups/{id}`.
    pub async fn backup(&self, id: &str) -> Result<BackupView, AgentError> {
        const WHAT: &str = "GET /backups/{id}";
        let request = self.http.get(self.url(&format!("/backups/{id}")));
        json(self.send(WHAT, request, TIMEOUT).await?, WHAT).await
    }

    /// `POST /switch-wal`: switches to a new segment and waits until the
    /// old one is archived.
    pub async fn switch_wal(&self) -> Result<Switched, AgentError> {
        const WHAT: &str = "POST /switch-wal";
        let request = self.http.post(self.url("/switch-wal"));
        json(self.send(WHAT, request, SWITCH_TIMEOUT).await?, WHAT).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn send(
        &self,
        what: &'static str,
        request: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<reqwest::Response, AgentError> {
        request
            .bearer_auth(&self.token)
            .timeout(timeout)
            .send()
            .await
            .map_err(|e| AgentError::Unreachable {
                url: self.base.clone(),
                what,
                // reqwest's message names the URL, never the headers.
                message: e.without_url().to_string(),
            })
    }
}

/// The response when it is a success, else the agent's `message`.
async fn check(
    response: reqwest::Response,
    what: &'static str,
) -> Result<reqwest::Response, AgentError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    #[derive(Deserialize)]
    struct Message {
        message: Option<String>,
    }
    let message = response
        .json::<Message>()
        .await
        .ok()
        .and_then(|m| m.message)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    Err(AgentError::Status {
        what,
        status: status.as_u16(),
        message: message.chars().take(1024).collect(),
    })
}

async fn json<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    what: &'static str,
) -> Result<T, AgentError> {
    let response = check(response, what).await?;
    response.json::<T>().await.map_err(|e| AgentError::Status {
        what,
        status: 200,
        message: format!("unexpected body: {}", e.without_url()),
    })
}
