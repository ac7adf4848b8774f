//! The scenarios of issue #9, each with its own users and tenants.

use std::collections::BTreeSet;
use std::sync::Arc;

use atoll_crds::{Phase, conditions};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use serde_json::{Value, json};

use crate::Report;
use crate::cookies;
use crate::endpoints;
use crate::harness::{
    Instance, LIMIT, Platform, Session, eventually, pid_alive, pids, tenant_yaml,
};

/// A one-task flow whose log line names `marker`.
pub(crate) fn flow(marker: &str) -> String {
    format!(
        "id: hello\nnamespace: team\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: hello from {marker}\n"
    )
}

/// A Tenant to apply: name, members (user, role), extra spec YAML.
type TenantSpec<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);

/// Users and their Tenants, ready to work in.
pub(crate) struct World {
    pub(crate) sessions: Vec<Session>,
    pub(crate) instances: Vec<Instance>,
    /// Each user's password, in the order of `users` (for the login form).
    pub(crate) passwords: Vec<String>,
}

/// Creates `users` (by e-mail) in identity, applies `tenants` (name,
/// members, extra spec YAML) with kubectl, waits until each is Ready, and
/// logs every user in.
pub(crate) async fn world(
    platform: &Platform,
    users: &[&str],
    tenants: &[TenantSpec<'_>],
) -> World {
    let admin = platform.admin().await;
    let mut passwords = Vec::new();
    for user in users {
        passwords.push(platform.create_user(&admin, user).await);
    }
    for (name, members, extra) in tenants {
        let (ok, out) = platform
            .apply_yaml(name, &tenant_yaml(name, members, extra))
            .await;
        assert!(ok, "kubectl apply Tenant {name}: {out}");
    }
    let mut instances = Vec::new();
    for (name, _, _) in tenants {
        let tenant = platform.wait_phase(name, Phase::Ready).await;
        let url = tenant
            .status
            .and_then(|s| s.url)
            .unwrap_or_else(|| panic!("Tenant {name} Ready without a URL"));
        let instance = Instance::new(platform, &url);
        instance.wait_healthy().await;
        instances.push(instance);
    }
    let mut sessions = Vec::new();
    for (user, password) in users.iter().zip(&passwords) {
        sessions.push(platform.login(user, password).await.expect("login"));
    }
    World {
        sessions,
        instances,
        passwords,
    }
}

/// Waits until identity knows `user` is a member of `tenant` (the operator
/// syncs members after the Tenant is Ready) and returns the token.
pub(crate) async fn token_when_synced(platform: &Platform, user: &Session, tenant: &str) -> String {
    eventually(
        &format!("{} to get a {tenant} token", user.email),
        LIMIT,
        || async { user.tenant_token(platform, tenant).await.ok() },
    )
    .await
}

/// Saves the flow and runs it to SUCCESS; returns the execution id.
async fn save_and_run(instance: &Instance, token: &str, marker: &str) -> String {
    let saved = instance.save_flow(token, &flow(marker)).await;
    assert!(
        (200..300).contains(&saved.status),
        "save flow: {} {}",
        saved.status,
        saved.body
    );
    let id = instance.run(token, "team", "hello").await;
    assert_eq!(instance.wait_final(token, &id).await, "SUCCESS");
    id
}

/// The flow and the execution are as the user left them.
async fn assert_kept(instance: &Instance, token: &str, execution: &str, marker: &str) {
    let flow = eventually("the flow to be served", LIMIT, || async {
        let answer = instance
            .call("GET", "/api/v1/flows/team/hello", Some(token), None)
            .await?;
        (answer.status == 200).then_some(answer)
    })
    .await;
    assert!(flow.body.contains(marker), "flow kept: {}", flow.body);
    assert_eq!(instance.wait_final(token, execution).await, "SUCCESS");
}

async fn instance_pod_uids(platform: &Platform, namespace: &str) -> BTreeSet<String> {
    Api::<Pod>::namespaced(platform.client.clone(), namespace)
        .list(&ListParams::default().labels("app.kubernetes.io/component=instance"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.uid())
        .collect()
}

/// Container restarts of the instance pods: a crash shows here.
async fn instance_restarts(platform: &Platform, namespace: &str) -> i32 {
    Api::<Pod>::namespaced(platform.client.clone(), namespace)
        .list(&ListParams::default().labels("app.kubernetes.io/component=instance"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .iter()
        .filter_map(|p| p.status.as_ref()?.container_statuses.as_ref())
        .flatten()
        .map(|c| c.restart_count)
        .sum()
}

async fn namespace_exists(platform: &Platform, name: &str) -> bool {
    Api::<Namespace>::all(platform.client.clone())
        .get_opt(name)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// Scenario 1: Chart installed; users created; acme and globex applied from YAML;
/// alice logs in once, lists her tenants, works in acme; the execution is
/// in acme's own database and not in globex's.
pub async fn platform_story(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let (alice, bob, carol) = ("alice@acme.com", "bob@acme.com", "carol@globex.com");
    let world = world(
        p,
        &[alice, bob, carol],
        &[
            ("acme", &[(alice, "Admin"), (bob, "Viewer")], ""),
            ("globex", &[(carol, "Admin")], ""),
        ],
    )
    .await;
    let (acme, globex) = (&world.instances[0], &world.instances[1]);
    report.figure(format!(
        "tenants Ready from kubectl-applied YAML: acme at {}, globex at {}",
        acme.url, globex.url
    ));

    // Alice logs in once and sees only acme, as Admin, at its URL.
    let session = &world.sessions[0];
    let mine = eventually("alice's tenant list to show acme", LIMIT, || async {
        let (status, body) = session.get("/api/v1/me/tenants").await;
        (status == 200 && body.as_array().is_some_and(|a| !a.is_empty())).then_some(body)
    })
    .await;
    let mine = mine.as_array().expect("array");
    assert_eq!(mine.len(), 1, "alice sees only acme: {mine:?}");
    assert_eq!(mine[0]["name"], "acme");
    assert_eq!(mine[0]["role"], "Admin");
    assert_eq!(mine[0]["url"].as_str(), Some(acme.url.as_str()));
    report.figure("alice's tenants: [acme (Admin, its URL)]");

    // Token, flow, execution, logs followed.
    let token = token_when_synced(p, session, "acme").await;
    let execution = save_and_run(acme, &token, "acme story").await;
    let logs = acme
        .follow_logs_until(&token, &execution, "hello from acme story")
        .await;
    report.figure(format!(
        "flow saved and run at acme's URL: execution {execution} SUCCESS; {} bytes of followed logs",
        logs.len()
    ));

    // The rows are in acme's own PostgreSQL, not in globex's.
    let query = format!("SELECT count(*) FROM executions WHERE id = '{execution}'");
    let in_acme = p.tenant_sql("acme", &query).await;
    let in_globex = p.tenant_sql("globex", &query).await;
    assert_eq!(in_acme, "1", "the execution is in acme's database");
    assert_eq!(in_globex, "0", "and not in globex's");
    report.figure("execution rows: acme's database 1, globex's database 0");

    for name in ["acme", "globex"] {
        p.delete_tenant(name, true).await;
    }
    report.figure("acme and globex deleted; their namespaces are gone");
}

/// A token with its payload rewritten by `edit` (its signature no longer
/// matches) or, with `alg`, re-headed.
fn tampered(token: &str, alg: Option<&str>, edit: impl FnOnce(&mut Value)) -> String {
    use base64::Engine;
    let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    assert_eq!(parts.len(), 3, "a JWT");
    let mut payload: Value =
        serde_json::from_slice(&engine.decode(&parts[1]).expect("base64")).expect("claims");
    edit(&mut payload);
    parts[1] = engine.encode(payload.to_string());
    if let Some(alg) = alg {
        let mut header: Value =
            serde_json::from_slice(&engine.decode(&parts[0]).expect("base64")).expect("header");
        header["alg"] = json!(alg);
        parts[0] = engine.encode(header.to_string());
        if alg == "none" {
            parts[2] = String::new();
        }
    }
    parts.join(".")
}

/// The Secret (and key) with the key-encryption key that seals identity's
/// signing keys in its database, as the chart generates it.
const IDENTITY_KEK_SECRET: (&str, &str) = ("atoll-identity-key-encryption", "key");

/// The key-encryption key identity reads from the chart's Secret, through
/// the cluster's API like any other Secret; `None` when there is none
/// (then keys are stored in the clear).
async fn identity_key_encryption(
    platform: &Platform,
) -> Option<atoll_identity::keys::KeyEncryption> {
    use k8s_openapi::api::core::v1::Secret;
    let (name, key) = IDENTITY_KEK_SECRET;
    let namespace = crate::harness::RELEASE_NAMESPACE;
    let secret = Api::<Secret>::namespaced(platform.client.clone(), namespace)
        .get_opt(name)
        .await
        .map_err(|e| println!("    reading Secret {name}: {e}"))
        .ok()??;
    let value = secret.data?.get(key)?.0.clone();
    let value = String::from_utf8(value)
        .map_err(|_| println!("    Secret {name} key {key} is not text"))
        .ok()?;
    platform.remember_secret("identity key-encryption key", &value);
    atoll_identity::keys::KeyEncryption::from_base64(&value)
        .map_err(|e| println!("    Secret {name} key {key}: {e}"))
        .ok()
}

/// Tokens identity's own signing key signed, for the same user, tenant and
/// role as `valid`, expiring at `now + offset` for each offset (seconds):
/// the key ring is loaded from identity's database on its volume (nodesim
/// only; `None` elsewhere), its private keys opened with the key-encryption
/// key from the chart's Secret.
async fn signed_by_identity(
    platform: &Platform,
    valid: &str,
    offsets: &[i64],
    tenant_uid: Option<&str>,
) -> Option<Vec<String>> {
    use atoll_identity::keys::{KeyPolicy, KeyRing, open_from_storage};
    use atoll_identity::verify::Claims;
    use base64::Engine;
    platform.node("minting an expired token with identity's signing key")?;
    let encryption = identity_key_encryption(platform).await;
    let db = platform
        .pvc_dir(crate::harness::RELEASE_NAMESPACE)
        .join("atoll-identity-data/identity.db");
    let store = atoll_identity::store::Store::open(&format!("sqlite://{}", db.display()), 1)
        .await
        .map_err(|e| println!("    identity's database at {}: {e}", db.display()))
        .ok()?;
    let stored = store.signing_keys().await.ok()?;
    store.close().await;
    let records = stored
        .into_iter()
        .map(|record| open_from_storage(record, encryption.as_ref()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| println!("    opening identity's signing keys: {e}"))
        .ok()?;
    let ring = KeyRing::new(KeyPolicy::default(), records)
        .map_err(|e| println!("    identity's signing keys: {e}"))
        .ok()?;
    let payload = valid.split('.').nth(1)?;
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    let mut claims: Claims = serde_json::from_slice(&payload).ok()?;
    if let Some(uid) = tenant_uid {
        claims.tenant_uid = Some(uid.to_owned());
    }
    let now = jiff::Timestamp::now().as_second();
    let ttl = claims.exp.saturating_sub(claims.iat);
    let mut tokens = Vec::new();
    for offset in offsets {
        claims.exp = u64::try_from(now + offset).ok()?;
        claims.iat = claims.exp.saturating_sub(ttl);
        tokens.push(ring.mint(&claims, now).ok()?);
    }
    Some(tokens)
}

/// What a tenant holds, to prove a refused request changed nothing.
async fn snapshot(instance: &Instance, token: &str) -> (String, String) {
    let flows = instance
        .call("GET", "/api/v1/flows/search", Some(token), None)
        .await
        .expect("answer");
    let executions = instance
        .call("GET", "/api/v1/executions/search", Some(token), None)
        .await
        .expect("answer");
    (flows.body, executions.body)
}

/// One row of the isolation matrix: who calls which tenant's URL.
struct Attacker<'a> {
    instance: &'a Instance,
    tenant: &'a str,
    who: &'a str,
    token: Option<&'a str>,
    /// Only the endpoints that need Editor (a Viewer's token).
    editor_only: bool,
    /// The credential belongs to another tenant.
    cross: bool,
}

/// Scenario 2: Every instance endpoint refuses no token, an expired, forged or
/// other-tenant token, and a Viewer where Editor is needed; nothing
/// changes; carol cannot get an acme token.
pub async fn isolation_matrix(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let (alice, bob, carol) = (
        "alice@iso-acme.example",
        "bob@iso-acme.example",
        "carol@iso-globex.example",
    );
    let world = world(
        p,
        &[alice, bob, carol],
        &[
            ("iso-acme", &[(alice, "Admin"), (bob, "Viewer")], ""),
            ("iso-globex", &[(carol, "Admin")], ""),
        ],
    )
    .await;
    let (acme, globex) = (&world.instances[0], &world.instances[1]);
    let alice_token = token_when_synced(p, &world.sessions[0], "iso-acme").await;
    let bob_token = token_when_synced(p, &world.sessions[1], "iso-acme").await;
    let carol_token = token_when_synced(p, &world.sessions[2], "iso-globex").await;
    let acme_execution = save_and_run(acme, &alice_token, "iso acme").await;
    let globex_execution = save_and_run(globex, &carol_token, "iso globex").await;
    let acme_before = snapshot(acme, &alice_token).await;
    let globex_before = snapshot(globex, &carol_token).await;
    // Every operation of the document the instance serves.
    let operations = endpoints::from_document(acme).await;
    assert!(
        operations.len() >= 40,
        "the OpenAPI document lists only {} operations with a token",
        operations.len()
    );
    let endpoints =
        |tenant: &str, execution: &str| endpoints::endpoints(&operations, tenant, execution);

    let now = jiff::Timestamp::now().as_second();
    let expired_rewritten = tampered(&alice_token, None, |c| {
        c["iat"] = json!(now - 7200);
        c["exp"] = json!(now - 3600);
    });
    // The same claims signed with identity's key: valid while unexpired
    // (so the refusal below is for the expiry alone), refused 10 min late.
    let expired_signed = match signed_by_identity(p, &alice_token, &[600, -600], None).await {
        Some(tokens) => {
            let control = acme
                .call("GET", "/api/v1/flows/search", Some(&tokens[0]), None)
                .await
                .expect("instance answers");
            assert_eq!(
                control.status, 200,
                "a token minted with identity's key is accepted before it expires"
            );
            report.figure(
                "expired token signed by identity's own key (the unexpired twin is accepted)",
            );
            Some(tokens[1].clone())
        }
        None => None,
    };
    // The same tenant name, user and role, signed by identity, but for
    // another Tenant object (a same-named tenant of another cluster, or a
    // deleted and re-created one): its uid differs.
    let other_uid = signed_by_identity(p, &alice_token, &[600], Some("uid-of-another-iso-acme"))
        .await
        .map(|mut tokens| tokens.remove(0));
    let admin_claim = tampered(&bob_token, None, |c| c["role"] = json!("Admin"));
    let alg_none = tampered(&alice_token, Some("none"), |_| {});
    let alg_hs256 = tampered(&alice_token, Some("HS256"), |_| {});
    let other_audience = tampered(&carol_token, None, |c| c["aud"] = json!("iso-acme"));

    let mut requests = 0;
    let mut accepted_cross_tenant = 0;
    let mut accepted = Vec::new();
    let mut unexpected = Vec::new();
    let at_acme = |who, token, cross| Attacker {
        instance: acme,
        tenant: "iso-acme",
        who,
        token,
        editor_only: false,
        cross,
    };
    let at_globex = |who, token| Attacker {
        instance: globex,
        tenant: "iso-globex",
        who,
        token,
        editor_only: false,
        cross: true,
    };
    let attackers = vec![
        at_acme("no token", None, false),
        at_acme("expired (exp rewritten)", Some(&expired_rewritten), false),
        at_acme("forged role claim", Some(&admin_claim), false),
        at_acme("alg none", Some(&alg_none), false),
        at_acme("alg HS256", Some(&alg_hs256), false),
        at_acme("globex token, aud rewritten", Some(&other_audience), true),
        at_acme("carol's globex token", Some(&carol_token), true),
        at_globex("alice's acme token", Some(&alice_token)),
        at_globex("bob's acme token", Some(&bob_token)),
        Attacker {
            editor_only: true,
            ..at_acme("bob (Viewer) on Editor endpoints", Some(&bob_token), false)
        },
    ]
    .into_iter()
    .chain(
        expired_signed
            .as_deref()
            .map(|token| at_acme("expired (signed by identity)", Some(token), false)),
    )
    .chain(other_uid.as_deref().map(|token| {
        at_acme(
            "signed by identity for a same-named Tenant (other uid)",
            Some(token),
            true,
        )
    }))
    .collect::<Vec<_>>();
    for Attacker {
        instance,
        tenant,
        who,
        token,
        editor_only,
        cross,
    } in &attackers
    {
        let execution = if *tenant == "iso-acme" {
            &acme_execution
        } else {
            &globex_execution
        };
        let mut paths = endpoints(tenant, execution);
        // The tenant-scoped prefix naming the *other* tenant.
        let other = if *tenant == "iso-acme" {
            "iso-globex"
        } else {
            "iso-acme"
        };
        paths.extend(
            endpoints(other, execution)
                .into_iter()
                .filter(|(_, path, _)| path.contains(other)),
        );
        for (method, path, editor) in paths {
            if *editor_only && !editor {
                continue;
            }
            let body = (method == "POST" || method == "PUT")
                .then(|| ("application/x-yaml", flow("attacker").into_bytes()));
            let answer = instance
                .call(&method, &path, *token, body)
                .await
                .expect("instance answers");
            requests += 1;
            let expected = endpoints::refusal(*editor_only, path.contains(other));
            if answer.status != expected {
                unexpected.push(format!(
                    "{who}: {method} {path} -> {} (expected {expected})",
                    answer.status
                ));
            }
            if (200..300).contains(&answer.status) {
                accepted.push(format!("{who}: {method} {path} -> {}", answer.status));
                if *cross {
                    accepted_cross_tenant += 1;
                }
            }
        }
    }
    // The Viewer's own tenant path naming the other tenant, with a valid
    // token for that other tenant, too: alice's acme token on
    // /api/v1/iso-globex/... at acme's URL.
    for (method, path, _) in endpoints("iso-globex", &acme_execution)
        .into_iter()
        .filter(|(_, path, _)| path.contains("iso-globex"))
    {
        let answer = acme
            .call(&method, &path, Some(&alice_token), None)
            .await
            .expect("instance answers");
        requests += 1;
        if answer.status != 404 {
            unexpected.push(format!(
                "alice at acme naming iso-globex: {method} {path} -> {} (expected 404)",
                answer.status
            ));
        }
        if (200..300).contains(&answer.status) {
            accepted.push(format!("alice at acme naming iso-globex: {method} {path}"));
            accepted_cross_tenant += 1;
        }
    }
    report.figure(format!(
        "{requests} refused-case requests over {} credentials x {} endpoints \
         (the instance's OpenAPI document); accepted: {}",
        attackers.len(),
        endpoints("t", "x").len(),
        accepted.len()
    ));
    report.figure(format!(
        "cross-tenant requests accepted: {accepted_cross_tenant}"
    ));
    report.figure(format!(
        "refusals with another status than expected (401 bad credential, \
         403 Viewer on an Editor route, 404 a path naming another tenant): {}",
        unexpected.len()
    ));
    assert!(accepted.is_empty(), "accepted: {accepted:#?}");
    assert!(
        unexpected.is_empty(),
        "{} refusals with an unexpected status: {unexpected:#?}",
        unexpected.len()
    );
    assert_eq!(accepted_cross_tenant, 0);

    // The same with browsers' session cookies, codes and redirects (#18).
    let tenants = cookies::Tenants {
        platform: p,
        acme,
        globex,
        alice: (alice, &world.passwords[0]),
        carol: (carol, &world.passwords[2]),
        operations: &operations,
        acme_execution: &acme_execution,
        globex_execution: &globex_execution,
    };
    cookies::cookie_cases(&tenants, &report).await;

    assert_eq!(
        snapshot(acme, &alice_token).await,
        acme_before,
        "acme unchanged"
    );
    assert_eq!(
        snapshot(globex, &carol_token).await,
        globex_before,
        "globex unchanged"
    );
    report.figure("flows and executions of both tenants unchanged");

    // Identity refuses carol an acme token, and alice a globex one.
    assert!(world.sessions[2].tenant_token(p, "iso-acme").await.is_err());
    assert!(
        world.sessions[0]
            .tenant_token(p, "iso-globex")
            .await
            .is_err()
    );
    report.figure("identity refused carol an acme token and alice a globex token");

    for name in ["iso-acme", "iso-globex"] {
        p.delete_tenant(name, true).await;
    }
}

/// Scenario 3: The Tenant's YAML changes as a Git commit would change it: bob is
/// removed (his next token request is refused), the instance version
/// changes (the instance rolls, data intact).
pub async fn git_driven_change(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let (alice, bob) = ("alice@git-acme.example", "bob@git-acme.example");
    let world = world(
        p,
        &[alice, bob],
        &[("git-acme", &[(alice, "Admin"), (bob, "Viewer")], "")],
    )
    .await;
    let acme = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[0], "git-acme").await;
    token_when_synced(p, &world.sessions[1], "git-acme").await;
    let execution = save_and_run(acme, &token, "git acme").await;

    // Commit 1: bob leaves.
    let (ok, out) = p
        .apply_yaml(
            "git-acme",
            &tenant_yaml("git-acme", &[(alice, "Admin")], ""),
        )
        .await;
    assert!(ok, "{out}");
    p.wait_phase("git-acme", Phase::Ready).await;
    let status = eventually("bob's token request to be refused", LIMIT, || async {
        world.sessions[1].tenant_token(p, "git-acme").await.err()
    })
    .await;
    report.figure(format!(
        "bob removed from the YAML and re-applied: his token request is refused ({status})"
    ));

    // Commit 2: a new instance version.
    let version = std::env::var("ATOLL_E2E_ROLL_VERSION").unwrap_or_else(|_| "9.9.9".to_owned());
    let before = instance_pod_uids(p, "atoll-git-acme").await;
    let (ok, out) = p
        .apply_yaml(
            "git-acme",
            &tenant_yaml(
                "git-acme",
                &[(alice, "Admin")],
                &format!("  instance:\n    version: \"{version}\"\n"),
            ),
        )
        .await;
    assert!(ok, "{out}");
    let tenant = p.wait_phase("git-acme", Phase::Ready).await;
    assert_eq!(
        tenant.status.and_then(|s| s.version).as_deref(),
        Some(version.as_str())
    );
    let after = eventually("the new instance pod alone", LIMIT, || async {
        let uids = instance_pod_uids(p, "atoll-git-acme").await;
        (uids.len() == 1 && uids.is_disjoint(&before)).then_some(uids)
    })
    .await;
    assert!(after.is_disjoint(&before));
    assert_kept(acme, &token, &execution, "git acme").await;
    report.figure(format!(
        "version changed to {version}: instance pod replaced, flow and execution {execution} intact"
    ));
    p.delete_tenant("git-acme", true).await;
}

/// Scenario 4: Suspend: processes stop, phase Suspended, URL silent; resume: the
/// same flows and history.
pub async fn suspend_and_resume(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let alice = "alice@sus-acme.example";
    let world = world(p, &[alice], &[("sus-acme", &[(alice, "Admin")], "")]).await;
    let acme = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[0], "sus-acme").await;
    let execution = save_and_run(acme, &token, "sus acme").await;
    let running = match p.node("process ids of the tenant") {
        Some(node) => pids(p, node, "atoll-sus-acme").await,
        None => Vec::new(),
    };

    let (ok, out) = p
        .apply_yaml(
            "sus-acme",
            &tenant_yaml("sus-acme", &[(alice, "Admin")], "  suspended: true\n"),
        )
        .await;
    assert!(ok, "{out}");
    p.wait_phase("sus-acme", Phase::Suspended).await;
    eventually("sus-acme's pods to be gone", LIMIT, || async {
        let pods = Api::<Pod>::namespaced(p.client.clone(), "atoll-sus-acme")
            .list(&ListParams::default())
            .await
            .ok()?;
        pods.items.is_empty().then_some(())
    })
    .await;
    if p.simulated() {
        assert!(running.len() >= 2, "instance and database ran: {running:?}");
        eventually("every process to stop", LIMIT, || async {
            running.iter().all(|pid| !pid_alive(*pid)).then_some(())
        })
        .await;
        report.figure(format!("suspended: {} processes stopped", running.len()));
    }
    // The host goes to the wake gate (#20), which says so and wakes
    // nothing. (On realkube the Ingress → gate hop cannot be expressed, see
    // docs/testing.md: there the URL only stops answering 200.)
    let kubesim = matches!(
        p.cluster().map(|c| c.kind()),
        Some(atoll_testkit::cluster::ClusterKind::KubeSim)
    );
    let answer = eventually(
        "the URL to answer that the tenant is suspended",
        LIMIT,
        || async {
            let answer = acme.call("GET", "/healthz", None, None).await?;
            let suspended = answer.status == 503 && answer.body.contains("sus-acme is suspended");
            (suspended || (!kubesim && answer.status != 200)).then_some(answer)
        },
    )
    .await;
    let tenant = p.tenant("sus-acme").await.expect("sus-acme");
    assert_eq!(
        tenant.status.and_then(|s| s.phase),
        Some(Phase::Suspended),
        "a request woke nothing"
    );
    report.figure(format!(
        "phase Suspended, no pods, the URL answers {}{}",
        answer.status,
        if kubesim {
            " \"sus-acme is suspended…\" (the wake gate)"
        } else {
            ""
        }
    ));

    let (ok, out) = p
        .apply_yaml(
            "sus-acme",
            &tenant_yaml("sus-acme", &[(alice, "Admin")], "  suspended: false\n"),
        )
        .await;
    assert!(ok, "{out}");
    p.wait_phase("sus-acme", Phase::Ready).await;
    acme.wait_healthy().await;
    assert_kept(acme, &token, &execution, "sus acme").await;
    report.figure(format!("resumed: flow and execution {execution} intact"));
    p.delete_tenant("sus-acme", true).await;
}

/// Scenario 5: Delete with `Delete`: namespace, processes, volume directories and
/// identity record gone. Delete with `Retain` and re-apply: the old flows
/// and executions are back.
pub async fn deletion(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let (alice, carol) = ("alice@del-acme.example", "carol@del-globex.example");
    let world = world(
        p,
        &[alice, carol],
        &[
            (
                "del-acme",
                &[(alice, "Admin")],
                "  deletionPolicy: Retain\n",
            ),
            ("del-globex", &[(carol, "Admin")], ""),
        ],
    )
    .await;
    let (acme, globex) = (&world.instances[0], &world.instances[1]);
    let admin = p.admin().await;
    let registered = |name: &'static str| {
        let admin = admin.clone();
        async move {
            let (status, body) = admin.get("/api/v1/admin/tenants").await;
            assert_eq!(status, 200, "{body}");
            body.as_array()
                .is_some_and(|a| a.iter().any(|t| t["name"] == name))
        }
    };
    assert!(registered("del-globex").await, "globex is in identity");
    let carol_token = token_when_synced(p, &world.sessions[1], "del-globex").await;
    save_and_run(globex, &carol_token, "del globex").await;

    // Delete.
    let running = match p.node("process ids and volume directories") {
        Some(node) => pids(p, node, "atoll-del-globex").await,
        None => Vec::new(),
    };
    let volumes = p.pvc_dir("atoll-del-globex");
    if p.simulated() {
        assert!(volumes.is_dir(), "{} exists", volumes.display());
    }
    p.delete_tenant("del-globex", true).await;
    if p.simulated() {
        eventually(
            "globex's processes and volumes to be gone",
            LIMIT,
            || async {
                (running.iter().all(|pid| !pid_alive(*pid)) && !volumes.exists()).then_some(())
            },
        )
        .await;
        report.figure(format!(
            "Delete: namespace gone, {} processes stopped, volume directory removed",
            running.len()
        ));
    }
    eventually("identity to forget del-globex", LIMIT, || async {
        (!registered("del-globex").await).then_some(())
    })
    .await;
    report.figure("Delete: identity record gone");

    // Retain, then re-apply.
    let token = token_when_synced(p, &world.sessions[0], "del-acme").await;
    let execution = save_and_run(acme, &token, "del acme").await;
    p.delete_tenant("del-acme", false).await;
    assert!(
        namespace_exists(p, "atoll-del-acme").await,
        "Retain keeps the namespace"
    );
    let yaml = tenant_yaml(
        "del-acme",
        &[(alice, "Admin")],
        "  deletionPolicy: Retain\n",
    );
    let (ok, out) = p.apply_yaml("del-acme", &yaml).await;
    assert!(ok, "{out}");
    p.wait_phase("del-acme", Phase::Ready).await;
    acme.wait_healthy().await;
    let token = token_when_synced(p, &world.sessions[0], "del-acme").await;
    assert_kept(acme, &token, &execution, "del acme").await;
    report.figure(format!(
        "Retain: deleted and re-applied, alice finds her flow and execution {execution}"
    ));

    // Leave nothing behind.
    let (ok, out) = p
        .apply_yaml(
            "del-acme",
            &tenant_yaml("del-acme", &[(alice, "Admin")], ""),
        )
        .await;
    assert!(ok, "{out}");
    p.wait_phase("del-acme", Phase::Ready).await;
    p.delete_tenant("del-acme", true).await;
}

/// Scenario 8: Tenants with invalid names, too many members or bad quotas are
/// refused by the schema or marked InvalidSpec with nothing created; flow
/// bombs, a 100 MB body, path traversal and SQL metacharacters are refused
/// or stored literally, and the instance stays healthy.
pub async fn hostile_input(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;

    // Hostile Tenants.
    let members: Vec<(String, &str)> = (0..=atoll_crds::MAX_MEMBERS)
        .map(|i| (format!("user{i}@crowd.example"), "Viewer"))
        .collect();
    let members: Vec<(&str, &str)> = members.iter().map(|(u, r)| (u.as_str(), *r)).collect();
    let long_name = "a".repeat(64);
    let cases: Vec<(&str, String)> = vec![
        ("uppercase name", tenant_yaml("Bad_Name", &[], "")),
        ("name over 63 characters", tenant_yaml(&long_name, &[], "")),
        ("name with a dot", tenant_yaml("bad.name", &[], "")),
        (
            "too many members",
            tenant_yaml("hostile-crowd", &members, ""),
        ),
        (
            "quota cpu not a quantity",
            tenant_yaml("hostile-quota", &[], "  quota:\n    cpu: lots\n"),
        ),
        (
            "negative pod quota",
            tenant_yaml("hostile-pods", &[], "  quota:\n    pods: -3\n"),
        ),
        (
            "member with an invalid role",
            tenant_yaml("hostile-role", &[("eve@x.example", "Root")], ""),
        ),
    ];
    let mut refused_by_schema = 0;
    let mut invalid_spec = 0;
    for (what, yaml) in &cases {
        let name = yaml
            .lines()
            .find_map(|l| l.strip_prefix("  name: "))
            .expect("name")
            .to_owned();
        let (ok, out) = p.apply_yaml("hostile", yaml).await;
        if !ok {
            refused_by_schema += 1;
            assert!(p.tenant(&name).await.is_none(), "{what}: nothing stored");
        } else {
            let tenant = eventually(&format!("{what}: InvalidSpec"), LIMIT, || async {
                let tenant = p.tenant(&name).await?;
                let status = tenant.status.as_ref()?;
                status
                    .conditions
                    .iter()
                    .any(|c| c.type_ == conditions::types::READY && c.reason == "InvalidSpec")
                    .then_some(tenant)
            })
            .await;
            invalid_spec += 1;
            println!(
                "    {what}: accepted by the schema, InvalidSpec: {:?}",
                tenant.status
            );
            p.delete_tenant(&name, false).await;
        }
        assert!(
            !namespace_exists(p, &format!("atoll-{name}")).await,
            "{what}: no namespace created ({out})"
        );
    }
    report.figure(format!(
        "{} hostile Tenants: {refused_by_schema} refused by the schema, {invalid_spec} InvalidSpec, 0 namespaces created",
        cases.len()
    ));

    // A tenant to attack.
    let alice = "alice@hostile.example";
    let world = world(p, &[alice], &[("hostile", &[(alice, "Admin")], "")]).await;
    let instance = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[0], "hostile").await;
    save_and_run(instance, &token, "hostile").await;

    let deep = format!(
        "id: deep\nnamespace: team\ntasks: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let mut laughs = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for (i, prev) in ('b'..='j').zip('a'..='i') {
        laughs.push_str(&format!(
            "{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
        ));
    }
    laughs.push_str("id: bomb\nnamespace: team\ntasks: *j\n");
    let huge = vec![b'a'; 100 * 1024 * 1024];
    let mut bombs = 0;
    // (An instance may restart while its database starts; count from now.)
    let restarts_before = instance_restarts(p, "atoll-hostile").await;
    for (what, body) in [
        ("deeply nested YAML", deep.into_bytes()),
        ("alias expansion YAML", laughs.into_bytes()),
        ("100 MB body", huge),
    ] {
        let answer = instance
            .call(
                "POST",
                "/api/v1/flows",
                Some(&token),
                Some(("application/x-yaml", body)),
            )
            .await;
        // The instance refuses a body over its limit before reading it and
        // closes the connection; the client, or a proxy in between (the
        // router answers 502 then), may only see the connection close. The
        // restart count below tells a refusal from a crash.
        if let Some(answer) = &answer {
            assert!(
                (400..500).contains(&answer.status) || answer.status == 502,
                "{what}: refused with a 4xx, got {} {}",
                answer.status,
                answer.body.chars().take(300).collect::<String>()
            );
        }
        instance.wait_healthy().await;
        let restarts = instance_restarts(p, "atoll-hostile").await;
        assert_eq!(
            restarts, restarts_before,
            "{what}: the instance restarted (it crashed or stopped answering its probes)"
        );
        bombs += 1;
        println!(
            "    {what}: {}",
            answer.map_or("connection closed".to_owned(), |a| a.status.to_string())
        );
    }
    report.figure(format!(
        "{bombs} flow bombs refused, instance healthy after each"
    ));

    let mut traversals = 0;
    for path in [
        "/api/v1/flows/..%2F..%2Fetc/passwd",
        "/api/v1/flows/team/..%2F..%2F..%2Fetc%2Fpasswd",
        "/api/v1/executions/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/logs/..%2F..%2Fetc%2Fpasswd",
        "/api/v1/../../etc/passwd",
        "/api/v1/flows/team/hello/..%00",
    ] {
        let answer = instance
            .call("GET", path, Some(&token), None)
            .await
            .expect("answer");
        assert!(
            answer.status >= 400 && !answer.body.contains("root:"),
            "{path}: {} {}",
            answer.status,
            answer.body
        );
        traversals += 1;
    }
    let bad_id = instance
        .save_flow(&token, "id: ../../etc\nnamespace: team\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: x\n")
        .await;
    assert_eq!(
        bad_id.status, 400,
        "a flow id with slashes: {}",
        bad_id.body
    );
    report.figure(format!(
        "{} path traversal attempts refused",
        traversals + 1
    ));

    // SQL metacharacters in every string field: stored literally.
    let nasty = "x'); DROP TABLE flows; --\" OR 1=1 \\\\ ;";
    let yaml = format!(
        "id: sqlish\nnamespace: team\ndescription: '{d}'\nlabels:\n  k: '{d}'\ninputs:\n  - id: who\n    type: STRING\n    defaults: '{d}'\ntasks:\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: '{d}'\n",
        d = nasty.replace('\'', "''")
    );
    let saved = instance.save_flow(&token, &yaml).await;
    assert!(
        (200..300).contains(&saved.status),
        "a flow with SQL metacharacters is valid: {} {}",
        saved.status,
        saved.body
    );
    let execution = instance.run(&token, "team", "sqlish").await;
    instance.wait_final(&token, &execution).await;
    let stored = instance
        .call("GET", "/api/v1/flows/team/sqlish", Some(&token), None)
        .await
        .expect("answer");
    assert!(
        stored.body.contains("DROP TABLE flows"),
        "stored literally: {}",
        stored.body
    );
    let search = instance
        .call(
            "GET",
            "/api/v1/flows/search?q=%27%3B%20DROP%20TABLE%20flows%3B%20--",
            Some(&token),
            None,
        )
        .await
        .expect("answer");
    assert!(search.status < 500, "search: {}", search.status);
    let flows = instance
        .call("GET", "/api/v1/flows/team/hello", Some(&token), None)
        .await
        .expect("answer");
    assert_eq!(flows.status, 200, "the flows table survived");
    instance.wait_healthy().await;
    report.figure("SQL metacharacters stored literally; tables intact; instance healthy");
    p.delete_tenant("hostile", true).await;
}

/// Scenario 7: Every secret the suite generated or saw is searched for in every
/// process log, every object outside Secrets (events and Tenant statuses
/// included): 0 hits.
pub async fn secrets(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    // Make sure there is something to find: one more tenant with a user.
    let alice = "alice@secret.example";
    let world = world(p, &[alice], &[("secret", &[(alice, "Admin")], "")]).await;
    let token = token_when_synced(p, &world.sessions[0], "secret").await;
    save_and_run(&world.instances[0], &token, "secret").await;
    p.tenant_sql("secret", "SELECT 1").await;

    // What a task can see ends up in task logs and outputs: a shell task
    // prints its whole environment, and outputs it too.
    let instance = &world.instances[0];
    let snoop = "id: snoop\nnamespace: team\ntasks:\n  - id: env\n    type: io.kestra.plugin.scripts.shell.Commands\n    commands:\n      - env\n      - echo \"::{\\\"outputs\\\":{\\\"env\\\":\\\"$(env | tr '\\n' ' ')\\\"}}::\"\n";
    let saved = instance.save_flow(&token, snoop).await;
    assert!(
        (200..300).contains(&saved.status),
        "save snoop: {} {}",
        saved.status,
        saved.body
    );
    let snooped = instance.run(&token, "team", "snoop").await;
    instance.wait_final(&token, &snooped).await;
    let mut task_texts = Vec::new();
    let executions = instance
        .call(
            "GET",
            "/api/v1/executions/search?size=100",
            Some(&token),
            None,
        )
        .await
        .expect("executions answer");
    let ids: Vec<String> = executions.json()["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["id"].as_str().map(str::to_owned))
        .collect();
    assert!(ids.contains(&snooped), "the snoop execution is listed");
    for id in &ids {
        for path in [
            format!("/api/v1/logs/{id}"),
            format!("/api/v1/executions/{id}"),
        ] {
            let answer = instance
                .call("GET", &path, Some(&token), None)
                .await
                .expect("instance answers");
            task_texts.push((format!("task logs and outputs at {path}"), answer.body));
        }
    }

    let secrets = p.secrets();
    let mut haystacks: Vec<(String, String)> = Vec::new();
    let task_places = task_texts.len();
    haystacks.extend(task_texts);
    match p.node("process logs from nodesim's log directory") {
        Some(node) => {
            let mut dirs = vec![node.logs_dir()];
            while let Some(dir) = dirs.pop() {
                for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        dirs.push(path);
                    } else if let Ok(text) = std::fs::read(&path) {
                        haystacks.push((
                            path.display().to_string(),
                            String::from_utf8_lossy(&text).into_owned(),
                        ));
                    }
                }
            }
        }
        None => {
            let pods = p.kubectl_ok(&[
                "get",
                "pods",
                "-A",
                "-o",
                "jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{\"\\n\"}{end}",
            ]).await;
            for pod in pods.lines().filter(|l| l.contains("atoll")) {
                let (namespace, name) = pod.split_once('/').expect("ns/name");
                let (_, logs) = p
                    .kubectl(&["logs", "-n", namespace, name, "--all-containers"])
                    .await;
                haystacks.push((format!("logs of {pod}"), logs));
            }
        }
    }
    let log_files = haystacks.len();
    let resources = p
        .kubectl_ok(&["api-resources", "--verbs=list", "-o", "name"])
        .await;
    let kinds: Vec<&str> = resources
        .lines()
        .filter(|r| !r.trim().is_empty() && *r != "secrets")
        .collect();
    for kind in &kinds {
        let (ok, objects) = p.kubectl(&["get", kind, "-A", "-o", "json"]).await;
        if ok {
            haystacks.push((format!("kubectl get {kind} -A"), objects));
        }
    }
    let mut hits = Vec::new();
    for (what, secret) in &secrets {
        for (place, text) in &haystacks {
            if text.contains(secret.as_str()) {
                hits.push(format!("{what} found in {place}"));
            }
        }
    }
    report.figure(format!(
        "{} secrets searched in {} process logs, {task_places} task log and output documents and {} object kinds (events and Tenants included): {} hits",
        secrets.len(),
        log_files - task_places,
        kinds.len(),
        hits.len()
    ));
    assert!(hits.is_empty(), "secrets leaked: {hits:#?}");
    p.delete_tenant("secret", true).await;
}

