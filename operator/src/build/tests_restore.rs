//! The restore's pod changes: the init container's place, command and
//! mounts, the Secret (credentials as files only), what each phase holds.

use super::super::{BackupSetup, DatabaseCredentials, children, children_with_backup};
use super::*;
use crate::config::OperatorConfig;
use crate::restore::{Resolved, RestoreView, reasons};
use atoll_backup::restore::RestoreOutcome;
use atoll_crds::{BackupSpec, RestoreSpec, Tenant, TenantSpec};
use k8s_openapi::api::core::v1::PodSpec;

const SOURCE: &str = "5e1d7a3c-0c2b-4d8e-9a41-7f3b2c1d0e9a";
const SECRET_KEY: &str = "very-secret-access-key";

fn tenant(backup: Option<BackupSpec>) -> Tenant {
    let mut tenant = Tenant::new(
        "copy",
        TenantSpec {
            backup,
            restore: Some(RestoreSpec {
                from: "acme".into(),
                backup: "latest".into(),
                target_time: Some("2026-12-07T10:30:00Z".into()),
                object_store: None,
            }),
            ..TenantSpec::default()
        },
    );
    tenant.metadata.uid = Some("6a1c2d3e-0000-4000-8000-000000000002".into());
    tenant
}

fn config() -> OperatorConfig {
    let mut config = OperatorConfig::default();
    config.backup.backup_endpoint = Some("http://127.0.0.1:9000".into());
    config.backup.backup_bucket = Some("platform-backups".into());
    config.backup.backup_image = "atoll/atoll-backup:1.2.3".into();
    config
}

fn resolved() -> Resolved {
    Resolved {
        source_uid: SOURCE.into(),
        backup_id: "20261207T100000Z".into(),
        target_time: Some("2026-12-07T10:30:00Z".parse().expect("time")),
    }
}

fn credentials() -> ObjectStoreCredentials {
    ObjectStoreCredentials {
        access_key_id: "id".into(),
        secret_access_key: SECRET_KEY.into(),
    }
}

/// Children of `tenant` in the state `view`, with the Secret while it runs.
fn build(tenant: &Tenant, config: &OperatorConfig, view: &RestoreView) -> Children {
    let ctx = TenantContext::new(tenant, config).expect("context");
    let db = DatabaseCredentials::dedicated(&ctx, "pw".into());
    let mut children = children(&ctx, &db);
    let store = crate::restore::store::restore_store(&ctx).expect("store");
    let secret = view
        .needs_store()
        .then(|| restore_secret(&ctx, &store, Some(&credentials())));
    apply_restore(&ctx, &mut children, view, secret);
    children
}

fn pod(children: &Children) -> PodSpec {
    children
        .database_stateful_set
        .clone()
        .and_then(|s| s.spec)
        .and_then(|s| s.template.spec)
        .expect("pod")
}

fn replicas(children: &Children) -> (Option<i32>, Option<i32>) {
    (
        children
            .database_stateful_set
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .and_then(|s| s.replicas),
        children
            .instance_deployment
            .spec
            .as_ref()
            .and_then(|s| s.replicas),
    )
}

