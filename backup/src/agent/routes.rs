//! The agent's HTTP API (contract §5). Every route but `/healthz` needs
//! the bearer token; bodies are JSON; errors are `{"message": ...}` and
//! never hold a credential.

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::switch_wal::{self, SwitchError};
use super::{Agent, auth, backups, status};
use crate::layout::BackupId;

/// The router: `/healthz` open, the rest behind the token.
pub fn router(agent: Arc<Agent>) -> Router {
    let protected = Router::new()
        .route("/status", get(get_status))
        .route("/backups", post(post_backup))
        .route("/backups/{id}", get(get_backup))
        .route("/switch-wal", post(post_switch_wal))
        .route_layer(middleware::from_fn_with_state(
            agent.clone(),
            auth::require_token,
        ));
    Router::new()
        .route("/healthz", get(healthz))
        .merge(protected)
        .with_state(agent)
}

/// An error answer: a status and `{"message", ...extra}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    body: Map<String, Value>,
}

impl ApiError {
    /// `{"message": message}` with `status`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        let mut body = Map::new();
        body.insert("message".into(), Value::String(message.into()));
        ApiError { status, body }
    }

    /// Adds a field to the body.
    pub fn with(mut self, key: &str, value: impl Serialize) -> ApiError {
        self.body.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(Value::Object(self.body))).into_response()
    }
}

async fn healthz() -> &'static str {
    "ok"
}

async fn get_status(State(agent): State<Arc<Agent>>) -> Json<status::StatusReport> {
    Json(status::report(&agent).await)
}

/// `POST /backups` body (empty = `{}`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBackup {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

async fn post_backup(State(agent): State<Arc<Agent>>, body: Bytes) -> Result<Response, ApiError> {
    let request: StartBackup = if body.iter().all(u8::is_ascii_whitespace) {
        StartBackup::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("the body must be {{\"id\"?: \"YYYYMMDDTHHMMSSZ\", \"name\"?: TenantBackup name}}: {e}"),
            )
        })?
    };
    let id = match &request.id {
        Some(text) => parse_id(text)?,
        None => BackupId::now(),
    };
    if let Some(name) = &request.name
        && !backups::valid_name(name)
    {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{name:?} is not a valid TenantBackup name (a DNS subdomain)"),
        ));
    }
    match agent.backups.start(id, request.name) {
        Ok(()) => Ok((StatusCode::ACCEPTED, Json(json!({"id": id.to_string()}))).into_response()),
        Err(running) => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("base backup {running} is running; one at a time"),
        )
        .with("running", running.to_string())),
    }
}

fn parse_id(text: &str) -> Result<BackupId, ApiError> {
    text.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not a backup id (YYYYMMDDTHHMMSSZ, UTC)"),
        )
    })
}

async fn get_backup(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
) -> Result<Json<backups::BackupView>, ApiError> {
    let id = parse_id(&id)?;
    match agent.backups.view(id).await {
        Ok(Some(view)) => Ok(Json(view)),
        Ok(None) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no base backup {id} (not running, not in the store)"),
        )),
        Err(message) => Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!("cannot read the backup catalog: {message}"),
        )),
    }
}

async fn post_switch_wal(
    State(agent): State<Arc<Agent>>,
) -> Result<Json<switch_wal::SwitchReport>, ApiError> {
    match switch_wal::switch_wal(&agent).await {
        Ok(report) => Ok(Json(report)),
        Err(SwitchError::NotArchived { switched, message }) => {
            Err(ApiError::new(StatusCode::GATEWAY_TIMEOUT, message)
                .with("wal", &switched.wal)
                .with("lsn", &switched.lsn)
                .with("time", switched.time))
        }
        Err(e @ SwitchError::Postgres(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            agent.redact(&e.to_string()),
        )),
    }
}
