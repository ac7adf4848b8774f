//! A Service: a TCP listener on the Service's loopback address and port that
//! forwards each connection to one of the ready pods behind it.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// One Service port, proxying to the current endpoints round-robin. Dropping
/// it closes the listener and every connection through it.
#[derive(Debug)]
pub struct ServiceProxy {
    addr: SocketAddr,
    endpoints: Arc<RwLock<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

impl ServiceProxy {
    /// Listens on `addr`.
    pub async fn bind(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let endpoints = Arc::new(RwLock::new(Vec::new()));
        let task = tokio::spawn(accept_loop(listener, endpoints.clone()));
        Ok(Self {
            addr,
            endpoints,
            task,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces the endpoints (the ready pods' addresses).
    pub fn set_endpoints(&self, mut endpoints: Vec<SocketAddr>) {
        endpoints.sort();
        let mut current = self.endpoints.write().unwrap_or_else(|e| e.into_inner());
        if *current != endpoints {
            *current = endpoints;
        }
    }

    /// The current endpoints.
    pub fn endpoints(&self) -> Vec<SocketAddr> {
        self.endpoints
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for ServiceProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, endpoints: Arc<RwLock<Vec<SocketAddr>>>) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                let candidates = endpoints.read().unwrap_or_else(|e| e.into_inner()).clone();
                let start = next.fetch_add(1, Ordering::Relaxed);
                connections.spawn(forward(client, candidates, start));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

/// Connects to the first endpoint that answers, starting at `start`, and
/// copies both ways. With no endpoint the client's connection is closed, as
/// a Service without ready pods refuses.
async fn forward(mut client: TcpStream, candidates: Vec<SocketAddr>, start: usize) {
    let n = candidates.len();
    for i in 0..n {
        let target = candidates[(start + i) % n];
        if let Ok(mut upstream) = TcpStream::connect(target).await {
            let _ = client.set_nodelay(true);
            let _ = upstream.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server(tag: u8) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 1];
                    if s.read_exact(&mut buf).await.is_ok() {
                        let _ = s.write_all(&[buf[0], tag]).await;
                    }
                });
            }
        });
        addr
    }

    async fn ask(addr: SocketAddr) -> Option<u8> {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"x").await.ok()?;
        let mut buf = [0u8; 2];
        s.read_exact(&mut buf).await.ok()?;
        Some(buf[1])
    }

    #[tokio::test]
    async fn forwards_round_robin_and_refuses_without_endpoints() {
        let proxy = ServiceProxy::bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        assert_eq!(ask(proxy.addr()).await, None, "no endpoints, no answer");
        let a = echo_server(1).await;
        let b = echo_server(2).await;
        proxy.set_endpoints(vec![a, b]);
        let mut seen = vec![ask(proxy.addr()).await, ask(proxy.addr()).await];
        seen.sort();
        assert_eq!(seen, vec![Some(1), Some(2)]);
    }
}
