//! The ingress router: one loopback HTTP port that sends each request to the
//! Service named by the Ingress rule matching its `Host` header and path.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// One routing rule from an Ingress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// Host to match: exact, or `*.suffix` for one label; empty matches all.
    pub host: String,
    /// Path prefix (`/` for everything).
    pub path: String,
    /// `true` for `pathType: Exact`.
    pub exact: bool,
    /// Where the Service listens, `None` while it has no address.
    pub backend: Option<SocketAddr>,
}

impl Route {
    fn matches_host(&self, host: &str) -> bool {
        if self.host.is_empty() {
            return true;
        }
        match self.host.strip_prefix("*.") {
            Some(suffix) => host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
            None => self.host.eq_ignore_ascii_case(host),
        }
    }

    fn matches_path(&self, path: &str) -> bool {
        if self.exact {
            return path == self.path;
        }
        let prefix = self.path.trim_end_matches('/');
        prefix.is_empty()
            || path == prefix
            || path
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    }
}

/// Picks the route for a request: exact hosts before wildcards before the
/// catch-all, then the longest path.
pub fn select<'r>(routes: &'r [Route], host: &str, path: &str) -> Option<&'r Route> {
    let host = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    routes
        .iter()
        .filter(|r| r.matches_host(host) && r.matches_path(path))
        .max_by_key(|r| {
            let host_rank = if r.host.is_empty() {
                0
            } else if r.host.starts_with("*.") {
                1
            } else {
                2
            };
            (host_rank, r.exact, r.path.len())
        })
}

type Body = BoxBody<Bytes, hyper::Error>;

/// The router; its routes can be replaced while it serves. Dropping it stops
/// the listener and open connections.
#[derive(Debug)]
pub struct IngressRouter {
    addr: SocketAddr,
    routes: Arc<RwLock<Vec<Route>>>,
    task: JoinHandle<()>,
}

impl IngressRouter {
    /// Listens on `addr` (port 0 picks one).
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let routes = Arc::new(RwLock::new(Vec::new()));
        let task = tokio::spawn(serve(listener, routes.clone()));
        Ok(Self { addr, routes, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces every route.
    pub fn set_routes(&self, routes: Vec<Route>) {
        let mut current = self.routes.write().unwrap_or_else(|e| e.into_inner());
        if *current != routes {
            *current = routes;
        }
    }
}

impl Drop for IngressRouter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, routes: Arc<RwLock<Vec<Route>>>) {
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, peer)) = accepted else { continue };
                let routes = routes.clone();
                let client = client.clone();
                let service = hyper::service::service_fn(move |req| {
                    route(req, peer, routes.clone(), client.clone())
                });
                connections.spawn(async move {
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

fn plain(status: StatusCode, text: &str) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(format!("{text}\n")))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response
}

async fn route(
    mut req: Request<Incoming>,
    peer: SocketAddr,
    routes: Arc<RwLock<Vec<Route>>>,
    client: Client<HttpConnector, Incoming>,
) -> Result<Response<Body>, Infallible> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().authority().map(|a| a.as_str()))
        .unwrap_or("")
        .to_ascii_lowercase();
    let backend = {
        let routes = routes.read().unwrap_or_else(|e| e.into_inner());
        select(&routes, &host, req.uri().path()).map(|r| r.backend)
    };
    let backend = match backend {
        None => return Ok(plain(StatusCode::NOT_FOUND, "default backend - 404")),
        Some(None) => {
            return Ok(plain(
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Temporarily Unavailable",
            ));
        }
        Some(Some(addr)) => addr,
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let Ok(uri) = format!("http://{backend}{path}").parse::<Uri>() else {
        return Ok(plain(StatusCode::BAD_REQUEST, "bad request path"));
    };
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_11;
    let headers = req.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&peer.ip().to_string()) {
        headers.insert("x-forwarded-for", v.clone());
        headers.insert("x-real-ip", v);
    }
    if let Ok(v) = HeaderValue::from_str(&host) {
        headers.insert("x-forwarded-host", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static("http"));
    match client.request(req).await {
        Ok(response) => Ok(response.map(|b| b.boxed())),
        Err(_) => Ok(plain(StatusCode::BAD_GATEWAY, "502 Bad Gateway")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(host: &str, path: &str, port: u16) -> Route {
        Route {
            host: host.into(),
            path: path.into(),
            exact: false,
            backend: Some(SocketAddr::from(([127, 0, 0, 1], port))),
        }
    }

    #[test]
    fn selects_by_host_then_longest_path() {
        let routes = vec![
            r("acme.atoll.localhost", "/", 1),
            r("acme.atoll.localhost", "/api", 2),
            r("*.atoll.localhost", "/", 3),
            r("", "/", 4),
        ];
        let port = |host: &str, path: &str| {
            select(&routes, host, path)
                .and_then(|r| r.backend)
                .map(|a| a.port())
        };
        assert_eq!(port("acme.atoll.localhost:8080", "/"), Some(1));
        assert_eq!(port("acme.atoll.localhost", "/api/v1/flows"), Some(2));
        assert_eq!(port("acme.atoll.localhost", "/apix"), Some(1));
        assert_eq!(port("globex.atoll.localhost", "/api"), Some(3));
        assert_eq!(port("a.b.atoll.localhost", "/"), Some(4));
        assert_eq!(select(&routes[..3], "other.example", "/"), None);
    }

    #[tokio::test]
    async fn routes_real_http_by_host_header() {
        let backend = axum::Router::new().route(
            "/hello",
            axum::routing::get(|headers: http::HeaderMap| async move {
                format!(
                    "hi {}",
                    headers
                        .get("host")
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or("")
                )
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let backend_addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, backend).await });

        let router = IngressRouter::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        router.set_routes(vec![Route {
            host: "acme.atoll.localhost".into(),
            path: "/".into(),
            exact: false,
            backend: Some(backend_addr),
        }]);
        let base = format!("http://{}", router.addr());
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let get = |host: &'static str| {
            let req = Request::get(format!("{base}/hello"))
                .header("host", host)
                .body(Full::new(Bytes::new()))
                .expect("request");
            let client = client.clone();
            async move {
                let res = client.request(req).await.expect("response");
                let status = res.status();
                let body = res.into_body().collect().await.expect("body").to_bytes();
                (status, String::from_utf8_lossy(&body).into_owned())
            }
        };
        assert_eq!(
            get("acme.atoll.localhost:8080").await,
            (StatusCode::OK, "hi acme.atoll.localhost:8080".to_owned())
        );
        assert_eq!(get("nobody.atoll.localhost").await.0, StatusCode::NOT_FOUND);
    }
}
