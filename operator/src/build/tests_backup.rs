//! The backup wiring's unit tests (#19): what a backed-up database pod
//! runs and mounts, that credentials travel only as Secret files to the
//! containers that read them, and that a Tenant without backups builds
//! exactly what it did before.

use super::*;
use atoll_crds::{BackupSpec, DatabaseMode, LocalSecretRef, ObjectStoreSpec, TenantSpec};
use k8s_openapi::api::core::v1::{Container, PodSpec};

const ACCESS_KEY: &str = "AKIA-backup-test-id";
const SECRET_KEY: &str = "very-secret-access-key";
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn tenant(backup: Option<BackupSpec>) -> Tenant {
    let mut tenant = Tenant::new(
        "acme",
        TenantSpec {
            backup,
            ..TenantSpec::default()
        },
    );
    tenant.metadata.uid = Some("6a1c2d3e-0000-4000-8000-000000000001".into());
    tenant
}

fn platform_config() -> OperatorConfig {
    let mut config = OperatorConfig::default();
    config.backup.backup_endpoint = Some("http://127.0.0.1:9000".into());
    config.backup.backup_bucket = Some("platform-backups".into());
    config.backup.backup_path_style = true;
    config.backup.backup_prefix = Some("atoll".into());
    config.backup.backup_credentials_secret = Some("atoll-backup-credentials".into());
    config.backup.backup_image = "atoll/atoll-backup:1.2.3".into();
    config
}

fn setup(ctx: &TenantContext<'_>) -> BackupSetup {
    BackupSetup {
        store: backup_store(ctx).expect("a store"),
        credentials: Some(ObjectStoreCredentials {
            access_key_id: ACCESS_KEY.into(),
            secret_access_key: SECRET_KEY.into(),
        }),
        agent_token: TOKEN.into(),
    }
}

fn build(tenant: &Tenant, config: &OperatorConfig, backup: bool) -> Children {
    let ctx = TenantContext::new(tenant, config).expect("context");
    let credentials = DatabaseCredentials::dedicated(&ctx, "pw".into());
    let setup = setup(&ctx);
    children_with_backup(&ctx, &credentials, backup.then_some(&setup))
}

fn pod(children: &Children) -> PodSpec {
    children
        .database_stateful_set
        .clone()
        .and_then(|s| s.spec)
        .and_then(|s| s.template.spec)
        .expect("a database pod")
}

fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("container {name}"))
}

/// (volume, path, read-only) of a container's mounts.
fn mounts(container: &Container) -> Vec<(String, String, bool)> {
    container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| {
            (
                m.name.clone(),
                m.mount_path.clone(),
                m.read_only == Some(true),
            )
        })
        .collect()
}

fn mounted(container: &Container, volume: &str) -> Option<(String, bool)> {
    mounts(container)
        .into_iter()
        .find(|(name, _, _)| name == volume)
        .map(|(_, path, read_only)| (path, read_only))
}

#[test]
fn a_tenant_without_backups_builds_what_it_built_before() {
    let config = platform_config();
    for backup in [
        None,
        Some(BackupSpec {
            enabled: false,
            ..BackupSpec::default()
        }),
    ] {
        let tenant = tenant(backup);
        let plain = build(&tenant, &config, false);
        let offered = build(&tenant, &config, true);
        assert_eq!(
            plain.to_values().expect("json"),
            offered.to_values().expect("json"),
            "a setup is ignored when the Tenant wants no backups"
        );
        assert!(offered.backup_secrets.is_empty());
        let ctx = TenantContext::new(&tenant, &config).expect("context");
        assert_eq!(
            offered.database_stateful_set,
            Some(database_stateful_set(&ctx))
        );
        let names: Vec<_> = offered
            .network_policies
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        assert!(!names.contains(&BACKUP_NETWORK_POLICY.to_owned()));
    }
    // An External database is not archived (it is dumped by pods of its
    // own): only the store's Secret, no agent, no database pod.
    let mut external = tenant(Some(BackupSpec::default()));
    external.spec.database.mode = DatabaseMode::External;
    let children = build(&external, &config, true);
    let names: Vec<_> = children
        .backup_secrets
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, [BACKUP_OBJECT_STORE_SECRET]);
    assert!(children.database_stateful_set.is_none());
}

