//! Identity's figures, over real HTTP on loopback (client and server share
//! the machine):
//!
//! - tenant-token issuance per second, p50/p99 latency (target: ≥ 10,000/s,
//!   p99 ≤ 5 ms), on SQLite and, when the server binaries are here, on
//!   PostgreSQL;
//! - token verification per second in the `verify` module;
//! - login throughput at the configured Argon2id parameters (OWASP by
//!   default), and the latency of a wrong password next to an unknown email.
//!
//! `cargo bench -p atoll-identity` (add `-- --seconds N` to change the
//! measuring time per figure, `--sqlite-only` to skip PostgreSQL).

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use atoll_identity::config::{Config, LoginLimits, Secret};
use atoll_identity::server::{AdminPasswordPolicy, Identity};
use atoll_identity::store::{CredentialKind, NewCredential, Store, User};
use atoll_identity::verify::{KeySet, Verifier, VerifierConfig};
use serde_json::{Value, json};

const ADMIN: &str = "bench-admin@atoll.test";
const ADMIN_PW: &str = "bench-admin-password";
const USER: &str = "bench-user@atoll.test";
const USER_PW: &str = "bench-user-password";
const SERVICE_TOKEN: &str = "bench-service-token-0123456789abcdef";
/// Client connections for the issuance runs: light and heavy load.
const CONCURRENCY: [usize; 2] = [8, 32];
/// Distinct users asking for tokens, round robin.
const USERS: usize = 200;

type Error = Box<dyn std::error::Error + Send + Sync>;

struct Running {
    base: String,
    store: Store,
    http: reqwest::Client,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
    config: Config,
}

async fn start(database_url: &str) -> Result<Running, Error> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut config = Config::with_database(database_url);
    config.listen = addr;
    config.issuer = format!("http://{addr}");
    config.admin_email = ADMIN.into();
    config.admin_password = Some(Secret::new(ADMIN_PW));
    config.service_token = Some(Secret::new(SERVICE_TOKEN));
    config.login_limits = LoginLimits {
        attempts_per_minute: 1_000_000,
        lockout_after: 1_000_000,
        ..LoginLimits::default()
    };
    config.db_max_connections = std::env::var("BENCH_DB_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let identity = Identity::open(config.clone(), AdminPasswordPolicy::RequireConfigured).await?;
    let store = identity.store().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let _ = identity
            .serve(listener, async {
                let _ = stopped.await;
            })
            .await;
    });
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()?;
    Ok(Running {
        base: format!("http://{addr}"),
        store,
        http,
        stop,
        task,
        config,
    })
}

async fn post(
    run: &Running,
    path: &str,
    bearer: Option<&str>,
    body: Value,
) -> Result<Value, Error> {
    let mut request = run.http.post(format!("{}{path}", run.base)).json(&body);
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        return Err(format!("{path} answered {status}: {value}").into());
    }
    Ok(value)
}

async fn login(run: &Running, email: &str, password: &str) -> Result<String, Error> {
    let body = post(
        run,
        "/api/v1/login",
        None,
        json!({"email": email, "password": password}),
    )
    .await?;
    Ok(body["token"].as_str().ok_or("no token")?.to_owned())
}

/// Users who are members of `acme`, each with a session: the first logged
/// in through the API, the others made directly in the database (their
/// password hashes would cost minutes at OWASP parameters).
async fn prepare(run: &Running) -> Result<Vec<String>, Error> {
    let admin = login(run, ADMIN, ADMIN_PW).await?;
    post(
        run,
        "/api/v1/admin/users",
        Some(&admin),
        json!({"email": USER, "password": USER_PW}),
    )
    .await?;
    let hash = run
        .store
        .user_credentials(USER)
        .await?
        .ok_or("the user was not created")?
        .password_hash;
    let now = i64::try_from(atoll_identity::verify::unix_now())?;
    let mut sessions = vec![login(run, USER, USER_PW).await?];
    let mut members = vec![json!({"email": USER, "role": "Editor"})];
    for n in 1..USERS {
        let email = format!("user{n}@atoll.test");
        let user = User {
            id: uuid::Uuid::now_v7().to_string(),
            email: email.clone(),
            display_name: format!("user {n}"),
            is_admin: false,
            disabled: false,
            created_at: now,
        };
        run.store.create_user(&user, &hash).await?;
        let token = atoll_identity::sessions::new_token(atoll_identity::sessions::SESSION_PREFIX)?;
        run.store
            .insert_credential(&NewCredential {
                id: uuid::Uuid::now_v7().to_string(),
                token_hash: atoll_identity::sessions::token_hash(token.expose()),
                user_id: user.id,
                kind: CredentialKind::Session,
                name: None,
                scope: None,
                created_at: now,
                expires_at: now + 3600,
            })
            .await?;
        sessions.push(token.expose().to_owned());
        members.push(json!({"email": email, "role": "Viewer"}));
    }
    let response = run
        .http
        .put(format!("{}/api/v1/tenants/acme", run.base))
        .bearer_auth(SERVICE_TOKEN)
        .json(
            &json!({"uid": "bench-acme-uid", "url": "https://acme.test", "phase": "Ready",
                      "members": members}),
        )
        .send()
        .await?;
    if !response.status().is_success() {
        return Err(format!("registering the tenant answered {}", response.status()).into());
    }
    Ok(sessions)
}

