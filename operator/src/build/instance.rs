//! The tenant's orchestration instance: Deployment, Service, Ingress.

use std::collections::BTreeMap;

use atoll_crds::LogLevel;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMapKeySelector, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, PodSpec, PodTemplateSpec, Probe, SecretKeySelector, Service, ServicePort,
    ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::database::{DATABASE_SECRET, DatabaseCredentials};
use super::tasks::{runs_task_pods, task_env, task_volumes, uses_storage_volume};
use super::{TenantContext, resources, restricted_container, restricted_pod};

/// Name of the instance's Deployment, Service, Ingress and ServiceAccount,
/// and its component label.
pub const INSTANCE: &str = "instance";
/// Port the instance listens on in its pod.
pub const INSTANCE_PORT: i32 = 8080;
/// Port of the instance's Service (users come through the Ingress, task
/// pods straight to the Service).
pub const INSTANCE_SERVICE_PORT: i32 = 80;
/// An unprivileged UID for the instance (distroless `nonroot`).
const INSTANCE_UID: i64 = 65532;

fn value(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        ..EnvVar::default()
    }
}

fn log_level(level: LogLevel) -> &'static str {
    match level {
        LogLevel::Error => "error",
        LogLevel::Warn => "warn",
        LogLevel::Info => "info",
        LogLevel::Debug => "debug",
        LogLevel::Trace => "trace",
    }
}

/// The environment contract between operator and instance
/// ([`atoll_crds::contract`], the names the instance reads), then the
/// Tenant's own variables (which may not start with `ATOLL_`).
fn instance_env(ctx: &TenantContext<'_>) -> Vec<EnvVar> {
    use atoll_crds::contract;
    let spec = &ctx.tenant.spec.instance;
    let mut env = vec![
        value(contract::TENANT, ctx.name),
        value(
            contract::TENANT_UID,
            ctx.tenant.metadata.uid.clone().unwrap_or_default(),
        ),
        EnvVar {
            name: contract::DATABASE_URL.to_owned(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: DATABASE_SECRET.to_owned(),
                    key: "url".to_owned(),
                    optional: Some(false),
                }),
                ..EnvVarSource::default()
            }),
            ..EnvVar::default()
        },
        value(contract::LISTEN, format!("0.0.0.0:{INSTANCE_PORT}")),
        value(
            contract::METRICS_LISTEN,
            format!("0.0.0.0:{}", contract::METRICS_PORT),
        ),
        value(contract::PUBLIC_URL, ctx.url()),
    ];
    if let Some(issuer) = &ctx.config.identity_issuer {
        env.push(value(contract::IDENTITY_ISSUER, issuer.clone()));
    }
    env.push(value(contract::LOG_LEVEL, log_level(spec.config.log_level)));
    env.push(value(
        contract::MAX_CONCURRENT_TASK_RUNS,
        spec.config.max_concurrent_task_runs.to_string(),
    ));
    if let Some(days) = spec.config.execution_retention_days {
        env.push(value(contract::EXECUTION_RETENTION_DAYS, days.to_string()));
    }
    env.extend(task_env(ctx, &image(ctx)));
    for var in &spec.env {
        let source = var.value_from.as_ref().map(|source| EnvVarSource {
            secret_key_ref: source.secret_key_ref.as_ref().map(|r| SecretKeySelector {
                name: r.name.clone(),
                key: r.key.clone(),
                optional: None,
            }),
            config_map_key_ref: source
                .config_map_key_ref
                .as_ref()
                .map(|r| ConfigMapKeySelector {
                    name: r.name.clone(),
                    key: r.key.clone(),
                    optional: None,
                }),
            ..EnvVarSource::default()
        });
        env.push(EnvVar {
            name: var.name.clone(),
            value: var.value.clone(),
            value_from: source,
        });
    }
    env
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        ..Probe::default()
    }
}

/// The image reference: `image:version`, or the digest as given.
fn image(ctx: &TenantContext<'_>) -> String {
    let image = ctx
        .tenant
        .spec
        .instance
        .image
        .as_deref()
        .unwrap_or(&ctx.config.instance_image);
    if image.contains("@sha256:") {
        image.to_owned()
    } else {
        format!("{image}:{}", ctx.version())
    }
}

/// Annotation naming the database the instance's pods connect to (user,
/// host, port, database; never the password). The URL reaches the pod from
/// a Secret, which a pod reads only when it starts: a new database (a
/// switch between Dedicated and External) must roll the Deployment.
pub const DATABASE_ANNOTATION: &str = "atoll.dev/database";

