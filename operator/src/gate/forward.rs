//! Forwarding a held request to a ready instance pod, unchanged (method,
//! path, query, headers including Host and the ingress's X-Forwarded-*,
//! body streamed), and its answer back, streamed.

use std::net::SocketAddr;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;

/// Headers of one hop only (RFC 9110 §7.6.1), never forwarded.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// The client the gate forwards with: no redirects followed (the client
/// sees them), no proxy, a connect timeout but none on the answer (long
/// polls and downloads are the instance's business).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

fn strip(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_ascii_lowercase()))
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

/// Whether the instance at `addr` says it is ready (`GET /readyz` answers
/// 200 within a short time).
pub async fn answers_ready(http: &reqwest::Client, addr: SocketAddr) -> bool {
    http.get(format!("http://{addr}/readyz"))
        .timeout(Duration::from_millis(250))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Sends `request` to `addr` and streams the answer back; 502 when the
/// pod does not answer.
pub async fn forward(http: &reqwest::Client, addr: SocketAddr, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("http://{addr}{path}");
    let mut headers = parts.headers;
    strip(&mut headers);
    let body = reqwest::Body::wrap_stream(body.into_data_stream());
    let answer = http
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    match answer {
        Ok(answer) => {
            let status = answer.status();
            let mut headers = answer.headers().clone();
            strip(&mut headers);
            let stream = answer.bytes_stream().map_err(std::io::Error::other);
            let mut response = Response::new(Body::from_stream(stream));
            *response.status_mut() = status;
            *response.headers_mut() = headers;
            response
        }
        Err(error) => {
            tracing::warn!(%addr, %error, "forwarding a held request failed");
            (
                StatusCode::BAD_GATEWAY,
                "The tenant's instance did not answer the forwarded request; retry.\n",
            )
                .into_response()
        }
    }
}