#[test]
fn the_restore_runs_between_install_and_upgrade_with_the_secret_as_files() {
    let tenant = tenant(None);
    let children = build(&tenant, &config(), &RestoreView::running(&resolved()));
    let pod = pod(&children);
    let init: Vec<&str> = pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(init, [INSTALL_BACKUP, RESTORE_CONTAINER, "upgrade-roles"]);
    let restore = &pod.init_containers.as_ref().expect("init")[1];
    let command = restore.command.clone().expect("command").join(" ");
    assert_eq!(
        command,
        format!(
            "/atoll/bin/atoll-backup restore --config /etc/atoll-restore --source-uid {SOURCE} --backup 20261207T100000Z --target-time 2026-12-07T10:30:00Z --no-archive --drop atoll-roles-layout --wipe /var/lib/postgresql/data/pgdata"
        )
    );
    assert_eq!(restore.image, pod.containers[0].image, "the server's image");
    assert!(restore.env.is_none(), "no credentials in the environment");
    let volume = pod
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "restore-config")
        .and_then(|v| v.secret.clone())
        .expect("secret volume");
    assert_eq!(volume.secret_name.as_deref(), Some(RESTORE_SECRET));
    assert_eq!(volume.optional, Some(true), "gone once restored");
    assert!(pod.volumes.iter().flatten().any(|v| v.name == "atoll-bin"));
    // Only the restore mounts the source store's Secret.
    for c in pod
        .containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
    {
        let mounted = c
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "restore-config");
        assert_eq!(mounted, c.name == RESTORE_CONTAINER, "{}", c.name);
    }
    assert_eq!(replicas(&children), (Some(1), Some(0)), "instance held");
    let secret = children.restore_secret.expect("secret");
    let data = secret.data.expect("data");
    let config: serde_json::Value =
        serde_json::from_slice(&data[BACKUP_CONFIG_FILE].0).expect("json");
    assert_eq!(config["tenantUid"], "6a1c2d3e-0000-4000-8000-000000000002");
    assert!(!String::from_utf8_lossy(&data[BACKUP_CONFIG_FILE].0).contains(SECRET_KEY));
    assert_eq!(data["secretAccessKey"].0, SECRET_KEY.as_bytes());
}

#[test]
fn a_backed_up_tenant_archives_its_new_timeline_into_the_same_store() {
    let tenant = tenant(Some(BackupSpec::default()));
    let config = config();
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    let command = restore_command(&ctx, &resolved());
    assert!(!command.contains(&"--no-archive".to_owned()), "{command:?}");
    let db = DatabaseCredentials::dedicated(&ctx, "pw".into());
    let store = backup_store(&ctx).expect("store");
    let setup = BackupSetup {
        store,
        credentials: None,
        agent_token: "0".repeat(64),
    };
    let mut children = children_with_backup(&ctx, &db, Some(&setup));
    apply_restore(
        &ctx,
        &mut children,
        &RestoreView::running(&resolved()),
        None,
    );
    let init: Vec<String> = pod(&children)
        .init_containers
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(init, [INSTALL_BACKUP, RESTORE_CONTAINER, "upgrade-roles"]);
}

#[test]
fn each_phase_holds_what_must_not_run_and_keeps_the_template() {
    let tenant = tenant(None);
    let config = config();
    let pending = RestoreView::pending(reasons::NO_BACKUP, "none".into(), None);
    let children = build(&tenant, &config, &pending);
    assert_eq!(replicas(&children), (Some(0), Some(0)));
    assert!(children.restore_secret.is_none());
    assert!(
        !pod(&children)
            .init_containers
            .iter()
            .flatten()
            .any(|c| c.name == RESTORE_CONTAINER)
    );

    let running = build(&tenant, &config, &RestoreView::running(&resolved()));
    let outcome = |ok| RestoreOutcome {
        source_uid: SOURCE.into(),
        backup_id: Some("20261207T100000Z".into()),
        target_time: None,
        reached_time: None,
        ok,
        message: "m".into(),
    };
    let done = build(
        &tenant,
        &config,
        &RestoreView::finished(&resolved(), &outcome(true)),
    );
    assert_eq!(replicas(&done), (Some(1), Some(1)));
    assert!(done.restore_secret.is_none(), "credentials removed");
    assert_eq!(
        pod(&done),
        pod(&running),
        "no restart of the database when it completes"
    );
    let failed = build(
        &tenant,
        &config,
        &RestoreView::finished(&resolved(), &outcome(false)),
    );
    assert_eq!(replicas(&failed), (Some(0), Some(0)));
}

#[test]
fn upgrade_skips_the_roles_only_with_the_marker_the_restore_drops() {
    let script = include_str!("scripts/upgrade.sh");
    assert!(script.contains(&format!("$PGDATA/{ROLES_MARKER}")));
    let roles = include_str!("scripts/10-atoll-roles.sh");
    assert!(roles.contains(&format!("$PGDATA/{ROLES_MARKER}")));
    assert!(atoll_backup::restore::parse_drop(ROLES_MARKER).is_ok());
}
