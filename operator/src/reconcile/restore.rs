//! Step 2b for a Tenant created from another's backups (`spec.restore`,
//! #19): where its restore stands, read from its status once settled, else
//! from the store holding the source's backups (resolving the source and
//! backup once, then reading `tenants/<uid>/restore.json`), and what the
//! children need for it (the store's Secret while the restore may run).
//! Problems become the `Restored` condition's message, never an error of
//! the reconcile; messages never hold credentials.
//!
//! An External Tenant is restored by a pod (`restore-dump`, [`run_pod`])
//! once its database is provisioned and the children applied; it is
//! deleted when the restore has ended, and a pod that failed without
//! writing `restore.json` fails the restore with its message.

use std::sync::Arc;

use atoll_backup::layout::Layout;
use atoll_backup::restore::RestoreOutcome;
use atoll_backup::settings::Settings;
use atoll_crds::{RestoreStatus, Tenant};
use object_store::ObjectStore;

use super::{Context, Error, backup, uid};
use crate::build::{BackupStore, ObjectStoreCredentials, TenantContext};
use crate::restore::resolve::resolve;
use crate::restore::store::{restore_credentials_source, restore_store, settings};
use crate::restore::{Resolved, RestoreView, reasons};

/// A restore's state and, while it may run, the store its Secret names.
pub(super) struct RestoreInputs {
    /// Where it stands.
    pub view: RestoreView,
    /// The source's store and credentials for the Secret; `None`: no Secret.
    pub store: Option<(BackupStore, Option<ObjectStoreCredentials>)>,
}

impl RestoreInputs {
    fn only(view: RestoreView) -> Self {
        RestoreInputs { view, store: None }
    }
}

/// The resolution `status.restore` holds already.
fn resolved_in(status: Option<&RestoreStatus>) -> Option<Resolved> {
    let status = status?;
    Some(Resolved {
        source_uid: status.source_uid.clone()?,
        backup_id: status.backup_id.clone()?,
        target_time: status.target_time.as_ref().map(|t| t.0),
    })
}

/// Where the Tenant's restore stands; `None` without `spec.restore`.
pub(super) async fn observe(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
) -> Result<Option<RestoreInputs>, Error> {
    let Some(spec) = &tenant.spec.restore else {
        return Ok(None);
    };
    let target = spec.target_timestamp();
    let pending = |reason, message: String| {
        Ok(Some(RestoreInputs::only(RestoreView::pending(
            reason, message, target,
        ))))
    };
    let previous = tenant.status.as_ref().and_then(|s| s.restore.as_ref());
    if let Some(settled) = previous.and_then(RestoreView::settled) {
        return Ok(Some(RestoreInputs::only(settled)));
    }
    let store = match restore_store(tenant_ctx) {
        Ok(store) => store,
        Err(reason) => return pending(reasons::STORE_UNAVAILABLE, reason),
    };
    let credentials = match backup::credentials(
        tenant_ctx,
        ctx,
        &restore_credentials_source(tenant_ctx),
    )
    .await?
    {
        Ok(credentials) => credentials,
        Err(reason) => return pending(reasons::STORE_UNAVAILABLE, reason),
    };
    let own = uid(tenant);
    let settings = settings(&store, credentials.as_ref(), own, tenant_ctx.name);
    let objects = match atoll_backup::store::open(&settings) {
        Ok(objects) => objects,
        Err(e) => return pending(reasons::STORE_UNAVAILABLE, settings.redact_error(&e)),
    };
    let layout = Layout::new(settings.prefix.as_deref());
    let remembered = ctx.memory.get(own).restore_resolved;
    let resolved = match resolved_in(previous).or(remembered) {
        Some(resolved) => resolved,
        None => {
            let live: Vec<Arc<Tenant>> = ctx.tenants.state();
            let mode = tenant.spec.database.mode;
            match resolve(spec, own, &live, objects.as_ref(), &layout, mode).await {
                Ok(resolved) => resolved,
                Err(e) => return pending(e.reason(), settings.redact(&e.to_string())),
            }
        }
    };
    let keep = resolved.clone();
    ctx.memory.update(own, |m| m.restore_resolved = Some(keep));
    let view = match outcome(objects.as_ref(), &layout, &settings, &resolved).await {
        Some(outcome) => RestoreView::finished(&resolved, &outcome),
        // No outcome: still running, unless a Dedicated restore's init
        // container keeps failing before it could write one (a failed
        // restore-dump pod is read by `run_pod`).
        None if tenant_ctx.dedicated_database() => {
            match crate::restore::pod::observe(&ctx.client, &tenant_ctx.namespace).await {
                Some(failure) => RestoreView::init_failed(&resolved, &failure.describe()),
                None => RestoreView::running(&resolved),
            }
        }
        None => RestoreView::running_dump(&resolved),
    };
    let store = view.needs_store().then_some((store, credentials));
    Ok(Some(RestoreInputs { view, store }))
}

