//! kubesim over HTTP for our binaries: a kube client built from the written
//! kubeconfig, kube's discovery finding a CRD's resource once created, and
//! the dynamic API serving it.

use atoll_crds::{Tenant, TenantSpec, tenant_crd};
use atoll_testkit::kubesim::KubeSim;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, PostParams, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Discovery;
use kube::{Client, Config};

#[tokio::test]
async fn a_client_from_the_kubeconfig_discovers_custom_resources() {
    let sim = KubeSim::new();
    let server = sim
        .serve("127.0.0.1:0".parse().expect("loopback"))
        .await
        .expect("listening");
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("kubeconfig");
    server.write_kubeconfig(&path).expect("written");
    let kubeconfig = Kubeconfig::read_from(&path).expect("readable kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("valid kubeconfig");
    assert_eq!(config.default_namespace, "default");
    let client = Client::try_from(config).expect("client");
    let version = client.apiserver_version().await.expect("/version");
    assert_eq!(version.major, "1");

    let before = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert!(!before.has_group("atoll.dev"));
    assert!(before.has_group("apps") && before.has_group("coordination.k8s.io"));

    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &tenant_crd())
        .await
        .expect("CRD created");
    let tenants: Api<Tenant> = Api::all(client.clone());
    tenants
        .create(
            &PostParams::default(),
            &Tenant::new("acme", TenantSpec::default()),
        )
        .await
        .expect("tenant created");

    let after = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    let group = after.get("atoll.dev").expect("the CRD's group is served");
    let (resource, caps) = group.recommended_kind("Tenant").expect("Tenant served");
    assert_eq!(resource.plural, "tenants");
    assert_eq!(caps.scope, kube::discovery::Scope::Cluster);
    let dynamic: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let listed = dynamic.list(&ListParams::default()).await.expect("listed");
    assert_eq!(listed.items.len(), 1);

    // Deleting the CRD stops serving the resource and removes its objects.
    crds.delete("tenants.atoll.dev", &DeleteParams::default())
        .await
        .expect("deleted");
    let gone = Discovery::new(client.clone())
        .run()
        .await
        .expect("discovery");
    assert!(!gone.has_group("atoll.dev"));
    assert!(tenants.list(&ListParams::default()).await.is_err());

    // Shutting down ends open watches instead of waiting on them.
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let mut watch = namespaces
        .watch(&WatchParams::default(), &sim.resource_version().to_string())
        .await
        .expect("watching")
        .boxed();
    tokio::time::timeout(Duration::from_secs(10), server.shutdown())
        .await
        .expect("shutdown does not hang on open watches");
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = watch.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the watch stream ended");
}
