//! The HTTP API, end to end over loopback, on SQLite and on PostgreSQL: the
//! same scenarios, each on a fresh database.

mod support;

use std::time::Duration;

use atoll_identity::verify::{Role, Verifier, VerifierConfig, VerifyError};
use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{
    ADMIN_EMAIL, CLUSTER_B_TOKEN, SERVICE_TOKEN, Service, config, eventually, with_cluster_b,
};

const ALICE: &str = "alice@acme.test";
const ALICE_PW: &str = "alice-correct-horse";
const BOB: &str = "bob@acme.test";
const BOB_PW: &str = "bob-battery-staple";

#[tokio::test]
async fn suite_on_sqlite() {
    support::run_suite(&support::Databases::sqlite(), SUITE).await;
}

#[tokio::test]
async fn suite_on_postgres() {
    support::run_suite(&support::Databases::postgres().await, SUITE).await;
}

const SUITE: &[(&str, support::Scenario)] = scenarios![
    admin_signs_up_users_who_log_in_and_out,
    only_admins_manage_users,
    disabling_and_password_resets_end_sessions,
    personal_access_tokens,
    tenant_registration_needs_the_service_token,
    membership_changes_apply_to_the_next_token,
    members_without_an_account_yet,
    a_second_cluster_gets_409,
    another_clusters_credential_cannot_touch_a_tenant,
    a_body_cluster_that_lies_is_refused,
    the_tenant_uid_is_required_and_stored,
    tokens_carry_the_tenant_uid_and_cluster,
    a_cluster_added_to_the_directory_needs_no_restart,
    only_a_password_session_creates_access_tokens,
    access_token_lifetimes_are_capped,
    read_access_tokens_only_read,
    tenant_listings,
    tenant_tokens_verify_offline,
    tokens_are_refused_alike_for_strangers_and_missing_tenants,
    discovery_and_jwks,
    the_audit_log_records_what_happened,
    bad_requests_are_answered_plainly,
];

