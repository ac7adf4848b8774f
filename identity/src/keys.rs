//! Signing keys: generation, the rotation schedule, the published JWKS and
//! token minting.
//!
//! Keys live in the database so that every replica signs with the same key
//! and publishes the same set. The schedule is a pure function of the stored
//! keys and the time:
//!
//! - a key signs from its `not_before` until the next key's `not_before`;
//! - a successor is created `publish_ahead` before it starts signing, so
//!   every verifier that refreshes its cache within that time has it before
//!   the first token it signs;
//! - a key stays published until every token it signed has expired
//!   (`token_ttl_max` after it stopped signing, plus a margin for skew).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aws_lc_rs::rand::SecureRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;

use crate::verify::Claims;

/// One stored signing key.
#[derive(Clone)]
pub struct KeyRecord {
    pub kid: String,
    /// PKCS#8 document of the Ed25519 key pair. Secret.
    pub private_pkcs8: Vec<u8>,
    /// The raw 32-byte Ed25519 public key.
    pub public_key: Vec<u8>,
    pub created_at: i64,
    /// When it starts signing (seconds since the Unix epoch).
    pub not_before: i64,
}

impl std::fmt::Debug for KeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .field("not_before", &self.not_before)
            .finish_non_exhaustive()
    }
}

/// When keys rotate and how long they stay published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyPolicy {
    /// How long a key signs before its successor takes over.
    pub rotate_every: Duration,
    /// How long a new key is published before it signs. Longer than
    /// verifiers cache the JWKS.
    pub publish_ahead: Duration,
    /// The longest lifetime of a token this service issues.
    pub token_ttl_max: Duration,
    /// Extra time a retired key stays published, for clock skew.
    pub retire_margin: Duration,
}

impl Default for KeyPolicy {
    fn default() -> Self {
        KeyPolicy {
            rotate_every: Duration::from_secs(30 * 24 * 3600),
            publish_ahead: Duration::from_secs(3600),
            token_ttl_max: Duration::from_secs(3600),
            retire_margin: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the key-encryption key must be 32 bytes, in base64 or hex ({0})")]
    InvalidEncryptionKey(&'static str),
    #[error("stored signing key {kid} is encrypted and no key-encryption key is configured")]
    MissingEncryptionKey { kid: String },
    #[error(
        "stored signing key {kid} does not decrypt with the configured key-encryption key \
         (ATOLL_IDENTITY_KEY_ENCRYPTION_KEY): it is not the key it was sealed with; \
         nothing was changed"
    )]
    Decrypt { kid: String },
    #[error("encrypting signing key {kid} failed")]
    Encrypt { kid: String },
    #[error("generating an Ed25519 key failed")]
    Generate,
    #[error("stored signing key {kid} is not a valid Ed25519 PKCS#8 key")]
    InvalidStoredKey { kid: String },
    #[error("no signing key is active yet")]
    NoActiveKey,
    #[error("signing a token with key {kid} failed")]
    Sign { kid: String },
}

/// The first byte of a sealed private key. A PKCS#8 document (DER) always
/// starts with 0x30, so stored keys from before encryption still load.
const SEALED_V1: u8 = 0x01;
const NONCE_LEN: usize = 12;

/// AES-256-GCM key that seals signing keys at rest (from a Secret, never
/// from the database), with the kid as associated data so a sealed key
/// cannot be swapped under another kid.
pub struct KeyEncryption {
    key: aws_lc_rs::aead::LessSafeKey,
}

impl std::fmt::Debug for KeyEncryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyEncryption([redacted])")
    }
}

