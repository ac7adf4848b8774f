//! The verifier's key cache against a JWKS endpoint the test controls: one
//! fetch for many unknown kids, new keys picked up, the last good set kept
//! when the endpoint fails or serves nothing usable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_identity::keys::{self, KeyPolicy, KeyRing};
use atoll_identity::verify::{Claims, Role, Verifier, VerifierConfig, VerifyError, unix_now};
use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;

/// What the fake identity serves at its JWKS path.
#[derive(Clone)]
struct Jwks {
    body: Arc<Mutex<Option<String>>>,
    hits: Arc<AtomicUsize>,
}

impl Jwks {
    fn serve(&self, body: Option<String>) {
        *self.body.lock().unwrap_or_else(|p| p.into_inner()) = body;
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

async fn fake_identity() -> (String, Jwks) {
    let jwks = Jwks {
        body: Arc::new(Mutex::new(None)),
        hits: Arc::new(AtomicUsize::new(0)),
    };
    let state = jwks.clone();
    let app = Router::new().route(
        "/.well-known/jwks.json",
        get(move || {
            let state = state.clone();
            async move {
                state.hits.fetch_add(1, Ordering::SeqCst);
                let body = state.body.lock().unwrap_or_else(|p| p.into_inner()).clone();
                body.ok_or(StatusCode::SERVICE_UNAVAILABLE)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, jwks)
}

fn ring() -> KeyRing {
    KeyRing::new(
        KeyPolicy::default(),
        vec![keys::generate(0, 0).expect("key")],
    )
    .expect("ring")
}

fn token(ring: &KeyRing, issuer: &str) -> String {
    let now = unix_now();
    let claims = Claims {
        iss: issuer.into(),
        sub: "u".into(),
        email: "alice@acme.test".into(),
        aud: "acme".into(),
        tid: "t".into(),
        tenant_uid: None,
        cluster: None,
        role: Role::Admin,
        iat: now,
        exp: now + 900,
        nbf: None,
    };
    ring.mint(&claims, 0).expect("mint")
}

fn jwks_of(ring: &KeyRing) -> String {
    ring.jwks(0).to_string()
}

fn verifier(base: &str, min_refresh: Duration) -> Verifier {
    let mut config = VerifierConfig::new(base, "acme");
    config.min_refresh_interval = min_refresh;
    Verifier::new(config)
}

#[tokio::test]
async fn unknown_kids_cause_one_fetch_per_interval() {
    let (base, jwks) = fake_identity().await;
    let known = ring();
    jwks.serve(Some(jwks_of(&known)));
    let verifier = verifier(&base, Duration::from_secs(3600));
    verifier
        .verify(&token(&known, &base))
        .await
        .expect("first token");
    assert_eq!(jwks.hits(), 1, "the first token fetched the keys");
    verifier
        .verify(&token(&known, &base))
        .await
        .expect("cached");
    assert_eq!(jwks.hits(), 1, "known kids need no fetch");

    // Forged kids, many of them, concurrently: one fetch at most.
    let forged = Arc::new(verifier);
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let verifier = forged.clone();
        let stranger = token(&ring(), &base);
        tasks.push(tokio::spawn(
            async move { verifier.verify(&stranger).await },
        ));
    }
    for task in tasks {
        assert!(matches!(
            task.await.expect("task"),
            Err(VerifyError::UnknownKey { .. })
        ));
    }
    assert!(
        jwks.hits() <= 2,
        "{} fetches for 20 unknown kids",
        jwks.hits()
    );
}

#[tokio::test]
async fn a_new_key_is_picked_up_on_its_first_token() {
    let (base, jwks) = fake_identity().await;
    let old = ring();
    jwks.serve(Some(jwks_of(&old)));
    let verifier = verifier(&base, Duration::ZERO);
    verifier.verify(&token(&old, &base)).await.expect("old key");
    let new = ring();
    jwks.serve(Some(jwks_of(&new)));
    verifier
        .verify(&token(&new, &base))
        .await
        .expect("new key fetched");
}

#[tokio::test]
async fn the_last_good_keys_survive_failures() {
    let (base, jwks) = fake_identity().await;
    let known = ring();
    jwks.serve(Some(jwks_of(&known)));
    let verifier = verifier(&base, Duration::ZERO);
    assert_eq!(verifier.refresh().await.expect("refresh"), 1);

    jwks.serve(None);
    assert!(matches!(
        verifier.refresh().await,
        Err(VerifyError::FetchKeys { .. })
    ));
    verifier
        .verify(&token(&known, &base))
        .await
        .expect("identity down");

    jwks.serve(Some(r#"{"keys":[]}"#.into()));
    assert!(matches!(
        verifier.refresh().await,
        Err(VerifyError::InvalidKeySet { .. })
    ));
    jwks.serve(Some("not json".into()));
    assert!(matches!(
        verifier.refresh().await,
        Err(VerifyError::InvalidKeySet { .. })
    ));
    verifier
        .verify(&token(&known, &base))
        .await
        .expect("still the last good set");
}
