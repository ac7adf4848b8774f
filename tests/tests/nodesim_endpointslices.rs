//! EndpointSlices (`discovery.k8s.io/v1`) as a component sees them:
//!
//! - the API serves them (discovery, create, list by the
//!   `kubernetes.io/service-name` label, watch, validation), on kubesim as
//!   on the real API server; the one difference: the real server refuses
//!   loopback addresses, which nodesim's pod IPs are;
//! - on kubesim, nodesim plays the EndpointSlice controller: a Service
//!   with a selector gets one slice of its pods, rewritten when a pod's
//!   readiness changes or the pod goes, and not rewritten at rest;
//! - a Service without a selector whose slice someone else wrote (as the
//!   operator writes the `wake-gate` slice) answers through its address
//!   and through an Ingress, and follows the slice's readiness. On
//!   realkube the slice points at a server this test runs on the host's
//!   non-loopback address, since the real API server refuses the pod's.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use atoll_testkit::cluster::{self, ClusterKind, TestCluster};
use atoll_testkit::nodesim::endpointslices::{CONTROLLER, MANAGED_BY_LABEL, SERVICE_NAME_LABEL};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig, testserver};
use common::{eventually, from_json, http_get, namespace, pods, ready};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

const LIMIT: Duration = Duration::from_secs(60);