impl KeyEncryption {
    /// From 32 bytes in standard or URL-safe base64, or in hex (64 digits).
    pub fn from_base64(encoded: &str) -> Result<Self, KeyError> {
        use base64::engine::general_purpose::STANDARD;
        let encoded = encoded.trim();
        let base64 = STANDARD
            .decode(encoded)
            .or_else(|_| URL_SAFE_NO_PAD.decode(encoded.trim_end_matches('=')))
            .ok()
            .filter(|b| b.len() == 32);
        let bytes = match base64 {
            Some(bytes) => bytes,
            None if encoded.len() == 64 && encoded.bytes().all(|b| b.is_ascii_hexdigit()) => (0
                ..32)
                .map(|i| u8::from_str_radix(&encoded[2 * i..2 * i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| KeyError::InvalidEncryptionKey("not hex"))?,
            None => return Err(KeyError::InvalidEncryptionKey("not 32 bytes")),
        };
        let unbound = aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &bytes)
            .map_err(|_| KeyError::InvalidEncryptionKey("rejected by AES-256-GCM"))?;
        Ok(KeyEncryption {
            key: aws_lc_rs::aead::LessSafeKey::new(unbound),
        })
    }

    fn seal(&self, kid: &str, plaintext: &[u8]) -> Result<Vec<u8>, KeyError> {
        let fail = || KeyError::Encrypt {
            kid: kid.to_owned(),
        };
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| fail())?;
        let mut sealed = plaintext.to_vec();
        self.key
            .seal_in_place_append_tag(
                aws_lc_rs::aead::Nonce::assume_unique_for_key(nonce),
                aws_lc_rs::aead::Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| fail())?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(SEALED_V1);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(&self, kid: &str, stored: &[u8]) -> Result<Vec<u8>, KeyError> {
        let fail = || KeyError::Decrypt {
            kid: kid.to_owned(),
        };
        let rest = stored.get(1..).ok_or_else(fail)?;
        if rest.len() < NONCE_LEN {
            return Err(fail());
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = aws_lc_rs::aead::Nonce::try_assume_unique_for_key(nonce).map_err(|_| fail())?;
        let mut buffer = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(
                nonce,
                aws_lc_rs::aead::Aad::from(kid.as_bytes()),
                &mut buffer,
            )
            .map_err(|_| fail())?;
        Ok(plain.to_vec())
    }
}

/// The record as stored: the private key sealed when a key-encryption key
/// is configured.
pub fn seal_for_storage(
    record: &KeyRecord,
    encryption: Option<&KeyEncryption>,
) -> Result<KeyRecord, KeyError> {
    let mut stored = record.clone();
    if let Some(encryption) = encryption {
        stored.private_pkcs8 = encryption.seal(&record.kid, &record.private_pkcs8)?;
    }
    Ok(stored)
}

/// Whether a stored record's private key is sealed.
pub fn is_sealed(stored: &KeyRecord) -> bool {
    stored.private_pkcs8.first() == Some(&SEALED_V1)
}

/// The record as loaded from storage, with its private key in the clear.
pub fn open_from_storage(
    mut stored: KeyRecord,
    encryption: Option<&KeyEncryption>,
) -> Result<KeyRecord, KeyError> {
    if stored.private_pkcs8.first() == Some(&SEALED_V1) {
        let encryption = encryption.ok_or_else(|| KeyError::MissingEncryptionKey {
            kid: stored.kid.clone(),
        })?;
        stored.private_pkcs8 = encryption.open(&stored.kid, &stored.private_pkcs8)?;
    }
    Ok(stored)
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

/// A fresh Ed25519 key that starts signing at `not_before`.
pub fn generate(now: i64, not_before: i64) -> Result<KeyRecord, KeyError> {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| KeyError::Generate)?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| KeyError::Generate)?;
    let mut kid = [0u8; 12];
    rng.fill(&mut kid).map_err(|_| KeyError::Generate)?;
    Ok(KeyRecord {
        kid: URL_SAFE_NO_PAD.encode(kid),
        private_pkcs8: pkcs8.as_ref().to_vec(),
        public_key: pair.public_key().as_ref().to_vec(),
        created_at: now,
        not_before,
    })
}

/// The `not_before` of the key to create now, if one is due: the first key
/// signs at once; a successor is created `publish_ahead` before the current
/// key's term ends, and never signs sooner than `publish_ahead` from now.
pub fn successor_due(keys: &[KeyRecord], now: i64, policy: &KeyPolicy) -> Option<i64> {
    let Some(latest) = keys.iter().map(|k| k.not_before).max() else {
        return Some(now);
    };
    if latest > now {
        return None; // a successor is already published and waiting
    }
    let term_end = latest.saturating_add(secs(policy.rotate_every));
    let ahead = secs(policy.publish_ahead);
    (now >= term_end.saturating_sub(ahead)).then(|| term_end.max(now.saturating_add(ahead)))
}

/// The key that signs at `now`: the latest one whose `not_before` has come.
pub fn signing_key(keys: &[KeyRecord], now: i64) -> Option<&KeyRecord> {
    keys.iter()
        .filter(|k| k.not_before <= now)
        .max_by(|a, b| (a.not_before, &a.kid).cmp(&(b.not_before, &b.kid)))
}

/// When `key` stopped signing: the first later `not_before` that has come.
fn retired_at(keys: &[KeyRecord], key: &KeyRecord, now: i64) -> Option<i64> {
    keys.iter()
        .filter(|k| k.not_before > key.not_before && k.not_before <= now)
        .map(|k| k.not_before)
        .min()
}

/// The keys to publish at `now`: every key that signs or will sign, and
/// every retired key whose tokens may still be valid.
pub fn published<'a>(keys: &'a [KeyRecord], now: i64, policy: &KeyPolicy) -> Vec<&'a KeyRecord> {
    let keep = secs(policy.token_ttl_max).saturating_add(secs(policy.retire_margin));
    keys.iter()
        .filter(|k| retired_at(keys, k, now).is_none_or(|at| now < at.saturating_add(keep)))
        .collect()
}

