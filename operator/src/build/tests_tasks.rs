//! The builders' unit tests for script tasks: `spec.tasks`, `spec.storage`
//! and `spec.secrets` in the instance's env, volumes and rights, and the
//! task pods' network fence.

use super::*;
use atoll_crds::{LocalSecretRef, S3Storage, TaskRunner, TenantSpec, contract};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn tenant(spec: TenantSpec) -> Tenant {
    let mut tenant = Tenant::new("acme", spec);
    tenant.metadata.uid = Some("uid-1".into());
    tenant
}

fn build_with(spec: TenantSpec, config: &OperatorConfig) -> Children {
    let tenant = tenant(spec);
    let ctx = TenantContext::new(&tenant, config).expect("context");
    let credentials = DatabaseCredentials::dedicated(&ctx, "pw".into());
    children(&ctx, &credentials)
}

fn build(spec: TenantSpec) -> Children {
    build_with(spec, &OperatorConfig::default())
}

fn pod(children: &Children) -> serde_json::Value {
    let deployment = serde_json::to_value(&children.instance_deployment).expect("json");
    deployment["spec"]["template"]["spec"].clone()
}

fn env(children: &Children) -> Vec<serde_json::Value> {
    pod(children)["containers"][0]["env"]
        .as_array()
        .expect("env")
        .clone()
}

fn env_value(children: &Children, name: &str) -> Option<String> {
    env(children)
        .iter()
        .find(|v| v["name"] == name)
        .and_then(|v| v["value"].as_str().map(str::to_owned))
}

fn s3() -> S3Storage {
    S3Storage {
        endpoint: "https://s3.example.com".into(),
        bucket: "acme-files".into(),
        region: Some("eu-west-1".into()),
        credentials_secret_ref: LocalSecretRef {
            name: "acme-s3".into(),
        },
    }
}

fn policy<'a>(
    children: &'a Children,
    name: &str,
) -> &'a k8s_openapi::api::networking::v1::NetworkPolicy {
    children
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("policy {name}"))
}

#[test]
fn spec_tasks_becomes_the_task_runner_variables() {
    let mut spec = TenantSpec::default();
    spec.tasks.image = Some("python:3.12-slim".into());
    spec.tasks.max_concurrent_pods = 7;
    spec.tasks.allowed_images = vec!["python:*".into(), "ghcr.io/acme/*".into()];
    spec.tasks.timeout = "PT30M".into();
    let children = build(spec);
    let value = |name| env_value(&children, name);
    assert_eq!(value(contract::NAMESPACE).as_deref(), Some("atoll-acme"));
    assert_eq!(
        value(contract::INSTANCE_IMAGE),
        pod(&children)["containers"][0]["image"]
            .as_str()
            .map(str::to_owned)
    );
    assert_eq!(
        value(contract::TASK_API_URL).as_deref(),
        Some("http://instance.atoll-acme.svc:80")
    );
    assert_eq!(value(contract::TASK_RUNNER).as_deref(), Some("Kubernetes"));
    assert_eq!(
        value(contract::TASK_IMAGE).as_deref(),
        Some("python:3.12-slim")
    );
    assert_eq!(value(contract::TASK_MAX_PODS).as_deref(), Some("7"));
    assert_eq!(
        value(contract::TASK_ALLOWED_IMAGES).as_deref(),
        Some("python:*,ghcr.io/acme/*")
    );
    assert_eq!(value(contract::TASK_TIMEOUT).as_deref(), Some("PT30M"));
    let resources: serde_json::Value =
        serde_json::from_str(&value(contract::TASK_RESOURCES).expect("resources")).expect("JSON");
    assert_eq!(
        resources,
        serde_json::json!({
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"}
        })
    );
    // Unset fields are left out rather than rendered empty.
    let defaults = build(TenantSpec::default());
    assert_eq!(env_value(&defaults, contract::TASK_IMAGE), None);
    assert_eq!(env_value(&defaults, contract::TASK_ALLOWED_IMAGES), None);
    assert_eq!(env_value(&defaults, contract::SECRETS_DIR), None);
}

