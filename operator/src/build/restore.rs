//! The children of a Tenant restored from another's backups (#19,
//! `spec.restore`; the decisions are `crate::restore`'s): the Secret
//! `restore-object-store` (the source's store: `config.json` under the NEW
//! tenant's uid, and credentials as files), the database pod's `restore`
//! init container (between `install-backup` and `upgrade-roles`), and the
//! replicas held at 0 while the data is not there.
//!
//! The init container runs `atoll-backup restore` in the PostgreSQL image
//! as the server's user; it does nothing once PGDATA holds the marker of a
//! finished restore, so it stays in the pod template (no restart when the
//! restore completes) while its Secret, needed only until then, is removed
//! (the volume is optional). It drops the source's roles marker, so
//! `upgrade-roles` gives the instance's role the NEW Tenant's password.

use k8s_openapi::api::core::v1::{Container, Secret, SecretVolumeSource, Volume, VolumeMount};

use super::backup::{BIN_VOLUME, install_container};
use super::database::{DATA_DIR, PGDATA, mount};
use super::{
    BACKUP_BINARY, BACKUP_CONFIG_FILE, BackupStore, Children, INSTALL_BACKUP,
    ObjectStoreCredentials, TenantContext, backup_config_json, backup_store, backup_wanted,
    restricted_container,
};
use crate::restore::{Resolved, RestoreView, hold_database, hold_instance};
use atoll_crds::{S3_ACCESS_KEY_ID_KEY, S3_SECRET_ACCESS_KEY_KEY};

/// The database pod's init container that restores.
pub const RESTORE_CONTAINER: &str = "restore";
/// The Secret with the source store's settings and credentials.
pub const RESTORE_SECRET: &str = "restore-object-store";
/// Where [`RESTORE_SECRET`] is mounted in the init container.
pub const RESTORE_CONFIG_DIR: &str = "/etc/atoll-restore";
/// The marker `upgrade.sh` skips the roles script for; a restore drops
/// the source's.
pub const ROLES_MARKER: &str = "atoll-roles-layout";
/// The init container the restore goes before.
const UPGRADE_CONTAINER: &str = "upgrade-roles";
const RESTORE_VOLUME: &str = "restore-config";

