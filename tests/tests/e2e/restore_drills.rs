//! Restore drills (#19): Dedicated tenants backed up into the platform's
//! object store (the chart's `backup.objectStore`, a TestS3 the suite
//! starts), restored into new Tenants applied with kubectl, used by their
//! own members through the ingress.
//!
//! - `restore_drill_point_in_time`: 1,000 executions, the moment T, 100
//!   more and a deleted flow; a Tenant restored at T has exactly the 1,000
//!   (counted through the API), the flow back, its own URL, database
//!   credentials and members; the source is unchanged.
//! - `restore_drill_deleted`: a Tenant deleted with `deletionPolicy:
//!   Delete` (namespace gone) is restored by name from its retained
//!   backups into a new Tenant, with its data.
//! - `restore_drill_external`: External mode (a database of its own on a
//!   shared PostgreSQL server the suite starts), backed up by dumps: flows
//!   and executions, an on-demand TenantBackup (a dump), then a new
//!   External Tenant restored from it has the same counted data, its own
//!   URL, database, credentials and members.

use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_crds::{Phase, TenantBackup, conditions};
use futures::StreamExt;
use kube::api::Api;

use crate::Report;
use crate::harness::{Instance, Platform, eventually, tenant_yaml};
use crate::scenarios::token_when_synced;

/// A base backup and a restore (PostgreSQL starts, recovers, starts again)
/// on a busy 2-core machine.
const BACKUP_LIMIT: Duration = Duration::from_secs(300);
/// The trivial flow the executions run.
const TICK: &str = "id: tick\nnamespace: team\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: tick\n";
/// The flow drill 1 deletes after T.
const DOOMED: &str = "id: doomed\nnamespace: team\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: deleted after T\n";
/// Backups into the platform's store, the schedule far away (the drills
/// take their backups on demand).
const BACKUP: &str = "  backup:\n    schedule: \"0 3 1 1 *\"\n";
/// Concurrent execution creations: enough to keep 2 cores busy.
const CONCURRENCY: usize = 8;