fn slice(name: &str, service: &str, addresses: &[&str]) -> EndpointSlice {
    from_json(json!({
        "metadata": {"name": name, "labels": {SERVICE_NAME_LABEL: service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": addresses, "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": 8080}]
    }))
}

/// The `(reason, field)` of each cause of a refusal, or the code of
/// whatever else came back.
async fn refusal(api: &Api<EndpointSlice>, object: Value) -> Result<Vec<(String, String)>, String> {
    let slice: EndpointSlice = from_json(object);
    match api.create(&PostParams::default(), &slice).await {
        Err(kube::Error::Api(status)) if status.code == 422 => Ok(status
            .details
            .map(|d| d.causes)
            .unwrap_or_default()
            .into_iter()
            .map(|c| (c.reason, c.field))
            .collect()),
        other => Err(format!("{other:?}")),
    }
}

fn cause(reason: &str, field: &str) -> Vec<(String, String)> {
    vec![(reason.to_owned(), field.to_owned())]
}

async fn endpoint_slices_are_served_listed_by_label_watched_and_validated(kind: ClusterKind) {
    let cluster = TestCluster::start(kind).await.expect("cluster starts");
    let client = cluster.client();
    namespace(&client, "disc").await;
    let resources = client
        .list_api_group_resources("discovery.k8s.io/v1")
        .await
        .expect("discovery.k8s.io/v1 is served");
    let listed = resources
        .resources
        .iter()
        .find(|r| r.name == "endpointslices");
    assert_eq!(
        listed.map(|r| (r.kind.as_str(), r.namespaced)),
        Some(("EndpointSlice", true))
    );

    let api = Api::<EndpointSlice>::namespaced(client.clone(), "disc");
    let by_service = ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}=web"));
    let rv = api
        .list(&by_service)
        .await
        .expect("list")
        .metadata
        .resource_version
        .unwrap_or_default();
    let watch = WatchParams::default()
        .labels(&format!("{SERVICE_NAME_LABEL}=web"))
        .timeout(30);
    let events = api.watch(&watch, &rv).await.expect("watch");

    let created = api
        .create(
            &PostParams::default(),
            &slice("web-1", "web", &["10.1.2.3"]),
        )
        .await
        .expect("a slice is created");
    let port = &created.ports.as_deref().expect("ports")[0];
    assert_eq!(port.protocol.as_deref(), Some("TCP"), "protocol defaulted");
    api.create(
        &PostParams::default(),
        &slice("other-1", "other", &["10.1.2.4"]),
    )
    .await
    .expect("another Service's slice is created");
    let patch = json!({"endpoints": [{"addresses": ["10.1.2.3"], "conditions": {"ready": false}}]});
    api.patch("web-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("the slice is patched");
    let names: Vec<String> = api
        .list(&by_service)
        .await
        .expect("list by label")
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    assert_eq!(names, ["web-1"]);
    let seen: Vec<(String, String)> = tokio::time::timeout(
        LIMIT,
        events
            .map_ok(|e| match e {
                WatchEvent::Added(s) => ("ADDED".to_owned(), s.name_any()),
                WatchEvent::Modified(s) => ("MODIFIED".to_owned(), s.name_any()),
                other => (format!("{other:?}"), String::new()),
            })
            .take(2)
            .try_collect(),
    )
    .await
    .expect("two watch events in time")
    .expect("watch events");
    assert_eq!(
        seen,
        [
            ("ADDED".to_owned(), "web-1".to_owned()),
            ("MODIFIED".to_owned(), "web-1".to_owned())
        ]
    );

    let bad = |extra: Value| {
        let mut object =
            json!({"metadata": {"name": "bad"}, "addressType": "IPv4", "endpoints": []});
        if let (Some(o), Some(e)) = (object.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        object
    };
    let mut no_type = bad(json!({}));
    no_type
        .as_object_mut()
        .expect("object")
        .remove("addressType");
    assert_eq!(
        refusal(&api, no_type).await,
        Ok(cause("FieldValueRequired", "addressType"))
    );
    assert_eq!(
        refusal(&api, bad(json!({"addressType": "IPv5"}))).await,
        Ok(cause("FieldValueNotSupported", "addressType"))
    );
    assert_eq!(
        refusal(&api, bad(json!({"endpoints": [{"addresses": []}]}))).await,
        Ok(cause("FieldValueRequired", "endpoints[0].addresses"))
    );
    let many: Vec<String> = (1..=101).map(|i| format!("10.0.0.{i}")).collect();
    assert_eq!(
        refusal(&api, bad(json!({"endpoints": [{"addresses": many}]}))).await,
        Ok(cause("FieldValueTooMany", "endpoints[0].addresses"))
    );
    let retyped = api
        .patch(
            "web-1",
            &PatchParams::default(),
            &Patch::Merge(&json!({"addressType": "FQDN"})),
        )
        .await;
    assert!(
        matches!(&retyped, Err(kube::Error::Api(s)) if s.code == 422),
        "addressType is immutable: {retyped:?}"
    );

    // nodesim's pod IPs are loopback addresses: kubesim takes them, the
    // real API server does not (so there no slice can point at a pod).
    let loopback = api
        .create(
            &PostParams::default(),
            &slice("loop", "web", &["127.64.0.9"]),
        )
        .await;
    match kind {
        ClusterKind::KubeSim => {
            loopback.expect("kubesim accepts a loopback address");
        }
        ClusterKind::RealKube => match loopback {
            Err(kube::Error::Api(s)) if s.code == 422 => {
                assert!(s.message.contains("loopback"), "{}", s.message);
            }
            other => panic!("realkube took a loopback address: {other:?}"),
        },
    }
    cluster.stop().await.expect("cluster stops");
}

fn testserver_container() -> Value {
    json!({
        "name": "web",
        "image": "atoll-testserver:dev",
        "env": [{"name": "LISTEN", "value": "0.0.0.0:8080"}],
        "ports": [{"name": "http", "containerPort": 8080}],
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"}, "periodSeconds": 1}
    })
}

fn node_config(cluster: &TestCluster) -> NodeSimConfig {
    NodeSimConfig::new(cluster.dir().join("node"))
        .binary("atoll-testserver", env!("CARGO_BIN_EXE_atoll-testserver"))
        .ingress("127.0.0.1:0".parse().expect("address"))
}

/// The slices the controller keeps for Service `service` of `demo`.
async fn controller_slices(client: &Client, service: &str) -> Vec<EndpointSlice> {
    let labels = format!("{SERVICE_NAME_LABEL}={service},{MANAGED_BY_LABEL}={CONTROLLER}");
    Api::<EndpointSlice>::namespaced(client.clone(), "demo")
        .list(&ListParams::default().labels(&labels))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// `(address, ready)` of each endpoint of the only slice.
fn endpoints_of(slices: &[EndpointSlice]) -> Option<Vec<(String, bool)>> {
    let [slice] = slices else { return None };
    Some(
        slice
            .endpoints
            .iter()
            .map(|e| {
                let ready = e.conditions.as_ref().and_then(|c| c.ready);
                (e.addresses.join(","), ready == Some(true))
            })
            .collect(),
    )
}

/// kubesim only: on a real cluster the real controller does this job.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodesim_keeps_the_slice_of_a_selector_service_on_kubesim() {
    let kind = ClusterKind::KubeSim;
    if !cluster::selected("nodesim_keeps_the_slice_of_a_selector_service", kind) {
        return;
    }
    let cluster = TestCluster::start(kind).await.expect("cluster starts");
    let node = cluster
        .start_node(node_config(&cluster))
        .await
        .expect("nodesim starts");
    let client = cluster.client();
    namespace(&client, "demo").await;
    let ready_file = cluster.dir().join("ready");
    std::fs::write(&ready_file, b"").expect("ready file");
    let mut container = testserver_container();
    container["args"] = json!(["--ready-file", ready_file.to_string_lossy()]);
    let deployment: Deployment = from_json(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"automountServiceAccountToken": false, "terminationGracePeriodSeconds": 5, "containers": [container]}
        }}
    }));
    let deployments = Api::<Deployment>::namespaced(client.clone(), "demo");
    deployments
        .create(&PostParams::default(), &deployment)
        .await
        .expect("deployment");
    let services = Api::<Service>::namespaced(client.clone(), "demo");
    let service: Service = from_json(json!({
        "metadata": {"name": "web", "labels": {"team": "a"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}
    }));
    let service = services
        .create(&PostParams::default(), &service)
        .await
        .expect("service");

    let pod = eventually("the ready pod", LIMIT, || async {
        pods(&client, "demo", "app=web")
            .await
            .into_iter()
            .find(ready)
    })
    .await;
    let pod_ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("pod IP");
    let slices = eventually("the slice listing the ready pod", LIMIT, || async {
        let slices = controller_slices(&client, "web").await;
        (endpoints_of(&slices)? == [(pod_ip.clone(), true)]).then_some(slices)
    })
    .await;
    let slice = &slices[0];
    let name = slice.name_any();
    assert!(
        name.starts_with("web-") && name.len() == "web-".len() + 5,
        "{name}"
    );
    assert_eq!(slice.address_type, "IPv4");
    assert_eq!(slice.labels().get("team").map(String::as_str), Some("a"));
    let owner = &slice.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str()),
        ("Service", service.uid().expect("uid").as_str())
    );
    let target = slice.endpoints[0].target_ref.as_ref().expect("targetRef");
    assert_eq!(target.name.as_deref(), Some(pod.name_any().as_str()));
    let ports = serde_json::to_value(&slice.ports).expect("ports");
    assert_eq!(
        ports,
        json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
    );

    // At rest, nothing is rewritten: a Service change that leaves the
    // slice as it is (an annotation), then a second Service whose slice
    // shows nodesim went past the first.
    let at_rest = slice.resource_version();
    let annotate = json!({"metadata": {"annotations": {"example.com/note": "x"}}});
    services
        .patch("web", &PatchParams::default(), &Patch::Merge(&annotate))
        .await
        .expect("annotated");
    let probe: Service = from_json(json!({
        "metadata": {"name": "probe"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 81, "targetPort": 8080}]}
    }));
    services
        .create(&PostParams::default(), &probe)
        .await
        .expect("second service");
    eventually("the second Service's slice", LIMIT, || async {
        endpoints_of(&controller_slices(&client, "probe").await)?
            .first()
            .map(|_| ())
    })
    .await;
    let again = controller_slices(&client, "web").await;
    assert_eq!(again[0].resource_version(), at_rest, "no write at rest");

    // Not ready, then gone.
    std::fs::remove_file(&ready_file).expect("ready file removed");
    eventually("the endpoint to turn not ready", LIMIT, || async {
        let eps = endpoints_of(&controller_slices(&client, "web").await)?;
        (eps == [(pod_ip.clone(), false)]).then_some(())
    })
    .await;
    let scale = json!({"spec": {"replicas": 0}});
    deployments
        .patch("web", &PatchParams::default(), &Patch::Merge(&scale))
        .await
        .expect("scaled");
    eventually("the slice to empty", LIMIT, || async {
        endpoints_of(&controller_slices(&client, "web").await)?
            .is_empty()
            .then_some(())
    })
    .await;
    services
        .delete("web", &DeleteParams::default())
        .await
        .expect("service deleted");
    eventually("the slice to go with its Service", LIMIT, || async {
        controller_slices(&client, "web")
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    node.shutdown().await;
    cluster.stop().await.expect("cluster stops");
}

/// This host's IPv4 address other than loopback (the source of its
/// default route; nothing is sent).
fn host_address() -> Ipv4Addr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
    let found = socket
        .connect("10.255.255.255:9")
        .and_then(|()| socket.local_addr());
    match found {
        Ok(SocketAddr::V4(addr)) if !addr.ip().is_loopback() => *addr.ip(),
        other => panic!(
            "the real API server refuses loopback addresses in EndpointSlices, and this host has no other IPv4 address to point one at ({other:?})"
        ),
    }
}

