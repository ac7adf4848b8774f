//! The store does the same on SQLite and PostgreSQL: every concern (users,
//! credentials and the token grant, the tenant directory, signing keys,
//! rate limits, the audit log) run through one scenario on each.

use atoll_identity::keys::KeyRecord;
use atoll_identity::store::{
    AuditEvent, Backend, CredentialKind, Grant, Member, NewCredential, OwnedElsewhere, PatScope,
    Registered, Store, TenantSpec, User,
};
use atoll_identity::verify::Role;
use atoll_testkit::pg::TestPostgres;

const NOW: i64 = 1_800_000_000;

fn user(id: &str, email: &str) -> User {
    User {
        id: id.into(),
        email: email.into(),
        display_name: id.into(),
        is_admin: false,
        disabled: false,
        created_at: NOW,
    }
}

fn credential(id: &str, user_id: &str, kind: CredentialKind) -> NewCredential {
    NewCredential {
        id: id.into(),
        token_hash: format!("hash-{id}"),
        user_id: user_id.into(),
        kind,
        name: (kind == CredentialKind::Pat).then(|| format!("token {id}")),
        scope: (kind == CredentialKind::Pat).then_some(PatScope::Read),
        created_at: NOW,
        expires_at: NOW + 3600,
    }
}

fn tenant(name: &str, cluster: &str, members: &[(&str, Role)]) -> TenantSpec {
    TenantSpec {
        name: name.into(),
        display_name: name.to_uppercase(),
        url: format!("https://{name}.example"),
        phase: "Ready".into(),
        cluster: cluster.into(),
        uid: format!("uid-{name}"),
        redirect_uri: format!("https://{name}.example/auth/callback"),
        backchannel_logout_uri: format!("https://{name}.example/auth/backchannel-logout"),
        members: members
            .iter()
            .map(|(email, role)| Member {
                email: (*email).into(),
                role: *role,
            })
            .collect(),
    }
}

async fn users_and_credentials(store: &Store) {
    let alice = user("u-alice", "alice@acme.com");
    assert_eq!(store.count_users().await.ok(), Some(0));
    assert_eq!(
        store.create_user(&alice, "hash-1").await.ok(),
        Some(Some(alice.clone()))
    );
    let twin = user("u-twin", "alice@acme.com");
    assert_eq!(store.create_user(&twin, "hash-2").await.ok(), Some(None));
    let found = store
        .user_credentials("alice@acme.com")
        .await
        .expect("user_credentials")
        .expect("alice");
    assert_eq!(
        (found.user, found.password_hash.as_str()),
        (alice.clone(), "hash-1")
    );
    assert!(
        store
            .set_password_hash("u-alice", "hash-3")
            .await
            .expect("set")
    );
    assert!(!store.set_password_hash("u-nobody", "x").await.expect("set"));

    for id in ["s1", "p1", "p2"] {
        let kind = if id.starts_with('s') {
            CredentialKind::Session
        } else {
            CredentialKind::Pat
        };
        store
            .insert_credential(&credential(id, "u-alice", kind))
            .await
            .expect("insert credential");
    }
    let who = store
        .authenticate("hash-p1", NOW)
        .await
        .expect("authenticate")
        .expect("valid token");
    assert_eq!(
        (who.user.id.as_str(), who.kind, who.scope),
        ("u-alice", CredentialKind::Pat, Some(PatScope::Read))
    );
    assert!(
        store
            .authenticate("hash-p1", NOW + 3600)
            .await
            .expect("a")
            .is_none()
    );
    let pats = store.list_pats("u-alice", NOW).await.expect("list pats");
    assert_eq!(
        pats.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
        ["token p1", "token p2"]
    );
    assert!(
        store
            .delete_credential("u-alice", "p2", CredentialKind::Pat)
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_credential("u-alice", "p2", CredentialKind::Pat)
            .await
            .expect("delete again")
    );
    // Disabling ends every session and token.
    assert!(store.set_disabled("u-alice", true).await.expect("disable"));
    assert!(
        store
            .authenticate("hash-s1", NOW)
            .await
            .expect("a")
            .is_none()
    );
    assert!(store.set_disabled("u-alice", false).await.expect("enable"));
    assert_eq!(store.list_users().await.ok().map(|u| u.len()), Some(1));
}

