//! A faithful little OpenID provider standing in for identity while its
//! `/oauth2` endpoints are built: discovery, the JWKS of the test keys,
//! `/oauth2/authorize` (the person is already signed in: a code at once),
//! `/oauth2/token` (authorization_code with PKCE S256, single-use codes;
//! refresh_token) and `/oauth2/logout` (recorded). Tokens are signed with
//! the same EdDSA test key the other instance tests mint tokens with.

#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::support::identity::{KEY_A_PEM, KEY_A_X, sign};

/// The signed-in person.
pub const SUB: &str = "user-1";
pub const EMAIL: &str = "user@example.test";
/// Identity's SSO session id (the id_token's `sid`).
pub const SID: &str = "sso-session-1";

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    nonce: String,
}

/// What the provider knows and what the tests turn.
#[derive(Default)]
pub struct OpState {
    pub issuer: String,
    /// client_id → its one registered redirect URI.
    clients: Mutex<HashMap<String, String>>,
    /// client_id → the role its tenant gives the person.
    roles: Mutex<HashMap<String, String>>,
    codes: Mutex<HashMap<String, Code>>,
    /// refresh token → (client_id, revoked).
    refresh_tokens: Mutex<HashMap<String, (String, bool)>>,
    /// Lifetime of the next access tokens, seconds.
    pub access_ttl: AtomicI64,
    /// The next id_token carries another nonce.
    pub tamper_nonce: AtomicBool,
    pub refreshes: AtomicUsize,
    /// Every token the provider handed out (none may reach a browser).
    pub issued: Mutex<Vec<String>>,
    /// The query of each `/oauth2/logout` call.
    pub logouts: Mutex<Vec<String>>,
}

pub struct FakeOp {
    pub state: Arc<OpState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeOp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeOp {
    pub async fn start() -> FakeOp {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let issuer = format!("http://{}", listener.local_addr().expect("addr"));
        let state = Arc::new(OpState {
            issuer,
            access_ttl: AtomicI64::new(3600),
            ..OpState::default()
        });
        let app = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .route("/oauth2/authorize", get(authorize))
            .route("/oauth2/token", axum::routing::post(token))
            .route("/oauth2/logout", get(logout))
            .with_state(state.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeOp { state, server }
    }

    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// Registers tenant `client_id` reached at `url`, the person a `role` in it.
    pub fn register(&self, client_id: &str, url: &str, role: &str) {
        let mut clients = self.state.clients.lock().expect("lock");
        clients.insert(client_id.into(), format!("{url}/auth/callback"));
        let mut roles = self.state.roles.lock().expect("lock");
        roles.insert(client_id.into(), role.into());
    }

    /// A tenant token for `client_id` with `role`, as `/api/v1/tokens`
    /// mints it (for bearer callers).
    pub fn access_token(&self, client_id: &str, role: &str) -> String {
        let now = jiff::Timestamp::now().as_second();
        sign(
            &json!({"iss": self.state.issuer, "sub": SUB, "email": EMAIL, "aud": client_id,
                    "tid": client_id, "tenant_uid": format!("uid-{client_id}"), "role": role,
                    "iat": now, "exp": now + 3600}),
            KEY_A_PEM,
            "key-a",
        )
    }

    /// Revokes every refresh token (the SSO session ended).
    pub fn revoke_refresh_tokens(&self) {
        for (_, revoked) in self.state.refresh_tokens.lock().expect("lock").values_mut() {
            *revoked = true;
        }
    }
}

fn field(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        let value = percent_encoding::percent_decode_str(&value.replace('+', " "))
            .decode_utf8()
            .ok()?
            .into_owned();
        (key == name).then_some(value)
    })
}

fn encode(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string()
}

async fn jwks() -> Json<Value> {
    Json(
        json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                           "kid": "key-a", "x": KEY_A_X}]}),
    )
}

