//! Continuous backup of a Dedicated database (#19): the two Secrets of a
//! backed-up tenant (`backup-object-store`: the store's settings and
//! credentials as files for `atoll-backup`; `backup-agent`: the sidecar's
//! bearer token) and what the database pod gains (the binary copied in by
//! an init container, PostgreSQL's archive settings, the `backup-agent`
//! sidecar). Credentials reach the pod only as files of a Secret volume,
//! mounted only in the containers that use them: never an environment
//! variable, never an argument.

use std::collections::BTreeMap;
use std::fmt;

use atoll_crds::{S3_ACCESS_KEY_ID_KEY, S3_SECRET_ACCESS_KEY_KEY};
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, EnvVarSource, HTTPGetAction, ObjectFieldSelector, PodSpec,
    Probe, ResourceRequirements, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::database::{DATA_DIR, DATABASE, PGDATA, database_stateful_set, empty_dir, mount};
use super::{TenantContext, restricted_container};

/// The Secret with the store's settings (`config.json`) and credentials.
pub const BACKUP_OBJECT_STORE_SECRET: &str = "backup-object-store";
/// The Secret with the agent's bearer token (key [`BACKUP_AGENT_TOKEN_KEY`]).
pub const BACKUP_AGENT_SECRET: &str = "backup-agent";
/// Key of the token in [`BACKUP_AGENT_SECRET`].
pub const BACKUP_AGENT_TOKEN_KEY: &str = "token";
/// The agent's port on the database pod (named `backup-agent`).
pub const BACKUP_AGENT_PORT: i32 = 9187;
/// Name of the agent's container and port.
pub const BACKUP_AGENT: &str = "backup-agent";
/// The settings file in [`BACKUP_OBJECT_STORE_SECRET`].
pub const BACKUP_CONFIG_FILE: &str = "config.json";
/// Where the store's Secret is mounted (`atoll-backup --config`).
pub const BACKUP_CONFIG_DIR: &str = "/etc/atoll-backup";
/// Where the token's Secret is mounted in the agent.
pub const BACKUP_AGENT_TOKEN_DIR: &str = "/etc/atoll-backup-agent";
/// The emptyDir where `wal-push` leaves its last result for the agent.
pub const BACKUP_STATUS_DIR: &str = "/var/run/atoll-backup";
/// The emptyDir the init container copies the binary into.
pub const BACKUP_BIN_DIR: &str = "/atoll/bin";
/// The binary as the pod's containers run it.
pub const BACKUP_BINARY: &str = "/atoll/bin/atoll-backup";
/// The binary in the backup image (our images keep their binary in
/// `/usr/local/bin`).
pub const BACKUP_IMAGE_BINARY: &str = "/usr/local/bin/atoll-backup";
/// The init container that copies the binary.
pub const INSTALL_BACKUP: &str = "install-backup";
/// Seconds after which PostgreSQL switches to a new WAL segment when
/// there was activity: the most a tenant can lose of committed work.
pub const ARCHIVE_TIMEOUT_SECONDS: u32 = 60;

pub(super) const BIN_VOLUME: &str = "atoll-bin";
const STATUS_VOLUME: &str = "backup-status";
const CONFIG_VOLUME: &str = "backup-config";
const TOKEN_VOLUME: &str = "backup-agent-token";

/// An access key pair for an object store. `Debug` shows neither value.
#[derive(Clone, PartialEq, Eq)]
pub struct ObjectStoreCredentials {
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
}

impl fmt::Debug for ObjectStoreCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ObjectStoreCredentials { <redacted> }")
    }
}

/// Where a tenant's backups go (no secrets).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupStore {
    /// `http(s)://host[:port]`.
    pub endpoint: String,
    /// The bucket.
    pub bucket: String,
    /// The region.
    pub region: String,
    /// Path-style addressing.
    pub path_style: bool,
    /// Key prefix in the bucket.
    pub prefix: Option<String>,
}

/// Where a tenant's store credentials come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CredentialsSource {
    /// The platform's Secret in the operator's namespace (`None`: anonymous).
    Platform(Option<String>),
    /// The Tenant's own Secret in its namespace
    /// (`spec.backup.objectStore.credentialsSecretRef`).
    Tenant(String),
}

/// Everything a backed-up tenant's objects carry that the reconciler reads
/// or generates: the store, its credentials and the agent's token. `Debug`
/// shows neither the credentials nor the token.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupSetup {
    /// The store.
    pub store: BackupStore,
    /// Its credentials (`None`: anonymous requests).
    pub credentials: Option<ObjectStoreCredentials>,
    /// The agent's bearer token (64 hex digits).
    pub agent_token: String,
}

impl fmt::Debug for BackupSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackupSetup")
            .field("store", &self.store)
            .field("credentials", &self.credentials)
            .field("agent_token", &"<redacted>")
            .finish()
    }
}