/// What the `wake-gate` slice points at: a nodesim pod on kubesim; on
/// realkube, which refuses the pod's loopback IP, the same test server
/// run here on this host's other address.
async fn backend(kind: ClusterKind, client: &Client) -> SocketAddr {
    match kind {
        ClusterKind::KubeSim => {
            let pod: Pod = from_json(json!({
                "metadata": {"name": "gate-0", "labels": {"app": "gate"}},
                "spec": {"automountServiceAccountToken": false, "terminationGracePeriodSeconds": 5,
                         "containers": [testserver_container()]}
            }));
            Api::<Pod>::namespaced(client.clone(), "gate")
                .create(&PostParams::default(), &pod)
                .await
                .expect("gate pod");
            let pod = eventually("the gate pod to be ready", LIMIT, || async {
                pods(client, "gate", "app=gate")
                    .await
                    .into_iter()
                    .find(ready)
            })
            .await;
            let ip = pod.status.and_then(|s| s.pod_ip).expect("pod IP");
            SocketAddr::new(ip.parse().expect("an IPv4 pod IP"), 8080)
        }
        ClusterKind::RealKube => {
            let listener = tokio::net::TcpListener::bind((host_address(), 0))
                .await
                .expect("listening on the host's address");
            let addr = listener.local_addr().expect("address");
            let app = testserver::app(testserver::Args {
                listen: addr,
                ready_file: None,
                ready_after: 0.0,
                unhealthy_file: None,
            });
            tokio::spawn(async move { axum::serve(listener, app).await });
            addr
        }
    }
}

