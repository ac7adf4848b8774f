//! Deletion: deregister from identity, then remove or release the data as
//! the Tenant's `deletionPolicy` says; the Tenant shows phase Deleting
//! meanwhile.

use atoll_crds::{DatabaseMode, Tenant};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;

use super::report::write_status;
use super::{Context, Error, RETAINED_FROM_ANNOTATION, RETAINED_LABEL, database, now};
use crate::build::{self, DATABASE_SECRET, TenantContext};
use crate::claims;
use crate::status::{self, Observed};

/// Deletion: deregister from identity, then remove or release the data.
pub(super) async fn cleanup(tenant: &Tenant, ctx: &Context) -> Result<Action, Error> {
    let name = tenant.name_any();
    let namespace = build::namespace_name(&ctx.config, &name);
    if let Ok(tenant_ctx) = TenantContext::new(tenant, &ctx.config) {
        let status = status::desired_status(
            tenant,
            &Observed::Deleting,
            &tenant_ctx.url(),
            &namespace,
            &now(),
        );
        write_status(tenant, status, ctx).await?;
    }
    if let Some(client) = &ctx.identity {
        client.deregister(&name).await.map_err(Error::Deregister)?;
    }
    ctx.metrics.set_phase(&name, None);
    ctx.memory
        .forget(tenant.metadata.uid.as_deref().unwrap_or_default());
    let existing = own_namespace(&name, &namespace, ctx).await?;
    if existing.is_some() {
        crate::backup::register::mark_deleted(tenant, &namespace, ctx).await;
    }
    match tenant.spec.deletion_policy {
        atoll_crds::DeletionPolicy::Delete => delete_data(tenant, existing, &namespace, ctx).await,
        atoll_crds::DeletionPolicy::Retain => {
            if existing.is_some() {
                release_data(tenant, &namespace, ctx).await?;
            }
            Ok(Action::await_change())
        }
    }
}

/// The Tenant's namespace, if it exists and is the Tenant's own. Only a
/// namespace the operator labelled for this Tenant is deleted or kept for
/// it: one it was refused (NamespaceConflict) is not its own.
async fn own_namespace(
    name: &str,
    namespace: &str,
    ctx: &Context,
) -> Result<Option<Namespace>, Error> {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    Ok(namespaces
        .get_opt(namespace)
        .await
        .map_err(Error::Cleanup)?
        .filter(|ns| {
            let own = claims::check_namespace(
                name,
                namespace,
                Some(ns.labels()),
                &ctx.operator_namespace,
            );
            if let Err(refusal) = &own {
                tracing::warn!(tenant = %name, %refusal, "leaving the namespace alone");
            }
            own.is_ok()
        }))
}

/// deletionPolicy Delete: drops an External database, then deletes the
/// namespace and waits until it is gone.
async fn delete_data(
    tenant: &Tenant,
    existing: Option<Namespace>,
    namespace: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    if let (DatabaseMode::External, Some(external)) =
        (tenant.spec.database.mode, &tenant.spec.database.external)
    {
        database::drop(&tenant.name_any(), &external.admin_secret_ref, ctx)
            .await
            .map_err(Error::ExternalDatabase)?;
    }
    match existing {
        None => Ok(Action::await_change()),
        Some(ns) => {
            if ns.metadata.deletion_timestamp.is_none() {
                Api::<Namespace>::all(ctx.client.clone())
                    .delete(namespace, &DeleteParams::foreground())
                    .await
                    .map_err(Error::Cleanup)?;
            }
            Err(Error::NamespaceTerminating(namespace.to_owned()))
        }
    }
}

/// deletionPolicy Retain: labels the namespace and the credentials as kept
/// and detaches them from the Tenant.
///
/// Under Retain the namespace and the credentials never had the Tenant as
/// owner (see `TenantContext::data_owner`), so the garbage collector keeps
/// them even if a reconcile that started before the deletion applies them
/// once more; the volume has no owner (the StatefulSet retains it);
/// everything else goes with the Tenant. The patch labels what was kept,
/// and detaches it in case the policy was Delete when it was created.
async fn release_data(tenant: &Tenant, namespace: &str, ctx: &Context) -> Result<(), Error> {
    let release = serde_json::json!({
        "metadata": {
            "ownerReferences": null,
            "labels": {RETAINED_LABEL: "true"},
            "annotations": {RETAINED_FROM_ANNOTATION: tenant.metadata.uid},
        }
    });
    let params = PatchParams::default();
    Api::<Namespace>::all(ctx.client.clone())
        .patch(namespace, &params, &Patch::Merge(&release))
        .await
        .map_err(Error::Cleanup)?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let owned = secrets
        .get_opt(DATABASE_SECRET)
        .await
        .map_err(Error::Cleanup)?
        .is_some_and(|secret| !secret.owner_references().is_empty());
    if owned {
        let detach = serde_json::json!({"metadata": {"ownerReferences": null}});
        secrets
            .patch(DATABASE_SECRET, &params, &Patch::Merge(&detach))
            .await
            .map_err(Error::Cleanup)?;
    }
    Ok(())
}