#[test]
fn the_object_store_secret_holds_the_settings_and_the_credentials_as_files() {
    let config = platform_config();
    let tenant = tenant(Some(BackupSpec::default()));
    let children = build(&tenant, &config, true);
    let names: Vec<_> = children
        .backup_secrets
        .iter()
        .filter_map(|s| s.metadata.name.as_deref())
        .collect();
    assert_eq!(names, [BACKUP_AGENT_SECRET, BACKUP_OBJECT_STORE_SECRET]);
    let store = &children.backup_secrets[1];
    assert_eq!(store.metadata.namespace.as_deref(), Some("atoll-acme"));
    let owner = &store.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(owner.uid, "6a1c2d3e-0000-4000-8000-000000000001");
    assert_eq!(
        store.metadata.labels.as_ref().expect("labels")[MANAGED_BY_LABEL],
        FIELD_MANAGER
    );
    let data = store.data.as_ref().expect("data");
    assert_eq!(data["accessKeyId"].0, ACCESS_KEY.as_bytes());
    assert_eq!(data["secretAccessKey"].0, SECRET_KEY.as_bytes());
    let config_json: serde_json::Value =
        serde_json::from_slice(&data[BACKUP_CONFIG_FILE].0).expect("config.json");
    assert_eq!(
        config_json,
        serde_json::json!({
            "endpoint": "http://127.0.0.1:9000", "bucket": "platform-backups",
            "region": "us-east-1", "pathStyle": true, "prefix": "atoll", "allowHttp": true,
            "tenantUid": "6a1c2d3e-0000-4000-8000-000000000001", "tenantName": "acme",
        })
    );
    let agent = &children.backup_secrets[0];
    assert_eq!(
        agent.data.as_ref().expect("data")[BACKUP_AGENT_TOKEN_KEY].0,
        TOKEN.as_bytes()
    );
    // Debug output (logs) shows neither the credentials nor the token.
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    let shown = format!("{:?}", setup(&ctx));
    for secret in [ACCESS_KEY, SECRET_KEY, TOKEN] {
        assert!(!shown.contains(secret), "{shown}");
    }
}

#[test]
fn a_tenants_own_store_replaces_the_platforms() {
    let config = OperatorConfig::default();
    let own = ObjectStoreSpec {
        endpoint: "https://s3.eu-central-1.amazonaws.com/".into(),
        bucket: "hooli-backups".into(),
        region: "eu-central-1".into(),
        path_style: false,
        prefix: None,
        credentials_secret_ref: LocalSecretRef {
            name: "hooli-store".into(),
        },
    };
    let tenant = tenant(Some(BackupSpec {
        object_store: Some(own),
        ..BackupSpec::default()
    }));
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    assert_eq!(
        credentials_source(&ctx),
        CredentialsSource::Tenant("hooli-store".into())
    );
    let json: serde_json::Value = serde_json::from_str(&backup_config_json(
        &ctx,
        &backup_store(&ctx).expect("store"),
    ))
    .expect("json");
    assert_eq!(json["endpoint"], "https://s3.eu-central-1.amazonaws.com");
    assert_eq!(json["allowHttp"], false);
    assert_eq!(json.get("prefix"), None);

    // Without one, the platform's; none configured: a reason, no store.
    let tenant = self::tenant(Some(BackupSpec::default()));
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    let reason = backup_store(&ctx).expect_err("no platform store");
    assert!(reason.contains("backup.objectStore.endpoint"), "{reason}");
    assert_eq!(credentials_source(&ctx), CredentialsSource::Platform(None));
}

#[test]
fn the_database_pod_archives_wal_and_runs_the_agent() {
    let config = platform_config();
    let tenant = tenant(Some(BackupSpec::default()));
    let pod = pod(&build(&tenant, &config, true));
    let init = pod.init_containers.clone().expect("init containers");
    let init_names: Vec<_> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(init_names, [INSTALL_BACKUP, "upgrade-roles"]);
    let install = &init[0];
    assert_eq!(install.image.as_deref(), Some("atoll/atoll-backup:1.2.3"));
    assert_eq!(
        install.command.clone().expect("command"),
        ["/usr/local/bin/atoll-backup", "install", "/atoll/bin"]
    );
    assert_eq!(
        mounts(install),
        [("atoll-bin".to_owned(), "/atoll/bin".to_owned(), false)]
    );

    let server = container(&pod.containers, "postgres");
    assert_eq!(
        server.args.clone().expect("args"),
        [
            "-c",
            "archive_mode=on",
            "-c",
            "archive_timeout=60",
            "-c",
            "archive_command=/atoll/bin/atoll-backup wal-push --config /etc/atoll-backup --status-dir /var/run/atoll-backup %p",
        ]
    );
    assert_eq!(
        mounted(server, "backup-config"),
        Some(("/etc/atoll-backup".into(), true))
    );
    assert_eq!(
        mounted(server, "atoll-bin"),
        Some(("/atoll/bin".into(), true))
    );
    assert_eq!(
        mounted(server, "backup-status"),
        Some(("/var/run/atoll-backup".into(), false))
    );
}

