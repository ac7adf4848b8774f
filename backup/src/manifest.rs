//! The JSON descriptions written last beside a backup or a dump
//! (`backup.json`, `dump.json`): present = complete. Reading and listing
//! them is the same for both catalogs; each names its own error.

use object_store::ObjectStore;
use object_store::path::Path;
use serde::de::DeserializeOwned;

use crate::store::{self, StoreError};

/// `key` read as a `T`; `None` when it does not exist. `invalid` makes the
/// catalog's error for a description that is not valid JSON of `T`.
pub(crate) async fn read<T, E>(
    store: &dyn ObjectStore,
    key: &Path,
    invalid: impl Fn(String, serde_json::Error) -> E,
) -> Result<Option<T>, E>
where
    T: DeserializeOwned,
    E: From<StoreError>,
{
    let Some(bytes) = store::get_bytes(store, key).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| invalid(key.to_string(), source))
}

/// Every object named `file` under `dir` read as a `T`, sorted by `id`
/// (ids are sortable times: oldest first).
pub(crate) async fn list<T, E>(
    store: &dyn ObjectStore,
    dir: &Path,
    file: &str,
    id: impl Fn(&T) -> &str,
    invalid: impl Fn(String, serde_json::Error) -> E,
) -> Result<Vec<T>, E>
where
    T: DeserializeOwned,
    E: From<StoreError>,
{
    let metas = store::list(store, dir).await?;
    let mut out = Vec::new();
    for meta in metas.iter().filter(|m| m.location.filename() == Some(file)) {
        if let Some(info) = read(store, &meta.location, &invalid).await? {
            out.push(info);
        }
    }
    out.sort_by(|a, b| id(a).cmp(id(b)));
    Ok(out)
}
