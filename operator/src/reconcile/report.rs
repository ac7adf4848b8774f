//! What the world sees of a reconcile: the Tenant's status, patched only
//! when it changed, and an event on each phase or Ready-reason transition.

use std::fmt::Debug;

use atoll_crds::{Phase, Tenant, TenantStatus};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};

use super::retry::retry;
use super::{Context, Error};

/// Publishes events on Tenants through a fixed set of [`Recorder`]s, each
/// for its share of the tenant names.
///
/// A `Recorder` keeps the events of the last minutes so that a repeated
/// event patches its series instead of creating another, and sweeps that
/// whole cache on every publish: one recorder for thousands of tenants
/// makes each publish cost O(tenants). A tenant always goes through the
/// same recorder, so its repeated events still form one series.
pub struct TenantEvents {
    shards: Vec<Recorder>,
}

impl Debug for TenantEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantEvents")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl TenantEvents {
    /// Recorders sharing one client and reporter.
    const SHARDS: usize = 64;

    /// Recorders reporting as `reporter`.
    pub fn new(client: &Client, reporter: &Reporter) -> Self {
        Self {
            shards: (0..Self::SHARDS)
                .map(|_| Recorder::new(client.clone(), reporter.clone()))
                .collect(),
        }
    }

    /// The recorder for a tenant's events.
    fn for_tenant(&self, name: &str) -> &Recorder {
        use std::hash::{BuildHasher, BuildHasherDefault};
        let hash = BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default()
            .hash_one(name);
        &self.shards[(hash % self.shards.len() as u64) as usize]
    }
}

/// Applies the status only when it differs, and records phase transitions.
pub(super) async fn write_status(
    tenant: &Tenant,
    status: TenantStatus,
    ctx: &Context,
) -> Result<(), Error> {
    let previous = tenant.status.clone().unwrap_or_default();
    if previous == status {
        return Ok(());
    }
    let api: Api<Tenant> = Api::all(ctx.client.clone());
    // Server-side apply under the operator's one field manager: the status
    // is all ours, and a field we stop setting is removed.
    let patch = serde_json::json!({
        "apiVersion": <Tenant as kube::Resource>::api_version(&()),
        "kind": <Tenant as kube::Resource>::kind(&()),
        "status": status,
    });
    let name = tenant.name_any();
    let params = PatchParams::apply(crate::build::FIELD_MANAGER).force();
    let patch = Patch::Apply(&patch);
    retry(|| api.patch_status(&name, &params, &patch))
        .await
        .map_err(Error::PatchStatus)?;
    ctx.metrics.set_phase(&tenant.name_any(), status.phase);
    if previous.phase != status.phase || ready_reason(&previous) != ready_reason(&status) {
        publish_transition(tenant, &status, ctx).await;
    }
    Ok(())
}

fn ready_reason(status: &TenantStatus) -> Option<(String, String)> {
    atoll_crds::conditions::get(&status.conditions, atoll_crds::conditions::types::READY)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

async fn publish_transition(tenant: &Tenant, status: &TenantStatus, ctx: &Context) {
    let Some(ready) =
        atoll_crds::conditions::get(&status.conditions, atoll_crds::conditions::types::READY)
    else {
        return;
    };
    let warning = ready.reason == "InvalidSpec" || status.phase == Some(Phase::Degraded);
    let event = Event {
        type_: if warning {
            EventType::Warning
        } else {
            EventType::Normal
        },
        reason: ready.reason.clone(),
        note: Some(ready.message.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    let recorder = ctx.recorder.for_tenant(&tenant.name_any());
    if let Err(error) = recorder.publish(&event, &tenant.object_ref(&())).await {
        tracing::warn!(tenant = %tenant.name_any(), error = %error, "could not publish event");
    }
}

/// Publishes a Warning event on the Tenant (`note` names what is wrong,
/// never a secret value).
pub(super) async fn publish_warning(tenant: &Tenant, reason: &str, note: &str, ctx: &Context) {
    let event = Event {
        type_: EventType::Warning,
        reason: reason.to_owned(),
        note: Some(note.chars().take(1000).collect()),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    let recorder = ctx.recorder.for_tenant(&tenant.name_any());
    if let Err(error) = recorder.publish(&event, &tenant.object_ref(&())).await {
        tracing::warn!(tenant = %tenant.name_any(), error = %error, "could not publish event");
    }
}
