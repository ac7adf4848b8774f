//! Login abuse limits, counted in the database so that every replica and a
//! restarted service see the same counters.
//!
//! - per client address: at most `attempts_per_minute` login attempts in a
//!   fixed one-minute window;
//! - per account and client address: `lockout_after` failures for one email
//!   from one address within the lockout window lock that address out of
//!   that email for `lockout`. The attacker is slowed down; the owner,
//!   logging in from anywhere else, is not locked out by someone else's
//!   failures. (Spreading guesses over many addresses is bounded by the
//!   per-address budget of each and by the password hash's cost.) Unknown
//!   emails are counted exactly like known ones, so a lockout reveals
//!   nothing about whether an account exists.
//!
//! Behind a proxy the client address is only the real one when the proxy
//! is trusted (`ATOLL_IDENTITY_TRUSTED_PROXIES`); otherwise every client
//! shares the proxy's address and its budget.

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

/// Every counter of one account starts with this.
fn account_prefix(email: &str) -> String {
    format!("login-account:{email}|")
}

fn account_key(email: &str, ip: &str) -> String {
    format!("{}{ip}", account_prefix(email))
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
        if let Some(account) = self.store.throttle(&account_key(email, ip)).await?
            && let Some(until) = account.locked_until
            && until > now
        {
            return Ok(Err(Refusal::Locked {
                retry_after: until - now,
            }));
        }
        Ok(Ok(()))
    }

    /// Records a failed password for `email` from `ip`; at the threshold
    /// locks that address out of that account.
    pub async fn failed(&self, ip: &str, email: &str, now: i64) -> Result<(), StoreError> {
        let key = account_key(email, ip);
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

    /// A successful login clears the failures from its address.
    pub async fn succeeded(&self, ip: &str, email: &str) -> Result<(), StoreError> {
        self.store.throttle_clear(&account_key(email, ip)).await
    }

    /// Lifts every lockout of an account (an admin resetting the password).
    pub async fn unlock(&self, email: &str) -> Result<(), StoreError> {
        self.store
            .throttle_clear_prefix(&account_prefix(email))
            .await
            .map(drop)
    }
}