/// Sets the replicas of one of the chart's Deployments.
pub(crate) async fn scale(platform: &Platform, deployment: &str, replicas: i32) {
    Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(
        platform.client.clone(),
        crate::harness::RELEASE_NAMESPACE,
    )
    .patch(
        deployment,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(json!({"spec": {"replicas": replicas}})),
    )
    .await
    .unwrap_or_else(|e| panic!("scaling {deployment} to {replicas}: {e}"));
}

fn condition_status(tenant: &atoll_crds::Tenant, kind: &str) -> Option<String> {
    tenant
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

/// Scenario 6d: identity is stopped. Instances keep accepting valid tokens
/// (their key set is cached), a Tenant changed meanwhile shows
/// IdentitySynced=False, and all recovers when identity returns.
pub async fn fault_identity_down(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let (alice, bob) = ("alice@down-acme.example", "bob@down-acme.example");
    let world = world(p, &[alice, bob], &[("down-acme", &[(alice, "Admin")], "")]).await;
    let acme = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[0], "down-acme").await;
    let execution = save_and_run(acme, &token, "down acme").await;

    scale(p, "atoll-identity", 0).await;
    eventually("identity to stop answering", LIMIT, || async {
        let answer = p
            .http(&format!("http://{}", crate::harness::IDENTITY_HOST))
            .get(format!("http://{}/readyz", crate::harness::IDENTITY_HOST))
            .send()
            .await;
        answer
            .map_or(true, |a| !a.status().is_success())
            .then_some(())
    })
    .await;
    let mut accepted = 0;
    for _ in 0..10 {
        let answer = acme
            .call(
                "GET",
                &format!("/api/v1/executions/{execution}"),
                Some(&token),
                None,
            )
            .await
            .expect("the instance answers");
        assert_eq!(
            answer.status, 200,
            "a valid token while identity is down: {}",
            answer.body
        );
        accepted += 1;
    }
    let second = acme.run(&token, "team", "hello").await;
    assert_eq!(acme.wait_final(&token, &second).await, "SUCCESS");
    report.figure(format!(
        "identity down: {accepted} reads and 1 execution accepted with a valid token"
    ));

    // A Git change while identity is down: the operator cannot sync it.
    let (ok, out) = p
        .apply_yaml(
            "down-acme",
            &tenant_yaml("down-acme", &[(alice, "Admin"), (bob, "Viewer")], ""),
        )
        .await;
    assert!(ok, "{out}");
    eventually("IdentitySynced=False", LIMIT, || async {
        let tenant = p.tenant("down-acme").await?;
        (condition_status(&tenant, conditions::types::IDENTITY_SYNCED).as_deref() == Some("False"))
            .then_some(())
    })
    .await;
    report.figure("Tenant changed meanwhile shows IdentitySynced=False");

    scale(p, "atoll-identity", 1).await;
    eventually("IdentitySynced=True again", LIMIT, || async {
        let tenant = p.tenant("down-acme").await?;
        (condition_status(&tenant, conditions::types::IDENTITY_SYNCED).as_deref() == Some("True"))
            .then_some(())
    })
    .await;
    eventually("identity to take logins again", LIMIT, || async {
        let (status, _) = world.sessions[1].get("/api/v1/me").await;
        (status == 200).then_some(())
    })
    .await;
    token_when_synced(p, &world.sessions[1], "down-acme").await;
    report.figure("identity back: IdentitySynced=True, the change (bob added) is in effect");
    p.delete_tenant("down-acme", true).await;
}

