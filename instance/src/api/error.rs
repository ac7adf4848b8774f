//! [`ApiError`]: the one JSON error answer, and how engine, store and flow
//! errors map to it.

use aide::OperationOutput;
use aide::generate::GenContext;
use aide::openapi::{self, Operation};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::{Value, json};

use super::MAX_BODY_BYTES;
use crate::engine::{EngineError, FlowChangeError, RerunError};
use crate::flow::FlowError;
use crate::storage::StorageError;
use crate::store::StoreError;

/// The JSON error every failing call answers: `{"message", "status", "code"}`
/// plus `details` for refused flows. Internal failures are logged, not echoed.
#[derive(Debug)]
pub enum ApiError {
    Unauthorized,
    Forbidden,
    /// A 403 that says why (a path outside what the call may reach).
    ForbiddenBecause(String),
    NotFound(String),
    Conflict(String),
    BadRequest {
        code: &'static str,
        message: String,
        details: Vec<Value>,
    },
    PayloadTooLarge,
    /// A 413 naming what was too large.
    TooLarge(String),
    Internal(String),
    Unavailable,
    /// A Kestra route Atoll does not implement (501): the feature's name
    /// and why (see `unimplemented`).
    NotImplemented {
        feature: &'static str,
        why: &'static str,
    },
}

/// The body of every error answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ErrorBody {
    /// What went wrong, for people.
    pub message: String,
    /// The HTTP status, repeated.
    pub status: u16,
    /// What went wrong, for programs (`notFound`, `invalidFlow`…).
    pub code: String,
    /// What was refused in a request, one entry per problem (flows, imports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Value>,
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    /// A 400 with no details.
    pub(super) fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::BadRequest {
            code,
            message: message.into(),
            details: Vec::new(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code, message, details) = match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token for this tenant is required".to_owned(),
                Vec::new(),
            ),
            ApiError::Forbidden => (
                StatusCode::FORBIDDEN,
                "forbidden",
                "your role does not allow this".to_owned(),
                Vec::new(),
            ),
            ApiError::ForbiddenBecause(m) => (StatusCode::FORBIDDEN, "forbidden", m, Vec::new()),
            ApiError::TooLarge(m) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payloadTooLarge",
                m,
                Vec::new(),
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, "notFound", m, Vec::new()),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, "conflict", m, Vec::new()),
            ApiError::BadRequest {
                code,
                message,
                details,
            } => (StatusCode::BAD_REQUEST, code, message, details),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "payloadTooLarge",
                format!("the request body is larger than {MAX_BODY_BYTES} bytes"),
                Vec::new(),
            ),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "request failed");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error".to_owned(),
                    Vec::new(),
                )
            }
            ApiError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "not ready".to_owned(),
                Vec::new(),
            ),
            ApiError::NotImplemented { feature, why } => (
                StatusCode::NOT_IMPLEMENTED,
                "notImplemented",
                format!("this endpoint is not implemented by Atoll: {feature}. {why}"),
                Vec::new(),
            ),
        };
        let body = ErrorBody {
            message,
            status: status.as_u16(),
            code: code.to_owned(),
            details,
        };
        (status, Json(body)).into_response()
    }
}

/// The documented error answer with `status` and `description`, JSON
/// [`ErrorBody`] (query strings and paths that cannot be read too: see
/// `query`).
pub(super) fn error_response(
    ctx: &mut GenContext,
    status: u16,
    description: &str,
) -> (Option<openapi::StatusCode>, openapi::Response) {
    let schema = ctx.schema.subschema_for::<ErrorBody>();
    let mut content = indexmap::IndexMap::new();
    content.insert(
        "application/json".to_owned(),
        openapi::MediaType {
            schema: Some(openapi::SchemaObject {
                json_schema: schema,
                example: None,
                external_docs: None,
            }),
            ..Default::default()
        },
    );
    let response = openapi::Response {
        description: description.to_owned(),
        content,
        ..Default::default()
    };
    (Some(openapi::StatusCode::Code(status)), response)
}

/// Any handler may refuse a request (400), find nothing (404), meet a
/// conflict (409), a body too large (413) or fail (500); 401 and 403 come
/// from the role extractors.
impl OperationOutput for ApiError {
    type Inner = ErrorBody;

    fn operation_response(ctx: &mut GenContext, _: &mut Operation) -> Option<openapi::Response> {
        Some(error_response(ctx, 500, "internal error").1)
    }

    fn inferred_responses(
        ctx: &mut GenContext,
        _: &mut Operation,
    ) -> Vec<(Option<openapi::StatusCode>, openapi::Response)> {
        [
            (400, "the request is not valid"),
            (404, "no such resource"),
            (409, "the resource is not in a state that allows this"),
            (413, "the request body is too large"),
            (500, "internal error"),
        ]
        .into_iter()
        .map(|(status, description)| error_response(ctx, status, description))
        .collect()
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(err: StorageError) -> Self {
        match err {
            StorageError::NotFound(_) => ApiError::NotFound("no such file".into()),
            StorageError::InvalidPath { .. } => {
                ApiError::bad_request("invalidPath", err.to_string())
            }
            StorageError::Io { .. } => ApiError::Internal(err.to_string()),
        }
    }
}

impl From<FlowError> for ApiError {
    fn from(err: FlowError) -> Self {
        let details = match &err {
            FlowError::Yaml {
                line,
                column,
                message,
            } => vec![json!({"line": line, "column": column, "message": message})],
            FlowError::Invalid { problems } => problems
                .iter()
                .map(|p| {
                    json!({"path": p.path, "task": p.task, "kind": p.kind.as_str(), "message": p.to_string()})
                })
                .collect(),
        };
        ApiError::BadRequest {
            code: "invalidFlow",
            message: err.to_string(),
            details,
        }
    }
}

impl From<FlowChangeError> for ApiError {
    fn from(err: FlowChangeError) -> Self {
        match err {
            FlowChangeError::Invalid(e) => e.into(),
            FlowChangeError::Exists { .. } => ApiError::Conflict(err.to_string()),
            FlowChangeError::NotFound => ApiError::NotFound("no such flow".into()),
            FlowChangeError::KeyMismatch => ApiError::bad_request("invalidFlow", err.to_string()),
            FlowChangeError::ImportInvalid { ref problems, .. } => ApiError::BadRequest {
                code: "invalidFlow",
                details: problems
                    .iter()
                    .map(|p| json!({"file": p.file, "message": p.message}))
                    .collect(),
                message: err.to_string(),
            },
            FlowChangeError::Store(e) => e.into(),
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(err: EngineError) -> Self {
        match err {
            EngineError::FlowNotFound { .. } | EngineError::ExecutionNotFound(_) => {
                ApiError::NotFound(err.to_string())
            }
            EngineError::FlowDisabled { .. }
            | EngineError::NotPaused(_)
            | EngineError::Busy(_)
            | EngineError::Rerun(RerunError::NotEnded(_) | RerunError::NotFailed(_)) => {
                ApiError::Conflict(err.to_string())
            }
            EngineError::Rerun(RerunError::NoTaskRun { .. }) => ApiError::NotFound(err.to_string()),
            EngineError::Inputs(e) => ApiError::bad_request("invalidInputs", e.to_string()),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
