use atoll_crds::{IdleStatus, TenantStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::json;

use super::*;

fn tenant(
    name: &str,
    url: &str,
    suspended: bool,
    sleeping: Option<&str>,
    asked: Option<&str>,
) -> Tenant {
    let mut tenant: Tenant = serde_json::from_value(json!({
        "apiVersion": "atoll.dev/v1alpha1", "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {"suspended": suspended},
    }))
    .expect("tenant");
    if let Some(asked) = asked {
        tenant.metadata.annotations = Some(
            [(
                atoll_crds::WAKE_REQUESTED_AT_ANNOTATION.to_owned(),
                asked.to_owned(),
            )]
            .into(),
        );
    }
    tenant.status = Some(TenantStatus {
        url: Some(url.to_owned()),
        namespace: Some(format!("atoll-{name}")),
        idle: sleeping.map(|since| IdleStatus {
            sleeping_since: Some(Time(since.parse().expect("time"))),
            ..IdleStatus::default()
        }),
        ..TenantStatus::default()
    });
    tenant
}

#[test]
fn hosts_find_their_tenant_and_how_it_stands() {
    let tenants = [
        tenant("acme", "https://acme.example.com", false, None, None),
        tenant(
            "globex",
            "http://globex.example.com:8080",
            false,
            Some("2026-12-07T10:00:00Z"),
            Some("2026-12-07T09:00:00Z"),
        ),
        tenant(
            "initech",
            "https://initech.example.com",
            false,
            Some("2026-12-07T10:00:00Z"),
            Some("2026-12-07T10:00:01Z"),
        ),
        tenant("hooli", "https://hooli.example.com", true, None, None),
    ];
    let find = |host: &str| find(tenants.iter(), host);
    assert_eq!(
        find("ACME.example.com:443").map(|t| t.standing),
        Some(Standing::Awake)
    );
    let globex = find("globex.example.com:8080").expect("globex");
    assert_eq!(globex.namespace, "atoll-globex");
    // A wake asked before the sleep does not count.
    assert_eq!(
        globex.standing,
        Standing::Sleeping {
            wake_requested: false
        }
    );
    assert_eq!(
        find("initech.example.com").map(|t| t.standing),
        Some(Standing::Sleeping {
            wake_requested: true
        })
    );
    assert_eq!(
        find("hooli.example.com").map(|t| t.standing),
        Some(Standing::Suspended)
    );
    assert_eq!(find("evil.example.com"), None);
    assert_eq!(find(""), None);
}

fn pod(namespace: &str, ip: &str, ready: bool, deleting: bool) -> Pod {
    let mut pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": format!("instance-{ip}"), "namespace": namespace},
        "spec": {"containers": [{"name": "instance", "ports": [
            {"name": "http", "containerPort": 8080},
            {"name": "metrics", "containerPort": 9090}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
    }))
    .expect("pod");
    if deleting {
        pod.metadata.deletion_timestamp = Some(Time("2026-12-07T10:00:00Z".parse().expect("time")));
    }
    pod
}

#[test]
fn only_ready_pods_of_the_tenants_namespace_are_targets() {
    let pods = [
        std::sync::Arc::new(pod("atoll-acme", "10.0.0.2", true, false)),
        std::sync::Arc::new(pod("atoll-acme", "10.0.0.3", false, false)),
        std::sync::Arc::new(pod("atoll-acme", "10.0.0.4", true, true)),
        std::sync::Arc::new(pod("atoll-other", "10.0.9.9", true, false)),
    ];
    let ready: Vec<String> = ready_instance(pods.iter(), "atoll-acme")
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(ready, ["10.0.0.2:8080"]);
    assert!(ready_instance(pods.iter(), "atoll-none").is_empty());
}

#[test]
fn only_a_browsers_page_request_gets_html() {
    use axum::http::Method;
    assert!(wants_html(
        &Method::GET,
        Some("text/html,application/xhtml+xml;q=0.9")
    ));
    assert!(!wants_html(&Method::POST, Some("text/html")));
    assert!(!wants_html(&Method::GET, Some("application/json")));
    assert!(!wants_html(&Method::GET, None));
    assert_eq!(
        host_of("https://user@Acme.Example.com:8443/x?y"),
        "acme.example.com"
    );
}
