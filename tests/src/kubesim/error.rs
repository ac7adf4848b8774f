//! API errors as the real server reports them: a `meta/v1` `Status` with the
//! HTTP code, a machine-readable reason and, for validation failures, causes
//! that name the field.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde_json::{Value, json};

/// One reason a request was refused, pointing at a field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueInvalid`, `FieldValueRequired`.
    pub reason: String,
    /// The field, as a dotted path (`spec.instance.replicas`).
    pub field: String,
    /// Human-readable message (already prefixed with the field).
    pub message: String,
}

/// An error the API answers with: turned into a `Status` body.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason` (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...).
    pub reason: &'static str,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, when the error concerns one object.
    pub details: Option<Value>,
    /// Seconds for a `Retry-After` header (429 and some 500s).
    pub retry_after: Option<u64>,
}

/// Result of an API operation.
pub type ApiResult<T> = Result<T, ApiError>;

/// The identity of an object in error messages: resource plural + group.
#[derive(Clone, Copy, Debug)]
pub struct Subject<'a> {
    /// API group (`""` for the core group).
    pub group: &'a str,
    /// Resource plural (`configmaps`).
    pub resource: &'a str,
}

impl Subject<'_> {
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn details(&self, name: &str) -> Value {
        json!({"name": name, "group": self.group, "kind": self.resource})
    }
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// 404 for a named object.
    pub fn not_found(subject: Subject<'_>, name: &str) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", subject.qualified()),
        );
        e.details = Some(subject.details(name));
        e
    }

    /// 404 for a path that names no resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// 409 when creating an object whose name is taken.
    pub fn already_exists(subject: Subject<'_>, name: &str) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", subject.qualified()),
        );
        e.details = Some(subject.details(name));
        e
    }

    /// 409 when an update carries a stale resourceVersion.
    pub fn conflict(subject: Subject<'_>, name: &str, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                subject.qualified()
            ),
        );
        e.details = Some(subject.details(name));
        e
    }

    /// 409 for server-side apply conflicts with other field managers.
    pub fn apply_conflict(subject: Subject<'_>, name: &str, conflicts: Vec<Cause>) -> Self {
        let listed: Vec<String> = conflicts.iter().map(|c| c.message.clone()).collect();
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                listed.join("; ")
            ),
        );
        let mut details = subject.details(name);
        details["causes"] = causes_json(&conflicts);
        e.details = Some(details);
        e
    }

    /// 422 with causes naming each bad field.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: Vec<Cause>) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let listed: Vec<String> = causes.iter().map(|c| c.message.clone()).collect();
        let message = match listed.len() {
            1 => format!("{qualified} \"{name}\" is invalid: {}", listed[0]),
            _ => format!("{qualified} \"{name}\" is invalid: [{}]", listed.join(", ")),
        };
        let mut e = Self::new(422, "Invalid", message);
        e.details = Some(json!({
            "name": name, "group": group, "kind": kind, "causes": causes_json(&causes)
        }));
        e
    }

    /// 400 for a malformed request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 401 for a bearer token the server did not issue.
    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// 403 from RBAC, with the details the API server sends.
    pub fn forbidden_by_rbac(subject: Subject<'_>, name: &str, message: String) -> Self {
        let mut e = Self::new(403, "Forbidden", message);
        e.details = Some(subject.details(name));
        e
    }

    /// A refusal by admission (a ValidatingAdmissionPolicy), as the API
    /// server words it: `<resource> "<name>" is forbidden: <why>`, with the
    /// code of `reason` and `why` as the one cause.
    pub fn denied_by_admission(
        subject: Subject<'_>,
        name: &str,
        reason: &'static str,
        code: u16,
        why: String,
    ) -> Self {
        let message = if name.is_empty() {
            format!("{} is forbidden: {why}", subject.qualified())
        } else {
            format!("{} \"{name}\" is forbidden: {why}", subject.qualified())
        };
        let mut e = Self::new(code, reason, message);
        let mut details = subject.details(name);
        details["causes"] = json!([{"message": why}]);
        e.details = Some(details);
        e
    }

    /// 403, e.g. creating in a terminating namespace.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message)
    }

    /// 405 for a verb the resource does not support.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    /// 410 for a resourceVersion older than the watch history.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// 415 for a patch type the resource does not accept.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    /// 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    /// 429 with a `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            429,
            "TooManyRequests",
            "the server has received too many requests and has asked us to try again later",
        );
        e.retry_after = Some(retry_after_secs);
        e.details = Some(json!({"retryAfterSeconds": retry_after_secs}));
        e
    }

    /// The `Status` object.
    pub fn status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

/// Causes as the server sends them: the message without the field prefix
/// (clients print `field: message`).
fn causes_json(causes: &[Cause]) -> Value {
    causes
        .iter()
        .map(|c| {
            let message = c
                .message
                .strip_prefix(&format!("{}: ", c.field))
                .unwrap_or(&c.message);
            json!({"reason": c.reason, "message": message, "field": c.field})
        })
        .collect()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, axum::Json(self.status())).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