/// The restore's outcome (`restore.json` under the Tenant's uid), if it
/// wrote one for this source; a store that cannot be read now is only
/// logged (the restore is then still running, as far as we know).
async fn outcome(
    objects: &dyn ObjectStore,
    layout: &Layout,
    settings: &Settings,
    resolved: &Resolved,
) -> Option<RestoreOutcome> {
    let key = layout.restore_json(&settings.tenant_uid).ok()?;
    let bytes = match atoll_backup::store::get_bytes(objects, &key).await {
        Ok(bytes) => bytes?,
        Err(e) => {
            tracing::warn!(key = %key, error = %settings.redact_error(&e), "cannot read the restore's outcome");
            return None;
        }
    };
    match serde_json::from_slice::<RestoreOutcome>(&bytes) {
        Ok(outcome) if outcome.source_uid == resolved.source_uid => Some(outcome),
        Ok(_) => {
            tracing::warn!(key = %key, "the restore's outcome names another source; ignored");
            None
        }
        Err(e) => {
            tracing::warn!(key = %key, error = %e, "the restore's outcome is not valid JSON");
            None
        }
    }
}

/// Shapes the children for the Tenant's restore, if it has one, and
/// remembers its state for this pass's status.
pub(super) async fn shape(
    tenant: &Tenant,
    tenant_ctx: &TenantContext<'_>,
    ctx: &Context,
    children: &mut crate::build::Children,
) -> Result<(), Error> {
    let inputs = observe(tenant, tenant_ctx, ctx).await?;
    if let Some(inputs) = &inputs {
        let secret = inputs.store.as_ref().map(|(store, credentials)| {
            crate::build::restore_secret(tenant_ctx, store, credentials.as_ref())
        });
        crate::build::apply_restore(tenant_ctx, children, &inputs.view, secret);
    }
    let view = inputs.map(|i| i.view);
    ctx.memory.update(uid(tenant), |m| m.restore = view);
    Ok(())
}

/// Writes the restore's state into `status` after a pass that applied the
/// children; returns when to look again while it is not settled.
pub(super) fn overlay(
    tenant: &Tenant,
    observed: &crate::status::Observed,
    status: &mut atoll_crds::TenantStatus,
    ctx: &Context,
) -> Option<kube::runtime::controller::Action> {
    use atoll_crds::RestorePhase;
    use std::time::Duration;
    if tenant.spec.restore.is_none() || !matches!(observed, crate::status::Observed::Applied { .. })
    {
        return None;
    }
    let view = ctx.memory.get(uid(tenant)).restore?;
    crate::restore::status::overlay(status, &view, tenant.metadata.generation, &super::now());
    match view.phase() {
        RestorePhase::Running => Some(kube::runtime::controller::Action::requeue(
            Duration::from_secs(5),
        )),
        RestorePhase::Pending => Some(kube::runtime::controller::Action::requeue(
            Duration::from_secs(30),
        )),
        RestorePhase::Completed | RestorePhase::Failed => None,
    }
}

/// For an External Tenant being restored, after its children (the
/// database credentials and the source store's Secret) are applied:
/// starts the restore-dump pod while the restore runs, deletes it once it
/// has ended, and fails the restore when the pod failed without an outcome.
pub(super) async fn run_pod(tenant: &Tenant, tenant_ctx: &TenantContext<'_>, ctx: &Context) {
    use atoll_crds::RestorePhase;
    use k8s_openapi::api::core::v1::Pod;
    use kube::api::{Api, PostParams};
    if tenant.spec.restore.is_none() || tenant_ctx.dedicated_database() {
        return;
    }
    let Some(view) = ctx.memory.get(uid(tenant)).restore else {
        return;
    };
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &tenant_ctx.namespace);
    let name = crate::build::RESTORE_DUMP_POD;
    let settled_before = tenant
        .status
        .as_ref()
        .and_then(|s| s.restore.as_ref()?.phase)
        .is_some_and(|p| matches!(p, RestorePhase::Completed | RestorePhase::Failed));
    let resolved = match view.phase() {
        RestorePhase::Pending => return,
        RestorePhase::Completed | RestorePhase::Failed => {
            if !settled_before {
                crate::backup::delete_pod(&pods, name).await;
            }
            return;
        }
        RestorePhase::Running => match view.resolved() {
            Some(resolved) => resolved,
            None => return,
        },
    };
    let pod = match pods.get_opt(name).await {
        Ok(pod) => pod,
        Err(error) => {
            tracing::warn!(tenant = %tenant_ctx.name, %error, "reading the restore-dump pod failed");
            return;
        }
    };
    let Some(pod) = pod else {
        let pod = crate::build::restore_dump_pod(tenant_ctx, &resolved);
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(error) => {
                tracing::warn!(tenant = %tenant_ctx.name, %error, "creating the restore-dump pod failed");
            }
        }
        return;
    };
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase != Some("Failed") {
        return;
    }
    let message = crate::backup::pod_failure(&pods, &pod).await;
    let outcome = RestoreOutcome {
        source_uid: resolved.source_uid.clone(),
        backup_id: Some(resolved.backup_id.clone()),
        target_time: resolved.target_time,
        reached_time: None,
        ok: false,
        message: format!("the restore-dump pod failed: {message}"),
    };
    let failed = RestoreView::finished(&resolved, &outcome);
    ctx.memory.update(uid(tenant), |m| m.restore = Some(failed));
    crate::backup::delete_pod(&pods, name).await;
}
