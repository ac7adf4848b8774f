//! Login abuse limits, counted in the database so that every replica and a
//! restarted service see the same counters.
//!
//! - per client address: at most `attempts_per_minute` login attempts in a
//!   fixed one-minute window;
//! - per account: `lockout_after` failures within the lockout window lock the
//!   email for `lockout`. Unknown emails are counted exactly like known ones,
//!   so a lockout reveals nothing about whether an account exists.

use crate::config::LoginLimits;
use crate::store::{Store, StoreError};

/// Why a login is refused before the password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts from this address; retry after this many seconds.
    TooManyAttempts { retry_after: i64 },
    /// The account is locked; retry after this many seconds.
    Locked { retry_after: i64 },
}

fn ip_key(ip: &str) -> String {
    format!("login-ip:{ip}")
}

fn account_key(email: &str) -> String {
    format!("login-account:{email}")
}

#[derive(Debug, Clone)]
pub struct LoginThrottle {
    store: Store,
    limits: LoginLimits,
}

impl LoginThrottle {
    pub fn new(store: Store, limits: LoginLimits) -> Self {
        LoginThrottle { store, limits }
    }

    fn lockout_secs(&self) -> i64 {
        i64::try_from(self.limits.lockout.as_secs()).unwrap_or(i64::MAX)
    }

    /// Counts the attempt and says whether it may proceed.
    pub async fn admit(
        &self,
        ip: &str,
        email: &str,
        now: i64,
    ) -> Result<Result<(), Refusal>, StoreError> {
        let per_ip = self.store.throttle_hit(&ip_key(ip), 60, now).await?;
        if per_ip.hits > i64::from(self.limits.attempts_per_minute) {
            return Ok(Err(Refusal::TooManyAttempts { retry_after: 60 }));
        }
        if let Some(account) = self.store.throttle(&account_key(email)).await?
            && let Some(until) = account.locked_until
            && until > now
        {
            return Ok(Err(Refusal::Locked {
                retry_after: until - now,
            }));
        }
        Ok(Ok(()))
    }

    /// Records a failed password; locks the account at the threshold.
    pub async fn failed(&self, email: &str, now: i64) -> Result<(), StoreError> {
        let key = account_key(email);
        let count = self
            .store
            .throttle_hit(&key, self.lockout_secs(), now)
            .await?;
        if count.hits >= i64::from(self.limits.lockout_after) {
            self.store
                .throttle_lock(&key, now.saturating_add(self.lockout_secs()))
                .await?;
        }
        Ok(())
    }

    /// A successful login clears the account's failures.
    pub async fn succeeded(&self, email: &str) -> Result<(), StoreError> {
        self.store.throttle_clear(&account_key(email)).await
    }

    /// Lifts a lockout (an admin resetting the password).
    pub async fn unlock(&self, email: &str) -> Result<(), StoreError> {
        self.store.throttle_clear(&account_key(email)).await
    }
}
