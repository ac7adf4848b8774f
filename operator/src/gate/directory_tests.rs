use atoll_crds::{IdleStatus, TenantStatus};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
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

fn slice(namespace: &str, endpoints: &[(&str, Option<bool>)]) -> EndpointSlice {
    EndpointSlice {
        metadata: kube::api::ObjectMeta {
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: endpoints
            .iter()
            .map(|(ip, ready)| Endpoint {
                addresses: vec![(*ip).to_owned()],
                conditions: Some(EndpointConditions {
                    ready: *ready,
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ports: Some(vec![EndpointPort {
            name: Some("http".into()),
            port: Some(8080),
            ..Default::default()
        }]),
    }
}

#[test]
fn only_ready_pods_of_the_tenants_namespace_are_targets() {
    let slices = [
        std::sync::Arc::new(slice(
            "atoll-acme",
            &[
                ("10.0.0.2", Some(true)),
                ("10.0.0.3", Some(false)),
                ("10.0.0.4", None),
            ],
        )),
        std::sync::Arc::new(slice("atoll-other", &[("10.0.9.9", Some(true))])),
    ];
    let ready = ready_instance(slices.iter(), "atoll-acme");
    let ready: Vec<String> = ready.iter().map(ToString::to_string).collect();
    assert_eq!(ready, ["10.0.0.2:8080", "10.0.0.4:8080"]);
    assert!(ready_instance(slices.iter(), "atoll-none").is_empty());
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
