//! The sleep in the reconcile (#20, [`crate::idle`]): before the children
//! are built, decide whether the tenant sleeps, wakes or stays as it is
//! and shape them; after they are applied, finish a wake whose instance is
//! ready; then overlay the status.

use std::time::Duration;

use atoll_crds::{DatabaseMode, IdleStatus, Phase, Tenant, Wake, WakeCause};
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams};

use super::Context;
use crate::build::{self, Children, GateEndpoints, SERVICE_NAME_LABEL, Sleep, TenantContext};
use crate::idle::decide::{
    self, AsleepInputs, AsleepVerdict, AwakeInputs, AwakeVerdict, DrainInputs, DrainVerdict,
};
use crate::idle::status::IdleView;
use crate::idle::{self, Mode, activity};
use crate::status::WorkloadReadiness;

/// How long a tenant going to sleep keeps its workloads after its host
/// was routed to the gate: the ingress controller follows the Ingress's
/// change in that time (a request it still sends to the instance is
/// answered), and requests in flight end.
const DRAIN: Duration = Duration::from_secs(5);

/// What this reconcile does about the sleep.
#[derive(Clone, Debug)]
pub(super) struct IdleStep {
    /// The mode after the decision.
    pub mode: Mode,
    /// The new `status.idle`.
    pub idle: Option<IdleStatus>,
    /// How the children are shaped (`None`: awake, as built).
    pub sleep: Option<Sleep>,
    /// When to look again.
    pub recheck: Option<Duration>,
}

fn previous(tenant: &Tenant) -> Option<IdleStatus> {
    tenant.status.as_ref().and_then(|s| s.idle.clone())
}

fn time(t: &Option<Time>) -> Option<Timestamp> {
    t.as_ref().map(|t| t.0)
}