/// Whether the tenant's database is to be backed up: `spec.backup` present
/// and enabled (a Dedicated database by WAL archiving and base backups, an
/// External one by dumps).
pub fn backup_wanted(ctx: &TenantContext<'_>) -> bool {
    ctx.tenant
        .spec
        .backup
        .as_ref()
        .is_some_and(|backup| backup.enabled)
}

/// The store a backed-up tenant uses: its own (`spec.backup.objectStore`)
/// or the platform's; `Err` says why there is none.
pub fn backup_store(ctx: &TenantContext<'_>) -> Result<BackupStore, String> {
    let own = ctx.tenant.spec.backup.as_ref();
    store_named(
        ctx,
        own.and_then(|b| b.object_store.as_ref()),
        "spec.backup",
    )
}

/// `own` (a Tenant's `objectStore`, named by `field`) or else the
/// platform's store; `Err` says why there is none.
pub fn store_named(
    ctx: &TenantContext<'_>,
    own: Option<&atoll_crds::ObjectStoreSpec>,
    field: &str,
) -> Result<BackupStore, String> {
    if let Some(own) = own {
        return Ok(BackupStore {
            endpoint: own.endpoint.trim_end_matches('/').to_owned(),
            bucket: own.bucket.clone(),
            region: own.region.clone(),
            path_style: own.path_style,
            prefix: own.prefix.clone(),
        });
    }
    let config = &ctx.config.backup;
    let (endpoint, bucket) = config.platform_store().ok_or_else(|| {
        format!("{field} names no objectStore and the platform has none configured (chart values backup.objectStore.endpoint and backup.objectStore.bucket)")
    })?;
    Ok(BackupStore {
        endpoint: endpoint.trim_end_matches('/').to_owned(),
        bucket: bucket.to_owned(),
        region: config.backup_region.clone(),
        path_style: config.backup_path_style,
        prefix: config.backup_prefix.clone(),
    })
}

/// Where the tenant's store credentials come from.
pub fn credentials_source(ctx: &TenantContext<'_>) -> CredentialsSource {
    match ctx
        .tenant
        .spec
        .backup
        .as_ref()
        .and_then(|b| b.object_store.as_ref())
    {
        Some(own) => CredentialsSource::Tenant(own.credentials_secret_ref.name.clone()),
        None => CredentialsSource::Platform(ctx.config.backup.backup_credentials_secret.clone()),
    }
}

/// `config.json` as `atoll-backup` reads it (`Settings::load`).
pub fn backup_config_json(ctx: &TenantContext<'_>, store: &BackupStore) -> String {
    let mut config = serde_json::json!({
        "endpoint": store.endpoint,
        "bucket": store.bucket,
        "region": store.region,
        "pathStyle": store.path_style,
        "allowHttp": store.endpoint.starts_with("http://"),
        "tenantUid": ctx.owner.uid,
        "tenantName": ctx.name,
    });
    if let Some(prefix) = &store.prefix {
        config["prefix"] = serde_json::Value::String(prefix.clone());
    }
    config.to_string()
}

fn bytes(text: &str) -> ByteString {
    ByteString(text.as_bytes().to_vec())
}

/// The store's settings and credentials, as the files `atoll-backup`
/// reads from `--config`.
pub fn backup_object_store_secret(ctx: &TenantContext<'_>, setup: &BackupSetup) -> Secret {
    let mut data = BTreeMap::from([(
        BACKUP_CONFIG_FILE.to_owned(),
        bytes(&backup_config_json(ctx, &setup.store)),
    )]);
    if let Some(credentials) = &setup.credentials {
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
        metadata: ctx.meta(BACKUP_OBJECT_STORE_SECRET, Some(DATABASE)),
        type_: Some("Opaque".to_owned()),
        data: Some(data),
        ..Secret::default()
    }
}

/// The agent's bearer token.
pub fn backup_agent_secret(ctx: &TenantContext<'_>, setup: &BackupSetup) -> Secret {
    Secret {
        metadata: ctx.meta(BACKUP_AGENT_SECRET, Some(DATABASE)),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            BACKUP_AGENT_TOKEN_KEY.to_owned(),
            bytes(&setup.agent_token),
        )])),
        ..Secret::default()
    }
}

/// The database StatefulSet with continuous archiving and the agent.
pub fn backed_up_database_stateful_set(ctx: &TenantContext<'_>) -> StatefulSet {
    let mut set = database_stateful_set(ctx);
    if let Some(pod) = set
        .spec
        .as_mut()
        .and_then(|spec| spec.template.spec.as_mut())
    {
        add_backup(ctx, pod);
    }
    set
}

