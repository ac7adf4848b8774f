//! Opaque bearer tokens: sessions (from login) and personal access tokens.
//!
//! A token is a recognisable prefix (so secret scanners and people can tell
//! what leaked) and 256 random bits. Only its SHA-256 is stored: a high
//! entropy token needs no slow hash, and a database leak reveals no usable
//! token.

use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::Secret;

pub const SESSION_PREFIX: &str = "atoll_ses_";
pub const PAT_PREFIX: &str = "atoll_pat_";

#[derive(Debug, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RandomError;

/// `bytes` random bytes, base64url.
pub fn random_token(bytes: usize) -> Result<String, RandomError> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| RandomError)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// A new token with `prefix`.
pub fn new_token(prefix: &str) -> Result<Secret, RandomError> {
    Ok(Secret::new(format!("{prefix}{}", random_token(32)?)))
}

/// What is stored of a token: its SHA-256, hex.
pub fn token_hash(token: &str) -> String {
    let digest = digest::digest(&digest::SHA256, token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest.as_ref() {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

/// Compares two secrets in time independent of where they differ.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_and_unique() {
        let a = new_token(PAT_PREFIX).expect("token");
        let b = new_token(PAT_PREFIX).expect("token");
        assert!(a.expose().starts_with("atoll_pat_"));
        assert_eq!(a.expose().len(), PAT_PREFIX.len() + 43);
        assert_ne!(a, b);
    }

    #[test]
    fn the_stored_hash_is_sha256_hex() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
