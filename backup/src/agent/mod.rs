//! `atoll-backup agent`: the sidecar of a tenant's database pod (contract
//! §5). An HTTP API for the operator: archiving status, base backups (run
//! in-process, one at a time) and WAL switches. It talks to PostgreSQL
//! only through `psql` over the server's Unix socket, starts without
//! waiting for PostgreSQL (and without touching the store), and stops on
//! SIGTERM.

use std::future::IntoFuture;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::base::{BaseBackupArgs, ServerArgs};
use crate::cli::DEFAULT_CONFIG_DIR;
use crate::settings::Settings;
use crate::store;

pub mod auth;
pub mod backups;
pub mod psql;
pub mod routes;
pub mod status;
pub mod switch_wal;

use auth::Token;
use backups::{BackupConfig, Backups};
use psql::Psql;

/// How long requests in flight may finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// How often the catalog is tried at start until the store answers.
const CATALOG_RETRY: Duration = Duration::from_secs(30);

/// `agent --listen IP:PORT [--config DIR] [--token-file FILE] ...`.
#[derive(Debug, Clone, Args)]
pub struct AgentArgs {
    /// The configuration directory (config.json, accessKeyId, secretAccessKey).
    #[arg(long, value_name = "DIR", default_value = DEFAULT_CONFIG_DIR)]
    pub config: PathBuf,
    /// Where to listen (`IP:PORT`; an IPv6 address with or without brackets).
    #[arg(long, value_name = "IP:PORT", value_parser = parse_listen)]
    pub listen: SocketAddr,
    /// The file holding the bearer token.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/etc/atoll-backup-agent/token"
    )]
    pub token_file: PathBuf,
    /// Where `wal-push --status-dir` leaves last-push.json.
    #[arg(long, value_name = "DIR", default_value = "/var/run/atoll-backup")]
    pub status_dir: PathBuf,
    /// The server's data directory (for the archiver's pending files).
    #[arg(long, value_name = "PGDATA", env = "PGDATA")]
    pub pgdata: PathBuf,
    /// The server's socket directory.
    #[arg(long, env = "PGHOST", default_value = "/var/run/postgresql")]
    pub host: String,
    /// The server's port (names the socket file).
    #[arg(long, env = "PGPORT", default_value_t = 5432)]
    pub port: u16,
    /// The superuser (trusted over the socket).
    #[arg(long, env = "PGUSER", default_value = "postgres")]
    pub user: String,
    /// Where psql and pg_basebackup are; default: the PATH.
    #[arg(long, value_name = "DIR", env = "ATOLL_PG_BINDIR")]
    pub bindir: Option<PathBuf>,
    /// How long `POST /switch-wal` waits for the segment to be archived.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub switch_wal_timeout: u64,
    /// Give up a base backup after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 6 * 3600)]
    pub backup_timeout: u64,
}

/// `IP:PORT`, also `fd00::1:9187` (what `$(POD_IP):9187` gives on IPv6).
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    let err = || format!("{text:?} is not IP:PORT");
    let (ip, port) = text.rsplit_once(':').ok_or_else(err)?;
    let ip: IpAddr = ip.parse().map_err(|_| err())?;
    let port: u16 = port.parse().map_err(|_| err())?;
    Ok(SocketAddr::new(ip, port))
}

/// What the handlers share.
#[derive(Debug)]
pub struct Agent {
    token: Token,
    psql: Psql,
    pgdata: PathBuf,
    status_dir: PathBuf,
    switch_timeout: Duration,
    settings: Arc<Settings>,
    backups: Arc<Backups>,
    facts: status::Facts,
}

impl Agent {
    /// Reads the configuration and the token (no network, no PostgreSQL).
    pub fn new(args: &AgentArgs) -> Result<Agent, String> {
        let settings = Arc::new(Settings::load(&args.config).map_err(|e| e.to_string())?);
        let token = Token::load(&args.token_file).map_err(|e| e.to_string())?;
        let objects = store::open(&settings).map_err(|e| settings.redact_error(&e))?;
        let server = ServerArgs {
            host: args.host.clone(),
            port: args.port,
            user: args.user.clone(),
            bindir: args.bindir.clone(),
        };
        let base = BaseBackupArgs {
            config: args.config.clone(),
            id: None,
            name: None,
            server: server.clone(),
            timeout: args.backup_timeout,
        };
        let config = BackupConfig {
            settings: settings.clone(),
            args: base,
        };
        Ok(Agent {
            token,
            psql: Psql::new(&server),
            pgdata: args.pgdata.clone(),
            status_dir: args.status_dir.clone(),
            switch_timeout: Duration::from_secs(args.switch_wal_timeout),
            settings,
            backups: Arc::new(Backups::new(config, objects)),
            facts: status::Facts::default(),
        })
    }

    /// `text` without credential values.
    pub fn redact(&self, text: &str) -> String {
        self.settings.redact(text)
    }
}

/// Runs the agent until SIGTERM/SIGINT: exit 0 after a graceful stop, 1
/// when it cannot start or serve.
pub async fn command(args: &AgentArgs) -> ExitCode {
    match serve(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("atoll-backup agent: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: &AgentArgs) -> Result<(), String> {
    let agent = Arc::new(Agent::new(args)?);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    let local = listener
        .local_addr()
        .map_err(|e| format!("cannot listen on {}: {e}", args.listen))?;
    eprintln!(
        "atoll-backup agent: listening on {local} (tenant {}, PGDATA {}, socket {})",
        agent.settings.tenant_uid,
        args.pgdata.display(),
        args.host
    );
    let loader = {
        let backups = agent.backups.clone();
        tokio::spawn(async move { backups.load_last(CATALOG_RETRY).await })
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let app = routes::router(agent.clone());
    let mut server = tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .into_future(),
    );
    tokio::select! {
        () = shutdown_signal() => {}
        ended = &mut server => {
            loader.abort();
            return Err(format!("the HTTP server stopped: {}", joined(ended)));
        }
    }
    eprintln!("atoll-backup agent: shutting down");
    let _ = stop.send(());
    loader.abort();
    agent.backups.abort();
    match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
        Ok(ended) => match joined(ended).as_str() {
            "ok" => Ok(()),
            problem => Err(format!("the HTTP server failed: {problem}")),
        },
        Err(_) => {
            server.abort();
            eprintln!(
                "atoll-backup agent: requests still running after {} s were cut",
                SHUTDOWN_GRACE.as_secs()
            );
            Ok(())
        }
    }
}

fn joined(ended: Result<std::io::Result<()>, tokio::task::JoinError>) -> String {
    match ended {
        Ok(Ok(())) => "ok".into(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// SIGTERM (Kubernetes stopping the pod) or SIGINT.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let wait = |kind: SignalKind| async move {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = wait(SignalKind::terminate()) => {}
        () = wait(SignalKind::interrupt()) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses() {
        let ok = |t: &str| parse_listen(t).expect(t).to_string();
        assert_eq!(ok("10.1.2.3:9187"), "10.1.2.3:9187");
        assert_eq!(ok("[fd00::1]:9187"), "[fd00::1]:9187");
        assert_eq!(ok("fd00::1:9187"), "[fd00::1]:9187");
        assert_eq!(ok("127.0.0.1:0"), "127.0.0.1:0");
        for bad in [
            "",
            "9187",
            "host:9187",
            "10.1.2.3",
            "10.1.2.3:99999",
            ":9187",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }
}