/// Sends `signal` to each of `pids`.
fn signal(pids: &[u32], signal: rustix::process::Signal) {
    for pid in pids {
        let pid = rustix::process::Pid::from_raw(i32::try_from(*pid).expect("pid")).expect("pid");
        let _ = rustix::process::kill_process(pid, signal);
    }
}

/// Sends SIGKILL to every process of a pod (nodesim).
fn kill_pod(node: &atoll_testkit::nodesim::NodeSim, namespace: &str, pod: &str) -> usize {
    let pids = node.pod_pids(namespace, pod);
    signal(&pids, rustix::process::Signal::KILL);
    pids.len()
}

async fn pod_named(platform: &Platform, namespace: &str, component: &str) -> String {
    eventually(&format!("a running {component} pod"), LIMIT, || async {
        Api::<Pod>::namespaced(platform.client.clone(), namespace)
            .list(
                &ListParams::default().labels(&format!("app.kubernetes.io/component={component}")),
            )
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.name_any())
    })
    .await
}

/// Scenario 6e: the instance is SIGKILLed while executions run; after
/// nodesim restarts it, every execution reaches a final state.
pub async fn fault_instance_killed(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let Some(node) = p.node("killing an instance process") else {
        return;
    };
    let alice = "alice@kill-acme.example";
    let world = world(p, &[alice], &[("kill-acme", &[(alice, "Admin")], "")]).await;
    let acme = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[0], "kill-acme").await;
    let slow = "id: slow\nnamespace: team\ntasks:\n  - id: wait\n    type: io.kestra.plugin.core.flow.Sleep\n    duration: PT2S\n  - id: say\n    type: io.kestra.plugin.core.log.Log\n    message: done\n";
    let saved = acme.save_flow(&token, slow).await;
    assert!((200..300).contains(&saved.status), "{}", saved.body);
    let mut executions = Vec::new();
    for _ in 0..5 {
        executions.push(acme.run(&token, "team", "slow").await);
    }
    // Kill while they run: wait until the instance reports them RUNNING
    // (each sleeps 2 s, so they still are when the signal lands).
    let running = eventually("the executions to be running", LIMIT, || async {
        let mut running = 0;
        for id in &executions {
            let answer = acme
                .call(
                    "GET",
                    &format!("/api/v1/executions/{id}"),
                    Some(&token),
                    None,
                )
                .await?;
            if answer.json()["state"]["current"] == "RUNNING" {
                running += 1;
            }
        }
        (running > 0).then_some(running)
    })
    .await;
    let pod = pod_named(p, "atoll-kill-acme", "instance").await;
    let killed = kill_pod(node, "atoll-kill-acme", &pod);
    assert!(killed >= 1, "the instance had a process");
    report.figure(format!(
        "instance SIGKILLed while {running} of {} executions were RUNNING",
        executions.len()
    ));
    acme.wait_healthy().await;
    let mut states = std::collections::BTreeMap::new();
    for id in &executions {
        *states.entry(acme.wait_final(&token, id).await).or_insert(0) += 1;
    }
    let lost = executions.len() - states.values().sum::<usize>();
    report.figure(format!(
        "instance SIGKILLed with {} executions running: final states {states:?}, executions lost = {lost}",
        executions.len()
    ));
    assert_eq!(lost, 0);
    p.delete_tenant("kill-acme", true).await;
}

