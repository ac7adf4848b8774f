//! Kubelet mode's HTTPS endpoint: what a real API server proxies
//! `pods/log` to (`GET /containerLogs/{namespace}/{pod}/{container}`), on
//! a free loopback port registered in the Node's
//! `status.daemonEndpoints.kubeletEndpoint`.
//!
//! TLS: the serving certificate is the caller's ([`KubeletTls`]; realkube
//! signs one with its cluster CA, which the API server's
//! `--kubelet-certificate-authority` names). With
//! [`KubeletTls::client_ca`] set, a client must present a certificate
//! signed by that CA (the API server's `--kubelet-client-certificate`);
//! any such client may read every log (kubelet would also ask the API
//! server to authorize it: nodesim does not). Only `/containerLogs` is
//! served; every other path answers 404.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use hyper::body::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::task::{JoinHandle, JoinSet};

use super::NodeSimError;
use super::logs::{Lookup, PodLogSource};
use crate::kubesim::{PodLogRequest, PodLogs};

/// The serving certificate of nodesim's kubelet endpoint, and the CA its
/// clients' certificates must be signed by.
#[derive(Debug, Clone)]
pub struct KubeletTls {
    /// PEM certificate (chain) valid for `127.0.0.1`.
    pub cert: PathBuf,
    /// Its PEM private key.
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

fn tls_error(what: String) -> NodeSimError {
    NodeSimError::KubeletEndpoint(what)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, NodeSimError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|e| tls_error(format!("reading certificates {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(tls_error(format!("no certificate in {}", path.display())));
    }
    Ok(certs)
}

/// The rustls server configuration of `tls` (HTTP/1.1 only).
fn server_config(tls: &KubeletTls) -> Result<rustls::ServerConfig, NodeSimError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_error(format!("TLS versions: {e}")))?;
    let builder = match &tls.client_ca {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca)? {
                roots
                    .add(cert)
                    .map_err(|e| tls_error(format!("client CA {}: {e}", ca.display())))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| tls_error(format!("client CA {}: {e}", ca.display())))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .map_err(|e| tls_error(format!("reading key {}: {e}", tls.key.display())))?;
    let mut config = builder
        .with_single_cert(read_certs(&tls.cert)?, key)
        .map_err(|e| tls_error(format!("serving certificate: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Listens on a free loopback port; returns the address and the task
/// serving it (aborting it closes every connection).
pub(super) async fn serve(
    tls: &KubeletTls,
    logs: PodLogSource,
) -> Result<(SocketAddr, JoinHandle<()>), NodeSimError> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config(tls)?));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .map_err(|e| tls_error(format!("listening on 127.0.0.1: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| tls_error(format!("the listener's address: {e}")))?;
    let app = router(logs);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(error) => {
                    // Out of descriptors, say: wait rather than spin.
                    tracing::warn!(%error, "the kubelet endpoint cannot accept");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            connections.spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let served = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
                    .await;
                if let Err(error) = served {
                    tracing::debug!(%error, "a kubelet endpoint connection failed");
                }
            });
            while connections.try_join_next().is_some() {}
        }
    });
    Ok((addr, task))
}

/// The endpoint's routes.
pub fn router(logs: PodLogSource) -> axum::Router {
    axum::Router::new()
        .route(
            "/containerLogs/{namespace}/{pod}/{container}",
            get(container_logs),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .with_state(logs)
}

fn flag(query: &HashMap<String, String>, name: &str) -> bool {
    query
        .get(name)
        .is_some_and(|v| v == "true" || v == "1" || v.is_empty())
}

async fn container_logs(
    State(source): State<PodLogSource>,
    UrlPath((namespace, pod, container)): UrlPath<(String, String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    // kubelet's words (its server.go) for what it does not know.
    match source.lookup(&namespace, &pod, &container) {
        Lookup::UnknownPod => {
            return (
                StatusCode::NOT_FOUND,
                format!("pod \"{pod}\" does not exist\n"),
            )
                .into_response();
        }
        Lookup::UnknownContainer => {
            return (
                StatusCode::NOT_FOUND,
                format!("container \"{container}\" not found in pod \"{pod}\"\n"),
            )
                .into_response();
        }
        Lookup::Known => {}
    }
    let number = |name: &str| query.get(name).and_then(|v| v.parse::<u64>().ok());
    let request = PodLogRequest {
        namespace,
        pod,
        container: Some(container),
        follow: flag(&query, "follow"),
        tail_lines: number("tailLines"),
        previous: flag(&query, "previous"),
    };
    let stream = match source.logs(request) {
        Ok(stream) => stream,
        Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
    };
    let stream = if flag(&query, "timestamps") {
        with_timestamps(stream)
    } else {
        stream
    };
    let stream = match number("limitBytes") {
        Some(limit) => limit_bytes(stream, limit),
        None => stream,
    };
    let body = Body::from_stream(stream.map(Ok::<_, std::convert::Infallible>));
    ([("content-type", "text/plain")], body).into_response()
}

type Chunks = futures::stream::BoxStream<'static, Bytes>;

/// Ends the stream after `limit` bytes.
fn limit_bytes(stream: Chunks, limit: u64) -> Chunks {
    futures::stream::unfold((stream, limit), |(mut stream, left)| async move {
        if left == 0 {
            return None;
        }
        let chunk = stream.next().await?;
        let keep = chunk.slice(..usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len()));
        let left = left - keep.len() as u64;
        Some((keep, (stream, left)))
    })
    .boxed()
}

/// Prefixes every line with an RFC 3339 timestamp, as kubelet does. The
/// log files keep no write times: a line is stamped when it is read
/// (close to when it was written while following).
fn with_timestamps(stream: Chunks) -> Chunks {
    let mut line_start = true;
    stream
        .map(move |chunk| {
            let stamp = jiff::Timestamp::now().to_string();
            let mut out = Vec::with_capacity(chunk.len() + 40);
            for &b in chunk.iter() {
                if line_start {
                    out.extend_from_slice(stamp.as_bytes());
                    out.push(b' ');
                }
                out.push(b);
                line_start = b == b'\n';
            }
            Bytes::from(out)
        })
        .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(parts: &[&'static str]) -> Chunks {
        let parts: Vec<Bytes> = parts
            .iter()
            .map(|p| Bytes::from_static(p.as_bytes()))
            .collect();
        futures::stream::iter(parts).boxed()
    }

    async fn text(stream: Chunks) -> String {
        let parts: Vec<Bytes> = stream.collect().await;
        parts
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[tokio::test]
    async fn limit_bytes_cuts_across_chunks() {
        assert_eq!(
            text(limit_bytes(chunks(&["abc\n", "def\n"]), 6)).await,
            "abc\nde"
        );
        assert_eq!(text(limit_bytes(chunks(&["abc\n"]), 0)).await, "");
    }

    #[tokio::test]
    async fn timestamps_prefix_each_line_across_chunks() {
        let out = text(with_timestamps(chunks(&["a\nb", "c\n", "d\n"]))).await;
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[1].ends_with(" bc"), "{out}");
        assert!(lines.iter().all(|l| l.contains('T')), "{out}");
    }
}