/// A past review found Tenant fields rendered into nothing: every field of
/// spec.tasks, spec.storage and spec.secrets must change what is applied.
#[test]
fn every_task_storage_and_secrets_field_is_read() {
    let base = || {
        let mut spec = TenantSpec::default();
        spec.instance.replicas = 1;
        spec
    };
    let baseline = build(base()).to_values().expect("json");
    let with_s3 = || {
        let mut spec = base();
        spec.storage.s3 = Some(s3());
        spec
    };
    let s3_baseline = build(with_s3()).to_values().expect("json");
    type Change = fn(&mut TenantSpec);
    let changes: [(&str, Change); 9] = [
        ("tasks.runner", |s| s.tasks.runner = TaskRunner::Process),
        ("tasks.image", |s| s.tasks.image = Some("alpine:3".into())),
        ("tasks.resources", |s| {
            s.tasks.resources.limits.memory = Some("1Gi".into())
        }),
        ("tasks.maxConcurrentPods", |s| {
            s.tasks.max_concurrent_pods = 9
        }),
        ("tasks.allowedImages", |s| {
            s.tasks.allowed_images = vec!["bash:*".into()]
        }),
        ("tasks.timeout", |s| s.tasks.timeout = "PT5M".into()),
        ("storage.size", |s| s.storage.size = "3Gi".into()),
        ("storage.storageClassName", |s| {
            s.storage.storage_class_name = Some("fast".into())
        }),
        ("secrets", |s| {
            s.secrets = vec![LocalSecretRef {
                name: "flow-secrets".into(),
            }]
        }),
    ];
    for (field, change) in changes {
        let mut spec = base();
        change(&mut spec);
        assert_ne!(
            build(spec).to_values().expect("json"),
            baseline,
            "spec.{field} is not read"
        );
    }
    let s3_changes: [(&str, Change); 4] = [
        ("endpoint", |s| {
            s.storage
                .s3
                .as_mut()
                .map_or((), |s3| s3.endpoint = "https://other.example.com".into())
        }),
        ("bucket", |s| {
            s.storage
                .s3
                .as_mut()
                .map_or((), |s3| s3.bucket = "other".into())
        }),
        ("region", |s| {
            s.storage.s3.as_mut().map_or((), |s3| s3.region = None)
        }),
        ("credentialsSecretRef", |s| {
            s.storage
                .s3
                .as_mut()
                .map_or((), |s3| s3.credentials_secret_ref.name = "other".into())
        }),
    ];
    for (field, change) in s3_changes {
        let mut spec = with_s3();
        change(&mut spec);
        assert_ne!(
            build(spec).to_values().expect("json"),
            s3_baseline,
            "spec.storage.s3.{field} is not read"
        );
    }
}

#[test]
fn only_the_kubernetes_runner_gets_a_token_and_task_pod_rights() {
    let config = OperatorConfig {
        task_pods_cluster_role: "release-task-pods".into(),
        ..OperatorConfig::default()
    };
    let pods = build_with(TenantSpec::default(), &config);
    assert_eq!(pod(&pods)["automountServiceAccountToken"], true);
    let binding = pods.task_pods_role_binding.as_ref().expect("binding");
    assert_eq!(
        binding.metadata.name.as_deref(),
        Some(TASK_PODS_ROLE_BINDING)
    );
    assert_eq!(binding.metadata.namespace.as_deref(), Some("atoll-acme"));
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(binding.role_ref.name, "release-task-pods");
    let subjects = binding.subjects.as_ref().expect("subjects");
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(subjects[0].name, INSTANCE);
    assert_eq!(subjects[0].namespace.as_deref(), Some("atoll-acme"));
    // The ServiceAccount itself still mounts no token for other pods.
    assert_eq!(
        pods.instance_service_account
            .automount_service_account_token,
        Some(false)
    );

    let mut spec = TenantSpec::default();
    spec.tasks.runner = TaskRunner::Process;
    let process = build_with(spec, &config);
    assert_eq!(pod(&process)["automountServiceAccountToken"], false);
    assert!(process.task_pods_role_binding.is_none());
    assert!(
        !process
            .in_order()
            .iter()
            .any(|c| matches!(c, Child::RoleBinding(_)))
    );
}

