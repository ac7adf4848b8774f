//! A tiny HTTP server for nodesim's tests (bin `atoll-testserver`): answers
//! with its own PID and environment and lets a test decide when it is ready.
//!
//! - `GET /` → `ok`; `GET /pid` → its process id; `GET /env/{NAME}` → the
//!   value of an environment variable (404 if unset).
//! - `GET /readyz` → 200 once ready: after `--ready-after` and once
//!   `--ready-file` exists (both optional), else 503.
//! - `GET /healthz` → 200, or 500 while `--unhealthy-file` exists.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;

/// Command line of `atoll-testserver`.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "atoll-testserver", about = "HTTP server for nodesim tests")]
pub struct Args {
    /// Address to listen on.
    #[arg(long, env = "LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Not ready until this file exists.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Not ready until this many seconds after start.
    #[arg(long, default_value_t = 0.0)]
    pub ready_after: f64,
    /// Unhealthy (liveness fails) while this file exists.
    #[arg(long)]
    pub unhealthy_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
struct AppState {
    args: Args,
    started: Instant,
}

/// The routes, for serving or for calling directly.
pub fn app(args: Args) -> axum::Router {
    let state = AppState {
        args,
        started: Instant::now(),
    };
    axum::Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/pid", get(|| async { std::process::id().to_string() }))
        .route("/env/{name}", get(env_var))
        .route("/readyz", get(readyz))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn env_var(Path(name): Path<String>) -> Result<String, StatusCode> {
    std::env::var(name).map_err(|_| StatusCode::NOT_FOUND)
}

async fn readyz(State(state): State<AppState>) -> StatusCode {
    let delay_passed =
        state.started.elapsed() >= Duration::from_secs_f64(state.args.ready_after.max(0.0));
    let file_present = state.args.ready_file.as_ref().is_none_or(|f| f.exists());
    if delay_passed && file_present {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    }
}

async fn healthz(State(state): State<AppState>) -> StatusCode {
    match &state.args.unhealthy_file {
        Some(f) if f.exists() => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    }
}

/// Serves until SIGTERM or Ctrl-C.
pub async fn serve(args: Args) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    tracing::info!(addr = %listener.local_addr()?, "atoll-testserver listening");
    axum::serve(listener, app(args))
        .with_graceful_shutdown(shutdown_signal())
        .await
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
