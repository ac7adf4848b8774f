//! Scenario: what a tenant Editor and a careless or hostile platform user
//! try against the isolation Atoll promises, on the installed platform.
//! Each attack is one the security review found open; each must now fail
//! with an answer that says why, and change nothing else.

use std::sync::Arc;

use atoll_crds::conditions;

use crate::Report;
use crate::harness::{IDENTITY_HOST, RELEASE_NAMESPACE, random_secret};
use crate::harness::{LIMIT, Platform, eventually, tenant_yaml};
use crate::scenarios::{scale, token_when_synced, world};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

/// Runs a one-task flow to its end; returns its final state and its logs.
async fn run_task(
    instance: &crate::harness::Instance,
    token: &str,
    id: &str,
    task: &str,
) -> (String, String) {
    let yaml = format!("id: {id}\nnamespace: attack\ntasks:\n{task}");
    let saved = instance.save_flow(token, &yaml).await;
    assert!(
        (200..300).contains(&saved.status),
        "save flow {id}: {} {}",
        saved.status,
        saved.body
    );
    let execution = instance.run(token, "attack", id).await;
    let state = instance.wait_final(token, &execution).await;
    let logs = instance
        .call(
            "GET",
            &format!("/api/v1/logs/{execution}"),
            Some(token),
            None,
        )
        .await
        .expect("logs answer");
    assert_eq!(logs.status, 200, "logs of {id}: {}", logs.body);
    let detail = instance
        .call(
            "GET",
            &format!("/api/v1/executions/{execution}"),
            Some(token),
            None,
        )
        .await
        .expect("execution answers");
    (state, format!("{}\n{}", logs.body, detail.body))
}

/// Waits until the Tenant's Ready condition has `reason` at its current
/// generation; returns the condition's message.
async fn wait_ready_reason(platform: &Platform, name: &str, reason: &str) -> String {
    eventually(
        &format!("Tenant {name} to show Ready=False ({reason})"),
        LIMIT,
        || async {
            let tenant = platform.tenant(name).await?;
            let status = tenant.status.as_ref()?;
            if status.observed_generation != tenant.metadata.generation {
                return None;
            }
            let ready = conditions::get(&status.conditions, conditions::types::READY)?;
            (ready.status == "False" && ready.reason == reason).then(|| ready.message.clone())
        },
    )
    .await
}

