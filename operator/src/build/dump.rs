//! Backups and restores of an External database (#19): there is no WAL of
//! the tenant's own on a shared server, so its backups are logical dumps.
//! A short-lived pod in the tenant's namespace runs `atoll-backup dump`
//! (for a TenantBackup) or `atoll-backup restore-dump` (for a Tenant
//! created with `spec.restore`) in the PostgreSQL image (for `pg_dump`,
//! `pg_restore` and `psql`), the binary copied in by the `install-backup`
//! init container exactly as into a Dedicated database pod.
//!
//! The database URL comes from the tenant's `database-credentials` Secret
//! (the one its instance uses: it owns every object of its database), the
//! store's settings and credentials only as files of a Secret volume:
//! never an environment variable or an argument. The pods reach the shared
//! server's port and the object store only ([`dump_network_policy`]).

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, Pod, PodSpec, ResourceRequirements, SecretKeySelector,
    SecretVolumeSource, Volume,
};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyEgressRule};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::backup::{
    BACKUP_BIN_DIR, BACKUP_BINARY, BACKUP_CONFIG_DIR, BACKUP_OBJECT_STORE_SECRET, BIN_VOLUME,
    amounts, install_container, read_only,
};
use super::database::{DATABASE_SECRET, POSTGRES_UID, empty_dir, mount};
use super::network::{self, DUMP_NETWORK_POLICY};
use super::restore::{RESTORE_CONFIG_DIR, RESTORE_SECRET};
use super::{TenantContext, restricted_container, restricted_pod};
use crate::restore::Resolved;

/// The component label of dump and restore-dump pods (what
/// [`DUMP_NETWORK_POLICY`] selects).
pub const DUMP_COMPONENT: &str = "dump";
/// The label naming the TenantBackup a dump pod works for.
pub const TENANT_BACKUP_LABEL: &str = "atoll.dev/tenant-backup";
/// The container of a dump pod.
pub const DUMP_CONTAINER: &str = "dump";
/// The restore pod of a Tenant restored from dumps (one per Tenant).
pub const RESTORE_DUMP_POD: &str = "restore-dump";
/// The longest pod name.
const NAME_MAX: usize = 253;
const CONFIG_VOLUME: &str = "store-config";
const TMP_VOLUME: &str = "tmp";

/// Whether the tenant runs dump or restore-dump pods: an External
/// database backed up or restored.
pub fn dumps_wanted(ctx: &TenantContext<'_>) -> bool {
    !ctx.dedicated_database()
        && (ctx.tenant.spec.restore.is_some()
            || ctx.tenant.spec.backup.as_ref().is_some_and(|b| b.enabled))
}

/// The dump pod of the TenantBackup `backup`: `dump-<name>`.
pub fn dump_pod_name(backup: &str) -> String {
    let name: String = format!("dump-{backup}").chars().take(NAME_MAX).collect();
    name.trim_end_matches(['-', '.']).to_owned()
}

/// The pod taking dump `id` for the TenantBackup `backup` (owned by it,
/// so it goes with it; the controller deletes it once it has ended).
pub fn dump_pod(ctx: &TenantContext<'_>, backup: &OwnerReference, id: &str) -> Pod {
    let command = [
        BACKUP_BINARY,
        "dump",
        "--config",
        BACKUP_CONFIG_DIR,
        "--name",
        &backup.name,
        "--id",
        id,
    ];
    let mut meta = ctx.meta(&dump_pod_name(&backup.name), Some(DUMP_COMPONENT));
    meta.owner_references = Some(vec![backup.clone()]);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(TENANT_BACKUP_LABEL.to_owned(), backup.name.clone());
    tool_pod(
        ctx,
        meta,
        command.map(str::to_owned).to_vec(),
        (BACKUP_OBJECT_STORE_SECRET, BACKUP_CONFIG_DIR),
    )
}

/// `atoll-backup restore-dump ...` for `resolved`. Names no secret.
pub fn restore_dump_command(resolved: &Resolved) -> Vec<String> {
    super::restore::restore_verb("restore-dump", resolved)
}

/// The pod restoring the source's dump into the new tenant's empty
/// database (owned by the Tenant; the reconciler deletes it once the
/// restore has ended). The source store's Secret (`restore-object-store`)
/// has the NEW tenant's uid, so `restore.json` goes under it.
pub fn restore_dump_pod(ctx: &TenantContext<'_>, resolved: &Resolved) -> Pod {
    tool_pod(
        ctx,
        ctx.meta(RESTORE_DUMP_POD, Some(DUMP_COMPONENT)),
        restore_dump_command(resolved),
        (RESTORE_SECRET, RESTORE_CONFIG_DIR),
    )
}

/// A run-once pod: `install-backup`, then `command` in the PostgreSQL
/// image with `DATABASE_URL` and the Secret `config` mounted as files.
fn tool_pod(
    ctx: &TenantContext<'_>,
    metadata: ObjectMeta,
    command: Vec<String>,
    (secret, dir): (&str, &str),
) -> Pod {
    let database_url = EnvVar {
        name: atoll_backup::dump::DATABASE_URL.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: DATABASE_SECRET.to_owned(),
                key: "url".to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    };
    let container = Container {
        name: DUMP_CONTAINER.to_owned(),
        image: Some(ctx.config.postgres_image.clone()),
        command: Some(command),
        env: Some(vec![database_url]),
        resources: Some(ResourceRequirements {
            requests: amounts("50m", "64Mi"),
            limits: amounts("1", "512Mi"),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted_container(true)),
        // A failure's last lines (already redacted by atoll-backup) become
        // the termination message the TenantBackup reports.
        termination_message_policy: Some("FallbackToLogsOnError".to_owned()),
        volume_mounts: Some(vec![
            read_only(BIN_VOLUME, BACKUP_BIN_DIR),
            read_only(CONFIG_VOLUME, dir),
            mount(TMP_VOLUME, "/tmp"),
        ]),
        ..Container::default()
    };
    Pod {
        metadata,
        spec: Some(PodSpec {
            restart_policy: Some("Never".to_owned()),
            automount_service_account_token: Some(false),
            enable_service_links: Some(false),
            security_context: Some(restricted_pod(POSTGRES_UID)),
            init_containers: Some(vec![install_container(&ctx.config.backup.backup_image)]),
            containers: vec![container],
            volumes: Some(vec![
                empty_dir(BIN_VOLUME),
                empty_dir(TMP_VOLUME),
                Volume {
                    name: CONFIG_VOLUME.to_owned(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret.to_owned()),
                        default_mode: Some(0o440),
                        optional: Some(false),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
            ]),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Dump and restore-dump pods reach the shared server's port (it may sit
/// anywhere, as for the instance) and the object store (outside the
/// cluster minus the blocked ranges, or the in-cluster store); nothing
/// reaches them.
pub fn dump_network_policy(ctx: &TenantContext<'_>) -> NetworkPolicy {
    let mut egress: Vec<NetworkPolicyEgressRule> =
        vec![network::shared_server(), network::outside_the_cluster(ctx)];
    egress.extend(network::in_cluster_store(ctx));
    network::policy(
        ctx,
        DUMP_NETWORK_POLICY,
        network::selector(ctx.selector(DUMP_COMPONENT)),
        Some(vec![]),
        Some(egress),
    )
}