async fn authorize(State(op): State<Arc<OpState>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let get = |name| field(&query, name);
    let (Some(client_id), Some(redirect_uri)) = (get("client_id"), get("redirect_uri")) else {
        return (StatusCode::BAD_REQUEST, "unknown client").into_response();
    };
    let registered = op.clients.lock().expect("lock").get(&client_id).cloned();
    if registered.as_deref() != Some(redirect_uri.as_str()) {
        return (StatusCode::BAD_REQUEST, "redirect_uri not registered").into_response();
    }
    let state = get("state").unwrap_or_default();
    let challenge = get("code_challenge").unwrap_or_default();
    let good = get("response_type").as_deref() == Some("code")
        && get("code_challenge_method").as_deref() == Some("S256")
        && challenge.len() == 43
        && !state.is_empty()
        && get("nonce").is_some_and(|n| !n.is_empty())
        && get("scope").is_some_and(|s| s.split(' ').any(|s| s == "openid"));
    let issuer = encode(&op.issuer);
    if !good {
        let to = format!(
            "{redirect_uri}?error=invalid_request&state={}&iss={issuer}",
            encode(&state)
        );
        return (StatusCode::FOUND, [("location", to)]).into_response();
    }
    let code = uuid::Uuid::new_v4().simple().to_string();
    op.codes.lock().expect("lock").insert(
        code.clone(),
        Code {
            client_id,
            redirect_uri: redirect_uri.clone(),
            challenge,
            nonce: get("nonce").unwrap_or_default(),
        },
    );
    let to = format!(
        "{redirect_uri}?code={code}&state={}&iss={issuer}",
        encode(&state)
    );
    (StatusCode::FOUND, [("location", to)]).into_response()
}

fn refused(error: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": error, "error_description": "refused"})),
    )
        .into_response()
}

async fn token(State(op): State<Arc<OpState>>, body: String) -> Response {
    let get = |name| field(&body, name);
    match get("grant_type").as_deref() {
        Some("authorization_code") => {
            // Consumed on first use, whatever comes of the exchange.
            let Some(code) = get("code").and_then(|c| op.codes.lock().expect("lock").remove(&c))
            else {
                return refused("invalid_grant");
            };
            let verifier = get("code_verifier").unwrap_or_default();
            let challenge =
                URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, verifier.as_bytes()));
            if get("client_id").as_deref() != Some(code.client_id.as_str())
                || get("redirect_uri").as_deref() != Some(code.redirect_uri.as_str())
                || challenge != code.challenge
            {
                return refused("invalid_grant");
            }
            let nonce = if op.tamper_nonce.swap(false, Ordering::SeqCst) {
                "not-the-sign-ins-nonce".to_owned()
            } else {
                code.nonce
            };
            tokens(&op, &code.client_id, Some(&nonce))
        }
        Some("refresh_token") => {
            let known = get("refresh_token")
                .and_then(|t| op.refresh_tokens.lock().expect("lock").get(&t).cloned());
            match known {
                Some((client_id, false)) if get("client_id").as_deref() == Some(&client_id) => {
                    op.refreshes.fetch_add(1, Ordering::SeqCst);
                    tokens(&op, &client_id, None)
                }
                _ => refused("invalid_grant"),
            }
        }
        _ => refused("unsupported_grant_type"),
    }
}

/// The token response: a tenant access token (as `/api/v1/tokens` mints
/// it), an id_token when `nonce` is given, a new refresh token.
fn tokens(op: &OpState, client_id: &str, nonce: Option<&str>) -> Response {
    let now = jiff::Timestamp::now().as_second();
    let ttl = op.access_ttl.load(Ordering::SeqCst);
    let role = op
        .roles
        .lock()
        .expect("lock")
        .get(client_id)
        .cloned()
        .unwrap_or_default();
    let access = sign(
        &json!({"iss": op.issuer, "sub": SUB, "email": EMAIL, "aud": client_id, "tid": client_id,
                "tenant_uid": format!("uid-{client_id}"), "role": role,
                "iat": now, "exp": now + ttl}),
        KEY_A_PEM,
        "key-a",
    );
    let refresh = format!("atoll_rt_{}", uuid::Uuid::new_v4().simple());
    op.refresh_tokens
        .lock()
        .expect("lock")
        .insert(refresh.clone(), (client_id.to_owned(), false));
    let mut answer = json!({"access_token": access, "token_type": "Bearer",
        "expires_in": ttl.max(0), "refresh_token": refresh, "scope": "openid email"});
    let mut issued = vec![access, refresh];
    if let Some(nonce) = nonce {
        let id_token = sign(
            &json!({"iss": op.issuer, "sub": SUB, "aud": client_id, "exp": now + 300, "iat": now,
                    "auth_time": now, "nonce": nonce, "sid": SID, "email": EMAIL}),
            KEY_A_PEM,
            "key-a",
        );
        answer["id_token"] = Value::String(id_token.clone());
        issued.push(id_token);
    }
    op.issued.lock().expect("lock").extend(issued);
    Json(answer).into_response()
}

async fn logout(State(op): State<Arc<OpState>>, RawQuery(query): RawQuery) -> &'static str {
    op.logouts
        .lock()
        .expect("lock")
        .push(query.unwrap_or_default());
    "You are logged out"
}
