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
use crate::runner::kubernetes::Attempts;
use crate::runner::kubernetes::files::{
    Attempt, MAX_OUTPUT_FILE_BYTES, OutputRefused, check_relative_path,
};

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

fn refuse(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let message = message.into();
    (
        status,
        Json(json!({"message": message, "status": status.as_u16(), "code": code})),
    )
        .into_response()
}

/// The attempt `key` if the bearer token is its token; any other case
/// (unknown or ended attempt, wrong token, no token) answers the same 401.
fn authorize(
    attempts: &Attempts,
    key: &str,
    headers: &HeaderMap,
) -> Result<Arc<Attempt>, Response> {
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

fn checked(path: &str) -> Result<(), Response> {
    check_relative_path(path).map_err(|reason| {
        refuse(
            StatusCode::BAD_REQUEST,
            "invalidPath",
            format!("invalid file path: {reason}"),
        )
    })
}

async fn list_inputs(
    State(attempts): State<Attempts>,
    Path(key): Path<String>,
    headers: HeaderMap,
) -> Response {
    let attempt = match authorize(&attempts, &key, &headers) {
        Ok(attempt) => attempt,
        Err(refused) => return refused,
    };
    let files: Vec<_> = attempt
        .input_list()
        .into_iter()
        .map(|(path, size)| json!({"path": path, "size": size}))
        .collect();
    Json(json!({ "files": files })).into_response()
}

async fn get_input(
    State(attempts): State<Attempts>,
    Path((key, path)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let attempt = match authorize(&attempts, &key, &headers) {
        Ok(attempt) => attempt,
        Err(refused) => return refused,
    };
    if let Err(refused) = checked(&path) {
        return refused;
    }
    match attempt.input(&path) {
        Some(content) => (
            [(header::CONTENT_TYPE, "application/octet-stream")],
            content,
        )
            .into_response(),
        None => refuse(
            StatusCode::NOT_FOUND,
            "notFound",
            format!("no input file `{path}` in this attempt"),
        ),
    }
}

async fn put_output(
    State(attempts): State<Attempts>,
    Path((key, path)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let attempt = match authorize(&attempts, &key, &headers) {
        Ok(attempt) => attempt,
        Err(refused) => return refused,
    };
    if let Err(refused) = attempt.check_output_path(&path) {
        return output_refused(refused);
    }
    let limit = MAX_OUTPUT_FILE_BYTES.min(attempt.output_room());
    let Ok(content) = axum::body::to_bytes(body, limit).await else {
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payloadTooLarge",
            format!("`{path}` is larger than {limit} bytes (the room this attempt has left)"),
        );
    };
    match attempt.put_output(&path, content) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => output_refused(refused),
    }
}

fn output_refused(refused: OutputRefused) -> Response {
    let status = match refused {
        OutputRefused::Path(_) => StatusCode::BAD_REQUEST,
        OutputRefused::NotDeclared(_) => StatusCode::FORBIDDEN,
        OutputRefused::TooLarge { .. } | OutputRefused::TooMany(_) => StatusCode::PAYLOAD_TOO_LARGE,
    };
    refuse(status, "outputRefused", refused.to_string())
}

#[cfg(test)]
#[path = "attempts_tests.rs"]
mod tests;