/// The kids of keys that are no longer published and can be deleted.
pub fn expired<'a>(keys: &'a [KeyRecord], now: i64, policy: &KeyPolicy) -> Vec<&'a str> {
    let live: Vec<&str> = published(keys, now, policy)
        .iter()
        .map(|k| k.kid.as_str())
        .collect();
    keys.iter()
        .map(|k| k.kid.as_str())
        .filter(|kid| !live.contains(kid))
        .collect()
}

/// The JWKS document for `keys`.
pub fn jwks_json(keys: &[&KeyRecord]) -> serde_json::Value {
    let keys: Vec<_> = keys
        .iter()
        .map(|k| {
            json!({
                "kty": "OKP",
                "crv": "Ed25519",
                "x": URL_SAFE_NO_PAD.encode(&k.public_key),
                "kid": k.kid,
                "alg": "EdDSA",
                "use": "sig",
            })
        })
        .collect();
    json!({ "keys": keys })
}

/// The keys in memory, ready to sign, and the JWKS ready to serve.
pub struct KeyRing {
    policy: KeyPolicy,
    encryption: Option<KeyEncryption>,
    state: RwLock<Arc<RingState>>,
}

struct RingState {
    records: Vec<KeyRecord>,
    signers: HashMap<String, Signer>,
}

/// A parsed key pair and its encoded JWS header, ready to sign.
struct Signer {
    pair: Ed25519KeyPair,
    /// base64url of `{"alg":"EdDSA","typ":"JWT","kid":…}`.
    header: String,
}

impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.state();
        f.debug_struct("KeyRing")
            .field("policy", &self.policy)
            .field("keys", &state.records)
            .finish()
    }
}

impl KeyRing {
    pub fn new(policy: KeyPolicy, records: Vec<KeyRecord>) -> Result<Self, KeyError> {
        let ring = KeyRing {
            policy,
            encryption: None,
            state: RwLock::new(Arc::new(RingState {
                records: Vec::new(),
                signers: HashMap::new(),
            })),
        };
        ring.replace(records)?;
        Ok(ring)
    }

    pub fn policy(&self) -> &KeyPolicy {
        &self.policy
    }

    /// Seals new keys at rest with `encryption`, and opens sealed ones.
    pub fn with_encryption(mut self, encryption: Option<KeyEncryption>) -> Self {
        self.encryption = encryption;
        self
    }

    pub fn encryption(&self) -> Option<&KeyEncryption> {
        self.encryption.as_ref()
    }

