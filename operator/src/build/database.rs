//! The tenant's database: credentials Secret, and in Dedicated mode a
//! PostgreSQL StatefulSet with its volume and Service, and the ConfigMap of
//! scripts that give the instance a role owning its database and nothing
//! more (the superuser is `postgres`, whose password the instance never
//! sees).

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, ContainerPort, EmptyDirVolumeSource, EnvVar,
    EnvVarSource, ExecAction, KeyToPath, PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec,
    PodTemplateSpec, Probe, Secret, SecretKeySelector, Service, ServicePort, ServiceSpec, Volume,
    VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use atoll_crds::DedicatedDatabase;

use super::{TenantContext, quantity, resources, restricted_container, restricted_pod};

/// Name of the database's StatefulSet, Service and ServiceAccount, and its
/// component label.
pub const DATABASE: &str = "database";
/// PostgreSQL's port.
pub const DATABASE_PORT: i32 = 5432;
/// The Secret holding the database credentials and the instance's URL.
pub const DATABASE_SECRET: &str = "database-credentials";
/// Role the instance logs in as: it owns the database and nothing more.
pub const DATABASE_USER: &str = "atoll";
/// The superuser of a Dedicated database (`POSTGRES_USER`). It has no
/// password unless the Secret holds [`DATABASE_ADMIN_PASSWORD_KEY`]; it
/// logs in through the pod's Unix socket (`kubectl exec`).
pub const DATABASE_ADMIN_USER: &str = "postgres";
/// Key of the credentials Secret that may hold the superuser's password
/// (optional; never given to the instance).
pub const DATABASE_ADMIN_PASSWORD_KEY: &str = "admin-password";
/// The ConfigMap of the database's init and upgrade scripts.
pub const DATABASE_INIT: &str = "database-init";
/// The init script (run by the image on first initialisation, and by
/// [`DATABASE_UPGRADE_SCRIPT`] on every later start).
pub const DATABASE_ROLES_SCRIPT: &str = "10-atoll-roles.sh";
/// The init container's script: brings a database initialised by an
/// earlier layout (the instance's role as superuser) to this one.
pub const DATABASE_UPGRADE_SCRIPT: &str = "upgrade.sh";
/// Where the image looks for init scripts.
const INITDB_DIR: &str = "/docker-entrypoint-initdb.d";
/// Where the init container finds its scripts.
const SCRIPTS_DIR: &str = "/atoll-scripts";
/// Database the instance uses.
pub const DATABASE_NAME: &str = "atoll";
/// UID of the `postgres` user in the official image.
pub(super) const POSTGRES_UID: i64 = 999;
pub(super) const DATA_DIR: &str = "/var/lib/postgresql/data";
/// PGDATA of a Dedicated database (in the `data` volume).
pub(super) const PGDATA: &str = "/var/lib/postgresql/data/pgdata";

/// How the instance reaches its database. The password is generated once by
/// the reconciler (or read back from the existing Secret) and never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseCredentials {
    /// Role name.
    pub username: String,
    /// Role password.
    pub password: String,
    /// Database name.
    pub database: String,
    /// Host name (in-cluster Service name for Dedicated mode).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl fmt::Debug for DatabaseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatabaseCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("database", &self.database)
            .field("host", &self.host)
            .field("port", &self.port)
            .finish()
    }
}

impl DatabaseCredentials {
    /// Credentials of a Dedicated database with the given password.
    pub fn dedicated(ctx: &TenantContext<'_>, password: String) -> Self {
        Self {
            username: DATABASE_USER.to_owned(),
            password,
            database: DATABASE_NAME.to_owned(),
            host: format!("{DATABASE}.{}.svc", ctx.namespace),
            port: DATABASE_PORT as u16,
        }
    }

    /// The connection URL the instance is given.
    pub fn url(&self) -> String {
        format!(
            "postgres://{}:{}@{}:{}/{}",
            percent_encode(&self.username),
            percent_encode(&self.password),
            self.host,
            self.port,
            percent_encode(&self.database)
        )
    }
}

