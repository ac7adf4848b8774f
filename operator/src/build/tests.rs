//! The builders' unit tests: what each object says about the Tenant.

use super::*;
use atoll_crds::{IngressTls, TenantSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

fn tenant(spec: TenantSpec) -> Tenant {
    let mut tenant = Tenant::new("acme", spec);
    tenant.metadata.uid = Some("uid-1".into());
    tenant
}

fn build(tenant: &Tenant, config: &OperatorConfig) -> Children {
    let ctx = TenantContext::new(tenant, config).expect("context");
    let credentials = DatabaseCredentials::dedicated(&ctx, "pw".into());
    children(&ctx, &credentials)
}

fn pod_template(children: &Children) -> serde_json::Value {
    serde_json::to_value(
        &children
            .instance_deployment
            .spec
            .as_ref()
            .expect("spec")
            .template,
    )
    .expect("serializes")
}

#[test]
fn a_tenant_without_uid_is_refused() {
    let mut t = tenant(TenantSpec::default());
    t.metadata.uid = None;
    let config = OperatorConfig::default();
    assert_eq!(
        TenantContext::new(&t, &config).err(),
        Some(BuildError::MissingUid)
    );
}

#[test]
fn suspension_scales_instance_and_database_to_zero() {
    let config = OperatorConfig::default();
    let running = build(&tenant(TenantSpec::default()), &config);
    let suspended = build(
        &tenant(TenantSpec {
            suspended: true,
            ..TenantSpec::default()
        }),
        &config,
    );
    let replicas = |c: &Children| {
        (
            c.instance_deployment.spec.as_ref().and_then(|s| s.replicas),
            c.database_stateful_set
                .as_ref()
                .and_then(|s| s.spec.as_ref())
                .and_then(|s| s.replicas),
        )
    };
    assert_eq!(replicas(&running), (Some(1), Some(1)));
    assert_eq!(replicas(&suspended), (Some(0), Some(0)));
    // Suspension keeps the volume: the claim template is unchanged.
    assert_eq!(
        running
            .database_stateful_set
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .map(|s| &s.volume_claim_templates),
        suspended
            .database_stateful_set
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .map(|s| &s.volume_claim_templates),
    );
}

#[test]
fn a_new_version_changes_the_pod_template_and_nothing_else_does_by_accident() {
    let config = OperatorConfig::default();
    let mut spec = TenantSpec::default();
    let before = build(&tenant(spec.clone()), &config);
    assert_eq!(
        pod_template(&before),
        pod_template(&build(&tenant(spec.clone()), &config))
    );
    spec.instance.version = Some("9.9.9".into());
    let after = build(&tenant(spec), &config);
    assert_ne!(pod_template(&before), pod_template(&after));
    assert!(
        pod_template(&after)
            .to_string()
            .contains("atoll/atoll-instance:9.9.9")
    );
}

#[test]
fn every_container_runs_restricted() {
    let config = OperatorConfig::default();
    // The Process runner: no pod needs an API token (the Kubernetes
    // runner's instance does, see tests_tasks.rs).
    let mut spec = TenantSpec::default();
    spec.tasks.runner = atoll_crds::TaskRunner::Process;
    let children = build(&tenant(spec), &config);
    let templates = [
        children
            .instance_deployment
            .spec
            .as_ref()
            .map(|s| s.template.clone()),
        children
            .database_stateful_set
            .as_ref()
            .and_then(|s| s.spec.as_ref())
            .map(|s| s.template.clone()),
    ];
    for template in templates.into_iter().flatten() {
        let pod = template.spec.expect("pod spec");
        assert_eq!(pod.automount_service_account_token, Some(false));
        assert_eq!(
            pod.security_context
                .as_ref()
                .and_then(|s| s.run_as_non_root),
            Some(true)
        );
        for container in pod.containers {
            let sc = container.security_context.expect("security context");
            assert_eq!(sc.allow_privilege_escalation, Some(false));
            assert_eq!(sc.read_only_root_filesystem, Some(true));
            assert_eq!(
                sc.capabilities.and_then(|c| c.drop),
                Some(vec!["ALL".to_owned()])
            );
            assert!(
                container.resources.and_then(|r| r.limits).is_some(),
                "limits needed under the quota"
            );
        }
    }
}

#[test]
fn env_contract_and_secret_agree() {
    let config = OperatorConfig {
        identity_issuer: Some("https://id.example.com".into()),
        ..OperatorConfig::default()
    };
    let children = build(&tenant(TenantSpec::default()), &config);
    let template = pod_template(&children);
    let env = template["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .clone();
    let names: Vec<&str> = env.iter().filter_map(|e| e["name"].as_str()).collect();
    for required in [
        "ATOLL_TENANT",
        "ATOLL_DATABASE_URL",
        "ATOLL_LISTEN",
        "ATOLL_PUBLIC_URL",
        "ATOLL_IDENTITY_ISSUER",
    ] {
        assert!(
            names.contains(&required),
            "{required} missing from {names:?}"
        );
    }
    let url_ref = &env
        .iter()
        .find(|e| e["name"] == "ATOLL_DATABASE_URL")
        .expect("database url")["valueFrom"]["secretKeyRef"];
    assert_eq!(url_ref["name"], DATABASE_SECRET);
    let data = children.database_secret.data.as_ref().expect("data");
    let url =
        String::from_utf8(data[url_ref["key"].as_str().expect("key")].0.clone()).expect("utf-8");
    assert_eq!(
        url,
        "postgres://atoll:pw@database.atoll-acme.svc:5432/atoll"
    );
}

#[test]
fn host_url_and_tls_follow_spec_then_config() {
    let config = OperatorConfig {
        base_domain: "example.net".into(),
        public_port: Some(8080),
        ..OperatorConfig::default()
    };
    let plain = tenant(TenantSpec::default());
    let ctx = TenantContext::new(&plain, &config).expect("context");
    assert_eq!(ctx.url(), "http://acme.example.net:8080");
    assert!(ctx.tls().is_none());

    let with_issuer = OperatorConfig {
        cluster_issuer: Some("letsencrypt".into()),
        ..config.clone()
    };
    let ctx = TenantContext::new(&plain, &with_issuer).expect("context");
    assert_eq!(
        ctx.tls(),
        Some(("instance-tls".to_owned(), Some("letsencrypt".to_owned())))
    );
    let ingress = instance_ingress(&ctx);
    assert_eq!(
        ingress
            .metadata
            .annotations
            .as_ref()
            .map(|a| a["cert-manager.io/cluster-issuer"].as_str()),
        Some("letsencrypt")
    );

    let mut spec = TenantSpec::default();
    spec.ingress.host = Some("flows.acme.com".into());
    spec.ingress.tls = Some(IngressTls {
        secret_name: Some("acme-cert".into()),
        cluster_issuer: None,
    });
    let own = tenant(spec);
    let ctx = TenantContext::new(&own, &config).expect("context");
    assert_eq!(ctx.url(), "https://flows.acme.com:8080");
    assert!(instance_ingress(&ctx).metadata.annotations.is_none());
}

#[test]
fn network_policies_deny_by_default_and_open_only_what_the_mode_needs() {
    let config = OperatorConfig::default();
    let dedicated = build(&tenant(TenantSpec::default()), &config);
    let names = |c: &Children| -> Vec<String> {
        c.network_policies
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect()
    };
    assert_eq!(
        names(&dedicated),
        [
            "default-deny",
            "allow-dns",
            "instance-from-ingress",
            "database-from-instance",
            "instance-egress",
            "task-pods",
            "instance-from-task-pods"
        ]
    );
    let deny = dedicated.network_policies[0].spec.as_ref().expect("spec");
    assert_eq!(
        deny.policy_types.as_deref(),
        Some(&["Ingress".to_owned(), "Egress".to_owned()][..])
    );
    assert_eq!(deny.pod_selector, Some(LabelSelector::default()));

    let mut spec = TenantSpec::default();
    spec.database.mode = DatabaseMode::External;
    let external = build(&tenant(spec), &config);
    assert!(!names(&external).contains(&"database-from-instance".to_owned()));
    assert!(external.database_stateful_set.is_none() && external.database_service.is_none());
}

#[test]
fn the_instance_env_is_the_shared_contract() {
    let mut spec = TenantSpec::default();
    spec.instance.config.execution_retention_days = Some(30);
    let config = OperatorConfig {
        identity_issuer: Some("https://id.example.com".into()),
        ..OperatorConfig::default()
    };
    let children = build(&tenant(spec), &config);
    let env = pod_template(&children)["spec"]["containers"][0]["env"].clone();
    let rendered: Vec<String> = env
        .as_array()
        .expect("env")
        .iter()
        .filter_map(|v| v["name"].as_str().map(str::to_owned))
        .filter(|name| name.starts_with("ATOLL_"))
        .collect();
    for name in &rendered {
        assert!(
            atoll_crds::contract::ALL.contains(&name.as_str()),
            "{name} is rendered but not part of atoll_crds::contract"
        );
    }
    let uid = env
        .as_array()
        .expect("env")
        .iter()
        .find(|v| v["name"] == atoll_crds::contract::TENANT_UID)
        .expect("tenant uid rendered");
    assert_eq!(uid["value"], "uid-1");
    for required in [
        atoll_crds::contract::TENANT,
        atoll_crds::contract::DATABASE_URL,
        atoll_crds::contract::METRICS_LISTEN,
        atoll_crds::contract::LOG_LEVEL,
        atoll_crds::contract::MAX_CONCURRENT_TASK_RUNS,
        atoll_crds::contract::EXECUTION_RETENTION_DAYS,
        atoll_crds::contract::IDENTITY_ISSUER,
    ] {
        assert!(rendered.iter().any(|n| n == required), "{required} missing");
    }
    // The Service routes the API port only, never the metrics port.
    let service = serde_json::to_value(&children.instance_service).expect("json");
    let ports = service["spec"]["ports"].as_array().expect("ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["targetPort"], "http");
}

#[test]
fn another_database_rolls_the_instance_without_naming_the_password() {
    let tenant = tenant(TenantSpec::default());
    let config = OperatorConfig::default();
    let ctx = TenantContext::new(&tenant, &config).expect("context");
    let dedicated = DatabaseCredentials::dedicated(&ctx, "secret-pw".into());
    let shared = DatabaseCredentials {
        host: "db.internal".into(),
        ..dedicated.clone()
    };
    let template = |credentials: &DatabaseCredentials| {
        serde_json::to_value(
            instance_deployment(&ctx, credentials)
                .spec
                .expect("spec")
                .template,
        )
        .expect("json")
    };
    // The URL comes from a Secret, read only when a pod starts: the pod
    // template itself must change for the pods to be replaced.
    assert_ne!(template(&dedicated), template(&shared));
    let annotation = template(&shared)["metadata"]["annotations"][DATABASE_ANNOTATION].clone();
    assert_eq!(annotation, "atoll@db.internal:5432/atoll");
    assert!(!template(&shared).to_string().contains("secret-pw"));
}

/// Whether an address is inside a CIDR range (test helper).
fn in_cidr(ip: std::net::IpAddr, cidr: &str) -> bool {
    use std::net::IpAddr;
    let (base, bits) = cidr.split_once('/').expect("cidr");
    let bits: u32 = bits.parse().expect("prefix");
    match (ip, base.parse::<IpAddr>().expect("address")) {
        (IpAddr::V4(ip), IpAddr::V4(base)) => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(ip) & mask == u32::from(base) & mask
        }
        (IpAddr::V6(ip), IpAddr::V6(base)) => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(ip) & mask == u128::from(base) & mask
        }
        _ => false,
    }
}

/// Whether the instance's egress policies let it reach `ip` on `port`
/// (an address outside the cluster: only ipBlock peers can match it).
fn instance_may_reach(children: &Children, ip: &str, port: i32) -> bool {
    let ip: std::net::IpAddr = ip.parse().expect("ip");
    children
        .network_policies
        .iter()
        .filter_map(|p| p.spec.as_ref())
        .flat_map(|spec| spec.egress.iter().flatten())
        .any(|rule| {
            let port_ok = rule
                .ports
                .as_ref()
                .is_none_or(|ports| ports.iter().any(|p| p.port == Some(IntOrString::Int(port))));
            let peer_ok = rule.to.iter().flatten().any(|peer| {
                peer.ip_block.as_ref().is_some_and(|block| {
                    in_cidr(ip, &block.cidr)
                        && !block
                            .except
                            .iter()
                            .flatten()
                            .any(|except| in_cidr(ip, except))
                })
            });
            port_ok && peer_ok
        })
}

#[test]
fn instances_never_reach_cloud_metadata_or_private_networks() {
    let config = OperatorConfig::default();
    let children = build(&tenant(TenantSpec::default()), &config);
    for blocked in [
        "169.254.169.254",
        "169.254.170.2",
        "100.100.100.200",
        "10.1.2.3",
        "172.20.0.1",
        "192.168.1.1",
        "127.0.0.1",
        "fd00:ec2::254",
        "fe80::1",
        "::1",
    ] {
        for port in [80, 443, 5432] {
            assert!(
                !instance_may_reach(&children, blocked, port),
                "{blocked}:{port} is reachable"
            );
        }
    }
    for open in ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2e"] {
        assert!(instance_may_reach(&children, open, 443), "{open} blocked");
    }
    // A shared database server may sit in a private range: only its port.
    let mut spec = TenantSpec::default();
    spec.database.mode = DatabaseMode::External;
    let external = build(&tenant(spec), &config);
    assert!(instance_may_reach(&external, "10.1.2.3", 5432));
    assert!(!instance_may_reach(&external, "10.1.2.3", 80));
    assert!(!instance_may_reach(&external, "169.254.169.254", 80));

    // Identity: its pods and its port only, not the whole namespace.
    let egress = children
        .network_policies
        .iter()
        .find(|p| p.metadata.name.as_deref() == Some("instance-egress"))
        .and_then(|p| p.spec.as_ref())
        .and_then(|s| s.egress.as_ref())
        .expect("instance egress");
    let identity = egress
        .iter()
        .find(|rule| {
            rule.to
                .iter()
                .flatten()
                .any(|peer| peer.namespace_selector.is_some())
        })
        .expect("identity rule");
    let peer = &identity.to.as_ref().expect("peers")[0];
    assert_eq!(
        peer.pod_selector
            .as_ref()
            .and_then(|s| s.match_labels.as_ref())
            .and_then(|l| l.get("app.kubernetes.io/name"))
            .map(String::as_str),
        Some("atoll-identity")
    );
    assert_eq!(
        identity.ports.as_ref().map(|p| p.len()),
        Some(1),
        "only identity's port"
    );
}
