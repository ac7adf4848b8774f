//! The keys tenant tokens are signed with, shared by every replica.

use sqlx::Row;

use super::{QueryContext, RowsAffected, StoreError};
use crate::keys::KeyRecord;

queries! {
    pub async fn signing_keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        const OP: &str = "load signing keys";
        let rows = sqlx::query(
            "SELECT kid, private_pkcs8, public_key, created_at, not_before
             FROM signing_keys ORDER BY not_before",
        )
        .fetch_all(&self.pool)
        .await
        .ctx(OP)?;
        rows.iter()
            .map(|row| {
                Ok(KeyRecord {
                    kid: row.try_get("kid")?,
                    private_pkcs8: row.try_get("private_pkcs8")?,
                    public_key: row.try_get("public_key")?,
                    created_at: row.try_get("created_at")?,
                    not_before: row.try_get("not_before")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .ctx(OP)
    }

    /// Stores a key unless another replica stored one for the same start.
    pub async fn insert_signing_key(&self, key: &KeyRecord) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, private_pkcs8, public_key, created_at, not_before)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(&key.kid)
        .bind(&key.private_pkcs8)
        .bind(&key.public_key)
        .bind(key.created_at)
        .bind(key.not_before)
        .execute(&self.pool)
        .await
        .ctx("store signing key")?;
        Ok(done.rows_affected() == 1)
    }

    /// Replaces a stored private key (sealing one stored in the clear),
    /// only if it still holds `old`: a replica that sealed it first wins.
    pub async fn replace_private_key(
        &self,
        kid: &str,
        old: &[u8],
        new: &[u8],
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE signing_keys SET private_pkcs8 = $3 WHERE kid = $1 AND private_pkcs8 = $2",
        )
        .bind(kid)
        .bind(old)
        .bind(new)
        .execute(&self.pool)
        .await
        .ctx("seal signing key")?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn delete_signing_key(&self, kid: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM signing_keys WHERE kid = $1")
            .bind(kid)
            .execute(&self.pool)
            .await
            .ctx("delete signing key")?;
        Ok(())
    }
}