/// Holes 1, 3, 4 and 7 of the security review, as their attackers would try
/// them.
pub async fn tenant_attacks(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let owner = "owner@target.example";
    let eve = "eve@target.example";
    let world = world(
        p,
        &[owner, eve],
        &[("target", &[(owner, "Admin"), (eve, "Editor")], "")],
    )
    .await;
    let instance = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[1], "target").await;

    // 1. Cloud metadata and the cluster's own network, from an HTTP task.
    let mut refused = 0;
    for (id, uri) in [
        (
            "metadata",
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        ),
        ("metadata-v6", "http://[fd00:ec2::254]/latest/meta-data/"),
        ("loopback", "http://localhost:8080/"),
        ("mapped", "http://[::ffff:127.0.0.1]:8080/"),
    ] {
        let task = format!(
            "  - id: fetch\n    type: io.kestra.plugin.core.http.Request\n    uri: \"{uri}\"\n"
        );
        let (state, logs) = run_task(instance, &token, id, &task).await;
        assert_eq!(state, "FAILED", "{uri} must be refused: {logs}");
        assert!(
            logs.contains("ATOLL_HTTP_ALLOW_PRIVATE"),
            "the refusal of {uri} says why and how to allow it: {logs}"
        );
        refused += 1;
    }
    report.figure(format!(
        "HTTP tasks to metadata, loopback and mapped addresses: {refused} of 4 refused after DNS resolution"
    ));

    // 4. A shell task sees none of the instance's secrets.
    // (Whether it can read the instance's /proc/<pid>/environ depends on
    // running as the instance's unprivileged user, which this suite, as
    // root, does not: the instance's own tests check it is not dumpable.)
    let task = "  - id: peek\n    type: io.kestra.plugin.scripts.shell.Commands\n    commands:\n      - env\n    env:\n      DECLARED: by-the-task\n";
    let (state, logs) = run_task(instance, &token, "peek", task).await;
    assert_eq!(state, "SUCCESS", "the shell task runs: {logs}");
    assert!(
        logs.contains("DECLARED=by-the-task"),
        "declared env: {logs}"
    );
    assert!(logs.contains("PATH="), "PATH is kept: {logs}");
    for leak in ["ATOLL_DATABASE_URL", "postgres://", "ATOLL_IDENTITY"] {
        assert!(!logs.contains(leak), "the shell task saw {leak}: {logs}");
    }
    let secrets = p.secrets();
    let seen: Vec<&str> = secrets
        .iter()
        .filter(|(_, secret)| logs.contains(secret.as_str()))
        .map(|(what, _)| what.as_str())
        .collect();
    assert!(seen.is_empty(), "the shell task saw secrets: {seen:?}");
    report.figure(format!(
        "shell task env: no ATOLL_ variable, no database URL, 0 of {} platform secrets",
        secrets.len()
    ));

    // 3. The platform's own namespace cannot be named or captured.
    let (ok, out) = p
        .apply_yaml("system", &tenant_yaml("system", &[], ""))
        .await;
    assert!(!ok, "a Tenant named system is refused by the schema: {out}");
    assert!(out.contains("reserved"), "the refusal says why: {out}");
    assert!(p.tenant("system").await.is_none());
    Api::<k8s_openapi::api::core::v1::Namespace>::all(p.client.clone())
        .create(
            &kube::api::PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "atoll-squat"}}))
                .expect("namespace"),
        )
        .await
        .expect("someone else's namespace");
    let (ok, out) = p.apply_yaml("squat", &tenant_yaml("squat", &[], "")).await;
    assert!(ok, "apply squat: {out}");
    let message = wait_ready_reason(p, "squat", "NamespaceConflict").await;
    assert!(message.contains("atoll-squat"), "{message}");
    let labels = p
        .kubectl_ok(&[
            "get",
            "namespace",
            "atoll-squat",
            "-o",
            "jsonpath={.metadata.labels}",
        ])
        .await;
    assert!(
        !labels.contains("atoll.dev/tenant"),
        "not adopted: {labels}"
    );
    // Deleting the Tenant (policy Delete) leaves the namespace alone.
    p.delete_tenant("squat", false).await;
    let phase = p
        .kubectl_ok(&[
            "get",
            "namespace",
            "atoll-squat",
            "-o",
            "jsonpath={.status.phase}",
        ])
        .await;
    assert_eq!(phase, "Active", "the foreign namespace is untouched");
    p.kubectl_ok(&["delete", "namespace", "atoll-squat", "--wait=false"])
        .await;
    report.figure(
        "Tenant named system: refused by the schema; existing namespace atoll-squat: NamespaceConflict, not adopted, not deleted with the Tenant",
    );

    // 7. Another Tenant's host.
    let target_url = p
        .tenant("target")
        .await
        .and_then(|t| t.status?.url)
        .expect("target URL");
    let host = target_url
        .split("://")
        .nth(1)
        .and_then(|rest| rest.split([':', '/']).next())
        .expect("host")
        .to_owned();
    let extra = format!("  ingress:\n    host: {host}\n");
    let (ok, out) = p
        .apply_yaml("copycat", &tenant_yaml("copycat", &[], &extra))
        .await;
    assert!(ok, "apply copycat: {out}");
    let message = wait_ready_reason(p, "copycat", "HostConflict").await;
    assert!(message.contains("Tenant target"), "{message}");
    let health = instance
        .call("GET", "/healthz", None, None)
        .await
        .expect("target answers");
    assert_eq!(health.status, 200, "target keeps its host");
    let extra = "  ingress:\n    host: login.bank.example\n";
    let (ok, out) = p
        .apply_yaml("phisher", &tenant_yaml("phisher", &[], extra))
        .await;
    assert!(ok, "apply phisher: {out}");
    wait_ready_reason(p, "phisher", "HostNotAllowed").await;
    report.figure(format!(
        "Tenant claiming {host}: HostConflict, target still served; a host outside the allowed domains: HostNotAllowed"
    ));
    for name in ["copycat", "phisher"] {
        p.delete_tenant(name, true).await;
    }

    // 2. A second cluster's operator, with its own credential at identity,
    //    tries to take over or remove this cluster's tenant.
    let rogue = random_secret();
    p.remember_secret("identity credential of cluster rogue", &rogue);
    Api::<Secret>::namespaced(p.client.clone(), RELEASE_NAMESPACE)
        .patch(
            "atoll-identity-clusters",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"rogue": rogue}})),
        )
        .await
        .expect("a credential for a second cluster");
    // Identity re-reads its credentials directory; restart it so the
    // (simulated) kubelet mounts the Secret's new key.
    scale(p, "atoll-identity", 0).await;
    let http = p.http(&format!("http://{IDENTITY_HOST}"));
    let identity = format!("http://{IDENTITY_HOST}");
    eventually("identity to stop", LIMIT, || async {
        let up = http
            .get(format!("{identity}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        (!up).then_some(())
    })
    .await;
    scale(p, "atoll-identity", 1).await;
    eventually("identity to answer again", LIMIT, || async {
        http.get(format!("{identity}/readyz"))
            .send()
            .await
            .ok()?
            .status()
            .is_success()
            .then_some(())
    })
    .await;
    let victim_uid = p
        .tenant("target")
        .await
        .and_then(|t| t.metadata.uid)
        .expect("target uid");
    let claim = http
        .put(format!("{identity}/api/v1/tenants/target"))
        .bearer_auth(&rogue)
        .json(&json!({
            "displayName": "pwned", "url": "https://evil.example", "phase": "Ready",
            "uid": "rogue-uid", "members": [{"email": eve, "role": "Admin"}],
        }))
        .send()
        .await
        .expect("identity answers");
    assert_eq!(
        claim.status().as_u16(),
        409,
        "another cluster's tenant cannot be claimed"
    );
    let lying = http
        .put(format!("{identity}/api/v1/tenants/rogue-own"))
        .bearer_auth(&rogue)
        .json(&json!({"url": "https://r.example", "phase": "Ready", "uid": "u", "cluster": "default"}))
        .send()
        .await
        .expect("identity answers");
    assert_eq!(
        lying.status().as_u16(),
        400,
        "the cluster comes from the credential"
    );
    let removal = http
        .delete(format!("{identity}/api/v1/tenants/target?cluster=default"))
        .bearer_auth(&rogue)
        .send()
        .await
        .expect("identity answers");
    assert_eq!(
        removal.status().as_u16(),
        404,
        "another cluster's tenant cannot be removed"
    );
    // The tenant is intact: its users still get tokens, and they open it.
    let owner_token = token_when_synced(p, &world.sessions[0], "target").await;
    let flows = instance
        .call("GET", "/api/v1/flows/search", Some(&owner_token), None)
        .await
        .expect("instance answers");
    assert_eq!(
        flows.status, 200,
        "the owner still works in target: {}",
        flows.body
    );
    let claims = decode_claims(&owner_token);
    assert_eq!(
        claims["tenant_uid"],
        victim_uid.as_str(),
        "tokens carry the Tenant's uid"
    );
    report.figure(
        "a second cluster's credential: claim 409, lying cluster 400, removal 404; target intact, its tokens carry its uid",
    );
    p.delete_tenant("target", true).await;
}

/// The claims of a JWT (not verified: the instance did that).
fn decode_claims(token: &str) -> serde_json::Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("claims JSON")
}