async fn admin_signs_up_users_who_log_in_and_out(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;

    // Emails are unique case-insensitively.
    let (status, _) = svc
        .post(
            "/api/v1/admin/users",
            Some(&admin),
            json!({"email": "ALICE@acme.test", "password": ALICE_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (status, body) = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": "Alice@ACME.test", "password": ALICE_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let session = body["token"].as_str().expect("token").to_owned();
    assert!(session.starts_with("atoll_ses_"));
    assert!(body["expiresAt"].as_str().is_some_and(|t| t.ends_with('Z')));

    let (status, me) = svc.get("/api/v1/me", Some(&session)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], ALICE);
    assert_eq!(me["admin"], false);

    let (status, _) = svc
        .post("/api/v1/logout", Some(&session), Value::Null)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = svc.get("/api/v1/me", Some(&session)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    svc.stop().await;
}

async fn only_admins_manage_users(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let alice = svc.login(ALICE, ALICE_PW).await;
    for (status, _) in [
        svc.get("/api/v1/admin/users", Some(&alice)).await,
        svc.get("/api/v1/admin/tenants", Some(&alice)).await,
        svc.get("/api/v1/admin/audit", Some(&alice)).await,
        svc.post(
            "/api/v1/admin/users",
            Some(&alice),
            json!({"email": BOB, "password": BOB_PW}),
        )
        .await,
    ] {
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (status, _) = svc.get("/api/v1/admin/users", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, users) = svc.get("/api/v1/admin/users", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let emails: Vec<&str> = users
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["email"].as_str())
        .collect();
    assert_eq!(emails, [ALICE, ADMIN_EMAIL]);
    // A weak password is refused, and the message says why.
    let (status, body) = svc
        .post(
            "/api/v1/admin/users",
            Some(&admin),
            json!({"email": BOB, "password": "short"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("at least 12"))
    );
    svc.stop().await;
}

async fn disabling_and_password_resets_end_sessions(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    let alice_id = svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let session = svc.login(ALICE, ALICE_PW).await;

    let (status, _) = svc
        .post(
            &format!("/api/v1/admin/users/{alice_id}/disable"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = svc.get("/api/v1/me", Some(&session)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": ALICE, "password": ALICE_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, _) = svc
        .post(
            &format!("/api/v1/admin/users/{alice_id}/enable"),
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let session = svc.login(ALICE, ALICE_PW).await;

    let new_password = "alice-new-password-42";
    let (status, _) = svc
        .put(
            &format!("/api/v1/admin/users/{alice_id}/password"),
            Some(&admin),
            json!({"password": new_password}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = svc.get("/api/v1/me", Some(&session)).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "the reset ends old sessions"
    );
    let (status, _) = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": ALICE, "password": ALICE_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    svc.login(ALICE, new_password).await;

    let (status, _) = svc
        .post(
            "/api/v1/admin/users/no-such-id/disable",
            Some(&admin),
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    svc.stop().await;
}

async fn personal_access_tokens(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": ALICE, "role": "Editor"}]),
    )
    .await;
    let session = svc.login(ALICE, ALICE_PW).await;

    let (status, created) = svc
        .post(
            "/api/v1/me/access-tokens",
            Some(&session),
            json!({"name": "ci", "expiresInDays": 30, "scope": "full", "password": ALICE_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let pat = created["token"].as_str().expect("shown once").to_owned();
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(pat.starts_with("atoll_pat_"));

    // Listed without the token.
    let (_, list) = svc.get("/api/v1/me/access-tokens", Some(&session)).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert_eq!(list[0]["name"], "ci");
    assert!(list[0].get("token").is_none());

    // The PAT authenticates like a session.
    let (status, me) = svc.get("/api/v1/me", Some(&pat)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["email"], ALICE);
    let (status, _) = svc.tenant_token(&pat, "acme").await;
    assert_eq!(status, StatusCode::OK);
    // Logout is for sessions.
    let (status, _) = svc.post("/api/v1/logout", Some(&pat), Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Bounds.
    let (status, _) = svc
        .post(
            "/api/v1/me/access-tokens",
            Some(&session),
            json!({"name": "forever", "expiresInDays": 10_000, "password": ALICE_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Revoked: refused at once.
    let (status, _) = svc
        .delete(&format!("/api/v1/me/access-tokens/{id}"), Some(&session))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = svc.get("/api/v1/me", Some(&pat)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = svc
        .delete(&format!("/api/v1/me/access-tokens/{id}"), Some(&session))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    svc.stop().await;
}

async fn tenant_registration_needs_the_service_token(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    let body = json!({"cluster": "cluster-a", "url": "https://acme.atoll.test", "phase": "Ready", "members": []});
    for bearer in [None, Some("wrong-token"), Some(admin.as_str())] {
        let (status, _) = svc.put("/api/v1/tenants/acme", bearer, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "PUT with {bearer:?}");
        let (status, _) = svc.delete("/api/v1/tenants/acme", bearer).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "DELETE with {bearer:?}");
    }

    let (status, created) = svc.register("acme", "cluster-a", json!([])).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].clone();
    // Idempotent: the same request again is an update that changes nothing.
    let (status, again) = svc.register("acme", "cluster-a", json!([])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], id, "the tenant keeps its id");

    let (status, updated) = svc
        .put(
            "/api/v1/tenants/acme",
            Some(SERVICE_TOKEN),
            json!({"cluster": "cluster-a", "uid": "uid-acme", "url": "https://acme.example", "phase": "Degraded", "displayName": "ACME"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["phase"], "Degraded");
    assert_eq!(updated["url"], "https://acme.example");
    assert_eq!(updated["displayName"], "ACME");

    let (status, _) = svc
        .delete("/api/v1/tenants/acme", Some(SERVICE_TOKEN))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = svc
        .delete("/api/v1/tenants/acme", Some(SERVICE_TOKEN))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "deleting twice is fine");

    let (status, _) = svc.register("Not_A_Label", "cluster-a", json!([])).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    svc.stop().await;
}

async fn role_in_token(svc: &Service, session: &str, tenant: &str) -> Result<Role, StatusCode> {
    let (status, body) = svc.tenant_token(session, tenant).await;
    if status != StatusCode::OK {
        return Err(status);
    }
    let token = body["accessToken"].as_str().expect("token");
    let claims = jsonwebtoken::dangerous::insecure_decode::<atoll_identity::verify::Claims>(token)
        .expect("claims")
        .claims;
    Ok(claims.role)
}

async fn membership_changes_apply_to_the_next_token(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let alice = svc.login(ALICE, ALICE_PW).await;

    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": ALICE, "role": "Viewer"}]),
    )
    .await;
    assert_eq!(role_in_token(&svc, &alice, "acme").await, Ok(Role::Viewer));

    // The Tenant resource's `user` field is accepted too; emails are
    // matched case-insensitively.
    svc.register(
        "acme",
        "cluster-a",
        json!([{"user": "ALICE@acme.test", "role": "Editor"}]),
    )
    .await;
    assert_eq!(role_in_token(&svc, &alice, "acme").await, Ok(Role::Editor));

    svc.register("acme", "cluster-a", json!([])).await;
    assert_eq!(
        role_in_token(&svc, &alice, "acme").await,
        Err(StatusCode::FORBIDDEN)
    );
    svc.stop().await;
}

async fn members_without_an_account_yet(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": BOB, "role": "Admin"}]),
    )
    .await;
    svc.sign_up(&admin, BOB, BOB_PW).await;
    let bob = svc.login(BOB, BOB_PW).await;
    let (_, tenants) = svc.get("/api/v1/me/tenants", Some(&bob)).await;
    assert_eq!(tenants[0]["name"], "acme");
    assert_eq!(role_in_token(&svc, &bob, "acme").await, Ok(Role::Admin));
    svc.stop().await;
}

async fn a_second_cluster_gets_409(url: String) {
    let (settings, _clusters) = with_cluster_b(config(&url));
    let svc = Service::start(settings).await;
    let (status, _) = svc.register("acme", "cluster-a", json!([])).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = svc.register("acme", "cluster-b", json!([])).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("another cluster"))
    );
    // The owner is untouched and still updates it.
    let (status, _) = svc.register("acme", "cluster-a", json!([])).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = svc
        .delete("/api/v1/tenants/acme", Some(SERVICE_TOKEN))
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    // Once released, another cluster may take the name.
    let (status, _) = svc.register("acme", "cluster-b", json!([])).await;
    assert_eq!(status, StatusCode::CREATED);
    svc.stop().await;
}

/// The tenant as the admin listing shows it.
async fn tenant_record(svc: &Service, admin: &str, name: &str) -> Value {
    let (_, all) = svc.get("/api/v1/admin/tenants", Some(admin)).await;
    all.as_array()
        .expect("list")
        .iter()
        .find(|t| t["name"] == name)
        .cloned()
        .unwrap_or(Value::Null)
}

async fn another_clusters_credential_cannot_touch_a_tenant(url: String) {
    let (settings, _clusters) = with_cluster_b(config(&url));
    let svc = Service::start(settings).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let (status, _) = svc
        .register(
            "acme",
            "cluster-a",
            json!([{"email": ALICE, "role": "Admin"}]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let before = tenant_record(&svc, &admin, "acme").await;

    // Delete: with or without a `?cluster=` naming the owner, cluster B's
    // credential deletes nothing and hears 404, as if it were gone.
    for path in [
        "/api/v1/tenants/acme",
        "/api/v1/tenants/acme?cluster=cluster-a",
    ] {
        let (status, _) = svc.delete(path, Some(CLUSTER_B_TOKEN)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "DELETE {path}");
    }
    // Overwrite or claim it, with or without naming the owner in the body.
    for body in [
        json!({"uid": "uid-evil", "url": "https://evil.example", "phase": "Ready",
               "members": [{"email": "mallory@evil.test", "role": "Admin"}]}),
        json!({"uid": "uid-evil", "url": "https://evil.example", "phase": "Ready",
               "cluster": "cluster-b", "members": []}),
    ] {
        let (status, _) = svc
            .put("/api/v1/tenants/acme", Some(CLUSTER_B_TOKEN), body)
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
    }
    let (status, _) = svc
        .put(
            "/api/v1/tenants/acme",
            Some(CLUSTER_B_TOKEN),
            json!({"uid": "uid-evil", "url": "https://evil.example", "cluster": "cluster-a"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "a lying body is refused");

    let after = tenant_record(&svc, &admin, "acme").await;
    assert_eq!(after, before, "the record is untouched");
    let alice = svc.login(ALICE, ALICE_PW).await;
    assert_eq!(role_in_token(&svc, &alice, "acme").await, Ok(Role::Admin));

    // Every refusal is in the audit log, as cluster B.
    eventually(
        "the denials in the audit log",
        Duration::from_secs(10),
        || async {
            let (_, log) = svc.get("/api/v1/admin/audit?limit=100", Some(&admin)).await;
            let denied = |action: &str| {
                log.as_array().is_some_and(|entries| {
                    entries.iter().any(|e| {
                        e["action"] == action
                            && e["outcome"] == "denied"
                            && e["actor"] == "cluster:cluster-b"
                            && e["subject"] == "acme"
                    })
                })
            };
            (denied("tenant.delete") && denied("tenant.register")).then_some(())
        },
    )
    .await;
    svc.stop().await;
}

async fn a_body_cluster_that_lies_is_refused(url: String) {
    let (settings, _clusters) = with_cluster_b(config(&url));
    let svc = Service::start(settings).await;
    let (status, body) = svc
        .put(
            "/api/v1/tenants/globex",
            Some(CLUSTER_B_TOKEN),
            json!({"uid": "uid-globex", "cluster": "cluster-a"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["error"].as_str().unwrap_or_default();
    assert!(
        message.contains("cluster") && message.contains("credential"),
        "{message}"
    );
    // The credential's own cluster, or none, is fine: the cluster is the
    // credential's.
    let (status, created) = svc
        .put(
            "/api/v1/tenants/globex",
            Some(CLUSTER_B_TOKEN),
            json!({"uid": "uid-globex", "cluster": "cluster-b"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["cluster"], "cluster-b");
    let (status, created) = svc
        .put(
            "/api/v1/tenants/initech",
            Some(CLUSTER_B_TOKEN),
            json!({"uid": "uid-initech"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["cluster"], "cluster-b");
    svc.stop().await;
}

async fn the_tenant_uid_is_required_and_stored(url: String) {
    let svc = Service::start(config(&url)).await;
    for body in [
        json!({"url": "https://acme.atoll.test"}),
        json!({"uid": ""}),
        json!({"uid": "u".repeat(129)}),
    ] {
        let (status, answer) = svc
            .put("/api/v1/tenants/acme", Some(SERVICE_TOKEN), body)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(answer["error"].as_str().is_some_and(|e| e.contains("uid")));
    }
    let (status, created) = svc
        .register_uid("acme", "cluster-a", "uid-1", json!([]))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(created["uid"], "uid-1");
    // The Tenant deleted and re-created: the same cluster registers the
    // new uid.
    let (status, updated) = svc
        .register_uid("acme", "cluster-a", "uid-2", json!([]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(updated["uid"], "uid-2");
    svc.stop().await;
}

fn claims_of(body: &Value) -> atoll_identity::verify::Claims {
    let token = body["accessToken"].as_str().expect("token");
    jsonwebtoken::dangerous::insecure_decode::<atoll_identity::verify::Claims>(token)
        .expect("claims")
        .claims
}

async fn tokens_carry_the_tenant_uid_and_cluster(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let members = json!([{"email": ALICE, "role": "Editor"}]);
    svc.register_uid("acme", "cluster-a", "uid-1", members.clone())
        .await;
    let alice = svc.login(ALICE, ALICE_PW).await;
    let (status, first) = svc.tenant_token(&alice, "acme").await;
    assert_eq!(status, StatusCode::OK);
    let claims = claims_of(&first);
    assert_eq!(claims.tenant_uid.as_deref(), Some("uid-1"));
    assert_eq!(claims.cluster.as_deref(), Some("cluster-a"));

    // The Tenant is deleted and re-created (a new uid): the instance of the
    // old one, pinned to uid-1, refuses tokens for the new one.
    svc.register_uid("acme", "cluster-a", "uid-2", members)
        .await;
    let (_, second) = svc.tenant_token(&alice, "acme").await;
    assert_eq!(claims_of(&second).tenant_uid.as_deref(), Some("uid-2"));
    let pinned = Verifier::new(VerifierConfig::new(&svc.base, "acme").with_tenant_uid("uid-1"));
    let first = first["accessToken"].as_str().expect("token");
    let second = second["accessToken"].as_str().expect("token");
    assert!(pinned.verify(first).await.is_ok());
    assert!(matches!(
        pinned.verify(second).await,
        Err(VerifyError::WrongTenantUid)
    ));

    let (_, discovery) = svc.get("/.well-known/openid-configuration", None).await;
    let supported = discovery["claims_supported"].as_array().expect("claims");
    assert!(supported.contains(&json!("tenant_uid")) && supported.contains(&json!("cluster")));
    svc.stop().await;
}

async fn a_cluster_added_to_the_directory_needs_no_restart(url: String) {
    let (settings, clusters) = with_cluster_b(config(&url));
    let svc = Service::start(settings).await;
    let token = "cluster-c-operator-token-0123456789abcdef";
    let register = || {
        svc.put(
            "/api/v1/tenants/hooli",
            Some(token),
            json!({"uid": "uid-hooli"}),
        )
    };
    assert_eq!(register().await.0, StatusCode::UNAUTHORIZED);
    std::fs::write(clusters.path().join("cluster-c"), token).expect("write");
    let created = eventually(
        "the new cluster's credential",
        Duration::from_secs(10),
        || async {
            let (status, body) = register().await;
            (status == StatusCode::CREATED).then_some(body)
        },
    )
    .await;
    assert_eq!(created["cluster"], "cluster-c");
    svc.stop().await;
}

/// Creates an access token with the session; returns status and body.
async fn create_pat(svc: &Service, bearer: &str, body: Value) -> (StatusCode, Value) {
    svc.post("/api/v1/me/access-tokens", Some(bearer), body)
        .await
}

async fn only_a_password_session_creates_access_tokens(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let session = svc.login(ALICE, ALICE_PW).await;

    // The password is re-stated, and checked.
    let (status, body) = create_pat(&svc, &session, json!({"name": "ci"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("password"))
    );
    let (status, body) = create_pat(
        &svc,
        &session,
        json!({"name": "ci", "password": "not alice's password"}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, created) = create_pat(
        &svc,
        &session,
        json!({"name": "ci", "scope": "full", "password": ALICE_PW}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["scope"], "full");
    let pat = created["token"].as_str().expect("token").to_owned();

    // A token, even a full one with the right password, breeds no tokens.
    let (status, body) = create_pat(
        &svc,
        &pat,
        json!({"name": "child", "scope": "full", "password": ALICE_PW}),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (_, list) = svc.get("/api/v1/me/access-tokens", Some(&session)).await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    svc.stop().await;
}

async fn access_token_lifetimes_are_capped(url: String) {
    let mut settings = config(&url);
    settings.pat_max_days = 30;
    let svc = Service::start(settings).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let session = svc.login(ALICE, ALICE_PW).await;
    let (status, body) = create_pat(
        &svc,
        &session,
        json!({"name": "long", "expiresInDays": 31, "password": ALICE_PW}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("30")),
        "{body}"
    );
    let (status, created) = create_pat(
        &svc,
        &session,
        json!({"name": "default", "password": ALICE_PW}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["scope"], "read", "read is the default scope");
    let expires = created["expiresAt"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .expect("expiresAt");
    let created_at = created["createdAt"]
        .as_str()
        .and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .expect("createdAt");
    assert_eq!(
        expires.as_second() - created_at.as_second(),
        30 * 86400,
        "no lifetime asked: the maximum"
    );
    svc.stop().await;
}

async fn read_access_tokens_only_read(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": ALICE, "role": "Admin"}, {"email": ADMIN_EMAIL, "role": "Admin"}]),
    )
    .await;
    let session = svc.login(ALICE, ALICE_PW).await;
    let mut pats = Vec::new();
    for scope in ["read", "full"] {
        let (status, created) = create_pat(
            &svc,
            &session,
            json!({"name": scope, "scope": scope, "password": ALICE_PW}),
        )
        .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        pats.push(created["token"].as_str().expect("token").to_owned());
    }
    assert_eq!(
        role_in_token(&svc, &pats[0], "acme").await,
        Ok(Role::Viewer)
    );
    assert_eq!(role_in_token(&svc, &pats[1], "acme").await, Ok(Role::Admin));
    // A read token changes nothing of the user's: it cannot revoke the full
    // one (which still works afterwards).
    let (status, listed) = svc.get("/api/v1/me/access-tokens", Some(&pats[0])).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    let full_id = listed
        .as_array()
        .expect("a list")
        .iter()
        .find(|t| t["name"] == "full")
        .and_then(|t| t["id"].as_str())
        .expect("the full token's id")
        .to_owned();
    let (status, _) = svc
        .delete(
            &format!("/api/v1/me/access-tokens/{full_id}"),
            Some(&pats[0]),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(role_in_token(&svc, &pats[1], "acme").await, Ok(Role::Admin));

    // An admin's read token reads the admin API but changes nothing.
    let (status, created) = create_pat(
        &svc,
        &admin,
        json!({"name": "audit", "scope": "read", "password": support::ADMIN_PASSWORD}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let read = created["token"].as_str().expect("token");
    let (status, _) = svc.get("/api/v1/admin/users", Some(read)).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = svc
        .post(
            "/api/v1/admin/users",
            Some(read),
            json!({"email": BOB, "password": BOB_PW}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    svc.stop().await;
}

async fn tenant_listings(url: String) {
    let (settings, _clusters) = with_cluster_b(config(&url));
    let svc = Service::start(settings).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": ALICE, "role": "Admin"}]),
    )
    .await;
    svc.register(
        "globex",
        "cluster-b",
        json!([{"email": ALICE, "role": "Viewer"}, {"email": BOB, "role": "Editor"}]),
    )
    .await;
    svc.register(
        "initech",
        "cluster-a",
        json!([{"email": BOB, "role": "Editor"}]),
    )
    .await;
    let alice = svc.login(ALICE, ALICE_PW).await;

    let (status, mine) = svc.get("/api/v1/me/tenants", Some(&alice)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        mine,
        json!([
            {"name": "acme", "displayName": "acme Corp", "role": "Admin", "url": "https://acme.atoll.test", "phase": "Ready"},
            {"name": "globex", "displayName": "globex Corp", "role": "Viewer", "url": "https://globex.atoll.test", "phase": "Ready"},
        ])
    );

    let (status, all) = svc.get("/api/v1/admin/tenants", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    let summary: Vec<(String, String, i64)> = all
        .as_array()
        .expect("list")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_owned(),
                t["cluster"].as_str().unwrap_or_default().to_owned(),
                t["members"].as_i64().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("acme".into(), "cluster-a".into(), 1),
            ("globex".into(), "cluster-b".into(), 2),
            ("initech".into(), "cluster-a".into(), 1),
        ]
    );
    svc.stop().await;
}

async fn tenant_tokens_verify_offline(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    let alice_id = svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let (_, tenant) = svc
        .register(
            "acme",
            "cluster-a",
            json!([{"email": ALICE, "role": "Editor"}]),
        )
        .await;
    let alice = svc.login(ALICE, ALICE_PW).await;

    let (status, body) = svc.tenant_token(&alice, "acme").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 900);
    let token = body["accessToken"].as_str().expect("token");

    // The instance's verifier fetches the JWKS from the running service.
    let verifier = Verifier::new(VerifierConfig::new(&svc.base, "acme"));
    let claims = verifier.verify(token).await.expect("verifies");
    assert_eq!(claims.iss, svc.base);
    assert_eq!(claims.sub, alice_id);
    assert_eq!(claims.email, ALICE);
    assert_eq!(claims.aud, "acme");
    assert_eq!(claims.tid, tenant["id"].as_str().expect("tenant id"));
    assert_eq!(claims.role, Role::Editor);
    assert_eq!(claims.exp - claims.iat, 900);

    // Another tenant's instance refuses it.
    let other = Verifier::new(VerifierConfig::new(&svc.base, "globex"));
    assert!(matches!(
        other.verify(token).await,
        Err(VerifyError::WrongAudience { .. })
    ));

    // Identity down: the cached keys keep working; a refresh fails and
    // keeps them.
    svc.stop().await;
    assert!(verifier.refresh().await.is_err());
    assert!(verifier.verify(token).await.is_ok());
}

async fn tokens_are_refused_alike_for_strangers_and_missing_tenants(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": BOB, "role": "Admin"}]),
    )
    .await;
    let alice = svc.login(ALICE, ALICE_PW).await;
    let not_member = svc.tenant_token(&alice, "acme").await;
    let missing = svc.tenant_token(&alice, "no-such-tenant").await;
    let malformed = svc.tenant_token(&alice, "../../etc").await;
    assert_eq!(not_member.0, StatusCode::FORBIDDEN);
    assert_eq!(not_member, missing);
    assert_eq!(not_member, malformed);
    // The admin of the platform is no member either.
    assert_eq!(svc.tenant_token(&admin, "acme").await, not_member);
    let (status, _) = svc
        .post("/api/v1/tokens", None, json!({"tenant": "acme"}))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    svc.stop().await;
}

async fn discovery_and_jwks(url: String) {
    let svc = Service::start(config(&url)).await;
    let response = svc
        .http
        .get(format!("{}/.well-known/openid-configuration", svc.base))
        .send()
        .await
        .expect("discovery");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("cache-control").is_some());
    let discovery: Value = response.json().await.expect("json");
    assert_eq!(discovery["issuer"], svc.base.as_str());
    let jwks_uri = discovery["jwks_uri"].as_str().expect("jwks_uri").to_owned();
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        json!(["EdDSA"])
    );

    let response = svc.http.get(&jwks_uri).send().await.expect("jwks");
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(cache.starts_with("public, max-age="), "{cache}");
    let jwks: jsonwebtoken::jwk::JwkSet = response.json().await.expect("a JwkSet");
    assert_eq!(jwks.keys.len(), 1);
    let key = &jwks.keys[0];
    assert!(key.common.key_id.is_some());
    // Public parts only.
    let raw = serde_json::to_value(key).expect("json");
    assert!(raw.get("d").is_none());
    let (status, _) = svc.get("/readyz", None).await;
    assert_eq!(status, StatusCode::OK);
    svc.stop().await;
}

async fn the_audit_log_records_what_happened(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": ALICE, "role": "Viewer"}]),
    )
    .await;
    let _ = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": ALICE, "password": "wrong password!"}),
        )
        .await;
    let alice = svc.login(ALICE, ALICE_PW).await;
    let _ = svc.tenant_token(&alice, "acme").await;
    let _ = svc.tenant_token(&alice, "globex").await;

    let wanted = [
        ("login", "success"),
        ("login", "failure"),
        ("user.create", "success"),
        ("tenant.create", "success"),
        ("token.issue", "success"),
        ("token.issue", "denied"),
    ];
    eventually("the audit entries", Duration::from_secs(10), || async {
        let (_, log) = svc.get("/api/v1/admin/audit?limit=100", Some(&admin)).await;
        let seen: Vec<(String, String)> = log
            .as_array()?
            .iter()
            .map(|e| {
                (
                    e["action"].as_str().unwrap_or_default().to_owned(),
                    e["outcome"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        wanted
            .iter()
            .all(|(a, o)| seen.iter().any(|(sa, so)| sa == a && so == o))
            .then_some(())
    })
    .await;
    svc.stop().await;
}

async fn bad_requests_are_answered_plainly(url: String) {
    let svc = Service::start(config(&url)).await;
    // Not JSON, wrong types, unknown fields: 400 without echoing the input.
    let secret_ish = "p4ssw0rd-that-must-not-echo";
    for body in [
        json!({"email": ALICE, "password": 12345, "note": secret_ish}),
        json!({"email": ALICE, "password": secret_ish, "extra": true}),
        json!(secret_ish),
    ] {
        let (status, answer) = svc.post("/api/v1/login", None, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(!answer.to_string().contains(secret_ish));
    }
    // Too large.
    let huge = "x".repeat(atoll_identity::api::BODY_LIMIT + 1);
    let (status, _) = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": huge, "password": "x"}),
        )
        .await;
    assert!(
        status == StatusCode::PAYLOAD_TOO_LARGE || status == StatusCode::BAD_REQUEST,
        "{status}"
    );
    let (status, _) = svc.get("/api/v1/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    svc.stop().await;
}