async fn a_selectorless_service_routes_to_the_addresses_of_its_slice(kind: ClusterKind) {
    let cluster = TestCluster::start(kind).await.expect("cluster starts");
    let node = cluster
        .start_node(node_config(&cluster))
        .await
        .expect("nodesim starts");
    let client = cluster.client();
    namespace(&client, "gate").await;
    namespace(&client, "tenant").await;
    let target = backend(kind, &client).await;

    let service: Service = from_json(json!({
        "metadata": {"name": "wake-gate"},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }));
    Api::<Service>::namespaced(client.clone(), "tenant")
        .create(&PostParams::default(), &service)
        .await
        .expect("service without selector");
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "tenant");
    let gate: EndpointSlice = from_json(json!({
        "metadata": {"name": "wake-gate", "labels": {
            SERVICE_NAME_LABEL: "wake-gate", MANAGED_BY_LABEL: "atoll-operator"
        }},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [target.ip().to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "http", "port": target.port(), "protocol": "TCP"}]
    }));
    slices
        .create(&PostParams::default(), &gate)
        .await
        .expect("the wake-gate slice");
    let ingress: Ingress = from_json(json!({
        "metadata": {"name": "acme"},
        "spec": {"rules": [{"host": "acme.atoll.localhost", "http": {"paths": [{
            "path": "/", "pathType": "Prefix",
            "backend": {"service": {"name": "wake-gate", "port": {"name": "http"}}}
        }]}}]}
    }));
    Api::<Ingress>::namespaced(client.clone(), "tenant")
        .create(&PostParams::default(), &ingress)
        .await
        .expect("ingress");

    let service_addr = |node: &NodeSim| {
        node.service_ip("tenant", "wake-gate")
            .map(|ip| SocketAddr::from((ip, 80)))
    };
    let router = node.ingress_addr().expect("router");
    let answer = eventually("the Service to answer", LIMIT, || async {
        http_get(service_addr(&node)?, "wake-gate.tenant", "/").await
    })
    .await;
    assert_eq!(answer, (200, "ok".to_owned()));
    let answer = eventually("the Ingress to answer", LIMIT, || async {
        http_get(router, "acme.atoll.localhost", "/")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    assert_eq!(answer.1, "ok");

    // The slice's readiness decides.
    let ready = |ready: bool| json!({"endpoints": [{"addresses": [target.ip().to_string()], "conditions": {"ready": ready}}]});
    let params = PatchParams::default();
    slices
        .patch("wake-gate", &params, &Patch::Merge(&ready(false)))
        .await
        .expect("not ready");
    eventually("the Service to stop answering", LIMIT, || async {
        http_get(service_addr(&node)?, "wake-gate.tenant", "/")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    slices
        .patch("wake-gate", &params, &Patch::Merge(&ready(true)))
        .await
        .expect("ready");
    eventually("the Ingress to answer again", LIMIT, || async {
        http_get(router, "acme.atoll.localhost", "/")
            .await
            .filter(|(code, _)| *code == 200)
    })
    .await;
    node.shutdown().await;
    cluster.stop().await.expect("cluster stops");
}

atoll_testkit::on_each_cluster!(
    endpoint_slices_are_served_listed_by_label_watched_and_validated,
    a_selectorless_service_routes_to_the_addresses_of_its_slice,
);
