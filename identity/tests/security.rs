//! Key rotation, lockouts and rate limits (across a restart), and login
//! answers that do not reveal which emails exist. On SQLite and PostgreSQL.

mod support;

use std::time::Duration;

use atoll_identity::config::LoginLimits;
use atoll_identity::keys::{KeyPolicy, KeyRing};
use atoll_identity::server::maintain_keys;
use atoll_identity::store::{AuditEvent, Store};
use atoll_identity::verify::{
    Claims, KeySet, Role, VerifierConfig, VerifyError, unix_now, verify_with_keys,
};
use reqwest::StatusCode;
use serde_json::json;
use support::{Service, config};

const ALICE: &str = "alice@acme.test";
const ALICE_PW: &str = "alice-correct-horse";

#[tokio::test]
async fn security_on_sqlite() {
    support::run_suite(&support::Databases::sqlite(), SUITE).await;
}

#[tokio::test]
async fn security_on_postgres() {
    support::run_suite(&support::Databases::postgres().await, SUITE).await;
}

const SUITE: &[(&str, support::Scenario)] = scenarios![
    rotation_keeps_old_tokens_valid_and_publishes_ahead,
    replicas_agree_on_one_successor,
    a_running_service_publishes_its_next_key_before_using_it,
    lockout_holds_across_a_restart,
    address_rate_limit_holds_across_a_restart,
    unknown_email_and_wrong_password_look_the_same,
    login_rehashes_at_new_parameters,
    the_audit_log_is_append_only,
    ended_counters_are_purged,
    signing_keys_are_sealed_at_rest,
    the_owner_is_not_locked_out_by_failures_from_elsewhere,
    behind_a_trusted_proxy_each_client_has_its_own_budget,
    keys_stored_in_the_clear_are_sealed_at_start_up,
    a_wrong_key_encryption_key_is_refused_and_changes_nothing,
];

const HOUR: i64 = 3600;
const ISSUER: &str = "http://127.0.0.1:1";

fn policy() -> KeyPolicy {
    KeyPolicy {
        rotate_every: Duration::from_secs(24 * 3600),
        publish_ahead: Duration::from_secs(3600),
        token_ttl_max: Duration::from_secs(900),
        retire_margin: Duration::from_secs(60),
    }
}

fn claims_at(iat: i64) -> Claims {
    let iat = u64::try_from(iat).expect("positive");
    Claims {
        iss: ISSUER.into(),
        sub: "u".into(),
        email: ALICE.into(),
        aud: "acme".into(),
        tid: "t".into(),
        tenant_uid: None,
        cluster: None,
        role: Role::Viewer,
        iat,
        exp: iat + 900,
        nbf: None,
    }
}

/// What an instance would conclude at `now` with the JWKS served at `now`.
fn verify_at(ring: &KeyRing, token: &str, now: i64) -> Result<Claims, VerifyError> {
    let keys = KeySet::from_json(ring.jwks(now).to_string().as_bytes()).expect("jwks");
    let mut config = VerifierConfig::new(ISSUER, "acme");
    config.leeway = Duration::ZERO;
    verify_with_keys(&keys, &config, token, u64::try_from(now).expect("positive"))
}

fn kid_of(token: &str) -> String {
    jsonwebtoken::decode_header(token)
        .expect("header")
        .kid
        .expect("kid")
}