#[test]
fn the_agent_runs_the_installed_binary_in_the_postgres_image() {
    let config = platform_config();
    let tenant = tenant(Some(BackupSpec::default()));
    let pod = pod(&build(&tenant, &config, true));
    let server = container(&pod.containers, "postgres");
    let agent = container(&pod.containers, BACKUP_AGENT);
    assert_eq!(agent.image, server.image, "the PostgreSQL image's tools");
    assert_eq!(
        agent.command.clone().expect("command"),
        [
            "/atoll/bin/atoll-backup",
            "agent",
            "--config",
            "/etc/atoll-backup",
            "--listen",
            "$(POD_IP):9187",
            "--token-file",
            "/etc/atoll-backup-agent/token",
            "--status-dir",
            "/var/run/atoll-backup",
            "--pgdata",
            "/var/lib/postgresql/data/pgdata",
        ]
    );
    let env: Vec<_> = agent.env.iter().flatten().collect();
    let pod_ip = env.iter().find(|e| e.name == "POD_IP").expect("POD_IP");
    assert_eq!(
        pod_ip
            .value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str()),
        Some("status.podIP")
    );
    let value = |name: &str| {
        env.iter()
            .find(|e| e.name == name)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(value("PGHOST").as_deref(), Some("/var/run/postgresql"));
    assert_eq!(value("PGUSER").as_deref(), Some("postgres"));
    let port = &agent.ports.as_ref().expect("ports")[0];
    assert_eq!(
        (port.name.as_deref(), port.container_port),
        (Some(BACKUP_AGENT), 9187)
    );
    let probe = agent
        .readiness_probe
        .as_ref()
        .and_then(|p| p.http_get.as_ref());
    assert_eq!(probe.and_then(|h| h.path.as_deref()), Some("/healthz"));
    // Small, and limited, so that the quota counts it.
    let limits = agent
        .resources
        .as_ref()
        .and_then(|r| r.limits.clone())
        .expect("limits");
    assert!(limits.contains_key("cpu") && limits.contains_key("memory"));
    for (volume, path) in [
        ("backup-config", "/etc/atoll-backup"),
        ("backup-agent-token", "/etc/atoll-backup-agent"),
        ("atoll-bin", "/atoll/bin"),
        ("data", "/var/lib/postgresql/data"),
    ] {
        assert_eq!(
            mounted(agent, volume),
            Some((path.into(), true)),
            "{volume}"
        );
    }
    assert_eq!(
        mounted(agent, "run"),
        Some(("/var/run/postgresql".into(), false))
    );
}

#[test]
fn secrets_reach_only_the_containers_that_read_them_and_never_env_or_args() {
    let config = platform_config();
    let tenant = tenant(Some(BackupSpec::default()));
    let pod = pod(&build(&tenant, &config, true));
    let all: Vec<&Container> = pod
        .init_containers
        .iter()
        .flatten()
        .chain(&pod.containers)
        .collect();
    let holding = |volume: &str| -> Vec<&str> {
        all.iter()
            .filter(|c| mounted(c, volume).is_some())
            .map(|c| c.name.as_str())
            .collect()
    };
    assert_eq!(holding("backup-config"), ["postgres", BACKUP_AGENT]);
    assert_eq!(holding("backup-agent-token"), [BACKUP_AGENT]);
    for volume in pod.volumes.iter().flatten() {
        if let Some(secret) = &volume.secret {
            let name = secret.secret_name.as_deref();
            assert!(
                matches!(
                    (volume.name.as_str(), name),
                    ("backup-config", Some(BACKUP_OBJECT_STORE_SECRET))
                        | ("backup-agent-token", Some(BACKUP_AGENT_SECRET))
                ),
                "{volume:?}"
            );
            assert_eq!(secret.default_mode, Some(0o440));
        }
    }
    // No environment variable comes from a backup Secret, and no value,
    // argument or command holds a credential or the token.
    let text = serde_json::to_string(&pod).expect("json");
    for secret in [ACCESS_KEY, SECRET_KEY, TOKEN] {
        assert!(!text.contains(secret), "{secret} in the pod spec");
    }
    for container in &all {
        for env in container.env.iter().flatten() {
            let from = env
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref());
            assert!(
                from.is_none_or(|s| s.name == DATABASE_SECRET),
                "{}: {} from {from:?}",
                container.name,
                env.name
            );
        }
        assert!(
            container
                .security_context
                .as_ref()
                .and_then(|s| s.run_as_non_root)
                == Some(true)
                && container
                    .security_context
                    .as_ref()
                    .and_then(|s| s.allow_privilege_escalation)
                    == Some(false),
            "{} is restricted",
            container.name
        );
    }
}