/// The Tenant's condition `type_` as (status, reason, message).
async fn condition(p: &Platform, tenant: &str, type_: &str) -> Option<(String, String, String)> {
    let tenant = serde_json::to_value(p.tenant(tenant).await?).ok()?;
    let found = tenant["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)?
        .clone();
    let text = |key: &str| found[key].as_str().unwrap_or_default().to_owned();
    Some((text("status"), text("reason"), text("message")))
}

/// Waits until the Tenant's first base backup completed
/// (`BackupReady=True`); returns how long it took.
async fn wait_backup_ready(p: &Platform, tenant: &str) -> Duration {
    let started = Instant::now();
    eventually(
        &format!("Tenant {tenant}: BackupReady=True"),
        BACKUP_LIMIT,
        || async {
            let (status, _, _) = condition(p, tenant, conditions::types::BACKUP_READY).await?;
            (status == "True").then_some(())
        },
    )
    .await;
    started.elapsed()
}

/// Applies a TenantBackup of `tenant` and waits until it completed (its
/// base backup ends with a WAL switch, so everything committed before is
/// archived); returns how long it took.
async fn take_backup(p: &Platform, tenant: &str, name: &str) -> Duration {
    let started = Instant::now();
    let yaml = format!(
        "apiVersion: atoll.dev/v1alpha1\nkind: TenantBackup\nmetadata:\n  name: {name}\nspec:\n  tenant: {tenant}\n"
    );
    let (ok, out) = p.apply_yaml(name, &yaml).await;
    assert!(ok, "kubectl apply TenantBackup {name}: {out}");
    let backups = Api::<TenantBackup>::all(p.client.clone());
    eventually(
        &format!("TenantBackup {name} to complete"),
        BACKUP_LIMIT,
        || async {
            let backup = serde_json::to_value(backups.get_opt(name).await.ok()??).ok()?;
            let status = &backup["status"];
            assert_ne!(status["phase"], "Failed", "TenantBackup {name}: {status}");
            (status["phase"] == "Completed").then_some(())
        },
    )
    .await;
    started.elapsed()
}

/// Applies a Tenant and waits (up to [`BACKUP_LIMIT`]) until it is Ready
/// and its instance answers; returns the instance and the time it took.
async fn apply_until_ready(
    p: &Platform,
    name: &str,
    members: &[(&str, &str)],
    extra: &str,
) -> (Instance, Duration) {
    let started = Instant::now();
    let (ok, out) = p.apply_yaml(name, &tenant_yaml(name, members, extra)).await;
    assert!(ok, "kubectl apply Tenant {name}: {out}");
    let tenant = eventually(
        &format!("Tenant {name} to be Ready"),
        BACKUP_LIMIT,
        || async {
            let tenant = p.tenant(name).await?;
            (tenant.current_phase() == Some(Phase::Ready)).then_some(tenant)
        },
    )
    .await;
    let url = tenant
        .status
        .and_then(|s| s.url)
        .unwrap_or_else(|| panic!("Tenant {name} Ready without a URL"));
    let instance = Instance::new(p, &url);
    instance.wait_healthy().await;
    (instance, started.elapsed())
}

/// Saves a flow; it must be accepted.
async fn save(instance: &Instance, token: &str, yaml: &str) {
    let saved = instance.save_flow(token, yaml).await;
    assert!(
        (200..300).contains(&saved.status),
        "save flow at {}: {} {}",
        instance.url,
        saved.status,
        saved.body
    );
}

/// Creates `n` executions of `team/tick`, [`CONCURRENCY`] at a time;
/// returns how long it took.
async fn run_many(instance: &Instance, token: &str, n: usize) -> Duration {
    let started = Instant::now();
    let ids: Vec<String> = futures::stream::iter(0..n)
        .map(|_| instance.run(token, "team", "tick"))
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert_eq!(ids.len(), n);
    started.elapsed()
}

/// How many executions the tenant's API counts.
async fn count_executions(instance: &Instance, token: &str) -> u64 {
    let answer = instance
        .call("GET", "/api/v1/executions/search?size=1", Some(token), None)
        .await
        .expect("the instance answers");
    assert_eq!(answer.status, 200, "search executions: {}", answer.body);
    answer.json()["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("no total in {}", answer.body))
}

/// The HTTP status of `GET /api/v1/flows/team/{flow}`.
async fn flow_status(instance: &Instance, token: &str, flow: &str) -> u16 {
    instance
        .call(
            "GET",
            &format!("/api/v1/flows/team/{flow}"),
            Some(token),
            None,
        )
        .await
        .expect("the instance answers")
        .status
}

/// A key of the tenant's `database-credentials` Secret.
async fn db_password(p: &Platform, tenant: &str) -> String {
    let secret = Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        p.client.clone(),
        &format!("atoll-{tenant}"),
    )
    .get("database-credentials")
    .await
    .expect("database credentials Secret");
    let bytes = secret.data.expect("data")["password"].0.clone();
    String::from_utf8(bytes).expect("utf-8")
}

/// Now as RFC 3339, UTC, truncated to PostgreSQL's microseconds.
fn now_rfc3339() -> String {
    let now = jiff::Timestamp::now().as_microsecond();
    jiff::Timestamp::from_microsecond(now)
        .expect("a time")
        .to_string()
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// The source of drill 1: its instance, alice's token and T.
struct Source {
    instance: Instance,
    token: String,
    t: String,
}

/// `rd-acme` with backups: flows `tick` and `doomed`, 1,000 executions,
/// T, 100 more, `doomed` deleted, all archived.
async fn source(p: &Platform, report: &Report, alice: &crate::harness::Session) -> Source {
    let (instance, _) = apply_until_ready(p, "rd-acme", &[(&alice.email, "Admin")], BACKUP).await;
    let first = wait_backup_ready(p, "rd-acme").await;
    report.figure(format!(
        "rd-acme: BackupReady=True (first base backup) {:.1}s after Ready",
        secs(first)
    ));
    let token = token_when_synced(p, alice, "rd-acme").await;
    save(&instance, &token, TICK).await;
    save(&instance, &token, DOOMED).await;
    let took = run_many(&instance, &token, 1000).await;
    report.figure(format!(
        "1,000 executions created through the API in {:.1}s ({:.0}/s, {CONCURRENCY} at a time)",
        secs(took),
        1000.0 / secs(took)
    ));
    assert_eq!(count_executions(&instance, &token).await, 1000);
    let t = now_rfc3339();
    report.figure(format!("T = {t}"));
    let took = run_many(&instance, &token, 100).await;
    let deleted = instance
        .call("DELETE", "/api/v1/flows/team/doomed", Some(&token), None)
        .await
        .expect("the instance answers");
    assert!(
        (200..300).contains(&deleted.status),
        "delete flow doomed: {} {}",
        deleted.status,
        deleted.body
    );
    report.figure(format!(
        "after T: 100 more executions ({:.1}s), flow doomed deleted",
        secs(took)
    ));
    let took = take_backup(p, "rd-acme", "rd-acme-after-t").await;
    report.figure(format!(
        "on-demand TenantBackup after T completed in {:.1}s (WAL archived past T)",
        secs(took)
    ));
    Source { instance, token, t }
}

/// Drill 1: restore at T into a new Tenant.
pub async fn restore_drill_point_in_time(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    if p.store("restore drill at T").is_none() {
        return;
    }
    let (alice, carol) = ("alice@rd-acme.example", "carol@rd-copy.example");
    let admin = p.admin().await;
    let alice_password = p.create_user(&admin, alice).await;
    let carol_password = p.create_user(&admin, carol).await;
    let alice = p
        .login(alice, &alice_password)
        .await
        .expect("alice logs in");
    let carol = p
        .login(carol, &carol_password)
        .await
        .expect("carol logs in");
    let src = source(p, &report, &alice).await;

    let restore = format!(
        "  restore:\n    from: rd-acme\n    targetTime: \"{}\"\n",
        src.t
    );
    let (copy, took) =
        apply_until_ready(p, "rd-copy", &[(carol.email.as_str(), "Admin")], &restore).await;
    report.figure(format!(
        "rd-copy restored at T: Ready and answering in {:.1}s",
        secs(took)
    ));
    let (status, reason, message) = condition(p, "rd-copy", conditions::types::RESTORED)
        .await
        .expect("a Restored condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Restored"),
        "{message}"
    );
    assert_ne!(copy.url, src.instance.url, "its own URL");
    let restore = serde_json::to_value(p.tenant("rd-copy").await.expect("rd-copy")).expect("json")
        ["status"]["restore"]
        .clone();
    assert_eq!(restore["phase"], "Completed", "{restore}");
    let reached: jiff::Timestamp = restore["reachedTime"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no reachedTime in {restore}"));
    let t: jiff::Timestamp = src.t.parse().expect("T");
    assert!(reached <= t, "reached {reached}, past T {t}");
    report.figure(format!("rd-copy: recovery reached {reached} (T {t})"));

    let token = token_when_synced(p, &carol, "rd-copy").await;
    assert!(
        alice.tenant_token(p, "rd-copy").await.is_err(),
        "alice (a member of the source only) gets no rd-copy token"
    );
    assert_eq!(
        count_executions(&copy, &token).await,
        1000,
        "exactly the executions of T"
    );
    assert_eq!(
        flow_status(&copy, &token, "doomed").await,
        200,
        "the deleted flow is back"
    );
    assert_eq!(flow_status(&copy, &token, "tick").await, 200);
    assert_ne!(
        db_password(p, "rd-copy").await,
        db_password(p, "rd-acme").await,
        "its own database credentials"
    );
    let rows = p
        .tenant_sql("rd-copy", "SELECT count(*) FROM executions")
        .await;
    assert_eq!(rows, "1000", "its own credentials open its database");
    report.figure("rd-copy: 1,000 executions, flow doomed back, own URL, credentials and members");

    assert_eq!(count_executions(&src.instance, &src.token).await, 1100);
    assert_eq!(flow_status(&src.instance, &src.token, "doomed").await, 404);
    report.figure("rd-acme unchanged: 1,100 executions, flow doomed gone");

    p.delete_tenant("rd-copy", true).await;
    p.delete_tenant("rd-acme", true).await;
}

/// Drill 2: a Tenant deleted with `Delete` comes back by name.
pub async fn restore_drill_deleted(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    if p.store("restore of a deleted Tenant").is_none() {
        return;
    }
    let dave = "dave@rd-gone.example";
    let admin = p.admin().await;
    let password = p.create_user(&admin, dave).await;
    let dave = p.login(dave, &password).await.expect("dave logs in");
    let members = [(dave.email.as_str(), "Admin")];
    let (gone, _) = apply_until_ready(p, "rd-gone", &members, BACKUP).await;
    wait_backup_ready(p, "rd-gone").await;
    let token = token_when_synced(p, &dave, "rd-gone").await;
    save(&gone, &token, TICK).await;
    run_many(&gone, &token, 20).await;
    assert_eq!(count_executions(&gone, &token).await, 20);
    take_backup(p, "rd-gone", "rd-gone-final").await;
    p.delete_tenant("rd-gone", true).await;
    report.figure("rd-gone: 20 executions, backed up, deleted with Delete (namespace gone)");

    let restore = "  restore:\n    from: rd-gone\n";
    let (back, took) = apply_until_ready(p, "rd-back", &members, restore).await;
    report.figure(format!(
        "rd-back restored from the deleted rd-gone (latest): Ready and answering in {:.1}s",
        secs(took)
    ));
    let token = token_when_synced(p, &dave, "rd-back").await;
    assert_eq!(
        count_executions(&back, &token).await,
        20,
        "the deleted Tenant's executions"
    );
    assert_eq!(flow_status(&back, &token, "tick").await, 200, "its flow");
    let restored = condition(p, "rd-back", conditions::types::RESTORED).await;
    assert_eq!(
        restored.as_ref().map(|(s, _, _)| s.as_str()),
        Some("True"),
        "{restored:?}"
    );
    report.figure("rd-back: 20 executions and the flow, dave works in it");
    p.delete_tenant("rd-back", true).await;
}

/// The shared server's admin Secret in the operator's namespace, labelled
/// for Tenants to name.
const SHARED_ADMIN: &str = "rd-shared-admin";

/// Drill 3: External mode with dumps.
pub async fn restore_drill_external(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    if p.store("restore drill of an External tenant").is_none()
        || p.node("a shared PostgreSQL server on this machine")
            .is_none()
    {
        return;
    }
    let shared = atoll_testkit::pg::TestPostgres::start();
    let admin_secret: k8s_openapi::api::core::v1::Secret =
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": SHARED_ADMIN, "labels": {"atoll.dev/database-admin": "true"}},
            "stringData": {"url": shared.url},
        }))
        .expect("secret");
    Api::<k8s_openapi::api::core::v1::Secret>::namespaced(
        p.client.clone(),
        atoll_testkit::chart::RELEASE_NAMESPACE,
    )
    .create(&Default::default(), &admin_secret)
    .await
    .expect("the shared server's admin Secret");
    let external = format!(
        "  database:\n    mode: External\n    external:\n      adminSecretRef:\n        name: {SHARED_ADMIN}\n        key: url\n"
    );

    let (erin, frank) = ("erin@rd-ext.example", "frank@rd-ext-copy.example");
    let admin = p.admin().await;
    let erin_password = p.create_user(&admin, erin).await;
    let frank_password = p.create_user(&admin, frank).await;
    let erin = p.login(erin, &erin_password).await.expect("erin logs in");
    let frank = p
        .login(frank, &frank_password)
        .await
        .expect("frank logs in");

    let extra = format!("{external}{BACKUP}");
    let (source, _) = apply_until_ready(p, "rd-ext", &[(&erin.email, "Admin")], &extra).await;
    let first = wait_backup_ready(p, "rd-ext").await;
    let (_, _, message) = condition(p, "rd-ext", conditions::types::BACKUP_READY)
        .await
        .expect("BackupReady");
    assert!(message.contains("the RPO is the schedule"), "{message}");
    assert!(
        condition(p, "rd-ext", conditions::types::CONTINUOUS_ARCHIVING)
            .await
            .is_none(),
        "no WAL archiving on a shared server"
    );
    report.figure(format!(
        "rd-ext (External): BackupReady=True (first dump) {:.1}s after Ready",
        secs(first)
    ));
    let token = token_when_synced(p, &erin, "rd-ext").await;
    save(&source, &token, TICK).await;
    save(&source, &token, DOOMED).await;
    run_many(&source, &token, 200).await;
    assert_eq!(count_executions(&source, &token).await, 200);
    let took = take_backup(p, "rd-ext", "rd-ext-dump").await;
    report.figure(format!(
        "rd-ext: 200 executions, 2 flows; on-demand dump completed in {:.1}s",
        secs(took)
    ));

    let restore = format!("{external}  restore:\n    from: rd-ext\n    backup: rd-ext-dump\n");
    let (copy, took) = apply_until_ready(
        p,
        "rd-ext-copy",
        &[(frank.email.as_str(), "Admin")],
        &restore,
    )
    .await;
    report.figure(format!(
        "rd-ext-copy restored from the dump: Ready and answering in {:.1}s",
        secs(took)
    ));
    let (status, reason, message) = condition(p, "rd-ext-copy", conditions::types::RESTORED)
        .await
        .expect("a Restored condition");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "Restored"),
        "{message}"
    );
    assert_ne!(copy.url, source.url, "its own URL");
    let copy_token = token_when_synced(p, &frank, "rd-ext-copy").await;
    assert!(
        erin.tenant_token(p, "rd-ext-copy").await.is_err(),
        "erin (a member of the source only) gets no rd-ext-copy token"
    );
    assert_eq!(
        count_executions(&copy, &copy_token).await,
        200,
        "the dump's executions"
    );
    assert_eq!(flow_status(&copy, &copy_token, "tick").await, 200);
    assert_eq!(flow_status(&copy, &copy_token, "doomed").await, 200);
    assert_ne!(
        db_password(p, "rd-ext-copy").await,
        db_password(p, "rd-ext").await,
        "its own database credentials"
    );
    let owner = tokio::task::spawn_blocking(move || {
        let owner = shared.psql(
            "atoll_rd_ext_copy",
            "SELECT tableowner FROM pg_tables WHERE tablename = 'executions'",
        );
        (owner, shared)
    })
    .await
    .expect("psql");
    assert_eq!(owner.0, "atoll_rd_ext_copy", "its own database and role");
    report
        .figure("rd-ext-copy: 200 executions and both flows, own URL, database, role and members");

    p.delete_tenant("rd-ext-copy", true).await;
    p.delete_tenant("rd-ext", true).await;
    drop(owner);
}