/// The refusal a request as the operator's account got: `(code, message)`.
fn refusal<T: std::fmt::Debug>(result: Result<T, kube::Error>, what: &str) -> (u16, String) {
    match result {
        Err(kube::Error::Api(status)) => (status.code, status.message),
        other => panic!("{what} was not refused: {other:?}"),
    }
}

/// Scenario: the chart's RBAC and its ValidatingAdmissionPolicy are
/// enforced by the cluster's API server (kubesim's, or the real
/// authorizer and admission chain on realkube). As the operator's service
/// account: reading a Secret the ClusterRole does not name and listing
/// Pods are refused by RBAC; creating a ConfigMap (allowed by RBAC
/// cluster-wide) outside a tenant namespace is refused by the admission
/// policy; and nothing was stored. RoleBindings (the instance's task-pod
/// rights) only in tenant namespaces, and there only to the chart's
/// task-pods ClusterRole (binding cluster-admin is refused by the real API
/// server's escalation check).
pub async fn chart_enforced(platform: Arc<Platform>, report: Arc<Report>) {
    use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
    use kube::api::{ListParams, PostParams};
    let p = &*platform;
    let Some(cluster) = p.cluster() else {
        println!(
            "    SKIPPED on an external cluster (needs a client certificate or token for the operator's account): RBAC and admission checks"
        );
        return;
    };
    let bystander = "e2e-bystander";
    let namespaces = Api::<Namespace>::all(p.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": bystander}})).expect("namespace"),
        )
        .await
        .expect("a namespace that is not a tenant's");
    Api::<Secret>::namespaced(p.client.clone(), bystander)
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "payroll"}, "stringData": {"key": "x"}}),
            )
            .expect("secret"),
        )
        .await
        .expect("a Secret in it");
    let operator = cluster
        .client_as_service_account(RELEASE_NAMESPACE, "atoll-operator")
        .await
        .expect("a client as the operator's account");

    // RBAC: a Secret the ClusterRole does not name, and Pods.
    let (code, rbac_secret) = refusal(
        Api::<Secret>::namespaced(operator.clone(), bystander)
            .get("payroll")
            .await,
        "reading Secret payroll as the operator",
    );
    assert_eq!(code, 403, "{rbac_secret}");
    assert!(
        rbac_secret.contains("cannot get resource \"secrets\""),
        "an RBAC refusal: {rbac_secret}"
    );
    let (code, rbac_pods) = refusal(
        Api::<Pod>::all(operator.clone())
            .list(&ListParams::default())
            .await,
        "listing Pods as the operator",
    );
    assert_eq!(code, 403, "{rbac_pods}");
    assert!(
        rbac_pods.contains("cannot list resource \"pods\""),
        "{rbac_pods}"
    );

    // Admission: RBAC lets the operator create ConfigMaps anywhere; the
    // policy keeps it inside tenant namespaces.
    let configmaps = Api::<ConfigMap>::namespaced(operator.clone(), bystander);
    let (code, admission) = refusal(
        configmaps
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": "planted"}}))
                    .expect("configmap"),
            )
            .await,
        "creating a ConfigMap outside tenant namespaces as the operator",
    );
    assert_eq!(code, 403, "{admission}");
    assert!(
        admission.contains("ValidatingAdmissionPolicy")
            && admission.contains("is not an Atoll tenant namespace"),
        "refused by the chart's admission policy: {admission}"
    );
    let stored = Api::<ConfigMap>::namespaced(p.client.clone(), bystander)
        .get_opt("planted")
        .await
        .expect("read");
    assert!(stored.is_none(), "the refused ConfigMap was stored");
    // And a namespace it did not label is not its to delete.
    let (code, delete) = refusal(
        Api::<Namespace>::all(operator.clone())
            .delete(bystander, &Default::default())
            .await,
        "deleting a foreign namespace as the operator",
    );
    assert_eq!(code, 403, "{delete}");
    assert!(delete.contains("ValidatingAdmissionPolicy"), "{delete}");
    // RoleBindings (task-pod rights, #17): none outside tenant namespaces.
    let (code, binding) = refusal(
        Api::<RoleBinding>::namespaced(operator.clone(), bystander)
            .create(
                &PostParams::default(),
                &task_pods_binding("atoll-task-pods"),
            )
            .await,
        "binding the task-pods role outside tenant namespaces as the operator",
    );
    assert_eq!(code, 403, "{binding}");
    assert!(binding.contains("ValidatingAdmissionPolicy"), "{binding}");
    let escalation = bind_only_the_task_pods_role(p, cluster, &operator).await;
    let gate = gate_may_only_wake(p, cluster).await;
    namespaces
        .delete(bystander, &Default::default())
        .await
        .expect("the bystander namespace deleted");

    let server = p.cluster_name();
    println!("    refused by RBAC on {server}: {rbac_secret}");
    println!("    refused by RBAC on {server}: {rbac_pods}");
    println!("    refused by the chart's admission policy on {server}: {admission}");
    println!("    refused by the chart's admission policy on {server}: {binding}");
    println!("    {escalation}");
    println!("    {gate}");
    report.figure(format!(
        "{server} enforced the chart: RBAC refused the operator's account a Secret it does not name and listing Pods (403); the ValidatingAdmissionPolicy refused it a ConfigMap, a RoleBinding and a namespace deletion outside tenant namespaces (403), nothing stored; in a tenant namespace it may bind the task-pods role only; the wake gate's account may set a Tenant's wake annotations and nothing else"
    ));
}