#[test]
fn the_backup_policy_opens_the_store_and_the_agent_to_the_operator_only() {
    let mut config = platform_config();
    let tenant = tenant(Some(BackupSpec::default()));
    let children = build(&tenant, &config, true);
    let policy = children
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(BACKUP_NETWORK_POLICY))
        .expect("the backup policy");
    let json = serde_json::to_value(policy).expect("json");
    let spec = &json["spec"];
    assert_eq!(
        spec["podSelector"]["matchLabels"]["app.kubernetes.io/component"],
        "database"
    );
    assert_eq!(spec["ingress"][0]["ports"][0]["port"], 9187);
    let from = &spec["ingress"][0]["from"][0];
    assert_eq!(
        from["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "atoll-system"
    );
    assert_eq!(
        from["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "atoll-operator"
    );
    let egress = spec["egress"].as_array().expect("egress");
    assert_eq!(egress.len(), 1, "outside the cluster only by default");
    let outside = &egress[0]["to"][0]["ipBlock"];
    assert_eq!(outside["cidr"], "0.0.0.0/0");
    assert!(
        outside["except"]
            .as_array()
            .expect("except")
            .iter()
            .any(|c| c == "169.254.0.0/16")
    );

    // An in-cluster store, when the chart names one.
    config.backup.backup_store_namespace_selector =
        crate::config::Labels([("kubernetes.io/metadata.name".into(), "minio".into())].into());
    config.backup.backup_store_port = 9000;
    let children = build(&tenant, &config, true);
    let policy = children
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(BACKUP_NETWORK_POLICY))
        .expect("the backup policy");
    let json = serde_json::to_value(policy).expect("json");
    let peer = &json["spec"]["egress"][1];
    assert_eq!(
        peer["to"][0]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"],
        "minio"
    );
    assert_eq!(peer["ports"][0]["port"], 9000);
}

#[test]
fn backup_objects_come_in_apply_order_before_the_workload() {
    let config = platform_config();
    let tenant = tenant(Some(BackupSpec::default()));
    let children = build(&tenant, &config, true);
    let order: Vec<String> = children
        .in_order()
        .into_iter()
        .map(|c| {
            let value = c.to_value().expect("json");
            format!(
                "{}/{}",
                value["kind"].as_str().unwrap_or("?"),
                value["metadata"]["name"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let at = |name: &str| {
        order
            .iter()
            .position(|o| o == name)
            .unwrap_or_else(|| panic!("{name} in {order:?}"))
    };
    assert!(at("Secret/backup-object-store") < at("StatefulSet/database"));
    assert!(at("Secret/backup-agent") < at("StatefulSet/database"));
    assert!(at("NetworkPolicy/database-backup") < at("StatefulSet/database"));
}

#[test]
fn the_backup_binary_loads_the_secret_as_mounted() {
    let config = platform_config();
    let tenant = tenant(Some(BackupSpec::default()));
    let children = build(&tenant, &config, true);
    let dir = tempfile::tempdir().expect("tempdir");
    for (key, value) in children.backup_secrets[1].data.iter().flatten() {
        std::fs::write(dir.path().join(key), &value.0).expect("write");
    }
    let settings = atoll_backup::settings::Settings::load(dir.path()).expect("loads");
    assert_eq!(settings.tenant_uid, "6a1c2d3e-0000-4000-8000-000000000001");
    assert_eq!(settings.tenant_name.as_deref(), Some("acme"));
    assert_eq!(settings.bucket, "platform-backups");
    assert!(settings.path_style && settings.allow_http);
    assert_eq!(settings.prefix.as_deref(), Some("atoll"));
    let credentials = settings.credentials.expect("credentials");
    assert_eq!(credentials.secret_access_key, SECRET_KEY);
}
