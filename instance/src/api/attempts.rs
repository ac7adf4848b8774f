//! The file-transfer routes of task pods, one attempt each: the pod's
//! helpers list and fetch the attempt's input files and upload its output
//! files. They sit outside the user-token authentication: the attempt's
//! own random token (see `runner::kubernetes::files`) is the credential,
//! and opens nothing but that attempt, while it runs.
//!
//! - `GET /api/v1/task-attempts/{key}/inputs` → `{"files": [{"path", "size"}]}`
//! - `GET /api/v1/task-attempts/{key}/inputs/{path}` → the file
//! - `PUT /api/v1/task-attempts/{key}/outputs/{path}` ← the file (only
//!   paths matching the task's `outputFiles`)

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{FromRef, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::json;

use super::AppState;
use crate::runner::check_relative;
use crate::runner::kubernetes::Attempts;
use crate::runner::kubernetes::files::{Attempt, MAX_OUTPUT_FILE_BYTES, OutputRefused};

impl FromRef<AppState> for Attempts {
    fn from_ref(state: &AppState) -> Attempts {
        state.attempts.clone()
    }
}

/// The routes, to merge at the root of the application.
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Attempts: FromRef<S>,
{
    Router::new()
        .route("/api/v1/task-attempts/{key}/inputs", get(list_inputs))
        .route("/api/v1/task-attempts/{key}/inputs/{*path}", get(get_input))
        .route(
            "/api/v1/task-attempts/{key}/outputs/{*path}",
            put(put_output),
        )
}

/// A refused request: its status, code and message as JSON.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    code: &'static str,
    message: String,
}

fn refuse(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        code,
        message: message.into(),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let body =
            json!({"message": self.message, "status": self.status.as_u16(), "code": self.code});
        (self.status, Json(body)).into_response()
    }
}

impl From<OutputRefused> for Refusal {
    fn from(refused: OutputRefused) -> Refusal {
        let status = match refused {
            OutputRefused::Path(_) => StatusCode::BAD_REQUEST,
            OutputRefused::NotDeclared(_) => StatusCode::FORBIDDEN,
            OutputRefused::TooLarge { .. } | OutputRefused::TooMany(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
        };
        refuse(status, "outputRefused", refused.to_string())
    }
}

/// The attempt `key` if the bearer token is its token; any other case
/// (unknown or ended attempt, wrong token, no token) answers the same 401.
fn authorize(attempts: &Attempts, key: &str, headers: &HeaderMap) -> Result<Arc<Attempt>, Refusal> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|token| attempts.authorize(key, token.trim()))
        .ok_or_else(|| {
            refuse(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "this attempt's token is required",
            )
        })
}

async fn list_inputs(
    State(attempts): State<Attempts>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let attempt = authorize(&attempts, &key, &headers)?;
    let files: Vec<_> = attempt
        .input_list()
        .into_iter()
        .map(|(path, size)| json!({"path": path, "size": size}))
        .collect();
    Ok(Json(json!({ "files": files })).into_response())
}

async fn get_input(
    State(attempts): State<Attempts>,
    Path((key, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, Refusal> {
    let attempt = authorize(&attempts, &key, &headers)?;
    check_relative(&path).map_err(|reason| {
        refuse(
            StatusCode::BAD_REQUEST,
            "invalidPath",
            format!("invalid file path: {reason}"),
        )
    })?;
    let content = attempt.input(&path).ok_or_else(|| {
        refuse(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("no input file `{path}` in this attempt"),
        )
    })?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        content,
    )
        .into_response())
}

async fn put_output(
    State(attempts): State<Attempts>,
    Path((key, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, Refusal> {
    let attempt = authorize(&attempts, &key, &headers)?;
    attempt.check_output_path(&path)?;
    let limit = MAX_OUTPUT_FILE_BYTES.min(attempt.output_room());
    let content = axum::body::to_bytes(body, limit).await.map_err(|_| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payloadTooLarge",
            format!("`{path}` is larger than {limit} bytes (the room this attempt has left)"),
        )
    })?;
    attempt.put_output(&path, content)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
#[path = "attempts_tests.rs"]
mod tests;