/// The wake gate's account (#20): RBAC lets it patch Tenants, and the
/// chart's admission policy lets those patches set the two wake
/// annotations only; a change of the spec or of another annotation is
/// refused, and so is reading a Secret.
async fn gate_may_only_wake(p: &Platform, cluster: &atoll_testkit::cluster::TestCluster) -> String {
    use atoll_crds::{Tenant, WAKE_CAUSE_ANNOTATION, WAKE_REQUESTED_AT_ANNOTATION};
    let name = "e2e-gate-scope";
    let (ok, out) = p.apply_yaml(name, &tenant_yaml(name, &[], "")).await;
    assert!(ok, "{out}");
    let gate = cluster
        .client_as_service_account(RELEASE_NAMESPACE, "atoll-wake-gate")
        .await
        .expect("a client as the wake gate's account");
    let tenants = Api::<Tenant>::all(gate.clone());
    let wake = json!({"metadata": {"annotations": {
        WAKE_REQUESTED_AT_ANNOTATION: "2026-12-07T12:00:00.000Z",
        WAKE_CAUSE_ANNOTATION: "request",
    }}});
    tenants
        .patch(name, &PatchParams::default(), &Patch::Merge(&wake))
        .await
        .expect("the gate may ask for a wake");
    let (code, spec) = refusal(
        tenants
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"spec": {"suspended": true}})),
            )
            .await,
        "changing a Tenant's spec as the wake gate",
    );
    assert_eq!(code, 403, "{spec}");
    assert!(
        spec.contains("may change only a Tenant's wake annotations"),
        "{spec}"
    );
    let (code, other) = refusal(
        tenants
            .patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(&json!({"metadata": {"annotations": {"argocd.argoproj.io/sync-options": "Prune=false"}}})),
            )
            .await,
        "setting another annotation as the wake gate",
    );
    assert_eq!(code, 403, "{other}");
    let (code, secret) = refusal(
        Api::<Secret>::namespaced(gate, RELEASE_NAMESPACE)
            .get("atoll-identity-first-admin")
            .await,
        "reading a Secret as the wake gate",
    );
    assert_eq!(code, 403, "{secret}");
    let kept = p.tenant(name).await.expect("the Tenant");
    assert!(!kept.spec.suspended, "the refused change was stored");
    p.delete_tenant(name, true).await;
    format!(
        "the wake gate's account set the wake annotations; refused on {}: {spec}",
        p.cluster_name()
    )
}