/// CPU time this process (client and server) has used, from /proc.
fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the
    // name; in clock ticks of 1/100 s on Linux.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct Measured {
    /// Requests per second of wall time.
    rate: f64,
    /// CPU seconds (client and server together) per request.
    cpu_each: f64,
    /// Sorted.
    latencies: Vec<Duration>,
}

/// Runs `concurrency` loops of `request` for `seconds` (after a warm-up).
async fn load<F, Fut>(seconds: f64, concurrency: usize, request: F) -> Result<Measured, Error>
where
    F: Fn() -> Fut + Send + Sync + Clone + 'static,
    Fut: std::future::Future<Output = Result<(), Error>> + Send,
{
    let run_for = move |secs: f64| {
        let request = request.clone();
        async move {
            let done = Arc::new(AtomicBool::new(false));
            let mut workers = Vec::new();
            for _ in 0..concurrency {
                let request = request.clone();
                let done = done.clone();
                workers.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    while !done.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        request().await?;
                        latencies.push(started.elapsed());
                    }
                    Ok::<_, Error>(latencies)
                }));
            }
            let started = Instant::now();
            let cpu_before = cpu_time();
            tokio::time::sleep(Duration::from_secs_f64(secs)).await;
            done.store(true, Ordering::Relaxed);
            let mut all = Vec::new();
            for worker in workers {
                all.extend(worker.await??);
            }
            let elapsed = started.elapsed().as_secs_f64();
            let cpu = cpu_before.zip(cpu_time()).map_or(0.0, |(before, after)| {
                after.saturating_sub(before).as_secs_f64()
            });
            Ok::<_, Error>((
                all.len() as f64 / elapsed,
                cpu / all.len().max(1) as f64,
                all,
            ))
        }
    };
    run_for((seconds / 5.0).min(1.0)).await?;
    let (rate, cpu_each, mut latencies) = run_for(seconds).await?;
    latencies.sort();
    Ok(Measured {
        rate,
        cpu_each,
        latencies,
    })
}