#[test]
fn files_live_on_a_volume_unless_s3_is_set() {
    let volume = build(TenantSpec::default());
    let claim = volume.storage_claim.as_ref().expect("claim");
    let claim = serde_json::to_value(claim).expect("json");
    assert_eq!(claim["metadata"]["name"], STORAGE_CLAIM);
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    assert_eq!(claim["spec"]["resources"]["requests"]["storage"], "1Gi");
    // Files are data: kept by a Retain deletion like the database volume.
    assert!(claim["metadata"].get("ownerReferences").is_none());
    let pod_spec = pod(&volume);
    assert!(
        pod_spec["volumes"]
            .as_array()
            .expect("volumes")
            .iter()
            .any(|v| { v["persistentVolumeClaim"]["claimName"] == STORAGE_CLAIM })
    );
    assert!(
        pod_spec["containers"][0]["volumeMounts"]
            .as_array()
            .expect("mounts")
            .iter()
            .any(|m| m["mountPath"] == STORAGE_DIR)
    );
    assert_eq!(
        env_value(&volume, contract::STORAGE_DIR).as_deref(),
        Some(STORAGE_DIR)
    );
    let deployment = serde_json::to_value(&volume.instance_deployment).expect("json");
    assert_eq!(deployment["spec"]["strategy"]["type"], "Recreate");

    let mut spec = TenantSpec::default();
    spec.deletion_policy = atoll_crds::DeletionPolicy::Delete;
    spec.storage.storage_class_name = Some("fast".into());
    let deleting = build(spec);
    let claim = deleting.storage_claim.as_ref().expect("claim");
    assert!(claim.metadata.owner_references.is_some());
    assert_eq!(
        claim
            .spec
            .as_ref()
            .and_then(|s| s.storage_class_name.as_deref()),
        Some("fast")
    );

    let mut spec = TenantSpec::default();
    spec.storage.s3 = Some(s3());
    let object_store = build(spec);
    assert!(object_store.storage_claim.is_none());
    assert!(!pod(&object_store).to_string().contains(STORAGE_CLAIM));
    assert_eq!(env_value(&object_store, contract::STORAGE_DIR), None);
    let deployment = serde_json::to_value(&object_store.instance_deployment).expect("json");
    assert!(deployment["spec"].get("strategy").is_none());
    let value = |name| env_value(&object_store, name);
    assert_eq!(
        value(contract::STORAGE_S3_ENDPOINT).as_deref(),
        Some("https://s3.example.com")
    );
    assert_eq!(
        value(contract::STORAGE_S3_BUCKET).as_deref(),
        Some("acme-files")
    );
    assert_eq!(
        value(contract::STORAGE_S3_REGION).as_deref(),
        Some("eu-west-1")
    );
    for (name, key) in [
        (contract::STORAGE_S3_ACCESS_KEY_ID, "accessKeyId"),
        (contract::STORAGE_S3_SECRET_ACCESS_KEY, "secretAccessKey"),
    ] {
        let var = env(&object_store)
            .into_iter()
            .find(|v| v["name"] == name)
            .expect("credential variable");
        assert!(
            var.get("value").is_none(),
            "{name} must come from the Secret"
        );
        assert_eq!(var["valueFrom"]["secretKeyRef"]["name"], "acme-s3");
        assert_eq!(var["valueFrom"]["secretKeyRef"]["key"], key);
    }
}

#[test]
fn listed_secrets_are_mounted_read_only_into_the_instance_only() {
    let mut spec = TenantSpec::default();
    spec.secrets = vec![
        LocalSecretRef {
            name: "flow-secrets".into(),
        },
        LocalSecretRef {
            name: "more".into(),
        },
    ];
    let children = build(spec);
    assert_eq!(
        env_value(&children, contract::SECRETS_DIR).as_deref(),
        Some(SECRETS_DIR)
    );
    let pod_spec = pod(&children);
    let volume = pod_spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|v| v["name"] == "secrets")
        .expect("secrets volume")
        .clone();
    let sources = volume["projected"]["sources"].as_array().expect("sources");
    let names: Vec<&str> = sources
        .iter()
        .filter_map(|s| s["secret"]["name"].as_str())
        .collect();
    assert_eq!(names, ["flow-secrets", "more"]);
    assert!(sources.iter().all(|s| s["secret"]["optional"] == true));
    let mount = pod_spec["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts")
        .iter()
        .find(|m| m["mountPath"] == SECRETS_DIR)
        .expect("secrets mount")
        .clone();
    assert_eq!(mount["readOnly"], true);
}