/// The source store's settings (as the NEW tenant: `restore.json` goes
/// under its uid) and credentials, as files for `--config`.
pub fn restore_secret(
    ctx: &TenantContext<'_>,
    store: &BackupStore,
    credentials: Option<&ObjectStoreCredentials>,
) -> Secret {
    let bytes = |s: &str| k8s_openapi::ByteString(s.as_bytes().to_vec());
    let mut data = std::collections::BTreeMap::from([(
        BACKUP_CONFIG_FILE.to_owned(),
        bytes(&backup_config_json(ctx, store)),
    )]);
    if let Some(credentials) = credentials {
        data.insert(
            S3_ACCESS_KEY_ID_KEY.to_owned(),
            bytes(&credentials.access_key_id),
        );
        data.insert(
            S3_SECRET_ACCESS_KEY_KEY.to_owned(),
            bytes(&credentials.secret_access_key),
        );
    }
    Secret {
        metadata: ctx.meta(RESTORE_SECRET, Some(super::DATABASE)),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// Whether the restore archives the new timeline's first files (its
/// history) into the new tenant's prefix: only when the new tenant is
/// backed up into the same store as the source's backups.
fn archives(ctx: &TenantContext<'_>) -> bool {
    backup_wanted(ctx)
        && matches!(
            (backup_store(ctx), crate::restore::store::restore_store(ctx)),
            (Ok(a), Ok(b)) if a == b
        )
}

/// `atoll-backup restore ...` for `resolved`. Names no secret.
pub fn restore_command(ctx: &TenantContext<'_>, resolved: &Resolved) -> Vec<String> {
    let mut command = restore_verb("restore", resolved);
    if !archives(ctx) {
        command.push("--no-archive".to_owned());
    }
    command.extend(
        ["--drop", ROLES_MARKER, "--wipe", PGDATA]
            .map(str::to_owned)
            .to_vec(),
    );
    command
}

/// `atoll-backup <verb> --config ... --source-uid ... --backup ...
/// [--target-time ...]` for `resolved`: the arguments `restore` and
/// `restore-dump` share. Names no secret.
pub(super) fn restore_verb(verb: &str, resolved: &Resolved) -> Vec<String> {
    let mut command: Vec<String> = [
        BACKUP_BINARY,
        verb,
        "--config",
        RESTORE_CONFIG_DIR,
        "--source-uid",
        &resolved.source_uid,
        "--backup",
        &resolved.backup_id,
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(target) = resolved.target_time {
        command.extend(["--target-time".to_owned(), target.to_string()]);
    }
    command
}

/// The init container: the server's image, resources and user.
fn restore_container(server: &Container, command: Vec<String>) -> Container {
    let read_only = |name: &str, path: &str| VolumeMount {
        read_only: Some(true),
        ..mount(name, path)
    };
    Container {
        name: RESTORE_CONTAINER.to_owned(),
        image: server.image.clone(),
        command: Some(command),
        resources: server.resources.clone(),
        security_context: Some(restricted_container(true)),
        // A failure before `restore.json` is written reaches the operator
        // as the end of the log (the restore writes its errors redacted).
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(vec![
            mount("data", DATA_DIR),
            mount("tmp", "/tmp"),
            read_only(BIN_VOLUME, super::backup::BACKUP_BIN_DIR),
            read_only(RESTORE_VOLUME, RESTORE_CONFIG_DIR),
        ]),
        ..Container::default()
    }
}

/// Adds the restore to the database pod: the binary (unless backups put
/// it there already), the Secret volume (optional: gone once restored),
/// and the init container before `upgrade-roles`.
fn add_restore(
    ctx: &TenantContext<'_>,
    pod: &mut k8s_openapi::api::core::v1::PodSpec,
    resolved: &Resolved,
) {
    let Some(server) = pod.containers.first() else {
        return;
    };
    let container = restore_container(server, restore_command(ctx, resolved));
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == BIN_VOLUME) {
        volumes.push(super::database::empty_dir(BIN_VOLUME));
    }
    volumes.push(Volume {
        name: RESTORE_VOLUME.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(RESTORE_SECRET.to_owned()),
            default_mode: Some(0o440),
            optional: Some(true),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    });
    let init = pod.init_containers.get_or_insert_with(Vec::new);
    if !init.iter().any(|c| c.name == INSTALL_BACKUP) {
        init.insert(0, install_container(&ctx.config.backup.backup_image));
    }
    let at = init
        .iter()
        .position(|c| c.name == UPGRADE_CONTAINER)
        .unwrap_or(init.len());
    init.insert(at, container);
}

/// Shapes `children` for a restore in the state `view`, with `secret`
/// when the restore may run.
pub fn apply_restore(
    ctx: &TenantContext<'_>,
    children: &mut Children,
    view: &RestoreView,
    secret: Option<Secret>,
) {
    if hold_instance(view)
        && let Some(spec) = children.instance_deployment.spec.as_mut()
    {
        spec.replicas = Some(0);
    }
    // An External database is restored by a pod using the same Secret.
    children.restore_secret = secret;
    let Some(set) = children.database_stateful_set.as_mut() else {
        return;
    };
    let Some(spec) = set.spec.as_mut() else {
        return;
    };
    if hold_database(view) {
        spec.replicas = Some(0);
    }
    if let (Some(resolved), Some(pod)) = (view.resolved(), spec.template.spec.as_mut()) {
        add_restore(ctx, pod, &resolved);
    }
}

#[cfg(test)]
#[path = "tests_restore.rs"]
mod tests;
