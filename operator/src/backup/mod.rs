//! Scheduled backups, the TenantBackup controller and the backup part of a
//! Tenant's status (#19, contract §7).
//!
//! - [`observe`], called by the Tenant reconciler (leader only): registers
//!   the tenant in the store, reads its catalog and its agent's `/status`,
//!   creates a TenantBackup when the schedule says one is due, and returns
//!   `status.backup`, the `BackupReady`/`ContinuousArchiving` conditions and
//!   when to look again;
//! - [`tenant_backup`]: the TenantBackup controller (asks the agent for a
//!   base backup, or runs a dump pod for an External database, and follows
//!   it), which runs retention after each success;
//! - [`sweep`]: the leader's periodic retention sweep of every tenant in
//!   the platform store, deleted ones included;
//! - pure parts: [`schedule`], [`status`], the planner in
//!   `atoll_backup::retention`.

pub mod access;
pub mod agent_client;
mod dump_pod;
pub mod register;
pub mod retention;
pub mod schedule;
pub mod status;
pub mod sweep;
pub mod tenant_backup;
mod track;

use std::time::Duration;

use atoll_backup::layout::BackupId;
use atoll_backup::{catalog, dump_catalog};
use atoll_crds::conditions::{self, Desired, types};
use atoll_crds::{BackupPhase, DatabaseMode, Tenant, TenantBackup, TenantBackupSpec, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams, PostParams};
use kube::{Client, ResourceExt};

pub use dump_pod::{delete as delete_pod, failure as pod_failure};
pub use track::Backups;

use crate::reconcile::Context;
use schedule::{Decision, History, Schedule};
use status::{DumpObservation, Observation, Report, Situation};

/// Label naming the Tenant a TenantBackup backs up.
pub const TENANT_LABEL: &str = "atoll.dev/tenant";
/// Annotation on the TenantBackups the schedule created (retention deletes
/// them with their backups; on-demand ones stay).
pub const SCHEDULED_ANNOTATION: &str = "atoll.dev/scheduled";
/// Annotation with the backup id the schedule chose.
pub const BACKUP_ID_ANNOTATION: &str = "atoll.dev/backup-id";
/// The longest a wired Tenant waits between two looks at its archiving
/// while it is healthy (sooner while it is not: [`status::RECHECK_UNSETTLED`]).
pub const CHECK_EVERY: Duration = Duration::from_secs(60);

/// What the Tenant reconciler knows when it asks.
#[derive(Clone, Copy, Debug)]
pub struct TenantView<'a> {
    /// The tenant's namespace.
    pub namespace: &'a str,
    /// Why its backups are not wired although wanted (H5's reason).
    pub unavailable: Option<&'a str>,
    /// The database is ready (and so is its agent; External: provisioned
    /// and not being restored).
    pub database_ready: bool,
}

/// Observes the tenant's backups, creates a due TenantBackup, and returns
/// the report for its status and when to look again.
pub async fn observe(
    tenant: &Tenant,
    view: TenantView<'_>,
    ctx: &Context,
) -> (Report, Option<Duration>) {
    let previous = tenant.status.as_ref().and_then(|s| s.backup.as_ref());
    let Some(spec) = &tenant.spec.backup else {
        ctx.backups.forget(uid(tenant));
        return (status::report(&Situation::Absent, previous), None);
    };
    let simple = if spec.enabled {
        view.unavailable.map(Situation::Unavailable)
    } else {
        Some(Situation::Disabled)
    };
    if let Some(situation) = simple {
        return (status::report(&situation, previous), None);
    }
    let store = match ctx
        .backups
        .store(&ctx.client, view.namespace, uid(tenant))
        .await
    {
        Ok(Some(store)) => store,
        Ok(None) => {
            let why = format!(
                "the Secret {}/{} is not created yet",
                view.namespace,
                crate::build::BACKUP_OBJECT_STORE_SECRET
            );
            return (
                status::report(&Situation::Unavailable(&why), previous),
                Some(Duration::from_secs(10)),
            );
        }
        Err(why) => {
            return (
                status::report(&Situation::Unavailable(&why), previous),
                Some(CHECK_EVERY),
            );
        }
    };
    register::once(tenant, &store, ctx).await;
    let backups = list_backups(&ctx.client, tenant).await;
    let external = tenant.spec.database.mode == DatabaseMode::External;
    let (catalog, dumps) = if external {
        (Ok(Vec::new()), ctx.backups.dumps(&store, &backups).await)
    } else {
        (ctx.backups.catalog(&store, &backups).await, Ok(Vec::new()))
    };
    let agent = if view.database_ready && !tenant.spec.suspended && !external {
        ctx.backups
            .agent_status(&ctx.client, view.namespace, uid(tenant))
            .await
    } else {
        Ok(None)
    };
    let now = jiff::Timestamp::now();
    let next_due = match Schedule::parse(&spec.schedule) {
        Ok(schedule) => {
            let newest = match external {
                true => dumps
                    .as_deref()
                    .ok()
                    .and_then(dump_catalog::latest)
                    .map(|d| d.time),
                false => catalog
                    .as_deref()
                    .ok()
                    .and_then(catalog::latest)
                    .map(|b| b.begin_time),
            };
            let history = history(tenant, &backups, newest);
            match schedule::decide(&schedule, &history, now) {
                Decision::Due { first } if view.database_ready && !tenant.spec.suspended => {
                    create_scheduled(&ctx.client, tenant, first).await;
                    None
                }
                Decision::Due { .. } => None,
                Decision::Wait(at) => at,
            }
        }
        Err(_) => None,
    };
    let situation = if external {
        Situation::Dumps(DumpObservation {
            catalog: dumps.as_deref().map_err(String::as_str),
            backups: &backups,
            next_due,
        })
    } else {
        Situation::Wired(Observation {
            catalog: catalog.as_deref().map_err(String::as_str),
            agent: agent.as_ref().map(Option::as_ref).map_err(String::as_str),
            backups: &backups,
            next_due,
        })
    };
    let report = status::report(&situation, previous);
    let wait = next_due
        .and_then(|t| t.duration_since(now).try_into().ok())
        .map_or(CHECK_EVERY, |d: Duration| {
            d.clamp(Duration::from_secs(1), CHECK_EVERY)
        });
    let wait = status::look_again_within(&report, wait);
    (report, Some(wait))
}

