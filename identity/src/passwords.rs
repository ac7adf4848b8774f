//! Password hashing: Argon2id, off the async runtime, a bounded number at a
//! time.
//!
//! Login always runs one Argon2 verification, against a dummy hash when the
//! email is unknown, so that unknown emails and wrong passwords take the
//! same time.

use std::sync::Arc;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use tokio::sync::Semaphore;

use crate::config::{Argon2Params, Secret};

/// Passwords longer than this are refused before hashing (hashing cost is
/// bounded, but not reading megabytes into it).
pub const MAX_PASSWORD_BYTES: usize = 1024;
/// NIST SP 800-63B's floor for passwords chosen by people.
pub const MIN_PASSWORD_CHARS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("Argon2 parameters are invalid: {0}")]
    Params(String),
    #[error("hashing a password failed: {0}")]
    Hash(String),
    #[error("the password hashing task failed")]
    Task(#[source] tokio::task::JoinError),
    #[error("the password hashing pool is closed")]
    Closed,
}

/// Why a new password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_BYTES} bytes")]
    TooLong,
}

/// Checks a password a person chose.
pub fn check_new_password(password: &str) -> Result<(), WeakPassword> {
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(WeakPassword::TooLong);
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(WeakPassword::TooShort);
    }
    Ok(())
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Correct; `rehash` when the hash used other parameters than today's.
    Valid {
        rehash: bool,
    },
    Invalid,
}

#[derive(Debug, Clone)]
pub struct Passwords {
    params: Params,
    permits: Arc<Semaphore>,
    dummy_hash: Arc<str>,
}

impl Passwords {
    pub async fn new(params: Argon2Params, concurrency: usize) -> Result<Passwords, PasswordError> {
        let params = Params::new(
            params.memory_kib,
            params.iterations,
            params.parallelism,
            None,
        )
        .map_err(|e| PasswordError::Params(e.to_string()))?;
        let mut passwords = Passwords {
            params,
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            dummy_hash: Arc::from(""),
        };
        // A hash of a random value at today's parameters: what unknown
        // emails are checked against.
        let dummy = uuid::Uuid::new_v4().to_string();
        passwords.dummy_hash = Arc::from(passwords.hash(&Secret::new(dummy)).await?);
        Ok(passwords)
    }

    fn hasher(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, PasswordError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PasswordError::Closed)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(PasswordError::Task)
    }

    /// A PHC-format Argon2id hash with a fresh salt.
    pub async fn hash(&self, password: &Secret) -> Result<String, PasswordError> {
        let password = password.clone();
        let params = self.params.clone();
        self.blocking(move || {
            Self::hasher(params)
                .hash_password(password.expose().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hash(e.to_string()))
        })
        .await?
    }

    /// Checks `password` against `stored`, or against the dummy hash when
    /// there is no stored hash (unknown email): same work either way.
    pub async fn verify(
        &self,
        password: &Secret,
        stored: Option<&str>,
    ) -> Result<Verified, PasswordError> {
        let known = stored.is_some();
        let stored: Arc<str> = stored.map_or_else(|| self.dummy_hash.clone(), Arc::from);
        let password = password.clone();
        let current = self.params.clone();
        self.blocking(move || {
            let Ok(hash) = PasswordHash::new(&stored) else {
                return Verified::Invalid;
            };
            let rehash = Params::try_from(&hash).map_or(true, |p| {
                p.m_cost() != current.m_cost()
                    || p.t_cost() != current.t_cost()
                    || p.p_cost() != current.p_cost()
            }) || hash.algorithm.as_str() != "argon2id";
            // Verify with the parameters recorded in the hash itself.
            let ok = Self::hasher(current)
                .verify_password(password.expose().as_bytes(), &hash)
                .is_ok();
            if ok && known {
                Verified::Valid { rehash }
            } else {
                Verified::Invalid
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cheap() -> Argon2Params {
        Argon2Params {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        }
    }

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let passwords = Passwords::new(cheap(), 2).await.expect("hasher");
        let hash = passwords
            .hash(&Secret::new("correct horse battery"))
            .await
            .expect("hash");
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        assert_eq!(
            passwords
                .verify(&Secret::new("correct horse battery"), Some(&hash))
                .await
                .expect("verify"),
            Verified::Valid { rehash: false }
        );
        assert_eq!(
            passwords
                .verify(&Secret::new("wrong horse battery"), Some(&hash))
                .await
                .expect("verify"),
            Verified::Invalid
        );
    }

    #[tokio::test]
    async fn unknown_users_are_checked_against_the_dummy_hash() {
        let passwords = Passwords::new(cheap(), 2).await.expect("hasher");
        assert_eq!(
            passwords
                .verify(&Secret::new("anything at all"), None)
                .await
                .expect("verify"),
            Verified::Invalid
        );
    }

    #[tokio::test]
    async fn hashes_at_old_parameters_ask_for_a_rehash() {
        let old = Passwords::new(cheap(), 1).await.expect("hasher");
        let hash = old
            .hash(&Secret::new("a long enough pw"))
            .await
            .expect("hash");
        let stronger = Argon2Params {
            memory_kib: 128,
            ..cheap()
        };
        let new = Passwords::new(stronger, 1).await.expect("hasher");
        assert_eq!(
            new.verify(&Secret::new("a long enough pw"), Some(&hash))
                .await
                .expect("verify"),
            Verified::Valid { rehash: true }
        );
    }

    #[test]
    fn new_passwords_have_bounds() {
        assert_eq!(check_new_password("short"), Err(WeakPassword::TooShort));
        assert_eq!(
            check_new_password(&"x".repeat(2000)),
            Err(WeakPassword::TooLong)
        );
        assert!(check_new_password("twelve chars").is_ok());
    }
}