async fn rotation_keeps_old_tokens_valid_and_publishes_ahead(url: String) {
    let store = Store::open(&url, 2).await.expect("store");
    let ring = KeyRing::new(policy(), Vec::new()).expect("ring");
    let t0 = 1_800_000_000;
    maintain_keys(&store, &ring, t0).await.expect("first key");
    let first = ring.signing_kid(t0).expect("a key signs at once");

    // An hour before the term ends, the successor is created and published,
    // but the first key keeps signing.
    let publish = t0 + 23 * HOUR;
    maintain_keys(&store, &ring, publish).await.expect("rotate");
    let published: Vec<String> = ring.jwks(publish)["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(published.len(), 2);
    let second = published
        .iter()
        .find(|k| **k != first)
        .expect("a new kid")
        .clone();
    for now in [publish, publish + HOUR / 2, t0 + 24 * HOUR - 1] {
        assert_eq!(ring.signing_kid(now).as_ref(), Some(&first), "at {now}");
        let token = ring.mint(&claims_at(now), now).expect("mint");
        assert_eq!(kid_of(&token), first);
    }

    // The last token of the first key, then the first of the second.
    let last_old = ring
        .mint(&claims_at(t0 + 24 * HOUR - 1), t0 + 24 * HOUR - 1)
        .expect("mint");
    let switch = t0 + 24 * HOUR;
    maintain_keys(&store, &ring, switch)
        .await
        .expect("maintain");
    let first_new = ring.mint(&claims_at(switch), switch).expect("mint");
    assert_eq!(kid_of(&first_new), second);

    // The old token verifies until it expires, the old key published all
    // along; the new one verifies too.
    let almost_expired = t0 + 24 * HOUR - 1 + 899;
    maintain_keys(&store, &ring, almost_expired)
        .await
        .expect("maintain");
    assert!(verify_at(&ring, &last_old, almost_expired).is_ok());
    assert!(verify_at(&ring, &first_new, almost_expired).is_ok());
    assert!(matches!(
        verify_at(&ring, &last_old, almost_expired + 1),
        Err(VerifyError::Expired)
    ));

    // After every token of the old key expired (plus the margin), the key
    // leaves the JWKS and the database.
    let retired = switch + 900 + 60;
    maintain_keys(&store, &ring, retired)
        .await
        .expect("maintain");
    assert!(!ring.jwks(retired).to_string().contains(&first));
    let stored: Vec<String> = store
        .signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| k.kid)
        .collect();
    assert_eq!(stored, [second]);
    store.close().await;
}

async fn replicas_agree_on_one_successor(url: String) {
    let store = Store::open(&url, 4).await.expect("store");
    let a = KeyRing::new(policy(), Vec::new()).expect("ring");
    let b = KeyRing::new(policy(), Vec::new()).expect("ring");
    let t0 = 1_800_000_000;
    maintain_keys(&store, &a, t0).await.expect("a");
    maintain_keys(&store, &b, t0).await.expect("b");
    let due = t0 + 23 * HOUR;
    let (ra, rb) = tokio::join!(
        maintain_keys(&store, &a, due),
        maintain_keys(&store, &b, due)
    );
    ra.expect("a rotates");
    rb.expect("b rotates");
    maintain_keys(&store, &a, due).await.expect("a reloads");
    assert_eq!(store.signing_keys().await.expect("keys").len(), 2);
    assert_eq!(
        a.jwks(due),
        b.jwks(due),
        "both replicas publish the same set"
    );
    store.close().await;
}

async fn a_running_service_publishes_its_next_key_before_using_it(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": ALICE, "role": "Viewer"}]),
    )
    .await;
    let alice = svc.login(ALICE, ALICE_PW).await;

    let now = i64::try_from(unix_now()).expect("time");
    let current = svc.keys.signing_kid(now).expect("kid");
    // Move the service's key schedule to just inside the publish-ahead
    // window of the next rotation.
    let policy = *svc.keys.policy();
    let ahead =
        i64::try_from((policy.rotate_every - policy.publish_ahead).as_secs()).expect("fits");
    maintain_keys(&svc.store, &svc.keys, now + ahead)
        .await
        .expect("rotate");

    let (_, jwks) = svc.get("/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    assert_eq!(kids.len(), 2, "the successor is published: {jwks}");
    let (status, body) = svc.tenant_token(&alice, "acme").await;
    assert_eq!(status, StatusCode::OK);
    let token = body["accessToken"].as_str().expect("token");
    assert_eq!(kid_of(token), current, "but the current key still signs");
    svc.stop().await;
}

fn strict_limits() -> LoginLimits {
    LoginLimits {
        attempts_per_minute: 10_000,
        lockout_after: 3,
        lockout: Duration::from_secs(900),
    }
}

