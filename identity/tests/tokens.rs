//! Tokens minted by the key ring verify with the `verify` module and with an
//! independent path (jsonwebtoken's own decoder fed the published JWKS), and
//! every forged or mis-scoped variant fails both.

use std::time::Duration;

use atoll_identity::keys::{self, KeyPolicy, KeyRing};
use atoll_identity::verify::{
    Claims, KeySet, Role, Verifier, VerifierConfig, VerifyError, unix_now, verify_with_keys,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

const ISSUER: &str = "http://127.0.0.1:7800";

fn ring() -> KeyRing {
    let now = i64::try_from(unix_now()).expect("time fits");
    let record = keys::generate(now, now).expect("key");
    KeyRing::new(KeyPolicy::default(), vec![record]).expect("ring")
}

fn claims(aud: &str) -> Claims {
    let now = unix_now();
    Claims {
        iss: ISSUER.into(),
        sub: "0190-user".into(),
        email: "alice@acme.test".into(),
        aud: aud.into(),
        tid: "0190-tenant".into(),
        tenant_uid: Some("0190-uid".into()),
        cluster: Some("cluster-a".into()),
        role: Role::Editor,
        iat: now,
        exp: now + 900,
        nbf: None,
    }
}

fn now_i64() -> i64 {
    i64::try_from(unix_now()).expect("time fits")
}

fn jwks(ring: &KeyRing) -> String {
    ring.jwks(now_i64()).to_string()
}

fn verifier(ring: &KeyRing, aud: &str) -> Verifier {
    let keys = KeySet::from_json(jwks(ring).as_bytes()).expect("jwks");
    Verifier::with_keys(VerifierConfig::new(ISSUER, aud), keys)
}

/// The independent path: jsonwebtoken's decoder with its own claim checks,
/// fed the JWKS document as any OIDC client would read it.
fn independent(
    ring: &KeyRing,
    token: &str,
    aud: &str,
) -> Result<Claims, jsonwebtoken::errors::Error> {
    let set: JwkSet = serde_json::from_str(&jwks(ring)).expect("jwks parses as a JwkSet");
    let header = jsonwebtoken::decode_header(token)?;
    let kid = header.kid.unwrap_or_default();
    let jwk = set.find(&kid).ok_or_else(|| {
        jsonwebtoken::errors::Error::from(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)
    })?;
    let key = DecodingKey::from_jwk(jwk)?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&[aud]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Claims>(token, &key, &validation).map(|d| d.claims)
}

fn check(ring: &KeyRing, token: &str, aud: &str) -> Result<Claims, VerifyError> {
    verifier(ring, aud).verify_cached_at(token, unix_now())
}

/// Asserts both paths refuse `token`, and returns the module's reason.
fn refused(ring: &KeyRing, token: &str) -> VerifyError {
    assert!(
        independent(ring, token, "acme").is_err(),
        "jsonwebtoken accepted a bad token"
    );
    match check(ring, token, "acme") {
        Ok(claims) => panic!("the verify module accepted a bad token: {claims:?}"),
        Err(error) => error,
    }
}

fn parts(token: &str) -> (String, String, String) {
    let mut it = token.split('.');
    let (h, p, s) = (it.next(), it.next(), it.next());
    (
        h.unwrap_or_default().into(),
        p.unwrap_or_default().into(),
        s.unwrap_or_default().into(),
    )
}

#[test]
fn minted_tokens_verify_on_both_paths() {
    let ring = ring();
    let sent = claims("acme");
    let token = ring.mint(&sent, now_i64()).expect("mint");
    assert_eq!(check(&ring, &token, "acme").expect("module accepts"), sent);
    assert_eq!(
        independent(&ring, &token, "acme").expect("jsonwebtoken accepts"),
        sent
    );
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.alg, Algorithm::EdDSA);
    assert_eq!(header.kid, ring.signing_kid(now_i64()));
}

#[test]
fn tampered_payload_fails() {
    let ring = ring();
    let token = ring.mint(&claims("acme"), now_i64()).expect("mint");
    let (h, p, s) = parts(&token);
    let mut payload: serde_json::Value =
        serde_json::from_slice(&B64.decode(p).expect("b64")).expect("json");
    payload["role"] = "Admin".into();
    let forged = format!("{h}.{}.{s}", B64.encode(payload.to_string()));
    assert!(matches!(refused(&ring, &forged), VerifyError::BadSignature));
}

#[test]
fn tampered_signature_fails() {
    let ring = ring();
    let token = ring.mint(&claims("acme"), now_i64()).expect("mint");
    let (h, p, s) = parts(&token);
    let mut sig = B64.decode(s).expect("b64");
    sig[0] ^= 1;
    let forged = format!("{h}.{p}.{}", B64.encode(sig));
    assert!(matches!(refused(&ring, &forged), VerifyError::BadSignature));
}

