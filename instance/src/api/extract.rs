//! Extractors every handler shares: the caller with the role a route needs
//! (checked once, here), and path segments validated into types. Handlers
//! list the role extractor before the path ones, so a caller without the
//! role is refused before anything about the path is revealed.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::ApiError;
use super::query::Path;
use crate::auth::{Principal, Role};
use crate::flow;

/// The authenticated caller (set by the `authenticate` middleware).
fn caller(parts: &Parts, role: Role) -> Result<Principal, ApiError> {
    let principal = parts
        .extensions
        .get::<Principal>()
        .ok_or(ApiError::Unauthorized)?;
    if principal.role >= role {
        Ok(principal.clone())
    } else {
        Err(ApiError::Forbidden)
    }
}

/// A caller with at least the Viewer role.
#[derive(Debug, Clone)]
pub struct Viewer(pub Principal);

/// A caller with at least the Editor role.
#[derive(Debug, Clone)]
pub struct Editor(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Viewer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        caller(parts, Role::Viewer).map(Viewer)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Editor {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        caller(parts, Role::Editor).map(Editor)
    }
}

/// The path's parameters as `T` (a JSON 400 when they do not fit).
async fn path_params<T, S>(parts: &mut Parts, state: &S) -> Result<T, Response>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    let Path(params) = Path::<T>::from_request_parts(parts, state)
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(params)
}

fn no_such_flow() -> ApiError {
    ApiError::NotFound("no such flow".into())
}

/// A namespace name as a flow's namespace may be; anything else is a flow
/// that cannot exist (404).
pub fn check_namespace(namespace: &str) -> Result<(), ApiError> {
    if flow::is_valid_namespace(namespace) {
        Ok(())
    } else {
        Err(no_such_flow())
    }
}

/// `{namespace}/{id}` (or `{namespace}/{flow_id}`) of a flow, both valid
/// names; anything else answers 404 "no such flow".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlowKey {
    pub namespace: String,
    pub id: String,
}

impl FlowKey {
    pub fn parse(namespace: String, id: String) -> Option<FlowKey> {
        (flow::is_valid_namespace(&namespace) && flow::is_valid_flow_id(&id))
            .then_some(FlowKey { namespace, id })
    }
}

#[derive(Debug, Deserialize)]
struct FlowKeyParams {
    namespace: String,
    #[serde(alias = "flow_id")]
    id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for FlowKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let params: FlowKeyParams = path_params(parts, state).await?;
        FlowKey::parse(params.namespace, params.id).ok_or_else(|| no_such_flow().into_response())
    }
}

/// The `{namespace}` of `/flows/{namespace}`, a valid name (else 404).
#[derive(Debug, Clone)]
pub struct NamespaceName(pub String);

#[derive(Debug, Deserialize)]
struct NamespaceParams {
    namespace: String,
}

impl<S: Send + Sync> FromRequestParts<S> for NamespaceName {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let params: NamespaceParams = path_params(parts, state).await?;
        check_namespace(&params.namespace).map_err(IntoResponse::into_response)?;
        Ok(NamespaceName(params.namespace))
    }
}

/// An execution id (`{id}` or `{execution_id}`): 1 to 64 ASCII letters,
/// digits or dashes; anything else answers 404 "no such execution".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionId(pub String);

impl ExecutionId {
    /// Also checks task run ids, which have the same shape.
    pub fn parse(id: String) -> Result<ExecutionId, ApiError> {
        let valid = !id.is_empty()
            && id.len() <= 64
            && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if valid {
            Ok(ExecutionId(id))
        } else {
            Err(ApiError::NotFound("no such execution".into()))
        }
    }
}

#[derive(Debug, Deserialize)]
struct ExecutionIdParams {
    #[serde(alias = "execution_id")]
    id: String,
}

impl<S: Send + Sync> FromRequestParts<S> for ExecutionId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let params: ExecutionIdParams = path_params(parts, state).await?;
        ExecutionId::parse(params.id).map_err(IntoResponse::into_response)
    }
}

// What the extractors add to the OpenAPI document: the bearer token and
// the role a route needs (`x-atoll-role`), the refusals they answer.

impl aide::OperationInput for Viewer {
    fn operation_input(
        _: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) {
        super::openapi::require_role(operation, Role::Viewer);
    }

    fn inferred_early_responses(
        ctx: &mut aide::generate::GenContext,
        _: &mut aide::openapi::Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, aide::openapi::Response)> {
        super::openapi::refusals(ctx)
    }
}

impl aide::OperationInput for Editor {
    fn operation_input(
        _: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) {
        super::openapi::require_role(operation, Role::Editor);
    }

    fn inferred_early_responses(
        ctx: &mut aide::generate::GenContext,
        _: &mut aide::openapi::Operation,
    ) -> Vec<(Option<aide::openapi::StatusCode>, aide::openapi::Response)> {
        super::openapi::refusals(ctx)
    }
}

/// Path segments: the document names them from the route's template (see
/// `openapi::name_path_parameters`), as routes name them differently.
impl aide::OperationInput for FlowKey {}
impl aide::OperationInput for NamespaceName {}
impl aide::OperationInput for ExecutionId {}
