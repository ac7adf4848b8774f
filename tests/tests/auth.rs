//! Service-account identity end to end: kubesim's TokenRequest API and
//! bearer-token authentication, RBAC as the API server applies it, and
//! nodesim handing pods their service account's token so that a process in
//! a pod acts as that account.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use atoll_testkit::kubesim::rbac::{Policy, UserInfo};
use atoll_testkit::kubesim::{KubeSim, Verb};
use atoll_testkit::nodesim::{NodeSim, NodeSimConfig};
use common::{eventually, from_json, namespace, pods};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Secret, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, Config};
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(30);
const NS: &str = "auth";

fn api_status(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn service_account(client: &Client, name: &str, automount: Option<bool>) {
    let account: ServiceAccount = from_json(json!({
        "metadata": {"name": name, "namespace": NS},
        "automountServiceAccountToken": automount,
    }));
    Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &account)
        .await
        .expect("service account created");
}

/// Lets service account `reader` list ConfigMaps in the namespace.
async fn reader_role(client: &Client) {
    let role: Role = from_json(json!({
        "metadata": {"name": "reader", "namespace": NS},
        "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
    }));
    Api::<Role>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &role)
        .await
        .expect("role created");
    let binding: RoleBinding = from_json(json!({
        "metadata": {"name": "reader", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": NS}],
    }));
    Api::<RoleBinding>::namespaced(client.clone(), NS)
        .create(&PostParams::default(), &binding)
        .await
        .expect("binding created");
}

async fn token(client: &Client, account: &str, seconds: i64) -> Result<String, kube::Error> {
    let request = TokenRequest {
        spec: TokenRequestSpec {
            expiration_seconds: Some(seconds),
            ..TokenRequestSpec::default()
        },
        ..TokenRequest::default()
    };
    let answer = Api::<ServiceAccount>::namespaced(client.clone(), NS)
        .create_token_request(account, &PostParams::default(), &request)
        .await?;
    Ok(answer.status.expect("a token in the status").token)
}

/// A client over HTTP presenting `token`.
fn client_with_token(url: &str, token: &str) -> Client {
    let mut config = Config::new(url.parse().expect("url"));
    config.default_namespace = NS.to_owned();
    config.auth_info.token = Some(token.to_owned().into());
    Client::try_from(config).expect("client")
}

#[tokio::test]
async fn tokens_name_their_service_account_and_rbac_decides_what_it_may_do() {
    let sim = KubeSim::builder().rbac(true).build();
    let server = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("listens");
    let admin = sim.client();
    namespace(&admin, NS).await;
    namespace(&admin, "elsewhere").await;

    // The TokenRequest API, as the API server serves it.
    let missing = token(&admin, "reader", 3600).await.expect_err("no account");
    let status = api_status(missing);
    assert_eq!((status.code, status.reason.as_str()), (404, "NotFound"));
    service_account(&admin, "reader", None).await;
    let short = api_status(token(&admin, "reader", 60).await.expect_err("too short"));
    assert_eq!(short.code, 422);
    assert!(
        short.message.contains("spec.expirationSeconds"),
        "{short:?}"
    );
    let reader_token = token(&admin, "reader", 3600).await.expect("token");

    let stranger = client_with_token(&server.url(), "not-a-token");
    let refused = Api::<ConfigMap>::default_namespaced(stranger)
        .list(&ListParams::default())
        .await
        .expect_err("unknown token");
    assert_eq!(api_status(refused).code, 401);

    // RBAC: nothing is allowed until a role is bound.
    let reader = client_with_token(&server.url(), &reader_token);
    let configmaps = Api::<ConfigMap>::default_namespaced(reader.clone());
    let forbidden = api_status(
        configmaps
            .list(&ListParams::default())
            .await
            .expect_err("no role yet"),
    );
    assert_eq!(
        (forbidden.code, forbidden.reason.as_str()),
        (403, "Forbidden")
    );
    assert_eq!(
        forbidden.message,
        "configmaps is forbidden: User \"system:serviceaccount:auth:reader\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"auth\""
    );
    reader_role(&admin).await;
    configmaps
        .list(&ListParams::default())
        .await
        .expect("the bound role allows listing");
    let elsewhere = Api::<ConfigMap>::namespaced(reader.clone(), "elsewhere")
        .list(&ListParams::default())
        .await
        .expect_err("the role is bound in its namespace only");
    assert_eq!(api_status(elsewhere).code, 403);
    let secrets = Api::<Secret>::default_namespaced(reader.clone())
        .list(&ListParams::default())
        .await
        .expect_err("the role does not name secrets");
    assert_eq!(api_status(secrets).code, 403);
    // Requests without credentials (tests, nodesim) stay allowed.
    Api::<Secret>::namespaced(admin.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("no credentials, no RBAC");

    let reader_requests: Vec<(Verb, String, u16)> = sim
        .request_log()
        .records()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some("system:serviceaccount:auth:reader"))
        .map(|r| (r.verb, r.resource, r.code))
        .collect();
    assert_eq!(
        reader_requests,
        [
            (Verb::List, "configmaps".to_owned(), 403),
            (Verb::List, "configmaps".to_owned(), 200),
            (Verb::List, "configmaps".to_owned(), 403),
            (Verb::List, "secrets".to_owned(), 403),
        ]
    );
    server.shutdown().await;
}