/// Scenario 6f: a tenant's PostgreSQL is killed: the instance's /readyz
/// fails and the Tenant shows Degraded, then both recover.
pub async fn fault_database_killed(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let Some(node) = p.node("killing a tenant's PostgreSQL") else {
        return;
    };
    let alice = "alice@pg-acme.example";
    let world = world(p, &[alice], &[("pg-acme", &[(alice, "Admin")], "")]).await;
    let acme = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[0], "pg-acme").await;
    let execution = save_and_run(acme, &token, "pg acme").await;

    let pod = pod_named(p, "atoll-pg-acme", "database").await;
    assert!(kill_pod(node, "atoll-pg-acme", &pod) >= 1, "PostgreSQL ran");
    let not_ready = eventually("the instance's /readyz to fail", LIMIT, || async {
        let answer = acme.call("GET", "/readyz", None, None).await;
        answer.map_or(Some(0), |a| (a.status != 200).then_some(a.status))
    })
    .await;
    let degraded = eventually("the Tenant to be Degraded", LIMIT, || async {
        let tenant = p.tenant("pg-acme").await?;
        let phase = tenant.status.as_ref()?.phase?;
        (phase == Phase::Degraded).then_some(phase)
    })
    .await;
    report.figure(format!(
        "PostgreSQL SIGKILLed: instance /readyz {not_ready}, Tenant phase {degraded:?}"
    ));
    p.wait_phase("pg-acme", Phase::Ready).await;
    eventually("the instance's /readyz to pass again", LIMIT, || async {
        let answer = acme.call("GET", "/readyz", None, None).await?;
        (answer.status == 200).then_some(())
    })
    .await;
    assert_kept(acme, &token, &execution, "pg acme").await;
    report.figure("recovered: Tenant Ready, /readyz 200, flow and execution intact");
    p.delete_tenant("pg-acme", true).await;
}