/// Adds the binary, the archive settings and the agent to the pod.
fn add_backup(ctx: &TenantContext<'_>, pod: &mut PodSpec) {
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    volumes.extend([
        empty_dir(BIN_VOLUME),
        empty_dir(STATUS_VOLUME),
        secret_volume(CONFIG_VOLUME, BACKUP_OBJECT_STORE_SECRET),
        secret_volume(TOKEN_VOLUME, BACKUP_AGENT_SECRET),
    ]);
    // First: upgrade-roles (and later a restore) may start the server,
    // whose archive_command runs the binary.
    pod.init_containers
        .get_or_insert_with(Vec::new)
        .insert(0, install_container(&ctx.config.backup.backup_image));
    let Some(server) = pod.containers.first_mut() else {
        return;
    };
    let image = server.image.clone().unwrap_or_default();
    server
        .args
        .get_or_insert_with(Vec::new)
        .extend(archive_args());
    server.volume_mounts.get_or_insert_with(Vec::new).extend([
        read_only(BIN_VOLUME, BACKUP_BIN_DIR),
        read_only(CONFIG_VOLUME, BACKUP_CONFIG_DIR),
        mount(STATUS_VOLUME, BACKUP_STATUS_DIR),
    ]);
    pod.containers.push(agent_container(image));
}

/// PostgreSQL's archive settings: every finished WAL segment (and one at
/// least every [`ARCHIVE_TIMEOUT_SECONDS`] with activity) goes to the
/// store through `atoll-backup wal-push`; the command names files only.
pub fn archive_args() -> Vec<String> {
    let command = format!(
        "archive_command={BACKUP_BINARY} wal-push --config {BACKUP_CONFIG_DIR} --status-dir {BACKUP_STATUS_DIR} %p"
    );
    [
        "-c",
        "archive_mode=on",
        "-c",
        &format!("archive_timeout={ARCHIVE_TIMEOUT_SECONDS}"),
        "-c",
        &command,
    ]
    .map(str::to_owned)
    .to_vec()
}

pub(super) fn read_only(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        read_only: Some(true),
        ..mount(name, path)
    }
}

/// A Secret volume readable by the pod's group only (fsGroup).
fn secret_volume(name: &str, secret: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            default_mode: Some(0o440),
            optional: Some(false),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

pub(super) fn amounts(cpu: &str, memory: &str) -> Option<BTreeMap<String, Quantity>> {
    Some(BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ]))
}

/// Copies the binary from the backup image into the `atoll-bin` emptyDir.
pub(super) fn install_container(image: &str) -> Container {
    Container {
        name: INSTALL_BACKUP.to_owned(),
        image: Some(image.to_owned()),
        command: Some(
            [BACKUP_IMAGE_BINARY, "install", BACKUP_BIN_DIR]
                .map(str::to_owned)
                .to_vec(),
        ),
        resources: Some(ResourceRequirements {
            requests: amounts("10m", "16Mi"),
            limits: amounts("100m", "64Mi"),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted_container(true)),
        volume_mounts: Some(vec![mount(BIN_VOLUME, BACKUP_BIN_DIR)]),
        ..Container::default()
    }
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

/// The sidecar: `atoll-backup agent` in the PostgreSQL image (for
/// `pg_basebackup` and `psql`), reaching the server over its Unix socket
/// as `postgres`, serving the operator on the pod's IP.
fn agent_container(postgres_image: String) -> Container {
    let command = [
        BACKUP_BINARY,
        "agent",
        "--config",
        BACKUP_CONFIG_DIR,
        "--listen",
        &format!("$(POD_IP):{BACKUP_AGENT_PORT}"),
        "--token-file",
        &format!("{BACKUP_AGENT_TOKEN_DIR}/{BACKUP_AGENT_TOKEN_KEY}"),
        "--status-dir",
        BACKUP_STATUS_DIR,
        "--pgdata",
        PGDATA,
    ];
    Container {
        name: BACKUP_AGENT.to_owned(),
        image: Some(postgres_image),
        command: Some(command.map(str::to_owned).to_vec()),
        env: Some(vec![
            EnvVar {
                name: "POD_IP".to_owned(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "status.podIP".to_owned(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
            env("PGHOST", "/var/run/postgresql"),
            env("PGUSER", "postgres"),
        ]),
        ports: Some(vec![ContainerPort {
            name: Some(BACKUP_AGENT.to_owned()),
            container_port: BACKUP_AGENT_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(Probe {
            http_get: Some(HTTPGetAction {
                path: Some("/healthz".to_owned()),
                port: IntOrString::String(BACKUP_AGENT.to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        }),
        resources: Some(ResourceRequirements {
            requests: amounts("10m", "32Mi"),
            limits: amounts("250m", "128Mi"),
            ..ResourceRequirements::default()
        }),
        security_context: Some(restricted_container(true)),
        volume_mounts: Some(vec![
            read_only("data", DATA_DIR),
            mount("run", "/var/run/postgresql"),
            mount("tmp", "/tmp"),
            read_only(BIN_VOLUME, BACKUP_BIN_DIR),
            read_only(CONFIG_VOLUME, BACKUP_CONFIG_DIR),
            read_only(TOKEN_VOLUME, BACKUP_AGENT_TOKEN_DIR),
            mount(STATUS_VOLUME, BACKUP_STATUS_DIR),
        ]),
        ..Container::default()
    }
}