    fn state(&self) -> Arc<RingState> {
        self.state.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the keys (after loading them from the database).
    pub fn replace(&self, records: Vec<KeyRecord>) -> Result<(), KeyError> {
        let mut signers = HashMap::new();
        for record in &records {
            let pair = Ed25519KeyPair::from_pkcs8(&record.private_pkcs8).map_err(|_| {
                KeyError::InvalidStoredKey {
                    kid: record.kid.clone(),
                }
            })?;
            let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": record.kid});
            let header = URL_SAFE_NO_PAD.encode(header.to_string());
            signers.insert(record.kid.clone(), Signer { pair, header });
        }
        *self.state.write().unwrap_or_else(|p| p.into_inner()) =
            Arc::new(RingState { records, signers });
        Ok(())
    }

    pub fn records(&self) -> Vec<KeyRecord> {
        self.state().records.clone()
    }

    /// The JWKS to serve at `now`.
    pub fn jwks(&self, now: i64) -> serde_json::Value {
        let state = self.state();
        jwks_json(&published(&state.records, now, &self.policy))
    }

    /// The kid that signs at `now`.
    pub fn signing_kid(&self, now: i64) -> Option<String> {
        signing_key(&self.state().records, now).map(|k| k.kid.clone())
    }

    /// Signs `claims` with the key that signs at `now`: a JWS in compact
    /// serialisation (RFC 7515), EdDSA over `header.payload`. The key pair
    /// is parsed once per key, not once per token.
    pub fn mint(&self, claims: &Claims, now: i64) -> Result<String, KeyError> {
        self.sign(claims, "JWT", now)
    }

    /// Signs any claims set with the key that signs at `now`, header `typ`
    /// as given: `JWT` for ID tokens, `logout+jwt` for back-channel logout
    /// tokens (so that one can never pass for the other).
    pub fn sign<T: serde::Serialize>(
        &self,
        claims: &T,
        typ: &str,
        now: i64,
    ) -> Result<String, KeyError> {
        let state = self.state();
        let record = signing_key(&state.records, now).ok_or(KeyError::NoActiveKey)?;
        let signer = state
            .signers
            .get(&record.kid)
            .ok_or(KeyError::NoActiveKey)?;
        let sign_error = || KeyError::Sign {
            kid: record.kid.clone(),
        };
        let payload = serde_json::to_vec(claims).map_err(|_| sign_error())?;
        let header = if typ == "JWT" {
            signer.header.clone()
        } else {
            let header = json!({"alg": "EdDSA", "typ": typ, "kid": record.kid});
            URL_SAFE_NO_PAD.encode(header.to_string())
        };
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 90);
        token.push_str(&header);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload, &mut token);
        let signature = signer.pair.sign(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut token);
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3600;

    fn policy() -> KeyPolicy {
        KeyPolicy {
            rotate_every: Duration::from_secs(24 * 3600),
            publish_ahead: Duration::from_secs(3600),
            token_ttl_max: Duration::from_secs(900),
            retire_margin: Duration::from_secs(60),
        }
    }

    fn key(kid: &str, not_before: i64) -> KeyRecord {
        KeyRecord {
            kid: kid.into(),
            private_pkcs8: Vec::new(),
            public_key: vec![0; 32],
            created_at: 0,
            not_before,
        }
    }

    #[test]
    fn the_first_key_signs_at_once() {
        assert_eq!(successor_due(&[], 100, &policy()), Some(100));
    }

    #[test]
    fn a_successor_is_published_ahead_of_its_term() {
        let keys = [key("a", 0)];
        assert_eq!(successor_due(&keys, 22 * HOUR, &policy()), None);
        assert_eq!(successor_due(&keys, 23 * HOUR, &policy()), Some(24 * HOUR));
        // Late (the service was down): the successor still waits publish_ahead.
        assert_eq!(successor_due(&keys, 30 * HOUR, &policy()), Some(31 * HOUR));
    }