/// Grants service account `writer` exactly `rules` in the namespace
/// (replacing what it had).
async fn writer_role(client: &Client, rules: serde_json::Value) {
    let apply = PatchParams::apply("test").force();
    let role: Role = from_json(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "writer", "namespace": NS},
        "rules": rules,
    }));
    Api::<Role>::namespaced(client.clone(), NS)
        .patch("writer", &apply, &Patch::Apply(&role))
        .await
        .expect("role applied");
    let binding: RoleBinding = from_json(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "writer", "namespace": NS},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "writer"},
        "subjects": [{"kind": "ServiceAccount", "name": "writer", "namespace": NS}],
    }));
    Api::<RoleBinding>::namespaced(client.clone(), NS)
        .patch("writer", &apply, &Patch::Apply(&binding))
        .await
        .expect("binding applied");
}

fn applied_config_map(name: &str) -> ConfigMap {
    from_json(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": NS},
        "data": {"applied": "yes"},
    }))
}

/// As on a real API server (k8s.io/apiserver `handlers/patch.go`): a
/// server-side apply that creates its object is authorized for `create`
/// too, with the object's name; an apply that updates needs `patch` only,
/// and other patches never create.
#[tokio::test]
async fn an_apply_that_creates_needs_create_as_well_as_patch() {
    let sim = KubeSim::builder().rbac(true).build();
    let server = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("listens");
    let admin = sim.client();
    namespace(&admin, NS).await;
    service_account(&admin, "writer", None).await;
    let writer = client_with_token(
        &server.url(),
        &token(&admin, "writer", 3600).await.expect("token"),
    );
    let apply = PatchParams::apply("writer");
    let as_admin = Api::<ConfigMap>::namespaced(admin.clone(), NS);
    let as_writer = Api::<ConfigMap>::namespaced(writer.clone(), NS);

    // patch only: an apply that would create is refused, and creates nothing.
    writer_role(
        &admin,
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch"]}]),
    )
    .await;
    let refused = api_status(
        as_writer
            .patch("new", &apply, &Patch::Apply(applied_config_map("new")))
            .await
            .expect_err("no create"),
    );
    assert_eq!((refused.code, refused.reason.as_str()), (403, "Forbidden"));
    assert_eq!(
        refused.message,
        "configmaps \"new\" is forbidden: User \"system:serviceaccount:auth:writer\" cannot create resource \"configmaps\" in API group \"\" in the namespace \"auth\""
    );
    let details = refused.details.expect("details");
    assert_eq!(
        (details.name.as_str(), details.kind.as_str()),
        ("new", "configmaps")
    );
    assert!(
        as_admin.get_opt("new").await.expect("get").is_none(),
        "a refused create stores nothing"
    );
    // Dry run or not, the create is authorized.
    let dry = api_status(
        as_writer
            .patch(
                "new",
                &PatchParams::apply("writer").dry_run(),
                &Patch::Apply(applied_config_map("new")),
            )
            .await
            .expect_err("no create, even dry"),
    );
    assert_eq!(dry.code, 403);
    // An apply to an object that exists is an update: patch suffices.
    as_admin
        .create(
            &PostParams::default(),
            &from_json(json!({"metadata": {"name": "existing"}})),
        )
        .await
        .expect("created by the administrator");
    let updated = as_writer
        .patch(
            "existing",
            &apply,
            &Patch::Apply(applied_config_map("existing")),
        )
        .await
        .expect("an apply that updates needs patch only");
    assert_eq!(updated.data.expect("data")["applied"], "yes");
    // Other patch types never create: 404, whatever the roles.
    let missing = api_status(
        as_writer
            .patch(
                "absent",
                &PatchParams::default(),
                &Patch::Merge(json!({"data": {"a": "b"}})),
            )
            .await
            .expect_err("a merge patch does not create"),
    );
    assert_eq!(missing.code, 404);

    // patch and create: the apply creates.
    writer_role(
        &admin,
        json!([
            {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["patch", "create"]},
            {"apiGroups": [""], "resources": ["secrets"], "resourceNames": ["named"], "verbs": ["patch", "create"]},
        ]),
    )
    .await;
    as_writer
        .patch("new", &apply, &Patch::Apply(applied_config_map("new")))
        .await
        .expect("an apply with create creates");
    assert!(as_admin.get_opt("new").await.expect("get").is_some());
    // The create is authorized with the object's name: resourceNames hold.
    let secret = |name: &str| -> Secret {
        from_json(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": NS},
            "stringData": {"k": "v"},
        }))
    };
    let secrets = Api::<Secret>::namespaced(writer.clone(), NS);
    secrets
        .patch("named", &apply, &Patch::Apply(secret("named")))
        .await
        .expect("the named secret is created");
    let other = api_status(
        secrets
            .patch("other", &apply, &Patch::Apply(secret("other")))
            .await
            .expect_err("not a named secret"),
    );
    assert_eq!(other.code, 403);

    // The log says which applies were also authorized for create, and the
    // RBAC coverage check counts them.
    let user = UserInfo::service_account(NS, "writer");
    let records: Vec<_> = sim
        .request_log()
        .records()
        .into_iter()
        .filter(|r| r.user.as_deref() == Some(user.name.as_str()))
        .collect();
    let summary: Vec<(Verb, &str, u16, &[&str])> = records
        .iter()
        .map(|r| {
            (
                r.verb,
                r.name.as_str(),
                r.code,
                r.also_authorized.as_slice(),
            )
        })
        .collect();
    let create: &[&str] = &["create"];
    assert_eq!(
        summary,
        [
            (Verb::Apply, "new", 403, create),
            (Verb::Apply, "new", 403, create),
            (Verb::Apply, "existing", 200, &[][..]),
            (Verb::Patch, "absent", 404, &[][..]),
            (Verb::Apply, "new", 201, create),
            (Verb::Apply, "named", 201, create),
            (Verb::Apply, "other", 403, &[][..]),
        ]
    );
    let roles: Vec<serde_json::Value> = [
        serde_json::to_value(
            Api::<Role>::namespaced(admin.clone(), NS)
                .get("writer")
                .await
                .expect("role"),
        ),
        serde_json::to_value(
            Api::<RoleBinding>::namespaced(admin.clone(), NS)
                .get("writer")
                .await
                .expect("binding"),
        ),
    ]
    .into_iter()
    .map(|v| v.expect("serialises"))
    .collect();
    let coverage = Policy::from_objects(&roles)
        .expect("RBAC objects")
        .coverage(&user, &records[4..]);
    let denied: Vec<&str> = coverage.denied.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(denied, ["other"]);
    assert!(coverage.unused.is_empty(), "{:?}", coverage.unused);
    server.shutdown().await;
}