/// The instance Deployment. Any change to the pod template (version, env,
/// settings, the database it uses) rolls it; suspension scales it to zero.
/// With a storage volume (ReadWriteOnce) the old pod stops before the new
/// one starts, so the two never wait for the same volume. The pod gets an
/// API token only when its tasks run as pods.
pub fn instance_deployment(ctx: &TenantContext<'_>, database: &DatabaseCredentials) -> Deployment {
    let spec = &ctx.tenant.spec;
    let (task_volumes, task_mounts) = task_volumes(ctx);
    let mut container = instance_container(ctx);
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .extend(task_mounts);
    let mut volumes = vec![Volume {
        name: "tmp".to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }];
    volumes.extend(task_volumes);
    let strategy = uses_storage_volume(ctx).then(|| DeploymentStrategy {
        type_: Some("Recreate".to_owned()),
        rolling_update: None,
    });
    Deployment {
        metadata: ctx.meta(INSTANCE, Some(INSTANCE)),
        spec: Some(DeploymentSpec {
            replicas: Some(if spec.suspended {
                0
            } else {
                spec.instance.replicas
            }),
            selector: LabelSelector {
                match_labels: Some(ctx.selector(INSTANCE)),
                ..LabelSelector::default()
            },
            strategy,
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(ctx.labels(Some(INSTANCE))),
                    annotations: Some(BTreeMap::from([
                        ("atoll.dev/version".to_owned(), ctx.version().to_owned()),
                        (
                            DATABASE_ANNOTATION.to_owned(),
                            format!(
                                "{}@{}:{}/{}",
                                database.username, database.host, database.port, database.database
                            ),
                        ),
                    ])),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    service_account_name: Some(INSTANCE.to_owned()),
                    automount_service_account_token: Some(runs_task_pods(ctx)),
                    security_context: Some(restricted_pod(INSTANCE_UID)),
                    containers: vec![container],
                    volumes: Some(volumes),
                    termination_grace_period_seconds: Some(30),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        }),
        ..Deployment::default()
    }
}

/// The instance's one container.
fn instance_container(ctx: &TenantContext<'_>) -> Container {
    let spec = &ctx.tenant.spec;
    Container {
        name: INSTANCE.to_owned(),
        image: Some(image(ctx)),
        env: Some(instance_env(ctx)),
        ports: Some(vec![
            ContainerPort {
                name: Some("http".to_owned()),
                container_port: INSTANCE_PORT,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
            // Not in the Service the Ingress routes to: /metrics is never
            // public at the tenant's URL.
            ContainerPort {
                name: Some("metrics".to_owned()),
                container_port: i32::from(atoll_crds::contract::METRICS_PORT),
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            },
        ]),
        readiness_probe: Some(http_probe("/readyz", 5)),
        liveness_probe: Some(Probe {
            initial_delay_seconds: Some(10),
            failure_threshold: Some(3),
            ..http_probe("/healthz", 10)
        }),
        resources: Some(resources(&spec.instance.resources)),
        security_context: Some(restricted_container(true)),
        volume_mounts: Some(vec![VolumeMount {
            name: "tmp".to_owned(),
            mount_path: "/tmp".to_owned(),
            ..VolumeMount::default()
        }]),
        ..Container::default()
    }
}

/// The Service in front of the instance, on port 80.
pub fn instance_service(ctx: &TenantContext<'_>) -> Service {
    Service {
        metadata: ctx.meta(INSTANCE, Some(INSTANCE)),
        spec: Some(ServiceSpec {
            selector: Some(ctx.selector(INSTANCE)),
            ports: Some(vec![ServicePort {
                name: Some("http".to_owned()),
                port: INSTANCE_SERVICE_PORT,
                target_port: Some(IntOrString::String("http".to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The Ingress at the tenant's host, with TLS when asked for.
pub fn instance_ingress(ctx: &TenantContext<'_>) -> Ingress {
    let host = ctx.host();
    let mut meta = ctx.meta(INSTANCE, Some(INSTANCE));
    let tls = ctx.tls().map(|(secret, issuer)| {
        if let Some(issuer) = issuer {
            meta.annotations = Some(BTreeMap::from([(
                "cert-manager.io/cluster-issuer".to_owned(),
                issuer,
            )]));
        }
        vec![IngressTLS {
            hosts: Some(vec![host.clone()]),
            secret_name: Some(secret),
        }]
    });
    let class = ctx
        .tenant
        .spec
        .ingress
        .class_name
        .clone()
        .or_else(|| ctx.config.ingress_class.clone());
    Ingress {
        metadata: meta,
        spec: Some(IngressSpec {
            ingress_class_name: class,
            tls,
            rules: Some(vec![IngressRule {
                host: Some(host),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some("/".to_owned()),
                        path_type: "Prefix".to_owned(),
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: INSTANCE.to_owned(),
                                port: Some(ServiceBackendPort {
                                    name: Some("http".to_owned()),
                                    ..ServiceBackendPort::default()
                                }),
                            }),
                            ..IngressBackend::default()
                        },
                    }],
                }),
            }]),
            ..IngressSpec::default()
        }),
        ..Ingress::default()
    }
}
