//! [`Query`] and [`Path`]: axum's query-string and path extractors,
//! refusing what they cannot read with the JSON [`ApiError`] every other
//! refusal answers (axum's own answer plain text), and documented as aide
//! documents axum's (each field a query or path parameter).

use aide::generate::GenContext;
use aide::openapi::Operation;
use aide::operation::OperationInput;
use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::request::Parts;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use super::ApiError;

/// The query string read into `T`; a 400 `invalidQuery` naming what does
/// not fit otherwise.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(rejection) => Err(ApiError::bad_request("invalidQuery", rejection.body_text())),
        }
    }
}

impl<T: JsonSchema> OperationInput for Query<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Query::<T>::operation_input(ctx, operation);
    }
}

/// The path's parameters read into `T`; a 400 `invalidPath` otherwise (a
/// route whose template lacks a parameter `T` needs is a 500).
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(rejection) if rejection.status() == StatusCode::BAD_REQUEST => {
                Err(ApiError::bad_request("invalidPath", rejection.body_text()))
            }
            Err(rejection) => Err(ApiError::Internal(rejection.body_text())),
        }
    }
}

impl<T: JsonSchema> OperationInput for Path<T> {
    fn operation_input(ctx: &mut GenContext, operation: &mut Operation) {
        axum::extract::Path::<T>::operation_input(ctx, operation);
    }
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use axum::response::IntoResponse;
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize)]
    struct Paging {
        #[allow(dead_code)]
        page: u32,
    }

    #[tokio::test]
    async fn an_unreadable_query_is_a_json_400() {
        let request = Request::get("/x?page=minus-one")
            .body(Body::empty())
            .expect("request");
        let (mut parts, _) = request.into_parts();
        let err = Query::<Paging>::from_request_parts(&mut parts, &())
            .await
            .expect_err("refused");
        let response = err.into_response();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("body");
        let body: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
        assert_eq!(body["code"], "invalidQuery");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains("page")),
            "{body}"
        );
    }
}
