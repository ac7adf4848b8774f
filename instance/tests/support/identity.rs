//! A stand-in for identity in tests: OIDC discovery and a JWKS served over
//! real HTTP on loopback, and tokens signed with fixed test-only Ed25519 keys.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::routing::get;
use axum::{Json, Router};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

/// Test-only key "A", published in the JWKS as kid `key-a`.
pub const KEY_A_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIGJzu24MKhU0VHRt90iw4+Qmja2KXOWklsIkZp3jtdDN\n-----END PRIVATE KEY-----\n";
pub const KEY_A_X: &str = "UGQYPLvsOoNmdW4NtWcG4_NABCXTzNoYlYgOHXPOwME";
pub const KEY_A_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEAUGQYPLvsOoNmdW4NtWcG4/NABCXTzNoYlYgOHXPOwME=\n-----END PUBLIC KEY-----\n";
/// Test-only key "B", never published.
pub const KEY_B_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIIjlzhGLZmYYjBOE1N8GoxfHr/trw0TZV9nyDXGPEVzN\n-----END PRIVATE KEY-----\n";

pub struct TestIdentity {
    pub issuer: String,
    pub jwks_fetches: Arc<AtomicUsize>,
    server: JoinHandle<()>,
}

impl TestIdentity {
    pub async fn start() -> TestIdentity {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let fetches = Arc::new(AtomicUsize::new(0));
        let discovery =
            json!({"issuer": issuer, "jwks_uri": format!("{issuer}/.well-known/jwks.json")});
        let counter = fetches.clone();
        let app = Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let discovery = discovery.clone();
                    async move { Json(discovery) }
                }),
            )
            .route(
                "/.well-known/jwks.json",
                get(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        Json(
                            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA",
                                              "use": "sig", "kid": "key-a", "x": KEY_A_X}]}),
                        )
                    }
                }),
            );
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        TestIdentity {
            issuer,
            jwks_fetches: fetches,
            server,
        }
    }

    /// Identity goes away: nothing answers on its port any more.
    pub fn stop(&self) {
        self.server.abort();
    }

    pub fn fetches(&self) -> usize {
        self.jwks_fetches.load(Ordering::SeqCst)
    }

    /// Claims valid for `tenant` (Tenant uid `uid-<tenant>`) with `role`, for an hour.
    pub fn claims(&self, tenant: &str, role: &str) -> Value {
        let now = jiff::Timestamp::now().as_second();
        json!({"iss": self.issuer, "sub": "user-1", "email": "user@example.test", "aud": tenant,
               "tid": tenant, "tenant_uid": format!("uid-{tenant}"), "role": role,
               "iat": now, "nbf": now - 5, "exp": now + 3600})
    }
}

impl Drop for TestIdentity {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub fn sign(claims: &Value, key_pem: &str, kid: &str) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.into());
    let key = EncodingKey::from_ed_pem(key_pem.as_bytes()).expect("test key");
    jsonwebtoken::encode(&header, claims, &key).expect("sign")
}

pub fn base64url(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}