/// Percent-encodes everything but unreserved URL characters.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// The credentials Secret: what PostgreSQL is initialised with and the URL
/// the instance connects with.
pub fn database_secret(ctx: &TenantContext<'_>, credentials: &DatabaseCredentials) -> Secret {
    let bytes = |s: &str| ByteString(s.as_bytes().to_vec());
    Secret {
        metadata: ObjectMeta {
            owner_references: ctx.data_owner(),
            ..ctx.meta(DATABASE_SECRET, Some(DATABASE))
        },
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([
            ("username".to_owned(), bytes(&credentials.username)),
            ("password".to_owned(), bytes(&credentials.password)),
            ("database".to_owned(), bytes(&credentials.database)),
            ("url".to_owned(), bytes(&credentials.url())),
        ])),
        ..Secret::default()
    }
}

/// The Service in front of PostgreSQL.
pub fn database_service(ctx: &TenantContext<'_>) -> Service {
    Service {
        metadata: ctx.meta(DATABASE, Some(DATABASE)),
        spec: Some(ServiceSpec {
            selector: Some(ctx.selector(DATABASE)),
            ports: Some(vec![ServicePort {
                name: Some("postgres".to_owned()),
                port: DATABASE_PORT,
                target_port: Some(IntOrString::String("postgres".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

fn secret_env(name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: DATABASE_SECRET.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn pg_isready() -> Probe {
    Probe {
        exec: Some(ExecAction {
            command: Some(
                [
                    "pg_isready",
                    "--host=127.0.0.1",
                    "--port=5432",
                    "--username",
                    DATABASE_USER,
                    "--dbname",
                    DATABASE_NAME,
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
        }),
        period_seconds: Some(5),
        failure_threshold: Some(6),
        ..Probe::default()
    }
}

pub(super) fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

pub(super) fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

/// The scripts that set up the roles: the image runs the init script on
/// first initialisation, the init container the upgrade script at every
/// start (a no-op unless the database predates this layout).
pub fn database_init_config_map(ctx: &TenantContext<'_>) -> ConfigMap {
    ConfigMap {
        metadata: ctx.meta(DATABASE_INIT, Some(DATABASE)),
        data: Some(BTreeMap::from([
            (
                DATABASE_ROLES_SCRIPT.to_owned(),
                include_str!("scripts/10-atoll-roles.sh").to_owned(),
            ),
            (
                DATABASE_UPGRADE_SCRIPT.to_owned(),
                include_str!("scripts/upgrade.sh").to_owned(),
            ),
        ])),
        ..ConfigMap::default()
    }
}

fn config_map_volume(name: &str, only: Option<&str>) -> Volume {
    Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: DATABASE_INIT.to_owned(),
            items: only.map(|key| {
                vec![KeyToPath {
                    key: key.to_owned(),
                    path: key.to_owned(),
                    ..KeyToPath::default()
                }]
            }),
            optional: Some(false),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn optional_secret_env(name: &str, key: &str) -> EnvVar {
    let mut env = secret_env(name, key);
    if let Some(selector) = env
        .value_from
        .as_mut()
        .and_then(|source| source.secret_key_ref.as_mut())
    {
        selector.optional = Some(true);
    }
    env
}

/// What the init script and the upgrade script read: the instance's role,
/// password and database, the optional superuser password, PGDATA.
fn roles_env() -> Vec<EnvVar> {
    vec![
        secret_env("ATOLL_DATABASE_USER", "username"),
        secret_env("ATOLL_DATABASE_PASSWORD", "password"),
        secret_env("ATOLL_DATABASE_NAME", "database"),
        optional_secret_env("ATOLL_DATABASE_ADMIN_PASSWORD", DATABASE_ADMIN_PASSWORD_KEY),
        EnvVar {
            name: "PGDATA".to_owned(),
            value: Some(PGDATA.to_owned()),
            ..EnvVar::default()
        },
    ]
}

/// PostgreSQL as a one-replica StatefulSet whose volume outlives it.
///
/// The image initialises the database with `postgres` as superuser (its
/// initial password, the image's required `POSTGRES_PASSWORD`, is replaced
/// by the init script before the server listens on the network) and runs
/// `DATABASE_ROLES_SCRIPT`, which creates the instance's role without any
/// privilege but owning its database. An init container runs
/// `DATABASE_UPGRADE_SCRIPT` first, which brings a database of the
/// earlier layout (the instance's role as superuser) to this one.
pub fn database_stateful_set(ctx: &TenantContext<'_>) -> StatefulSet {
    let spec = &ctx.tenant.spec;
    let dedicated = spec.database.dedicated.clone().unwrap_or_default();
    let image = dedicated
        .image
        .clone()
        .unwrap_or_else(|| ctx.config.postgres_image.clone());
    let labels = ctx.labels(Some(DATABASE));
    let container = postgres_container(&image, &dedicated);
    let upgrade = upgrade_container(image, &dedicated);
    StatefulSet {
        metadata: ctx.meta(DATABASE, Some(DATABASE)),
        spec: Some(StatefulSetSpec {
            replicas: Some(if spec.suspended { 0 } else { 1 }),
            service_name: Some(DATABASE.to_owned()),
            selector: LabelSelector {
                match_labels: Some(ctx.selector(DATABASE)),
                ..LabelSelector::default()
            },
            // The volume is the tenant's data: never removed with the pods.
            persistent_volume_claim_retention_policy: Some(
                StatefulSetPersistentVolumeClaimRetentionPolicy {
                    when_deleted: Some("Retain".to_owned()),
                    when_scaled: Some("Retain".to_owned()),
                },
            ),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(labels.clone()),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(DATABASE.to_owned()),
                    automount_service_account_token: Some(false),
                    security_context: Some(restricted_pod(POSTGRES_UID)),
                    init_containers: Some(vec![upgrade]),
                    containers: vec![container],
                    volumes: Some(vec![
                        empty_dir("run"),
                        empty_dir("tmp"),
                        // Only the init script: the image runs every file.
                        config_map_volume("initdb", Some(DATABASE_ROLES_SCRIPT)),
                        config_map_volume("scripts", None),
                    ]),
                    termination_grace_period_seconds: Some(60),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![data_volume_claim(&dedicated, labels)]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
    }
}

/// The mounts both PostgreSQL containers share: data, socket, scratch.
fn postgres_mounts() -> Vec<VolumeMount> {
    vec![
        mount("data", DATA_DIR),
        mount("run", "/var/run/postgresql"),
        mount("tmp", "/tmp"),
    ]
}

/// The server itself.
fn postgres_container(image: &str, dedicated: &DedicatedDatabase) -> Container {
    let mut env = vec![
        EnvVar {
            name: "POSTGRES_USER".to_owned(),
            value: Some(DATABASE_ADMIN_USER.to_owned()),
            ..EnvVar::default()
        },
        secret_env("POSTGRES_PASSWORD", "password"),
        secret_env("POSTGRES_DB", "database"),
    ];
    env.extend(roles_env());
    Container {
        name: "postgres".to_owned(),
        image: Some(image.to_owned()),
        env: Some(env),
        ports: Some(vec![ContainerPort {
            name: Some("postgres".to_owned()),
            container_port: DATABASE_PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        readiness_probe: Some(pg_isready()),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(30),
            ..pg_isready()
        }),
        resources: Some(resources(&dedicated.resources)),
        security_context: Some(restricted_container(true)),
        volume_mounts: Some(
            postgres_mounts()
                .into_iter()
                .chain([mount("initdb", INITDB_DIR)])
                .collect(),
        ),
        ..Container::default()
    }
}

/// The init container that runs [`DATABASE_UPGRADE_SCRIPT`].
fn upgrade_container(image: String, dedicated: &DedicatedDatabase) -> Container {
    Container {
        name: "upgrade-roles".to_owned(),
        image: Some(image),
        command: Some(vec![
            "bash".to_owned(),
            format!("{SCRIPTS_DIR}/{DATABASE_UPGRADE_SCRIPT}"),
        ]),
        env: Some(roles_env()),
        resources: Some(resources(&dedicated.resources)),
        security_context: Some(restricted_container(true)),
        volume_mounts: Some(
            postgres_mounts()
                .into_iter()
                .chain([mount("scripts", SCRIPTS_DIR)])
                .collect(),
        ),
        ..Container::default()
    }
}

/// The data volume's claim template.
fn data_volume_claim(
    dedicated: &DedicatedDatabase,
    labels: BTreeMap<String, String>,
) -> PersistentVolumeClaim {
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".to_owned()),
            labels: Some(labels),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
            storage_class_name: dedicated.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_owned(),
                    quantity(&dedicated.storage.size),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_escapes_the_password_and_debug_hides_it() {
        let credentials = DatabaseCredentials {
            username: "atoll".into(),
            password: "p@ss:w/rd".into(),
            database: "atoll".into(),
            host: "database.atoll-acme.svc".into(),
            port: 5432,
        };
        assert_eq!(
            credentials.url(),
            "postgres://atoll:p%40ss%3Aw%2Frd@database.atoll-acme.svc:5432/atoll"
        );
        assert!(!format!("{credentials:?}").contains("p@ss"));
    }

    fn tenant() -> atoll_crds::Tenant {
        let mut tenant = atoll_crds::Tenant::new("acme", atoll_crds::TenantSpec::default());
        tenant.metadata.uid = Some("uid-1".into());
        tenant
    }

    fn env_of(container: &Container) -> BTreeMap<String, (Option<String>, Option<String>)> {
        container
            .env
            .iter()
            .flatten()
            .map(|e| {
                let key = e
                    .value_from
                    .as_ref()
                    .and_then(|v| v.secret_key_ref.as_ref())
                    .map(|r| r.key.clone());
                (e.name.clone(), (e.value.clone(), key))
            })
            .collect()
    }

    #[test]
    fn the_instance_role_is_not_the_superuser_and_the_init_script_creates_it_unprivileged() {
        let tenant = tenant();
        let config = crate::config::OperatorConfig::default();
        let ctx = TenantContext::new(&tenant, &config).expect("context");
        let credentials = DatabaseCredentials::dedicated(&ctx, "pw".into());
        let set = database_stateful_set(&ctx);
        let pod = set.spec.expect("spec").template.spec.expect("pod spec");
        let env = env_of(&pod.containers[0]);

        // The superuser is postgres; the instance's URL names another role.
        assert_eq!(
            env["POSTGRES_USER"],
            (Some(DATABASE_ADMIN_USER.to_owned()), None)
        );
        assert!(credentials.url().starts_with("postgres://atoll:"));
        assert_ne!(credentials.username, DATABASE_ADMIN_USER);
        // The scripts learn the instance's role from the Secret the URL is in.
        assert_eq!(env["ATOLL_DATABASE_USER"].1.as_deref(), Some("username"));
        assert_eq!(
            env["ATOLL_DATABASE_PASSWORD"].1.as_deref(),
            Some("password")
        );
        assert_eq!(
            env["ATOLL_DATABASE_ADMIN_PASSWORD"].1.as_deref(),
            Some(DATABASE_ADMIN_PASSWORD_KEY)
        );
        let secret = database_secret(&ctx, &credentials);
        let data = secret.data.expect("data");
        assert_eq!(data["username"].0, b"atoll");
        assert!(!data.contains_key(DATABASE_ADMIN_PASSWORD_KEY));

        // The image runs the init script; the init container the upgrade.
        let mount_of = |c: &Container, path: &str| {
            c.volume_mounts
                .iter()
                .flatten()
                .find(|m| m.mount_path == path)
                .map(|m| m.name.clone())
        };
        assert_eq!(
            mount_of(&pod.containers[0], INITDB_DIR).as_deref(),
            Some("initdb")
        );
        let volumes = pod.volumes.expect("volumes");
        let initdb = volumes
            .iter()
            .find(|v| v.name == "initdb")
            .and_then(|v| v.config_map.as_ref())
            .expect("initdb volume");
        assert_eq!(initdb.name, DATABASE_INIT);
        assert_eq!(
            initdb.items.as_ref().map(|i| i[0].key.as_str()),
            Some(DATABASE_ROLES_SCRIPT)
        );
        let init = &pod.init_containers.expect("init containers")[0];
        assert_eq!(
            init.command.as_deref(),
            Some(
                &[
                    "bash".to_owned(),
                    format!("{SCRIPTS_DIR}/{DATABASE_UPGRADE_SCRIPT}")
                ][..]
            )
        );
        assert!(!env_of(init).contains_key("POSTGRES_PASSWORD"));

        let config_map = database_init_config_map(&ctx);
        assert_eq!(config_map.metadata.name.as_deref(), Some(DATABASE_INIT));
        let data = config_map.data.expect("data");
        let script = &data[DATABASE_ROLES_SCRIPT];
        assert!(script.contains(
            "ALTER ROLE :\"user\" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION\n  NOBYPASSRLS"
        ));
        assert!(!script.contains(" SUPERUSER LOGIN PASSWORD"));
        assert!(script.contains("REVOKE ALL ON DATABASE :\"db\" FROM PUBLIC;"));
        assert!(script.contains("ALTER DATABASE :\"db\" OWNER TO :\"user\";"));
        assert!(script.contains("ALTER SCHEMA public OWNER TO :\"user\";"));
        assert!(data[DATABASE_UPGRADE_SCRIPT].contains(DATABASE_ROLES_SCRIPT));
    }
}