async fn directory_and_grants(store: &Store) {
    store
        .insert_credential(&credential("s2", "u-alice", CredentialKind::Session))
        .await
        .expect("session");
    assert!(matches!(
        store.token_grant("hash-s2", NOW, "acme").await,
        Ok(Grant::NotMember { .. })
    ));
    assert!(matches!(
        store.token_grant("hash-none", NOW, "acme").await,
        Ok(Grant::Unauthenticated)
    ));
    let acme = tenant("acme", "eu-1", &[("alice@acme.com", Role::Editor)]);
    assert_eq!(
        store.register_tenant(&acme, "t-1", NOW).await.ok(),
        Some(Ok(Registered::Created))
    );
    let mut acme2 = acme.clone();
    acme2.members = vec![Member {
        email: "alice@acme.com".into(),
        role: Role::Admin,
    }];
    assert_eq!(
        store.register_tenant(&acme2, "t-2", NOW + 1).await.ok(),
        Some(Ok(Registered::Updated))
    );
    let stolen = tenant("acme", "us-1", &[]);
    assert_eq!(
        store.register_tenant(&stolen, "t-3", NOW).await.ok(),
        Some(Err(OwnedElsewhere {
            owner: "eu-1".into()
        }))
    );
    match store.token_grant("hash-s2", NOW, "acme").await {
        Ok(Grant::Member {
            membership, scope, ..
        }) => {
            assert_eq!(
                (
                    membership.tenant_id.as_str(),
                    membership.tenant_uid.as_str()
                ),
                ("t-1", "uid-acme")
            );
            assert_eq!((membership.role, scope), (Role::Admin, None));
        }
        other => panic!("expected a membership, got {other:?}"),
    }
    let mine = store
        .tenants_of("alice@acme.com")
        .await
        .expect("tenants_of");
    assert_eq!(
        mine.iter()
            .map(|t| (t.name.as_str(), t.role))
            .collect::<Vec<_>>(),
        [("acme", Role::Admin)]
    );
    let listed = store.tenant("acme").await.expect("tenant").expect("acme");
    assert_eq!((listed.members, listed.updated_at), (1, NOW + 1));
    assert_eq!(store.list_tenants().await.ok().map(|t| t.len()), Some(1));
    assert_eq!(
        store.delete_tenant("acme", "us-1").await.ok(),
        Some(Err(OwnedElsewhere {
            owner: "eu-1".into()
        }))
    );
    assert_eq!(
        store.delete_tenant("acme", "eu-1").await.ok(),
        Some(Ok(true))
    );
    assert_eq!(
        store.delete_tenant("acme", "eu-1").await.ok(),
        Some(Ok(false))
    );
    assert!(
        store
            .tenants_of("alice@acme.com")
            .await
            .expect("t")
            .is_empty()
    );
    assert_eq!(
        store.delete_expired_credentials(NOW + 3600).await.ok(),
        Some(1)
    );
    assert_eq!(store.delete_credentials_of("u-alice").await.ok(), Some(0));
}

async fn keys_throttle_audit(store: &Store) {
    let key = KeyRecord {
        kid: "k1".into(),
        private_pkcs8: vec![1, 2, 3],
        public_key: vec![4, 5],
        created_at: NOW,
        not_before: NOW,
    };
    assert!(store.insert_signing_key(&key).await.expect("insert key"));
    let same_start = KeyRecord {
        kid: "k2".into(),
        ..key.clone()
    };
    assert!(
        !store
            .insert_signing_key(&same_start)
            .await
            .expect("insert key")
    );
    assert!(
        store
            .replace_private_key("k1", &[1, 2, 3], &[9])
            .await
            .expect("seal")
    );
    assert!(
        !store
            .replace_private_key("k1", &[1, 2, 3], &[8])
            .await
            .expect("seal")
    );
    let keys = store.signing_keys().await.expect("keys");
    assert_eq!(
        keys.iter()
            .map(|k| (
                k.kid.as_str(),
                k.private_pkcs8.clone(),
                k.public_key.clone()
            ))
            .collect::<Vec<_>>(),
        [("k1", vec![9], vec![4, 5])]
    );
    store.delete_signing_key("k1").await.expect("delete key");
    assert!(store.signing_keys().await.expect("keys").is_empty());

    for expected in 1..=3 {
        let hit = store
            .throttle_hit("login:1.2.3.4", 60, NOW)
            .await
            .expect("hit");
        assert_eq!((hit.hits, hit.locked_until), (expected, None));
    }
    assert_eq!(
        store
            .throttle_hit("login:1.2.3.4", 60, NOW + 60)
            .await
            .ok()
            .map(|t| t.hits),
        Some(1)
    );
    store
        .throttle_lock("login:1.2.3.4", NOW + 900)
        .await
        .expect("lock");
    assert_eq!(
        store
            .throttle("login:1.2.3.4")
            .await
            .ok()
            .flatten()
            .and_then(|t| t.locked_until),
        Some(NOW + 900)
    );
    store.throttle_hit("fail:a_b", 60, NOW).await.expect("hit");
    store.throttle_hit("fail:axb", 60, NOW).await.expect("hit");
    // `_` is literal in the prefix, not a wildcard.
    assert_eq!(store.throttle_clear_prefix("fail:a_").await.ok(), Some(1));
    store.throttle_clear("fail:axb").await.expect("clear");
    assert_eq!(store.purge_throttle(NOW + 60, 60).await.ok(), Some(0));
    assert_eq!(store.purge_throttle(NOW + 961, 60).await.ok(), Some(1));

    // More than one statement's worth of rows.
    let events: Vec<AuditEvent> = (0..150)
        .map(|i| AuditEvent {
            at: NOW + i,
            actor: (i % 2 == 0).then(|| format!("u-{i}")),
            action: "token.issue".into(),
            subject: None,
            outcome: "success".into(),
            client_ip: Some("10.0.0.1".into()),
        })
        .collect();
    store.append_audit(&events).await.expect("append");
    let newest = store.audit_log(10, None).await.expect("audit log");
    assert_eq!(newest.len(), 10);
    assert_eq!(newest[0].event, events[149]);
    let older = store
        .audit_log(200, Some(newest[9].id))
        .await
        .expect("audit log");
    assert_eq!(older.len(), 140);
    assert_eq!(older.last().map(|e| &e.event), Some(&events[0]));
}

async fn scenario(store: Store) {
    store.ping().await.expect("ping");
    users_and_credentials(&store).await;
    directory_and_grants(&store).await;
    keys_throttle_audit(&store).await;
    store.close().await;
}

#[tokio::test]
async fn the_store_works_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("id.db").display());
    let store = Store::open(&url, 4).await.expect("open sqlite");
    assert_eq!(store.backend(), Backend::Sqlite);
    scenario(store).await;
}

#[tokio::test]
async fn the_store_works_on_postgres() {
    let server = tokio::task::spawn_blocking(TestPostgres::start)
        .await
        .expect("postgres starts");
    let url = server.database_url("identity");
    let store = Store::open(&url, 4).await.expect("open postgres");
    assert_eq!(store.backend(), Backend::Postgres);
    scenario(store).await;
}