async fn lockout_holds_across_a_restart(url: String) {
    let mut settings = config(&url);
    settings.login_limits = strict_limits();
    let svc = Service::start(settings.clone()).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.sign_up(&admin, "bob@acme.test", "bob-battery-staple")
        .await;

    let attempt = |email: &'static str, password: &'static str| {
        let svc = &svc;
        async move {
            svc.post(
                "/api/v1/login",
                None,
                json!({"email": email, "password": password}),
            )
            .await
        }
    };
    for _ in 0..3 {
        assert_eq!(
            attempt(ALICE, "wrong password!").await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            attempt("ghost@acme.test", "wrong password!").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Locked: even the right password is refused, and an unknown email is
    // locked the same way.
    let locked = attempt(ALICE, ALICE_PW).await;
    assert_eq!(locked.0, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(attempt("ghost@acme.test", "whatever it is").await, locked);
    // Other accounts are unaffected.
    svc.login("bob@acme.test", "bob-battery-staple").await;
    svc.stop().await;

    let svc = Service::start(settings).await;
    let (status, _) = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": ALICE, "password": ALICE_PW}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "still locked after a restart"
    );

    // An admin's password reset lifts the lockout.
    let admin = svc.admin().await;
    let (_, users) = svc.get("/api/v1/admin/users", Some(&admin)).await;
    let alice_id = users
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == ALICE)
        .and_then(|u| u["id"].as_str())
        .expect("alice")
        .to_owned();
    let (status, _) = svc
        .put(
            &format!("/api/v1/admin/users/{alice_id}/password"),
            Some(&admin),
            json!({"password": "alice-after-the-reset"}),
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    svc.login(ALICE, "alice-after-the-reset").await;
    svc.stop().await;
}

async fn address_rate_limit_holds_across_a_restart(url: String) {
    let mut settings = config(&url);
    settings.login_limits = LoginLimits {
        attempts_per_minute: 5,
        lockout_after: 1_000,
        lockout: Duration::from_secs(900),
    };
    let svc = Service::start(settings.clone()).await;
    // Many emails from one address: the per-address limit applies.
    for n in 0..5 {
        let (status, _) = svc
            .post(
                "/api/v1/login",
                None,
                json!({"email": format!("user{n}@acme.test"), "password": "wrong password!"}),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let response = svc
        .http
        .post(format!("{}/api/v1/login", svc.base))
        // Not trusted by default: a forged header does not get a fresh budget.
        .header("x-forwarded-for", "203.0.113.7")
        .json(&json!({"email": support::ADMIN_EMAIL, "password": support::ADMIN_PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().get("retry-after").is_some());
    svc.stop().await;

    let svc = Service::start(settings).await;
    let (status, _) = svc
        .post(
            "/api/v1/login",
            None,
            json!({"email": support::ADMIN_EMAIL, "password": support::ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "still limited after a restart"
    );
    svc.stop().await;
}

async fn unknown_email_and_wrong_password_look_the_same(url: String) {
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    let alice_id = svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.sign_up(&admin, "carol@acme.test", "carol-is-disabled")
        .await;
    let (_, users) = svc.get("/api/v1/admin/users", Some(&admin)).await;
    let carol = users
        .as_array()
        .expect("users")
        .iter()
        .find(|u| u["email"] == "carol@acme.test")
        .and_then(|u| u["id"].as_str())
        .expect("carol")
        .to_owned();
    let (status, _) = svc
        .post(
            &format!("/api/v1/admin/users/{carol}/disable"),
            Some(&admin),
            serde_json::Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(!alice_id.is_empty());

    let answer = |email: &'static str, password: &'static str| {
        let svc = &svc;
        async move {
            let response = svc
                .http
                .post(format!("{}/api/v1/login", svc.base))
                .json(&json!({"email": email, "password": password}))
                .send()
                .await
                .expect("request");
            let status = response.status();
            let mut headers: Vec<(String, String)> = response
                .headers()
                .iter()
                .filter(|(name, _)| *name != "date")
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap_or_default().to_owned()))
                .collect();
            headers.sort();
            let body = response.bytes().await.expect("body");
            (status, headers, body)
        }
    };
    let wrong_password = answer(ALICE, "not alice's password").await;
    let unknown_email = answer("nobody@acme.test", "not alice's password").await;
    let malformed_email = answer("not-an-email", "not alice's password").await;
    let disabled = answer("carol@acme.test", "carol-is-disabled").await;
    assert_eq!(wrong_password.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        wrong_password, unknown_email,
        "byte for byte, headers included"
    );
    assert_eq!(wrong_password, malformed_email);
    assert_eq!(wrong_password, disabled);
    svc.stop().await;
}

async fn login_rehashes_at_new_parameters(url: String) {
    let settings = config(&url);
    let svc = Service::start(settings.clone()).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    let stored = |store: Store| async move {
        store
            .user_credentials(ALICE)
            .await
            .expect("query")
            .expect("alice")
            .password_hash
    };
    let before = stored(svc.store.clone()).await;
    assert!(
        before.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
        "{before}"
    );
    svc.stop().await;

    // The operator raises the cost; the next login upgrades the hash.
    let mut stronger = settings;
    stronger.argon2.memory_kib = 128;
    stronger.argon2.iterations = 2;
    let svc = Service::start(stronger).await;
    svc.login(ALICE, ALICE_PW).await;
    let after = stored(svc.store.clone()).await;
    assert!(
        after.starts_with("$argon2id$v=19$m=128,t=2,p=1$"),
        "{after}"
    );
    svc.login(ALICE, ALICE_PW).await;
    assert_eq!(
        stored(svc.store.clone()).await,
        after,
        "no re-hash at current parameters"
    );
    svc.stop().await;
}

async fn the_audit_log_is_append_only(url: String) {
    let store = Store::open(&url, 2).await.expect("store");
    let events: Vec<AuditEvent> = (0..250)
        .map(|n| AuditEvent {
            at: n,
            actor: Some(format!("user-{n}")),
            action: "token.issue".into(),
            subject: (n % 2 == 0).then(|| "acme".to_owned()),
            outcome: "success".into(),
            client_ip: None,
        })
        .collect();
    store.append_audit(&events).await.expect("append");
    let mut read: Vec<AuditEvent> = store
        .audit_log(1000, None)
        .await
        .expect("read")
        .into_iter()
        .map(|e| e.event)
        .collect();
    read.reverse();
    assert_eq!(
        read, events,
        "every event, in order, across statement chunks"
    );
    // Neither updates nor deletes get through, on either database.
    sqlx::any::install_default_drivers();
    let raw = sqlx::AnyPool::connect(&url).await.expect("connect");
    for sql in [
        "UPDATE audit_log SET outcome = 'failure'",
        "DELETE FROM audit_log",
    ] {
        assert!(
            sqlx::query(sql).execute(&raw).await.is_err(),
            "{sql} was allowed"
        );
    }
    raw.close().await;
    assert_eq!(store.audit_log(1000, None).await.expect("read").len(), 250);
    store.close().await;
}

async fn ended_counters_are_purged(url: String) {
    let store = Store::open(&url, 2).await.expect("store");
    let t0 = 1_800_000_000;
    store
        .throttle_hit("login-ip:192.0.2.1", 60, t0)
        .await
        .expect("hit");
    store
        .throttle_hit("login-account:a@acme.test", 900, t0)
        .await
        .expect("hit");
    store
        .throttle_lock("login-account:a@acme.test", t0 + 5000)
        .await
        .expect("lock");
    // The window has ended but the lockout has not: only the first goes.
    assert_eq!(store.purge_throttle(t0 + 900, 900).await.expect("purge"), 1);
    assert!(
        store
            .throttle("login-ip:192.0.2.1")
            .await
            .expect("read")
            .is_none()
    );
    assert!(
        store
            .throttle("login-account:a@acme.test")
            .await
            .expect("read")
            .is_some()
    );
    assert_eq!(
        store.purge_throttle(t0 + 5000, 900).await.expect("purge"),
        1
    );
    store.close().await;
}

async fn signing_keys_are_sealed_at_rest(url: String) {
    use base64::Engine;
    let kek = base64::engine::general_purpose::STANDARD.encode([42u8; 32]);
    let mut sealed = config(&url);
    sealed.key_encryption_key = Some(atoll_identity::config::Secret::new(kek));
    let svc = Service::start(sealed.clone()).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": ALICE, "role": "Viewer"}]),
    )
    .await;
    let alice = svc.login(ALICE, ALICE_PW).await;
    let (status, _) = svc.tenant_token(&alice, "acme").await;
    assert_eq!(status, StatusCode::OK);
    let in_memory = svc.keys.records().remove(0);
    let stored = svc.store.signing_keys().await.expect("keys").remove(0);
    assert_eq!(stored.kid, in_memory.kid);
    assert_eq!(stored.private_pkcs8[0], 0x01, "sealed");
    let seed = &in_memory.private_pkcs8[16..48];
    assert!(!stored.private_pkcs8.windows(32).any(|w| w == seed));
    svc.stop().await;

    // Without the key-encryption key the service refuses to start, naming
    // the problem.
    let error = atoll_identity::server::Identity::open(
        config(&url),
        atoll_identity::server::AdminPasswordPolicy::RequireConfigured,
    )
    .await
    .expect_err("a sealed key cannot be used without its key");
    let chain = atoll_identity::server::error_chain(&error);
    assert!(chain.contains("encrypted"), "{chain}");

    // With it, the same key signs again.
    let svc = Service::start(sealed).await;
    let now = i64::try_from(unix_now()).expect("time");
    assert_eq!(svc.keys.signing_kid(now), Some(in_memory.kid));
    svc.stop().await;
}

/// A login from `client`, through a proxy on loopback that sets
/// `X-Forwarded-For`.
async fn login_from(svc: &Service, client: &str, email: &str, password: &str) -> StatusCode {
    svc.http
        .post(format!("{}/api/v1/login", svc.base))
        .header("x-forwarded-for", client)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("request")
        .status()
}

fn behind_a_loopback_proxy(url: &str) -> atoll_identity::config::Config {
    let mut settings = config(url);
    settings.trusted_proxies = vec![
        "127.0.0.0/8".parse().expect("range"),
        "::1/128".parse().expect("range"),
    ];
    settings
}

async fn the_owner_is_not_locked_out_by_failures_from_elsewhere(url: String) {
    let mut settings = behind_a_loopback_proxy(&url);
    settings.login_limits = strict_limits();
    let svc = Service::start(settings).await;
    let attacker = "203.0.113.7";
    for _ in 0..10 {
        let status = login_from(&svc, attacker, support::ADMIN_EMAIL, "guess guess guess").await;
        assert!(
            status == StatusCode::UNAUTHORIZED || status == StatusCode::TOO_MANY_REQUESTS,
            "{status}"
        );
    }
    // The attacker's address is locked out of the account, even with the
    // right password...
    assert_eq!(
        login_from(
            &svc,
            attacker,
            support::ADMIN_EMAIL,
            support::ADMIN_PASSWORD
        )
        .await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // ...the owner, from their own address, is not.
    assert_eq!(
        login_from(
            &svc,
            "198.51.100.20",
            support::ADMIN_EMAIL,
            support::ADMIN_PASSWORD
        )
        .await,
        StatusCode::OK
    );
    svc.stop().await;
}

async fn behind_a_trusted_proxy_each_client_has_its_own_budget(url: String) {
    let mut settings = behind_a_loopback_proxy(&url);
    settings.login_limits = LoginLimits {
        attempts_per_minute: 3,
        lockout_after: 1_000,
        lockout: Duration::from_secs(900),
    };
    let svc = Service::start(settings).await;
    for n in 0..3 {
        let email = format!("user{n}@acme.test");
        assert_eq!(
            login_from(&svc, "203.0.113.7", &email, "wrong password!").await,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        login_from(&svc, "203.0.113.7", ALICE, "wrong password!").await,
        StatusCode::TOO_MANY_REQUESTS,
        "the client behind the proxy used up its budget"
    );
    // Another client behind the same proxy has its own; what a client
    // writes to the left of the proxy's entry is not believed.
    assert_eq!(
        login_from(
            &svc,
            "198.51.100.20",
            support::ADMIN_EMAIL,
            support::ADMIN_PASSWORD
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(
        login_from(&svc, "198.51.100.99, 203.0.113.7", ALICE, "wrong password!").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    svc.stop().await;
}

fn kek(byte: u8) -> atoll_identity::config::Secret {
    use base64::Engine;
    atoll_identity::config::Secret::new(
        base64::engine::general_purpose::STANDARD.encode([byte; 32]),
    )
}

async fn keys_stored_in_the_clear_are_sealed_at_start_up(url: String) {
    // Before a key-encryption key was configured.
    let svc = Service::start(config(&url)).await;
    let admin = svc.admin().await;
    svc.sign_up(&admin, ALICE, ALICE_PW).await;
    svc.register(
        "acme",
        "cluster-a",
        json!([{"email": ALICE, "role": "Viewer"}]),
    )
    .await;
    let alice = svc.login(ALICE, ALICE_PW).await;
    let (_, body) = svc.tenant_token(&alice, "acme").await;
    let token = body["accessToken"].as_str().expect("token").to_owned();
    let plain = svc.store.signing_keys().await.expect("keys").remove(0);
    assert_ne!(plain.private_pkcs8[0], 0x01, "stored in the clear");
    let seed = plain.private_pkcs8[16..48].to_vec();
    let old_issuer = svc.base.clone();
    svc.stop().await;

    // Configured now: the stored key is sealed at start-up, and keeps
    // signing and verifying; again after a restart with the same key.
    let mut sealed = config(&url);
    sealed.key_encryption_key = Some(kek(7));
    for _ in 0..2 {
        let svc = Service::start(sealed.clone()).await;
        let stored = svc.store.signing_keys().await.expect("keys");
        assert_eq!(stored.len(), 1);
        assert_eq!(stored[0].kid, plain.kid);
        assert_eq!(stored[0].private_pkcs8[0], 0x01, "sealed");
        assert!(
            !stored[0].private_pkcs8.windows(32).any(|w| w == seed),
            "the private key is no longer in the database"
        );
        // (Each start listens on a new port, so a new issuer.)
        let mut old = VerifierConfig::new(&old_issuer, "acme");
        old.jwks_url = format!("{}/.well-known/jwks.json", svc.base);
        let old = atoll_identity::verify::Verifier::new(old);
        old.verify(&token).await.expect("the old token verifies");
        let verifier =
            atoll_identity::verify::Verifier::new(VerifierConfig::new(&svc.base, "acme"));
        let alice = svc.login(ALICE, ALICE_PW).await;
        let (_, body) = svc.tenant_token(&alice, "acme").await;
        let fresh = body["accessToken"].as_str().expect("token");
        assert_eq!(kid_of(fresh), plain.kid, "the same key signs");
        verifier.verify(fresh).await.expect("a new token verifies");
        svc.stop().await;
    }
}

async fn a_wrong_key_encryption_key_is_refused_and_changes_nothing(url: String) {
    let mut right = config(&url);
    right.key_encryption_key = Some(kek(1));
    Service::start(right.clone()).await.stop().await;
    let store = Store::open(&url, 2).await.expect("store");
    let before: Vec<(String, Vec<u8>)> = store
        .signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| (k.kid, k.private_pkcs8))
        .collect();

    let mut wrong = config(&url);
    wrong.key_encryption_key = Some(kek(2));
    // A key due for rotation makes no difference: nothing is written.
    wrong.keys.rotate_every = Duration::from_secs(1);
    wrong.keys.publish_ahead = Duration::from_secs(3600);
    let error = atoll_identity::server::Identity::open(
        wrong,
        atoll_identity::server::AdminPasswordPolicy::RequireConfigured,
    )
    .await
    .expect_err("a wrong key-encryption key");
    let chain = atoll_identity::server::error_chain(&error);
    assert!(chain.contains("does not decrypt"), "{chain}");
    assert!(
        chain.contains("ATOLL_IDENTITY_KEY_ENCRYPTION_KEY"),
        "{chain}"
    );
    let after: Vec<(String, Vec<u8>)> = store
        .signing_keys()
        .await
        .expect("keys")
        .into_iter()
        .map(|k| (k.kid, k.private_pkcs8))
        .collect();
    assert_eq!(after, before, "nothing stored was changed");
    store.close().await;
    // The right key still opens them.
    Service::start(right).await.stop().await;
}