/// The system's Python (a version manager's shim on PATH may need more
/// environment than a container gets).
fn python() -> PathBuf {
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() {
        return system;
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .map(|dir| dir.join("python3"))
        .find(|p| p.is_file())
        .expect("python3 on PATH")
}

/// What an in-cluster client does: the token and namespace from the
/// service-account mount, the API server from `KUBERNETES_SERVICE_*`.
const IN_CLUSTER_CLIENT: &str = r#"
import os, sys, time, urllib.request, urllib.error
mount = "/var/run/secrets/kubernetes.io/serviceaccount"
token = open(mount + "/token").read()
namespace = open(mount + "/namespace").read()
base = "http://%s:%s" % (os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"])
print("kubeconfig uses the token:", mount + "/token" in open(os.environ["KUBECONFIG"]).read())
for resource in ("configmaps", "secrets"):
    request = urllib.request.Request(
        "%s/api/v1/namespaces/%s/%s" % (base, namespace, resource),
        headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request) as answer:
            print(resource, answer.status)
    except urllib.error.HTTPError as error:
        print(resource, error.code)
sys.stdout.flush()
time.sleep(3600)
"#;

/// Prints whether `KUBECONFIG` is set, then waits.
const NO_TOKEN: &str = r#"
import os, sys, time
print("kubeconfig=[%s]" % os.environ.get("KUBECONFIG", ""))
sys.stdout.flush()
time.sleep(3600)
"#;

fn python_deployment(name: &str, account: &str, script: &str) -> Deployment {
    from_json(json!({
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "serviceAccountName": account,
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "main",
                        "image": "python:3",
                        "command": ["python3", "-c", script],
                    }],
                }
            }
        }
    }))
}