    #[test]
    fn no_second_successor_while_one_waits() {
        let keys = [key("a", 0), key("b", 24 * HOUR)];
        assert_eq!(successor_due(&keys, 23 * HOUR + 1, &policy()), None);
    }

    #[test]
    fn the_latest_started_key_signs() {
        let keys = [key("a", 0), key("b", 24 * HOUR)];
        assert_eq!(
            signing_key(&keys, 24 * HOUR - 1).map(|k| &*k.kid),
            Some("a")
        );
        assert_eq!(signing_key(&keys, 24 * HOUR).map(|k| &*k.kid), Some("b"));
        assert!(signing_key(&keys, -1).is_none());
    }

    #[test]
    fn retired_keys_stay_published_until_their_tokens_expired() {
        let keys = [key("a", 0), key("b", 24 * HOUR)];
        let kids = |now| -> Vec<String> {
            published(&keys, now, &policy())
                .iter()
                .map(|k| k.kid.clone())
                .collect()
        };
        assert_eq!(kids(23 * HOUR), ["a", "b"]);
        assert_eq!(kids(24 * HOUR + 959), ["a", "b"]);
        assert_eq!(kids(24 * HOUR + 960), ["b"]);
        assert_eq!(expired(&keys, 24 * HOUR + 960, &policy()), ["a"]);
    }

    #[test]
    fn generated_keys_sign_and_publish() {
        let record = generate(0, 0).expect("key");
        assert_eq!(record.public_key.len(), 32);
        let ring = KeyRing::new(policy(), vec![record.clone()]).expect("ring");
        let jwks = ring.jwks(0);
        assert_eq!(jwks["keys"][0]["kid"], record.kid.as_str());
        assert_eq!(ring.signing_kid(0), Some(record.kid));
    }

    #[test]
    fn sealed_keys_open_only_with_their_key_and_kid() {
        let record = generate(0, 0).expect("key");
        let kek = KeyEncryption::from_base64(
            &base64::engine::general_purpose::STANDARD.encode([7u8; 32]),
        )
        .expect("kek");
        let stored = seal_for_storage(&record, Some(&kek)).expect("seal");
        assert_eq!(stored.private_pkcs8[0], SEALED_V1);
        assert!(
            !stored
                .private_pkcs8
                .windows(32)
                .any(|w| w == &record.private_pkcs8[16..48]),
            "the seed is not stored in the clear"
        );
        let opened = open_from_storage(stored.clone(), Some(&kek)).expect("open");
        assert_eq!(opened.private_pkcs8, record.private_pkcs8);
        assert!(matches!(
            open_from_storage(stored.clone(), None),
            Err(KeyError::MissingEncryptionKey { .. })
        ));
        let other = KeyEncryption::from_base64(
            &base64::engine::general_purpose::STANDARD.encode([8u8; 32]),
        )
        .expect("kek");
        assert!(matches!(
            open_from_storage(stored.clone(), Some(&other)),
            Err(KeyError::Decrypt { .. })
        ));
        let mut moved = stored;
        moved.kid = "another-kid".into();
        assert!(matches!(
            open_from_storage(moved, Some(&kek)),
            Err(KeyError::Decrypt { .. })
        ));
        // Keys stored before encryption was configured still load.
        let plain = open_from_storage(record.clone(), Some(&kek)).expect("plain");
        assert_eq!(plain.private_pkcs8, record.private_pkcs8);
        assert!(KeyEncryption::from_base64("c2hvcnQ=").is_err());
        // Hex works too, and means the same key.
        let hex: String = [7u8; 32].iter().map(|b| format!("{b:02x}")).collect();
        let from_hex = KeyEncryption::from_base64(&hex).expect("hex");
        let sealed = seal_for_storage(&record, Some(&from_hex)).expect("seal");
        assert!(open_from_storage(sealed, Some(&kek)).is_ok());
        assert!(KeyEncryption::from_base64(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn debug_output_has_no_key_material() {
        let record = generate(0, 0).expect("key");
        let shown = format!("{record:?}");
        assert!(!shown.contains("private"));
        assert!(!shown.contains(&format!("{:?}", record.private_pkcs8)));
    }
}