/// The chart's operator pods that run (not being deleted), by name.
async fn operator_pods(platform: &Platform) -> Vec<String> {
    Api::<Pod>::namespaced(platform.client.clone(), crate::harness::RELEASE_NAMESPACE)
        .list(&ListParams::default().labels("app.kubernetes.io/name=atoll-operator"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|p| {
            p.metadata.deletion_timestamp.is_none()
                && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .map(|p| p.name_any())
        .collect()
}

/// The holder of the operator's leader Lease, with its duration.
async fn lease_holder(platform: &Platform) -> Option<(String, u64)> {
    let lease = Api::<k8s_openapi::api::coordination::v1::Lease>::namespaced(
        platform.client.clone(),
        crate::harness::RELEASE_NAMESPACE,
    )
    .get_opt("atoll-operator")
    .await
    .ok()??;
    let spec = lease.spec?;
    Some((
        spec.holder_identity?,
        u64::try_from(spec.lease_duration_seconds?).ok()?,
    ))
}

/// How often a line occurs in a pod's log (across restarts).
fn log_count(node: &atoll_testkit::nodesim::NodeSim, pod: &str, line: &str) -> usize {
    node.logs(crate::harness::RELEASE_NAMESPACE, pod, None)
        .map_or(0, |log| log.matches(line).count())
}

/// Scenario 6c: two operator replicas; one holds the Lease and reconciles,
/// the other waits. The leader hangs (SIGSTOP, so it can neither renew nor
/// release the Lease) and is then SIGKILLed: the standby takes over within
/// the lease duration and reconciles what was applied meanwhile; the
/// restarted replica waits as the new standby.
pub async fn fault_leader_takeover(platform: Arc<Platform>, report: Arc<Report>) {
    const WAITING: &str = "waiting to become the leader";
    const BECAME: &str = "became the leader";
    let p = &*platform;
    let Some(node) = p.node("freezing and killing the leading operator") else {
        return;
    };
    scale(p, "atoll-operator", 2).await;
    let (leader, standby, duration) = eventually(
        "two operator replicas, one holding the Lease",
        LIMIT,
        || async {
            let pods = operator_pods(p).await;
            let (holder, duration) = lease_holder(p).await?;
            let standby = pods.iter().find(|name| **name != holder)?.clone();
            (pods.len() == 2 && pods.contains(&holder) && log_count(node, &standby, WAITING) > 0)
                .then_some((holder, standby, duration))
        },
    )
    .await;
    let duration = std::time::Duration::from_secs(duration);
    // The standby is idle while the leader reconciles a new Tenant.
    let (ok, out) = p
        .apply_yaml("ha-one", &tenant_yaml("ha-one", &[], "  suspended: true\n"))
        .await;
    assert!(ok, "{out}");
    p.wait_phase("ha-one", Phase::Suspended).await;
    assert_eq!(
        log_count(node, &standby, BECAME),
        0,
        "the standby stays idle while the leader lives"
    );
    report.figure(format!(
        "2 replicas: {leader} leads and reconciled ha-one, {standby} waits on the Lease"
    ));

    // The leader hangs: no renewal, no release.
    let frozen = node.pod_pids(crate::harness::RELEASE_NAMESPACE, &leader);
    assert!(!frozen.is_empty(), "the leader has a process");
    let hung = std::time::Instant::now();
    signal(&frozen, rustix::process::Signal::STOP);
    let (ok, out) = p
        .apply_yaml("ha-two", &tenant_yaml("ha-two", &[], "  suspended: true\n"))
        .await;
    assert!(ok, "{out}");
    eventually("the standby to take the Lease", LIMIT, || async {
        let (holder, _) = lease_holder(p).await?;
        (holder == standby && log_count(node, &standby, BECAME) > 0).then_some(())
    })
    .await;
    let took = hung.elapsed();
    p.wait_phase("ha-two", Phase::Suspended).await;
    let reconciled = hung.elapsed();
    // The Lease runs out at most `duration` after the leader's last renewal;
    // the standby retries every duration/7 and the check above polls.
    let bound = duration + duration / 7 + std::time::Duration::from_secs(1);
    report.figure(format!(
        "leader hung: {standby} took the Lease after {:.1}s (lease duration {}s) and reconciled ha-two {:.1}s after the hang",
        took.as_secs_f64(),
        duration.as_secs(),
        reconciled.as_secs_f64()
    ));
    assert!(
        took <= bound,
        "takeover took {took:?}, more than the lease duration {duration:?} plus one retry"
    );

    // Now kill it: nodesim restarts the container, which waits on the Lease.
    let waited_before = log_count(node, &leader, WAITING);
    signal(&frozen, rustix::process::Signal::KILL);
    eventually("the killed replica to restart and wait", LIMIT, || async {
        let pids = node.pod_pids(crate::harness::RELEASE_NAMESPACE, &leader);
        (!pids.is_empty()
            && pids.iter().all(|pid| !frozen.contains(pid))
            && log_count(node, &leader, WAITING) > waited_before)
            .then_some(())
    })
    .await;
    let (ok, out) = p
        .apply_yaml(
            "ha-three",
            &tenant_yaml("ha-three", &[], "  suspended: true\n"),
        )
        .await;
    assert!(ok, "{out}");
    p.wait_phase("ha-three", Phase::Suspended).await;
    let (holder, _) = lease_holder(p).await.expect("a Lease");
    assert_eq!(holder, standby, "the new leader keeps the Lease");
    report.figure(format!(
        "old leader SIGKILLed and restarted: it waits; {standby} keeps the Lease and reconciled ha-three"
    ));

    // Back to one replica; whichever goes hands the Lease over cleanly.
    scale(p, "atoll-operator", 1).await;
    eventually("one operator replica holding the Lease", LIMIT, || async {
        let pods = operator_pods(p).await;
        let (holder, _) = lease_holder(p).await?;
        (pods.len() == 1 && pods.contains(&holder)).then_some(())
    })
    .await;
    for name in ["ha-one", "ha-two", "ha-three"] {
        p.delete_tenant(name, true).await;
    }
    report.figure("back to 1 replica: it holds the Lease and deleted ha-one..ha-three");
}

/// Clears kubesim's faults when dropped, so a failing scenario does not
/// leave them on for the next.
struct FaultsOn(atoll_testkit::kubesim::Faults);

impl Drop for FaultsOn {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// kubectl that a flaky API server may refuse: retried, as a GitOps tool
/// retries, up to 30 times.
async fn kubectl_retried(platform: &Platform, args: &[&str]) -> (usize, String) {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let (ok, out) = platform.kubectl(args).await;
        if ok {
            return (attempts, out);
        }
        assert!(attempts < 30, "kubectl {}: {out}", args.join(" "));
    }
}

/// SIGKILLs the operator's running pod; returns 1 when it had a process.
async fn kill_operator(platform: &Platform, node: &atoll_testkit::nodesim::NodeSim) -> usize {
    let pod = eventually("a running operator pod", LIMIT, || async {
        operator_pods(platform).await.into_iter().next()
    })
    .await;
    usize::from(kill_pod(node, crate::harness::RELEASE_NAMESPACE, &pod) > 0)
}

/// Scenario 6a+6b: kubesim answers 10 % of requests with 500, 5 % of
/// writes with 409 and delays 30 % by 20 ms while N tenants are created
/// (N = `ATOLL_E2E_FAULT_TENANTS`, default 50), and the operator is
/// SIGKILLed at random moments of the run. Every k-th tenant runs (its own
/// PostgreSQL and instance; `ATOLL_E2E_FAULT_RUNNING`, default 10 of the
/// 50, since 50 PostgreSQL servers and instances of a debug build saturate
/// 2 cores); the others are suspended, so every object is written but
/// scaled to zero. All converge (Ready, or Suspended), the namespaces of
/// each kind hold the same objects, identity knows each running tenant
/// exactly once, and deleting them all leaves no object, process, volume
/// directory or identity record.
pub async fn fault_api_errors_and_operator_kills(platform: Arc<Platform>, report: Arc<Report>) {
    use atoll_testkit::kubesim::{Fault, FaultRule};
    let p = &*platform;
    let (Some(faults), Some(node)) = (
        p.faults("injecting API errors"),
        p.node("killing the operator"),
    ) else {
        return;
    };
    let count: usize = std::env::var("ATOLL_E2E_FAULT_TENANTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(50);
    let running: usize = std::env::var("ATOLL_E2E_FAULT_RUNNING")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(10)
        .min(count);
    let names: Vec<String> = (0..count).map(|i| format!("flt-{i:03}")).collect();
    // Spread the running ones over the run, so kills land among them too.
    let every = if running == 0 {
        usize::MAX
    } else {
        count.div_ceil(running)
    };
    let runs = |name: &String| {
        let index: usize = name["flt-".len()..].parse().expect("index");
        index.is_multiple_of(every) && index / every < running
    };
    let member = "alice@flt.example";

    let seed = u64::from(uuid::Uuid::new_v4().as_fields().1);
    faults.seed(seed);
    faults.add(FaultRule::new(Fault::InternalError).probability(0.10));
    faults.add(FaultRule::new(Fault::Conflict).writes().probability(0.05));
    faults.add(
        FaultRule::new(Fault::Latency(std::time::Duration::from_millis(20))).probability(0.30),
    );
    let guard = FaultsOn(faults.clone());
    let started = std::time::Instant::now();
    // The operator is SIGKILLed at random points of the run: one in each of
    // the first three quarters of the applies, at a random place in it.
    let quarter = (count / 4).max(1);
    let mut kill_at: Vec<usize> = (0..3u64)
        .map(|i| {
            let jitter = usize::try_from((seed >> (i * 5)) % quarter as u64).unwrap_or(0);
            (quarter * usize::try_from(i).unwrap_or(0) + jitter).min(count.saturating_sub(1))
        })
        .collect();
    kill_at.sort_unstable();
    let mut kills = 0;
    // One file per Tenant, as a GitOps tool applies them, each retried
    // when the API server fails it.
    let mut attempts = 0;
    for (applied, name) in names.iter().enumerate() {
        if kill_at.first() == Some(&applied) {
            kill_at.remove(0);
            let killed = kill_operator(p, node).await;
            kills += killed;
            if killed > 0 {
                println!("    operator SIGKILLed after {applied}/{count} Tenants applied");
            } else {
                println!("    operator was restarting after {applied}/{count}: no process to kill");
            }
        }
        let path = p.dir.path().join(format!("{name}.yaml"));
        std::fs::write(
            &path,
            tenant_yaml(
                name,
                &[(member, "Viewer")],
                if runs(name) {
                    ""
                } else {
                    "  suspended: true\n"
                },
            ),
        )
        .expect("write tenant");
        let path = path.to_str().expect("utf-8").to_owned();
        attempts += kubectl_retried(
            p,
            &[
                "apply",
                "--server-side",
                "--field-manager=atoll-e2e",
                "-f",
                &path,
            ],
        )
        .await
        .0;
    }

    let converged = |tenant: &atoll_crds::Tenant| {
        let wanted = if runs(&tenant.name_any()) {
            Phase::Ready
        } else {
            Phase::Suspended
        };
        tenant.current_phase() == Some(wanted)
    };
    let limit = LIMIT * 3;
    let count_converged = || async {
        p.tenants()
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default()
            .iter()
            .filter(|t| names.contains(&t.name_any()) && converged(t))
            .count()
    };
    // Polls progress with a deadline.
    loop {
        let done = count_converged().await;
        if done == count {
            break;
        }
        if started.elapsed() > limit {
            let tenants = p.tenants().list(&ListParams::default()).await;
            let stuck = tenants.ok().and_then(|l| {
                l.items
                    .into_iter()
                    .find(|t| names.contains(&t.name_any()) && !converged(t))
            });
            let (status, pods) = match &stuck {
                Some(tenant) => {
                    let namespace = format!("atoll-{}", tenant.name_any());
                    let pods = Api::<Pod>::namespaced(p.client.clone(), &namespace)
                        .list(&ListParams::default())
                        .await
                        .map(|l| l.items)
                        .unwrap_or_default();
                    let pods: Vec<String> = pods
                        .iter()
                        .map(|pod| {
                            let log = node
                                .logs(&namespace, &pod.name_any(), None)
                                .unwrap_or_default();
                            let tail: Vec<&str> = log.lines().rev().take(15).collect();
                            format!(
                                "{}: {:?}\n  log tail (newest first):\n    {}",
                                pod.name_any(),
                                pod.status,
                                tail.join("\n    ")
                            )
                        })
                        .collect();
                    (format!("{:#?}", tenant.status), pods.join("\n"))
                }
                None => (String::new(), String::new()),
            };
            panic!(
                "timed out after {limit:?}: {done}/{count} tenants converged under faults; one not converged: {status}\n{pods}"
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let took = started.elapsed();
    let injected = faults.injected();
    report.figure(format!(
        "{count} tenants converged ({running} Ready with PostgreSQL and instance running, {} Suspended) in {:.1}s under {injected} injected API faults (seed {seed}), {kills} operator SIGKILLs, {attempts} kubectl apply attempts",
        count - running,
        took.as_secs_f64()
    ));

    // No duplicates: the namespaces of each kind (running, suspended) hold
    // the same objects; identity
    // knows each tenant once.
    let mut shapes = std::collections::BTreeMap::new();
    for name in &names {
        let namespace = format!("atoll-{name}");
        let (_, out) = kubectl_retried(
            p,
            &[
                "get",
                "statefulsets,deployments,services,ingresses,secrets,resourcequotas,limitranges,networkpolicies,persistentvolumeclaims",
                "-n",
                &namespace,
                "-o",
                "name",
            ],
        )
        .await;
        let mut objects: Vec<&str> = out.lines().collect();
        objects.sort_unstable();
        *shapes.entry((runs(name), objects.join(" "))).or_insert(0) += 1;
    }
    let kinds = usize::from(running > 0) + usize::from(running < count);
    assert_eq!(
        shapes.len(),
        kinds,
        "the namespaces of each kind hold the same objects: {shapes:#?}"
    );
    let admin = p.admin().await;
    let (status, directory) = admin.get("/api/v1/admin/tenants").await;
    assert_eq!(status, 200);
    for name in &names {
        let entries = directory.as_array().map_or(0, |a| {
            a.iter().filter(|t| t["name"] == name.as_str()).count()
        });
        if runs(name) {
            assert_eq!(entries, 1, "identity knows {name} exactly once");
        } else {
            // Registered once reachable: a suspended tenant never was.
            assert!(entries <= 1, "identity knows {name} at most once");
        }
    }
    let sizes: Vec<String> = shapes
        .iter()
        .map(|((runs, objects), namespaces)| {
            format!(
                "{} objects in each of {namespaces} {} namespaces",
                objects.split(' ').count(),
                if *runs { "running" } else { "suspended" }
            )
        })
        .collect();
    report.figure(format!(
        "no duplicates: the same {}; each running tenant once in identity",
        sizes.join(", the same ")
    ));

    // No leaks: delete them all, still under faults.
    let mut processes = Vec::new();
    for name in &names {
        processes.extend(pids(p, node, &format!("atoll-{name}")).await);
    }
    for name in &names {
        kubectl_retried(
            p,
            &[
                "delete",
                "tenant",
                name,
                "--wait=false",
                "--ignore-not-found",
            ],
        )
        .await;
    }
    let namespaces = Api::<Namespace>::all(p.client.clone());
    eventually(
        "every fault tenant and namespace to be gone",
        limit,
        || async {
            let left = namespaces
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .filter(|n| n.name_any().starts_with("atoll-flt-"))
                .count();
            let tenants = p
                .tenants()
                .list(&ListParams::default())
                .await
                .ok()?
                .items
                .iter()
                .filter(|t| t.name_any().starts_with("flt-"))
                .count();
            (left == 0 && tenants == 0).then_some(())
        },
    )
    .await;
    drop(guard);
    // nodesim stops the processes and then removes the volume directories
    // after the API objects are gone: a leak is what is still there after
    // the time limit.
    let left = || {
        let running = processes.iter().filter(|pid| pid_alive(**pid)).count();
        let volumes = names
            .iter()
            .filter(|name| p.pvc_dir(&format!("atoll-{name}")).exists())
            .count();
        (running, volumes)
    };
    eventually(
        "every tenant process to stop and volume directory to go",
        LIMIT,
        || async { (left() == (0, 0)).then_some(()) },
    )
    .await;
    let (_, directory) = admin.get("/api/v1/admin/tenants").await;
    let records = directory.as_array().map_or(0, |a| {
        a.iter()
            .filter(|t| t["name"].as_str().is_some_and(|n| n.starts_with("flt-")))
            .count()
    });
    assert_eq!(records, 0, "identity forgot every fault tenant");
    report.figure(format!(
        "no leaks: all {count} deleted under faults: 0 namespaces, 0 Tenants, 0 of {} processes, 0 volume directories, 0 identity records left; {} faults injected in all",
        processes.len(),
        faults.injected()
    ));
}