#[tokio::test]
async fn a_pod_acts_as_its_service_account() {
    let sim = KubeSim::builder()
        .graceful_pod_deletion(true)
        .rbac(true)
        .build();
    let server = sim
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("listens");
    let admin = sim.client();
    namespace(&admin, NS).await;
    service_account(&admin, "reader", None).await;
    service_account(&admin, "quiet", Some(false)).await;
    reader_role(&admin).await;
    let settings: ConfigMap = from_json(json!({"metadata": {"name": "settings", "namespace": NS}}));
    Api::<ConfigMap>::namespaced(admin.clone(), NS)
        .create(&PostParams::default(), &settings)
        .await
        .expect("configmap");
    let state = tempfile::tempdir().expect("tempdir");
    let node = NodeSim::start(
        admin.clone(),
        NodeSimConfig::new(state.path().join("node"))
            .binary("python", python())
            .api_server(server.url()),
    )
    .await
    .expect("nodesim starts");

    let deployments = Api::<Deployment>::namespaced(admin.clone(), NS);
    for d in [
        python_deployment("reader", "reader", IN_CLUSTER_CLIENT),
        // The account's own choice not to mount its token holds for its pods.
        python_deployment("quiet", "quiet", NO_TOKEN),
        python_deployment("ghost", "ghost", NO_TOKEN),
    ] {
        deployments
            .create(&PostParams::default(), &d)
            .await
            .expect("deployment created");
    }

    let output = |app: &'static str, needle: &'static str| {
        let admin = admin.clone();
        let node = &node;
        move || {
            let admin = admin.clone();
            async move {
                let pod = pods(&admin, NS, &format!("app={app}"))
                    .await
                    .into_iter()
                    .next()?;
                node.logs(NS, &pod.metadata.name?, None)
                    .filter(|l| l.contains(needle))
            }
        }
    };
    let log = eventually(
        "the reader pod's requests",
        LIMIT,
        output("reader", "secrets"),
    )
    .await;
    assert_eq!(
        log, "kubeconfig uses the token: True\nconfigmaps 200\nsecrets 403\n",
        "the pod acts as its service account, within its role"
    );
    let log = eventually(
        "the quiet pod's output",
        LIMIT,
        output("quiet", "kubeconfig="),
    )
    .await;
    assert_eq!(log, "kubeconfig=[]\n", "no token, no kubeconfig");
    // A pod of a service account that does not exist cannot mount a token.
    let message = eventually(
        "the ghost pod to report its missing account",
        LIMIT,
        || async {
            let pod = pods(&admin, NS, "app=ghost").await.into_iter().next()?;
            let waiting = pod
                .status?
                .container_statuses?
                .first()?
                .state
                .as_ref()?
                .waiting
                .clone()?;
            waiting.message.filter(|m| m.contains("not found"))
        },
    )
    .await;
    assert!(
        message.contains("serviceaccounts \"ghost\" not found"),
        "{message}"
    );

    let users: Vec<String> = sim
        .request_log()
        .records()
        .into_iter()
        .filter_map(|r| r.user)
        .collect();
    assert!(
        !users.is_empty()
            && users
                .iter()
                .all(|u| u == "system:serviceaccount:auth:reader"),
        "only the reader pod used a token: {users:?}"
    );
    node.shutdown().await;
    server.shutdown().await;
}