/// A RoleBinding giving the `instance` account of its namespace `role`.
fn task_pods_binding(role: &str) -> RoleBinding {
    serde_json::from_value(json!({
        "metadata": {"name": "e2e-task-pods"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "instance"}],
    }))
    .expect("rolebinding")
}

/// In a namespace labelled as a tenant's, the operator may bind the
/// chart's task-pods ClusterRole (its `bind` right, by name) and no other:
/// binding cluster-admin is refused by the API server's escalation check.
/// kubesim does not implement that check, so the refusal is checked on the
/// real control plane only, saying so.
async fn bind_only_the_task_pods_role(
    p: &Platform,
    cluster: &atoll_testkit::cluster::TestCluster,
    operator: &kube::Client,
) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    use kube::api::PostParams;
    let namespace = "atoll-e2e-binding";
    let namespaces = Api::<Namespace>::all(p.client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": namespace, "labels": {
                "atoll.dev/tenant": "e2e-binding",
                "app.kubernetes.io/managed-by": "atoll-operator",
            }}}))
            .expect("namespace"),
        )
        .await
        .expect("a namespace labelled as a tenant's");
    let bindings = Api::<RoleBinding>::namespaced(operator.clone(), namespace);
    bindings
        .create(
            &PostParams::default(),
            &task_pods_binding("atoll-task-pods"),
        )
        .await
        .expect("the operator binds the task-pods role in a tenant namespace");
    let outcome = if cluster.kind() == atoll_testkit::cluster::ClusterKind::RealKube {
        let mut admin = task_pods_binding("cluster-admin");
        admin.metadata.name = Some("e2e-escalation".into());
        let (code, message) = refusal(
            bindings.create(&PostParams::default(), &admin).await,
            "binding cluster-admin as the operator",
        );
        assert_eq!(code, 403, "{message}");
        format!(
            "refused by RBAC escalation on {}: {message}",
            p.cluster_name()
        )
    } else {
        format!(
            "not checked on {} (kubesim has no RBAC escalation check): binding another ClusterRole",
            p.cluster_name()
        )
    };
    namespaces
        .delete(namespace, &Default::default())
        .await
        .expect("the namespace deleted");
    outcome
}
