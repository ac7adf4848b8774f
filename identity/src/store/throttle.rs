//! Rate-limit windows and lockouts, shared by every replica.

use sqlx::Row;

use super::{QueryContext, RowsAffected, StoreError};

/// A rate-limit window or lockout counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Throttle {
    pub hits: i64,
    pub locked_until: Option<i64>,
}

queries! {
    /// Counts one hit on `key` in a fixed window of `window` seconds and
    /// returns the count in the current window and any lockout.
    pub async fn throttle_hit(
        &self,
        key: &str,
        window: i64,
        now: i64,
    ) -> Result<Throttle, StoreError> {
        const OP: &str = "count rate limit";
        let row = sqlx::query(
            "INSERT INTO throttle (key, hits, window_start, locked_until) VALUES ($1, 1, $2, NULL)
             ON CONFLICT (key) DO UPDATE SET
               hits = CASE WHEN throttle.window_start + $3 <= $2 THEN 1 ELSE throttle.hits + 1 END,
               window_start = CASE WHEN throttle.window_start + $3 <= $2 THEN $2 ELSE throttle.window_start END
             RETURNING hits, locked_until",
        )
        .bind(key)
        .bind(now)
        .bind(window)
        .fetch_one(&self.pool)
        .await
        .ctx(OP)?;
        Ok(Throttle {
            hits: row.try_get("hits").ctx(OP)?,
            locked_until: row.try_get("locked_until").ctx(OP)?,
        })
    }

    pub async fn throttle(&self, key: &str) -> Result<Option<Throttle>, StoreError> {
        const OP: &str = "read rate limit";
        let row = sqlx::query("SELECT hits, locked_until FROM throttle WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .ctx(OP)?;
        row.map(|row| {
            Ok(Throttle {
                hits: row.try_get("hits")?,
                locked_until: row.try_get("locked_until")?,
            })
        })
        .transpose()
        .ctx(OP)
    }

    pub async fn throttle_lock(&self, key: &str, until: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE throttle SET locked_until = $2 WHERE key = $1")
            .bind(key)
            .bind(until)
            .execute(&self.pool)
            .await
            .ctx("lock account")?;
        Ok(())
    }

    pub async fn throttle_clear(&self, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM throttle WHERE key = $1")
            .bind(key)
            .execute(&self.pool)
            .await
            .ctx("clear rate limit")?;
        Ok(())
    }

    /// Deletes every counter whose key starts with `prefix`.
    pub async fn throttle_clear_prefix(&self, prefix: &str) -> Result<u64, StoreError> {
        let mut pattern = String::with_capacity(prefix.len() + 1);
        for c in prefix.chars() {
            if matches!(c, '\\' | '%' | '_') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push('%');
        let done = sqlx::query("DELETE FROM throttle WHERE key LIKE $1 ESCAPE '\\'")
            .bind(pattern)
            .execute(&self.pool)
            .await
            .ctx("clear rate limits")?;
        Ok(done.rows_affected())
    }

    /// Deletes counters whose window (at most `longest` seconds) and lockout
    /// have both ended.
    pub async fn purge_throttle(&self, now: i64, longest: i64) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM throttle WHERE window_start + $2 <= $1
               AND (locked_until IS NULL OR locked_until <= $1)",
        )
        .bind(now)
        .bind(longest)
        .execute(&self.pool)
        .await
        .ctx("purge rate limits")?;
        Ok(done.rows_affected())
    }
}