/// Whether the Tenant's status holds the condition `type_` at True.
fn status_says(tenant: &Tenant, type_: &str) -> bool {
    tenant
        .status
        .as_ref()
        .is_some_and(|s| conditions::is_true(&s.conditions, type_))
}

fn uid(tenant: &Tenant) -> &str {
    tenant.metadata.uid.as_deref().unwrap_or_default()
}

/// Writes the report into `status` (conditions keep their transition times).
pub fn apply_report(
    status: &mut TenantStatus,
    report: Report,
    generation: Option<i64>,
    now: &Time,
) {
    status.backup = report.status;
    for (type_, verdict) in [
        (types::BACKUP_READY, report.backup_ready),
        (types::CONTINUOUS_ARCHIVING, report.archiving),
    ] {
        match verdict {
            Some(v) => {
                conditions::set(
                    &mut status.conditions,
                    Desired {
                        type_,
                        status: v.status,
                        reason: v.reason,
                        message: &v.message,
                    },
                    generation,
                    now,
                );
            }
            None => status.conditions.retain(|c| c.type_ != type_),
        }
    }
}

/// The TenantBackups of this Tenant (this uid's, or not started yet).
pub(crate) async fn list_backups(client: &Client, tenant: &Tenant) -> Vec<TenantBackup> {
    let api: Api<TenantBackup> = Api::all(client.clone());
    let params = ListParams::default().labels(&format!("{TENANT_LABEL}={}", tenant.name_any()));
    match api.list(&params).await {
        Ok(list) => list
            .items
            .into_iter()
            .filter(|b| {
                b.spec.tenant == tenant.name_any()
                    && b.status
                        .as_ref()
                        .and_then(|s| s.tenant_uid.as_deref())
                        .is_none_or(|u| u == uid(tenant))
            })
            .collect(),
        Err(error) => {
            tracing::warn!(tenant = %tenant.name_any(), %error, "listing TenantBackups failed");
            Vec::new()
        }
    }
}

/// What the schedule needs to know; `newest` is the start of the newest
/// complete backup or dump in the store, if any.
fn history(tenant: &Tenant, backups: &[TenantBackup], newest: Option<jiff::Timestamp>) -> History {
    let phase = |b: &TenantBackup| b.status.as_ref().and_then(|s| s.phase);
    let start = |b: &TenantBackup| {
        b.status
            .as_ref()
            .and_then(|s| s.started_at.as_ref())
            .or(b.metadata.creation_timestamp.as_ref())
            .map(|t| t.0)
    };
    History {
        in_flight: backups.iter().any(|b| {
            matches!(
                phase(b),
                None | Some(BackupPhase::Pending | BackupPhase::Running)
            )
        }),
        has_complete: newest.is_some()
            || backups
                .iter()
                .any(|b| phase(b) == Some(BackupPhase::Completed)),
        newest_start: backups.iter().filter_map(start).chain(newest).max(),
        last_failure: backups
            .iter()
            .filter(|b| phase(b) == Some(BackupPhase::Failed))
            .filter_map(|b| b.status.as_ref().and_then(|s| s.stopped_at.as_ref()))
            .map(|t| t.0)
            .max(),
        created: tenant.metadata.creation_timestamp.as_ref().map(|t| t.0),
    }
}

/// Creates the scheduled TenantBackup `<tenant>-<id lowercased>`.
async fn create_scheduled(client: &Client, tenant: &Tenant, first: bool) {
    let id = BackupId::now().to_string();
    let name = format!("{}-{}", tenant.name_any(), id.to_lowercase());
    let mut backup = TenantBackup::new(
        &name,
        TenantBackupSpec {
            tenant: tenant.name_any(),
        },
    );
    backup.metadata.labels = Some([(TENANT_LABEL.to_owned(), tenant.name_any())].into());
    backup.metadata.annotations = Some(
        [
            (SCHEDULED_ANNOTATION.to_owned(), "true".to_owned()),
            (BACKUP_ID_ANNOTATION.to_owned(), id),
        ]
        .into(),
    );
    let api: Api<TenantBackup> = Api::all(client.clone());
    match api.create(&PostParams::default(), &backup).await {
        Ok(_) => {
            tracing::info!(tenant = %tenant.name_any(), backup = %name, first, "scheduled a backup")
        }
        Err(kube::Error::Api(status)) if status.code == 409 => {}
        Err(error) => {
            tracing::warn!(tenant = %tenant.name_any(), backup = %name, %error, "creating a scheduled TenantBackup failed");
        }
    }
}
