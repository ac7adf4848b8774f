use super::*;
use serde_json::json;

fn pod(name: &str, ip: &str, ready: bool) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "ns", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
        "spec": {"nodeName": "nodesim", "containers": [{"name": "app", "ports": [{"name": "http", "containerPort": 8080}]}]},
        "status": {"podIP": ip, "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}
    }))
    .expect("pod")
}

fn service(spec: Value) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": "web", "namespace": "ns", "uid": "svc-uid", "labels": {"team": "a"}},
        "spec": spec
    }))
    .expect("service")
}

fn slice(value: Value) -> EndpointSlice {
    serde_json::from_value(value).expect("slice")
}

#[test]
fn a_selector_service_gets_one_labelled_owned_slice_of_its_pods() {
    let svc = service(json!({
        "selector": {"app": "web"}, "clusterIP": "10.96.0.9",
        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]
    }));
    let a = pod("a", "127.64.0.1", true);
    let b = pod("b", "127.64.0.2", false);
    let mut c = pod("c", "127.64.0.3", true);
    c.metadata.labels = None;
    let desired = desired_slice(&svc, &[&b, &a, &c]).expect("a slice");
    let name = slice_name(&svc);
    assert!(name.starts_with("web-") && name.len() == 9, "{name}");
    assert_eq!(name, slice_name(&svc), "stable");
    let got = serde_json::to_value(&desired).expect("json");
    assert_eq!(
        got["metadata"]["labels"],
        json!({
            "team": "a",
            "kubernetes.io/service-name": "web",
            "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"
        })
    );
    assert_eq!(got["metadata"]["ownerReferences"][0]["uid"], "svc-uid");
    assert_eq!(got["addressType"], "IPv4");
    assert_eq!(
        got["ports"],
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );
    assert_eq!(
        got["endpoints"],
        json!([
            {"addresses": ["127.64.0.1"], "conditions": {"ready": true, "serving": true, "terminating": false},
             "nodeName": "nodesim", "targetRef": {"kind": "Pod", "name": "a", "namespace": "ns", "uid": "uid-a"}},
            {"addresses": ["127.64.0.2"], "conditions": {"ready": false, "serving": false, "terminating": false},
             "nodeName": "nodesim", "targetRef": {"kind": "Pod", "name": "b", "namespace": "ns", "uid": "uid-b"}}
        ])
    );
    assert!(desired_slice(&service(json!({"ports": [{"port": 80}]})), &[&a]).is_none());
}

#[test]
fn only_a_difference_is_written() {
    let svc =
        service(json!({"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}));
    let a = pod("a", "127.64.0.1", true);
    let desired = desired_slice(&svc, &[&a]).expect("slice");
    assert!(needs_write(None, &desired));
    // As read back: defaults filled, a label someone else added.
    let mut stored = serde_json::to_value(&desired).expect("json");
    stored["metadata"]["labels"]["extra"] = json!("x");
    stored["metadata"]["resourceVersion"] = json!("7");
    let stored = slice(stored);
    assert!(!needs_write(Some(&stored), &desired));
    let gone = desired_slice(&svc, &[]).expect("slice");
    assert!(needs_write(Some(&stored), &gone));
    assert!(gone.endpoints.is_empty());
}

#[test]
fn a_selectorless_service_reads_the_ready_addresses_of_its_slices_by_port_name() {
    let svc = service(json!({"ports": [
        {"name": "http", "port": 80}, {"name": "admin", "port": 81}
    ]}));
    let gate = slice(json!({
        "metadata": {"name": "wake-gate", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [
            {"addresses": ["127.64.1.1"], "conditions": {"ready": true}},
            {"addresses": ["127.64.1.2"]},
            {"addresses": ["127.64.1.3"], "conditions": {"ready": false}}
        ],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
    }));
    let fqdn = slice(json!({
        "metadata": {"name": "other", "namespace": "ns"},
        "addressType": "FQDN",
        "endpoints": [{"addresses": ["gate.example.com"]}],
        "ports": [{"name": "http", "port": 8080}]
    }));
    let eps = slice_endpoints(&svc, &[&gate, &fqdn]);
    assert_eq!(
        eps[&80],
        vec![
            SocketAddr::from(([127, 64, 1, 1], 8080)),
            SocketAddr::from(([127, 64, 1, 2], 8080))
        ]
    );
    assert_eq!(eps[&81], vec![], "no slice port named admin");
    let unnamed = service(json!({"ports": [{"port": 80}]}));
    let plain = slice(json!({
        "metadata": {"name": "plain", "namespace": "ns"},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.64.1.9"]}],
        "ports": [{"port": 9000}]
    }));
    assert_eq!(
        slice_endpoints(&unnamed, &[&plain])[&80],
        vec![SocketAddr::from(([127, 64, 1, 9], 9000))]
    );
}

#[test]
fn slices_are_grouped_by_the_service_they_name() {
    let labelled = Arc::new(slice(json!({
        "metadata": {"name": "x", "namespace": "ns", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "endpoints": []
    })));
    let stray = Arc::new(slice(json!({
        "metadata": {"name": "y", "namespace": "ns"}, "addressType": "IPv4", "endpoints": []
    })));
    let all = [labelled, stray];
    let grouped = by_service(&all);
    assert_eq!(grouped.len(), 1);
    assert_eq!(grouped[&("ns".to_owned(), "web".to_owned())].len(), 1);
}
