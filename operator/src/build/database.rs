//! The tenant's database: credentials Secret, and in Dedicated mode a
//! PostgreSQL StatefulSet with its volume and Service.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::{
    StatefulSet, StatefulSetPersistentVolumeClaimRetentionPolicy, StatefulSetSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource, ExecAction,
    PersistentVolumeClaim, PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, Probe, Secret,
    SecretKeySelector, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::{TenantContext, quantity, resources, restricted_container, restricted_pod};

/// Name of the database's StatefulSet, Service and ServiceAccount, and its
/// component label.
pub const DATABASE: &str = "database";
/// PostgreSQL's port.
pub const DATABASE_PORT: i32 = 5432;
/// The Secret holding the database credentials and the instance's URL.
pub const DATABASE_SECRET: &str = "database-credentials";
/// Role the instance logs in as.
pub const DATABASE_USER: &str = "atoll";
/// Database the instance uses.
pub const DATABASE_NAME: &str = "atoll";
/// UID of the `postgres` user in the official image.
const POSTGRES_UID: i64 = 999;
const DATA_DIR: &str = "/var/lib/postgresql/data";

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

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        ..VolumeMount::default()
    }
}

/// PostgreSQL as a one-replica StatefulSet whose volume outlives it.
pub fn database_stateful_set(ctx: &TenantContext<'_>) -> StatefulSet {
    let spec = &ctx.tenant.spec;
    let dedicated = spec.database.dedicated.clone().unwrap_or_default();
    let image = dedicated
        .image
        .clone()
        .unwrap_or_else(|| ctx.config.postgres_image.clone());
    let labels = ctx.labels(Some(DATABASE));
    let container = Container {
        name: "postgres".to_owned(),
        image: Some(image),
        env: Some(vec![
            secret_env("POSTGRES_USER", "username"),
            secret_env("POSTGRES_PASSWORD", "password"),
            secret_env("POSTGRES_DB", "database"),
            EnvVar {
                name: "PGDATA".to_owned(),
                value: Some(format!("{DATA_DIR}/pgdata")),
                ..EnvVar::default()
            },
        ]),
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
        volume_mounts: Some(vec![
            mount("data", DATA_DIR),
            mount("run", "/var/run/postgresql"),
            mount("tmp", "/tmp"),
        ]),
        ..Container::default()
    };
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
                    containers: vec![container],
                    volumes: Some(vec![empty_dir("run"), empty_dir("tmp")]),
                    termination_grace_period_seconds: Some(60),
                    ..PodSpec::default()
                }),
            },
            volume_claim_templates: Some(vec![PersistentVolumeClaim {
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
            }]),
            ..StatefulSetSpec::default()
        }),
        ..StatefulSet::default()
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
}