fn until(at: Timestamp, now: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// Decides the sleep for this reconcile (reads the instance's activity
/// when an awake tenant's idle time may have passed).
pub(super) async fn step(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
) -> IdleStep {
    let before = previous(tenant);
    let mode = idle::mode(before.as_ref());
    let now = Timestamp::now();
    let dedicated = tenant.spec.database.mode == DatabaseMode::Dedicated;
    if tenant.spec.suspended {
        // Suspended wins: no sleep, no wake; the gate answers "suspended".
        let idle = before.map(|b| IdleStatus {
            last_wake: b.last_wake,
            ..IdleStatus::default()
        });
        let sleep = Sleep {
            instance_stopped: true,
            database_stopped: false,
        };
        return IdleStep {
            mode: Mode::Awake,
            idle,
            sleep: Some(sleep),
            recheck: None,
        };
    }
    let spec = tenant.spec.idle.as_ref();
    if spec.is_none() && mode == Mode::Awake {
        return IdleStep {
            mode,
            idle: None,
            sleep: None,
            recheck: None,
        };
    }
    // Without spec.idle but asleep: spec.idle was removed, so it wakes
    // (the record stays until the wake is done).
    let mut idle = before.clone().unwrap_or_default();
    match mode {
        Mode::Awake => {
            let after = spec
                .and_then(|s| s.after_seconds().ok())
                .map_or(Duration::from_secs(1800), Duration::from_secs);
            let restoring = tenant.spec.restore.is_some()
                && tenant
                    .status
                    .as_ref()
                    .and_then(|s| s.restore.as_ref()?.phase)
                    != Some(atoll_crds::RestorePhase::Completed);
            let phase = tenant.status.as_ref().and_then(|s| s.phase);
            let busy = if restoring {
                Some("its restore is not complete")
            } else if phase != Some(Phase::Ready) {
                Some("it is not Ready")
            } else {
                None
            };
            let activity = match busy {
                Some(_) => None,
                None => {
                    let selector = selector(tenant_ctx);
                    activity::read(
                        &ctx.client,
                        ctx.backups.http(),
                        &tenant_ctx.namespace,
                        &selector,
                    )
                    .await
                }
            };
            let inputs = AwakeInputs {
                after,
                activity,
                woke_at: idle.last_wake.as_ref().and_then(|w| time(&w.ready_at)),
                lead: lead(&idle),
                busy,
            };
            match decide::awake(&inputs, now) {
                AwakeVerdict::Stay { recheck, why } => {
                    tracing::debug!(tenant = %tenant.name_any(), %why, "stays awake");
                    IdleStep {
                        mode,
                        idle: Some(idle),
                        sleep: None,
                        recheck: Some(recheck.max(Duration::from_secs(1))),
                    }
                }
                AwakeVerdict::Sleep { wake_at } => {
                    let database_stopped = dedicated && spec.is_some_and(|s| s.database);
                    tracing::info!(tenant = %tenant.name_any(), wake_at = ?wake_at, database_stopped, "idle: going to sleep");
                    ctx.metrics.count_sleep();
                    idle.sleeping_since = Some(Time(now));
                    idle.database_asleep = database_stopped;
                    idle.next_wake = wake_at.map(Time);
                    idle.waking = None;
                    // The host goes to the gate first; the workloads stop
                    // once the ingress controller has had time to follow.
                    IdleStep {
                        mode: Mode::Asleep,
                        idle: Some(idle),
                        sleep: Some(Sleep {
                            instance_stopped: false,
                            database_stopped: false,
                        }),
                        recheck: Some(DRAIN),
                    }
                }
            }
        }
        Mode::Asleep => {
            let inputs = AsleepInputs {
                sleeping_since: time(&idle.sleeping_since).unwrap_or(now),
                next_wake: time(&idle.next_wake),
                requested: idle::wake_request(tenant),
                idle_wanted: spec.is_some(),
            };
            match decide::asleep(&inputs, now) {
                AsleepVerdict::Sleep { until: at } => {
                    let since = time(&idle.sleeping_since).unwrap_or(now);
                    let drained = since
                        .checked_add(SignedDuration::try_from(DRAIN).unwrap_or_default())
                        .unwrap_or(since);
                    let stop = drained <= now;
                    let mut until_wake = at;
                    if stop {
                        // The last look before the workloads stop: work
                        // that reached the instance in the drain wakes it.
                        let inputs = DrainInputs {
                            activity: activity::read(
                                &ctx.client,
                                ctx.backups.http(),
                                &tenant_ctx.namespace,
                                &selector(tenant_ctx),
                            )
                            .await,
                            sleeping_since: since,
                            next_wake: at,
                            lead: lead(&idle),
                        };
                        match decide::drained(&inputs, now) {
                            DrainVerdict::Stop { next_wake } => {
                                idle.next_wake = next_wake.map(Time);
                                until_wake = next_wake;
                            }
                            DrainVerdict::Wake {
                                cause,
                                requested_at,
                            } => {
                                tracing::info!(tenant = %tenant.name_any(), "work reached the instance while it drained: it stays awake");
                                return wake(idle, cause, requested_at, ctx);
                            }
                        }
                    }
                    let recheck = if stop {
                        until_wake.map(|at| until(at, now))
                    } else {
                        Some(until(drained, now))
                    };
                    IdleStep {
                        mode,
                        sleep: Some(Sleep {
                            instance_stopped: stop,
                            database_stopped: stop && idle.database_asleep,
                        }),
                        idle: Some(idle),
                        recheck,
                    }
                }
                AsleepVerdict::Wake {
                    cause,
                    requested_at,
                } => {
                    tracing::info!(tenant = %tenant.name_any(), cause = cause.as_str(), "waking");
                    wake(idle, cause, requested_at, ctx)
                }
            }
        }
        Mode::Waking => waking(idle),
    }
}

/// Starts a wake: counted, recorded in the status, workloads up.
fn wake(
    mut idle: IdleStatus,
    cause: WakeCause,
    requested_at: Timestamp,
    ctx: &Context,
) -> IdleStep {
    ctx.metrics.count_wake(cause);
    idle.waking = Some(Wake {
        cause,
        requested_at: Time(requested_at),
        ready_at: None,
        duration_milliseconds: None,
    });
    waking(idle)
}

/// Twice the last measured wake, at least [`decide::MIN_LEAD`].
fn lead(idle: &IdleStatus) -> Duration {
    decide::lead(
        idle.last_wake
            .as_ref()
            .and_then(|w| w.duration_milliseconds),
    )
}

fn waking(idle: IdleStatus) -> IdleStep {
    IdleStep {
        mode: Mode::Waking,
        idle: Some(idle),
        sleep: Some(Sleep {
            instance_stopped: false,
            database_stopped: false,
        }),
        recheck: Some(Duration::from_secs(5)),
    }
}

/// The label selector of the tenant's instance pods.
fn selector(tenant_ctx: &TenantContext<'_>) -> String {
    tenant_ctx
        .selector(build::INSTANCE)
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Shapes the children as `step` decided, with the gate's ready pods.
pub(super) async fn shape(
    step: &IdleStep,
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
    children: &mut Children,
) {
    let idle = tenant_ctx.tenant.spec.idle.is_some();
    if step.sleep.is_none() && !idle {
        return;
    }
    let gate = gate_endpoints(ctx).await;
    match step.sleep {
        Some(sleep) => build::shape_for_sleep(tenant_ctx, sleep, &gate, children),
        // Awake, but it may sleep: the gate's Service and endpoints stay
        // (the Ingress routes to the instance). Deleting them as the tenant
        // wakes would cut the requests the gate still holds.
        None => {
            children.wake_gate = Some((
                build::wake_gate_service(tenant_ctx),
                build::wake_gate_endpoints(tenant_ctx, &gate),
            ));
        }
    }
}

/// The wake gate's ready pods, from its Service's EndpointSlices.
async fn gate_endpoints(ctx: &Context) -> GateEndpoints {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), &ctx.operator_namespace);
    let params = ListParams::default().labels(&format!(
        "{SERVICE_NAME_LABEL}={}",
        ctx.config.wake_gate_service
    ));
    match api.list(&params).await {
        Ok(list) => build::gate_endpoints(&list.items),
        Err(error) => {
            tracing::warn!(%error, "reading the wake gate's endpoints failed");
            GateEndpoints::default()
        }
    }
}