#[test]
fn task_pods_reach_the_instance_and_the_outside_only() {
    let children = build(TenantSpec::default());
    let fence = policy(&children, TASK_PODS_NETWORK_POLICY)
        .spec
        .as_ref()
        .expect("spec");
    assert_eq!(
        fence
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(task_pod_selector())
    );
    // Nothing comes in.
    assert!(
        fence
            .policy_types
            .as_ref()
            .expect("types")
            .contains(&"Ingress".to_owned())
    );
    assert!(fence.ingress.is_none());
    let egress = fence.egress.as_ref().expect("egress");
    // To the instance's pods, on the API port only.
    let to_instance = egress
        .iter()
        .find(|r| r.to.iter().flatten().any(|p| p.pod_selector.is_some()))
        .expect("rule to the instance");
    let peer = &to_instance.to.as_ref().expect("peers")[0];
    assert_eq!(
        peer.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(
            TenantContext::new(&tenant(TenantSpec::default()), &OperatorConfig::default())
                .expect("ctx")
                .selector(INSTANCE)
        )
    );
    assert!(peer.namespace_selector.is_none(), "only this namespace");
    assert_eq!(
        to_instance
            .ports
            .as_ref()
            .map(|p| p.iter().map(|p| p.port.clone()).collect::<Vec<_>>()),
        Some(vec![Some(IntOrString::Int(INSTANCE_PORT))])
    );
    // No pod selector reaches the database; outside, private ranges stay
    // blocked.
    assert_eq!(egress.len(), 2);
    let outside = egress
        .iter()
        .find(|r| r.ports.is_none())
        .expect("outside rule");
    for peer in outside.to.iter().flatten() {
        let block = peer.ip_block.as_ref().expect("address ranges only");
        let except = block.except.clone().unwrap_or_default();
        assert!(
            except.iter().any(|c| c == "10.0.0.0/8" || c == "fc00::/7"),
            "{except:?}"
        );
    }
    // The instance admits task pods on its API port.
    let admit = policy(&children, INSTANCE_FROM_TASK_PODS)
        .spec
        .as_ref()
        .expect("spec");
    let rule = &admit.ingress.as_ref().expect("ingress")[0];
    assert_eq!(
        rule.from.as_ref().expect("from")[0]
            .pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.clone()),
        Some(task_pod_selector())
    );
    assert_eq!(
        rule.ports.as_ref().expect("ports")[0].port,
        Some(IntOrString::Int(INSTANCE_PORT))
    );
}

#[test]
fn the_instance_reaches_the_api_server_only_to_run_task_pods() {
    let config = OperatorConfig {
        api_server_cidrs: crate::config::Cidrs(vec!["10.0.0.1/32".into()]),
        ..OperatorConfig::default()
    };
    let api_rule = |children: &Children| {
        policy(children, "instance-egress")
            .spec
            .as_ref()
            .and_then(|s| s.egress.clone())
            .unwrap_or_default()
            .into_iter()
            .find(|r| {
                r.to.iter()
                    .flatten()
                    .any(|p| p.ip_block.as_ref().is_some_and(|b| b.cidr == "10.0.0.1/32"))
            })
    };
    let rule = api_rule(&build_with(TenantSpec::default(), &config)).expect("API server rule");
    assert_eq!(
        rule.ports.expect("ports")[0].port,
        Some(IntOrString::Int(6443))
    );
    let mut spec = TenantSpec::default();
    spec.tasks.runner = TaskRunner::Process;
    assert!(api_rule(&build_with(spec, &config)).is_none());
    assert!(
        api_rule(&build(TenantSpec::default())).is_none(),
        "not configured"
    );
}
