//! An External database's dump and restore-dump pods and their policy
//! (#19): what they run, that credentials reach them only as Secret files
//! (the database URL as a secretKeyRef, as for the instance), and that
//! they reach only the shared server and the store.

use super::*;
use crate::restore::Resolved;
use atoll_crds::{BackupSpec, DatabaseMode, RestoreSpec, TenantSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

fn tenant(backup: bool, restore: bool) -> Tenant {
    let mut spec = TenantSpec {
        backup: backup.then(BackupSpec::default),
        restore: restore.then(|| RestoreSpec {
            from: "shop".into(),
            backup: "latest".into(),
            target_time: None,
            object_store: None,
        }),
        ..TenantSpec::default()
    };
    spec.database.mode = DatabaseMode::External;
    let mut tenant = Tenant::new("shop-copy", spec);
    tenant.metadata.uid = Some("6a1c2d3e-0000-4000-8000-000000000002".into());
    tenant
}

fn config() -> OperatorConfig {
    let mut config = OperatorConfig::default();
    config.backup.backup_image = "atoll/atoll-backup:1.2.3".into();
    config.postgres_image = "postgres:17".into();
    config
}

fn owner() -> OwnerReference {
    OwnerReference {
        api_version: "atoll.dev/v1alpha1".into(),
        kind: "TenantBackup".into(),
        name: "shop-before-migration".into(),
        uid: "7b000000-0000-4000-8000-000000000001".into(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

/// Everything a pod says that could carry a value: args, env values, and
/// whether any env comes from a Secret other than the database URL's.
fn assert_only_files(pod: &Pod) {
    let spec = pod.spec.as_ref().expect("spec");
    for container in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for var in container.env.iter().flatten() {
            assert!(
                var.value.is_none(),
                "{} sets {} by value",
                container.name,
                var.name
            );
            let secret = var
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            assert_eq!(
                secret.map(|s| (s.name.as_str(), s.key.as_str())),
                Some((DATABASE_SECRET, "url")),
                "{}",
                var.name
            );
        }
    }
    assert_eq!(spec.automount_service_account_token, Some(false));
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let security = spec.security_context.as_ref().expect("pod security");
    assert_eq!(security.run_as_non_root, Some(true));
}

#[test]
fn a_dump_pod_runs_the_installed_binary_in_the_postgres_image() {
    let config = config();
    let tenant = tenant(true, false);
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    let pod = dump_pod(&ctx, &owner(), "20261207T030000Z");
    assert_eq!(
        pod.metadata.name.as_deref(),
        Some("dump-shop-before-migration")
    );
    assert_eq!(pod.metadata.namespace.as_deref(), Some("atoll-shop-copy"));
    assert_eq!(pod.metadata.owner_references, Some(vec![owner()]));
    let labels = pod.metadata.labels.clone().expect("labels");
    assert_eq!(labels[COMPONENT_LABEL], DUMP_COMPONENT);
    assert_eq!(labels[TENANT_BACKUP_LABEL], "shop-before-migration");
    let spec = pod.spec.clone().expect("spec");
    let install = &spec.init_containers.as_ref().expect("init")[0];
    assert_eq!(install.name, INSTALL_BACKUP);
    assert_eq!(install.image.as_deref(), Some("atoll/atoll-backup:1.2.3"));
    let dump = &spec.containers[0];
    assert_eq!(dump.image.as_deref(), Some("postgres:17"));
    assert_eq!(
        dump.command.clone().expect("command"),
        [
            BACKUP_BINARY,
            "dump",
            "--config",
            BACKUP_CONFIG_DIR,
            "--name",
            "shop-before-migration",
            "--id",
            "20261207T030000Z"
        ]
    );
    assert_eq!(
        dump.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let volumes = spec.volumes.clone().expect("volumes");
    let secret = volumes
        .iter()
        .find_map(|v| v.secret.clone())
        .expect("a Secret volume");
    assert_eq!(
        secret.secret_name.as_deref(),
        Some(BACKUP_OBJECT_STORE_SECRET)
    );
    assert_only_files(&pod);
    let long = "x".repeat(300);
    assert!(dump_pod_name(&long).len() <= 253);
}

#[test]
fn a_restore_dump_pod_restores_the_resolved_dump_with_the_source_stores_secret() {
    let config = config();
    let tenant = tenant(false, true);
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    let resolved = Resolved {
        source_uid: "5e1d7a3c-0c2b-4d8e-9a41-7f3b2c1d0e9a".into(),
        backup_id: "20261207T030000Z".into(),
        target_time: Some("2026-12-07T10:00:00Z".parse().expect("time")),
    };
    let pod = restore_dump_pod(&ctx, &resolved);
    assert_eq!(pod.metadata.name.as_deref(), Some(RESTORE_DUMP_POD));
    let command = pod.spec.as_ref().expect("spec").containers[0]
        .command
        .clone()
        .expect("command");
    assert_eq!(command, restore_dump_command(&resolved));
    assert_eq!(&command[1..3], ["restore-dump", "--config"]);
    assert!(command.ends_with(&[
        "--target-time".to_owned(),
        "2026-12-07T10:00:00Z".to_owned()
    ]));
    let volumes = pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .expect("volumes");
    assert!(volumes.iter().any(|v| {
        v.secret.as_ref().and_then(|s| s.secret_name.as_deref()) == Some(RESTORE_SECRET)
    }));
    assert_only_files(&pod);
}

#[test]
fn dump_pods_reach_the_shared_server_and_the_store_only() {
    let config = config();
    let with = tenant(true, false);
    let ctx = TenantContext::new(&with, &config).expect("context");
    let credentials = DatabaseCredentials::dedicated(&ctx, "pw".into());
    let built = children(&ctx, &credentials);
    let policy = built
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(DUMP_NETWORK_POLICY))
        .expect("the dump policy");
    let spec = policy.spec.clone().expect("spec");
    assert_eq!(
        spec.pod_selector
            .and_then(|s| s.match_labels)
            .expect("selector")[COMPONENT_LABEL],
        DUMP_COMPONENT
    );
    assert_eq!(
        spec.policy_types,
        Some(vec!["Ingress".into(), "Egress".into()])
    );
    assert_eq!(spec.ingress, None, "nothing reaches them");
    let egress = spec.egress.expect("egress");
    let ports: Vec<_> = egress
        .iter()
        .map(|r| r.ports.as_ref().map(|p| p.len()))
        .collect();
    assert_eq!(ports, [Some(1), None], "the server's port, then the store");

    let without = tenant(false, false);
    let ctx = TenantContext::new(&without, &config).expect("context");
    assert!(
        !children(&ctx, &credentials)
            .network_policies
            .iter()
            .any(|p| p.metadata.name.as_deref() == Some(DUMP_NETWORK_POLICY))
    );
}