#[test]
fn a_token_signed_by_another_key_with_the_same_kid_fails() {
    let ring = ring();
    let kid = ring.signing_kid(now_i64()).expect("kid");
    let other = keys::generate(0, 0).expect("key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid);
    let forged = jsonwebtoken::encode(
        &header,
        &claims("acme"),
        &EncodingKey::from_ed_der(&other.private_pkcs8),
    )
    .expect("encode");
    assert!(matches!(refused(&ring, &forged), VerifyError::BadSignature));
}

#[test]
fn expired_tokens_fail() {
    let ring = ring();
    let mut old = claims("acme");
    old.iat -= 3600;
    old.exp = unix_now() - 120;
    let token = ring.mint(&old, now_i64()).expect("mint");
    assert!(matches!(refused(&ring, &token), VerifyError::Expired));
}

#[test]
fn tokens_for_another_tenant_fail() {
    let ring = ring();
    let token = ring.mint(&claims("globex"), now_i64()).expect("mint");
    assert!(matches!(
        refused(&ring, &token),
        VerifyError::WrongAudience { .. }
    ));
}

#[test]
fn tokens_from_another_issuer_fail() {
    let ring = ring();
    let mut foreign = claims("acme");
    foreign.iss = "http://127.0.0.1:9999".into();
    let token = ring.mint(&foreign, now_i64()).expect("mint");
    assert!(matches!(
        refused(&ring, &token),
        VerifyError::WrongIssuer { .. }
    ));
}

#[test]
fn alg_none_fails() {
    let ring = ring();
    let kid = ring.signing_kid(now_i64()).expect("kid");
    let header = serde_json::json!({"alg": "none", "typ": "JWT", "kid": kid});
    let payload = serde_json::to_string(&claims("acme")).expect("json");
    for sig in ["", "AA"] {
        let forged = format!(
            "{}.{}.{sig}",
            B64.encode(header.to_string()),
            B64.encode(&payload)
        );
        // jsonwebtoken cannot even parse `none`; the module refuses it.
        assert!(independent(&ring, &forged, "acme").is_err());
        assert!(check(&ring, &forged, "acme").is_err());
    }
}

#[test]
fn algorithm_confusion_with_the_public_key_as_hmac_secret_fails() {
    let ring = ring();
    let kid = ring.signing_kid(now_i64()).expect("kid");
    let jwks: serde_json::Value = serde_json::from_str(&jwks(&ring)).expect("json");
    let x = jwks["keys"][0]["x"].as_str().expect("x").to_owned();
    let raw = B64.decode(&x).expect("b64");
    // The attacker knows the public key: as raw bytes, as its base64 text.
    for secret in [raw, x.into_bytes()] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some(kid.clone());
            let forged =
                jsonwebtoken::encode(&header, &claims("acme"), &EncodingKey::from_secret(&secret))
                    .expect("encode");
            assert!(matches!(
                refused(&ring, &forged),
                VerifyError::DisallowedAlgorithm(_)
            ));
        }
    }
}

#[test]
fn unknown_kid_fails() {
    let ring = ring();
    let stranger = KeyRing::new(
        KeyPolicy::default(),
        vec![keys::generate(0, 0).expect("key")],
    )
    .expect("ring");
    let token = stranger.mint(&claims("acme"), now_i64()).expect("mint");
    assert!(matches!(
        refused(&ring, &token),
        VerifyError::UnknownKey { .. }
    ));
}

#[test]
fn a_missing_kid_fails() {
    let ring = ring();
    let record = ring.records().remove(0);
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims("acme"),
        &EncodingKey::from_ed_der(&record.private_pkcs8),
    )
    .expect("encode");
    assert!(matches!(
        check(&ring, &forged, "acme"),
        Err(VerifyError::MissingKeyId)
    ));
}

#[test]
fn garbage_fails_without_panicking() {
    let ring = ring();
    for token in [
        "",
        ".",
        "..",
        "a.b.c",
        "eyJhbGciOiJFZERTQSJ9..",
        "x".repeat(10_000).as_str(),
    ] {
        assert!(check(&ring, token, "acme").is_err());
    }
}

#[test]
fn the_pure_core_agrees_with_the_verifier() {
    let ring = ring();
    let token = ring.mint(&claims("acme"), now_i64()).expect("mint");
    let keys = KeySet::from_json(jwks(&ring).as_bytes()).expect("jwks");
    let mut config = VerifierConfig::new(ISSUER, "acme");
    config.leeway = Duration::ZERO;
    assert!(verify_with_keys(&keys, &config, &token, unix_now()).is_ok());
    assert!(matches!(
        verify_with_keys(&keys, &config, &token, unix_now() + 900),
        Err(VerifyError::Expired)
    ));
}