async fn issuance(
    run: &Running,
    concurrency: usize,
    sessions: &[String],
    seconds: f64,
    out: &mut impl Write,
) -> Result<(), Error> {
    let http = run.http.clone();
    let url = format!("{}/api/v1/tokens", run.base);
    let sessions: Arc<[String]> = sessions.into();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let m = load(seconds, concurrency, move || {
        let http = http.clone();
        let url = url.clone();
        let session = sessions[next.fetch_add(1, Ordering::Relaxed) % sessions.len()].clone();
        async move {
            let response = http
                .post(&url)
                .bearer_auth(&session)
                .header("content-type", "application/json")
                .body(r#"{"tenant":"acme"}"#)
                .send()
                .await?;
            if !response.status().is_success() {
                return Err(format!("token request answered {}", response.status()).into());
            }
            response.bytes().await?;
            Ok(())
        }
    })
    .await?;
    writeln!(
        out,
        "  tenant-token issuance: {:.0} tokens/s   p50 {:.2} ms   p99 {:.2} ms   ({} requests, {concurrency} connections, {USERS} users; target >= 10000/s, p99 <= 5 ms)",
        m.rate,
        ms(percentile(&m.latencies, 0.50)),
        ms(percentile(&m.latencies, 0.99)),
        m.latencies.len(),
    )?;
    writeln!(
        out,
        "    CPU per token, HTTP client included: {:.0} us (this process; a database server's own CPU is not counted)",
        m.cpu_each * 1e6,
    )?;
    Ok(())
}

async fn logins(run: &Running, seconds: f64, out: &mut impl Write) -> Result<(), Error> {
    let a = run.config.argon2;
    let concurrency = run.config.hashing_concurrency;
    let http = run.http.clone();
    let url = format!("{}/api/v1/login", run.base);
    let attempt = move |email: &'static str, password: &'static str, expect_ok: bool| {
        let http = http.clone();
        let url = url.clone();
        move || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let response = http
                    .post(&url)
                    .json(&json!({"email": email, "password": password}))
                    .send()
                    .await?;
                if response.status().is_success() != expect_ok {
                    return Err(format!("login answered {}", response.status()).into());
                }
                response.bytes().await?;
                Ok(())
            }
        }
    };
    let m = load(seconds, concurrency * 2, attempt(USER, USER_PW, true)).await?;
    writeln!(
        out,
        "  login (Argon2id m={} KiB, t={}, p={}, {} at once): {:.1} logins/s   p50 {:.1} ms   p99 {:.1} ms   CPU {:.1} ms each",
        a.memory_kib,
        a.iterations,
        a.parallelism,
        concurrency,
        m.rate,
        ms(percentile(&m.latencies, 0.50)),
        ms(percentile(&m.latencies, 0.99)),
        m.cpu_each * 1e3,
    )?;
    // Alternating, one at a time, so that both see the same machine load.
    let (mut wrong, mut unknown) = (Vec::new(), Vec::new());
    let wrong_attempt = attempt(USER, "not the password!", false);
    let unknown_attempt = attempt("nobody@atoll.test", "not the password!", false);
    for _ in 0..20 {
        let started = Instant::now();
        wrong_attempt().await?;
        wrong.push(started.elapsed());
        let started = Instant::now();
        unknown_attempt().await?;
        unknown.push(started.elapsed());
    }
    wrong.sort();
    unknown.sort();
    writeln!(
        out,
        "  failed login, alternating, 20 each: wrong password p50 {:.1} ms, unknown email p50 {:.1} ms",
        ms(percentile(&wrong, 0.50)),
        ms(percentile(&unknown, 0.50)),
    )?;
    Ok(())
}

async fn verification(
    run: &Running,
    session: &str,
    seconds: f64,
    out: &mut impl Write,
) -> Result<(), Error> {
    let token = post(
        run,
        "/api/v1/tokens",
        Some(session),
        json!({"tenant": "acme"}),
    )
    .await?;
    let token = token["accessToken"].as_str().ok_or("no token")?.to_owned();
    let jwks = run
        .http
        .get(format!("{}/.well-known/jwks.json", run.base))
        .send()
        .await?
        .bytes()
        .await?;
    let verifier = Verifier::with_keys(
        VerifierConfig::new(&run.config.issuer, "acme"),
        KeySet::from_json(&jwks)?,
    );
    let now = atoll_identity::verify::unix_now();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut count = 0u64;
    while Instant::now() < deadline {
        for _ in 0..100 {
            verifier.verify_cached_at(&token, now)?;
        }
        count += 100;
    }
    let rate = count as f64 / started.elapsed().as_secs_f64();
    writeln!(
        out,
        "  verification in the module: {rate:.0} tokens/s on one thread ({:.1} µs each)",
        1e6 / rate
    )?;
    Ok(())
}

async fn bench_database(name: &str, url: &str, seconds: f64, full: bool) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    let run = start(url).await?;
    writeln!(out, "{name}:")?;
    let sessions = prepare(&run).await?;
    let session = &sessions[0];
    for concurrency in CONCURRENCY {
        issuance(&run, concurrency, &sessions, seconds, &mut out).await?;
    }
    if full {
        verification(&run, session, seconds, &mut out).await?;
        logins(&run, seconds, &mut out).await?;
    }
    let _ = run.stop.send(());
    let _ = run.task.await;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().collect();
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(5.0);
    let sqlite_only = args.iter().any(|a| a == "--sqlite-only");
    let dir = tempfile::tempdir()?;
    let sqlite = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("bench.db").display()
    );
    writeln!(
        std::io::stdout(),
        "atoll-identity benchmark ({} cores, {seconds} s per figure, client and server on one machine)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    )?;
    bench_database("SQLite", &sqlite, seconds, true).await?;
    if !sqlite_only {
        let server = tokio::task::spawn_blocking(atoll_testkit::pg::TestPostgres::start).await?;
        let url = server.database_url("bench");
        bench_database("PostgreSQL", &url, seconds, false).await?;
    }
    Ok(())
}
