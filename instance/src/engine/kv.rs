//! What the API reads and writes of the KV store (the store stays private
//! to the engine).

use super::Engine;
use crate::store::{KvEntry, StoreError};

impl Engine {
    /// The live entries of a namespace, by key.
    pub async fn kv_list(&self, namespace: &str) -> Result<Vec<KvEntry>, StoreError> {
        self.inner.store.kv_list(namespace).await
    }

    /// The live entries of every namespace (at most
    /// [`crate::store::MAX_KV_SEARCH`]), by namespace and key.
    pub async fn kv_list_all(&self) -> Result<Vec<KvEntry>, StoreError> {
        self.inner.store.kv_list_all().await
    }

    /// One live entry.
    pub async fn kv_get(&self, namespace: &str, key: &str) -> Result<Option<KvEntry>, StoreError> {
        self.inner.store.kv_get(namespace, key).await
    }

    /// Writes an entry (replacing any).
    pub async fn kv_put(&self, entry: &KvEntry) -> Result<(), StoreError> {
        self.inner.store.kv_put(entry, true).await.map(|_| ())
    }

    /// Deletes an entry; `false` when there was none.
    pub async fn kv_delete(&self, namespace: &str, key: &str) -> Result<bool, StoreError> {
        self.inner.store.kv_delete(namespace, key).await
    }
}