/// After the children are applied: a waking tenant whose instance (and
/// database) are ready is awake; the wake is recorded and measured.
pub(super) fn finish_wake(
    step: &mut IdleStep,
    instance: &WorkloadReadiness,
    database: Option<&WorkloadReadiness>,
    ctx: &Context,
) {
    if step.mode != Mode::Waking || !instance.complete() || database.is_some_and(|d| !d.complete())
    {
        return;
    }
    let Some(idle) = step.idle.as_mut() else {
        return;
    };
    let Some(mut wake) = idle.waking.take() else {
        return;
    };
    let now = Timestamp::now();
    let took = now.duration_since(wake.requested_at.0);
    let millis = i64::try_from(took.as_millis()).unwrap_or(i64::MAX).max(0);
    wake.ready_at = Some(Time(now));
    wake.duration_milliseconds = Some(millis);
    ctx.metrics.observe_wake(
        wake.cause,
        Duration::try_from(took).unwrap_or(Duration::ZERO),
    );
    tracing::info!(cause = wake.cause.as_str(), millis, "awake again");
    idle.last_wake = Some(wake);
    idle.sleeping_since = None;
    idle.database_asleep = false;
    idle.next_wake = None;
    step.mode = Mode::Awake;
    step.sleep = None;
    step.recheck = Some(Duration::from_secs(1));
}

/// The status view of the step.
pub(super) fn view<'a>(step: &IdleStep, tenant: &'a Tenant, url: &'a str) -> IdleView<'a> {
    IdleView {
        after: tenant.spec.idle.as_ref().map(|s| s.after.as_str()),
        mode: step.mode,
        idle: step.idle.clone(),
        url,
    }
}
