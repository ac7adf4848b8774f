//! The object store: opened from [`Settings`] (S3 via `object_store`), and
//! the few operations the binary needs, each bounded in time so that no
//! call hangs for more than [`OP_TIMEOUT`] (PostgreSQL's archiver waits on
//! `archive_command`; a hung push stalls archiving).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions,
    PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::compress::{CompressError, Lz4Stream};
use crate::settings::Settings;

/// The longest one operation (a request with its retries) may take.
pub const OP_TIMEOUT: Duration = Duration::from_secs(30);
/// One HTTP request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Establishing a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// No retry starts later than this after the first attempt.
const RETRY_TIMEOUT: Duration = Duration::from_secs(20);
/// Part size of multipart uploads (S3 needs >= 5 MiB except the last).
const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts in flight at once.
const PARTS_IN_FLIGHT: usize = 2;
/// How much of a stream is read at once.
const READ_CHUNK: usize = 1024 * 1024;

/// A store operation that failed. Messages name the operation and the key;
/// pass them through [`Settings::redact`] before they leave the process.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store could not be configured.
    #[error("object store configuration: {0}")]
    Build(#[source] object_store::Error),
    /// A request failed (after retries).
    #[error("{op} {key}: {source}")]
    Request {
        /// What was done (put, get, list, delete).
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// The reason.
        source: object_store::Error,
    },
    /// An operation did not finish in time.
    #[error("{op} {key}: no answer from the object store within {}s", .limit.as_secs())]
    Timeout {
        /// What was done.
        op: &'static str,
        /// The object key or prefix.
        key: String,
        /// The limit that passed.
        limit: Duration,
    },
    /// The object exists with other content: never overwritten.
    #[error(
        "{key} already exists in the object store with different content; refusing to overwrite it"
    )]
    Conflict {
        /// The object key.
        key: String,
    },
    /// Reading the stream to upload failed.
    #[error("reading the data to upload to {key}: {source}")]
    Read {
        /// The object key.
        key: String,
        /// The reason.
        source: std::io::Error,
    },
    /// Compressing the stream failed.
    #[error("compressing the data for {key}: {source}")]
    Compress {
        /// The object key.
        key: String,
        /// The reason.
        source: CompressError,
    },
}

/// Opens the S3 store the settings describe. Never reads the environment:
/// credentials come only from the settings' files.
pub fn open(settings: &Settings) -> Result<Arc<dyn ObjectStore>, StoreError> {
    let retry = RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 3,
        retry_timeout: RETRY_TIMEOUT,
    };
    let client = ClientOptions::new()
        .with_timeout(REQUEST_TIMEOUT)
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_allow_http(settings.allow_http);
    let mut builder = AmazonS3Builder::new()
        .with_endpoint(bucket_endpoint(settings))
        .with_bucket_name(&settings.bucket)
        .with_region(&settings.region)
        .with_allow_http(settings.allow_http)
        .with_virtual_hosted_style_request(!settings.path_style)
        .with_retry(retry)
        .with_client_options(client);
    builder = match &settings.credentials {
        Some(c) => builder
            .with_access_key_id(&c.access_key_id)
            .with_secret_access_key(&c.secret_access_key),
        None => builder.with_skip_signature(true),
    };
    Ok(Arc::new(builder.build().map_err(StoreError::Build)?))
}

/// With virtual-hosted requests `object_store` expects the bucket in the
/// endpoint's host (`https://bucket.host`); path style takes the bare one.
fn bucket_endpoint(settings: &Settings) -> String {
    if settings.path_style {
        return settings.endpoint.clone();
    }
    match settings.endpoint.split_once("://") {
        Some((scheme, host)) => format!("{scheme}://{}.{host}", settings.bucket),
        None => settings.endpoint.clone(),
    }
}

/// Runs `fut` with the [`OP_TIMEOUT`] bound, naming `op` and `key` on
/// failure.
async fn bounded<T>(
    op: &'static str,
    key: &Path,
    fut: impl Future<Output = object_store::Result<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(OP_TIMEOUT, fut).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(StoreError::Request {
            op,
            key: key.to_string(),
            source,
        }),
        Err(_) => Err(StoreError::Timeout {
            op,
            key: key.to_string(),
            limit: OP_TIMEOUT,
        }),
    }
}

/// What [`put_create_or_same`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was created.
    Created,
    /// It already existed with the same content (an idempotent retry).
    AlreadyThere,
}

/// Creates `key` with `bytes` unless it exists (`PutMode::Create`, i.e.
/// `If-None-Match: *`); when it exists with the same bytes that is success,
/// with other bytes a [`StoreError::Conflict`]. Never overwrites.
pub async fn put_create_or_same(
    store: &dyn ObjectStore,
    key: &Path,
    bytes: Bytes,
) -> Result<PutOutcome, StoreError> {
    let expected = bytes.clone();
    put_create_or_same_by(store, key, bytes, move |existing| *existing == expected).await
}

/// [`put_create_or_same`] with a custom comparison of the existing object's
/// bytes (e.g. compare decompressed content, which does not depend on the
/// compressor's version).
pub async fn put_create_or_same_by(
    store: &dyn ObjectStore,
    key: &Path,
    bytes: Bytes,
    same: impl FnOnce(&Bytes) -> bool,
) -> Result<PutOutcome, StoreError> {
    let opts = PutOptions::from(PutMode::Create);
    let put = store.put_opts(key, PutPayload::from_bytes(bytes), opts);
    let put_error = match tokio::time::timeout(OP_TIMEOUT, put).await {
        Ok(Ok(_)) => return Ok(PutOutcome::Created),
        // Some stores answer a failed If-None-Match with 412.
        Ok(Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        )) => None,
        // A store may refuse a conditional put before reading the body and
        // close the connection: the client then sees a broken pipe, not
        // "exists". And an answer may be lost after the object was stored.
        // Either way, looking at the object tells.
        Ok(Err(source)) => Some(StoreError::Request {
            op: "put",
            key: key.to_string(),
            source,
        }),
        Err(_) => Some(StoreError::Timeout {
            op: "put",
            key: key.to_string(),
            limit: OP_TIMEOUT,
        }),
    };
    match (get_bytes(store, key).await, put_error) {
        (Ok(Some(existing)), _) if same(&existing) => Ok(PutOutcome::AlreadyThere),
        (Ok(Some(_)), _) => Err(StoreError::Conflict {
            key: key.to_string(),
        }),
        // The put's own failure is the one to report.
        (_, Some(put_error)) => Err(put_error),
        (Err(get_error), None) => Err(get_error),
        // Existed, then gone between the two calls: only a deletion
        // (retention) does that; report a conflict rather than guess.
        (Ok(None), None) => Err(StoreError::Conflict {
            key: key.to_string(),
        }),
    }
}

/// The whole object, or `None` when it does not exist.
pub async fn get_bytes(store: &dyn ObjectStore, key: &Path) -> Result<Option<Bytes>, StoreError> {
    let fetch = async {
        match store.get(key).await {
            Ok(result) => result.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    };
    bounded("get", key, fetch).await
}

/// The object as a stream of chunks (for objects too large to hold), or
/// `None` when it does not exist. Every chunk must arrive within
/// [`OP_TIMEOUT`]; the stream ends after the first error.
pub async fn get_stream(
    store: &dyn ObjectStore,
    key: &Path,
) -> Result<Option<BoxStream<'static, Result<Bytes, StoreError>>>, StoreError> {
    let result = match bounded("get", key, store.get(key)).await {
        Ok(result) => result,
        Err(StoreError::Request {
            source: object_store::Error::NotFound { .. },
            ..
        }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let start = Some((result.into_stream(), key.to_string()));
    let stream = futures::stream::unfold(start, |state| async move {
        let (mut inner, key) = state?;
        match tokio::time::timeout(OP_TIMEOUT, inner.next()).await {
            Ok(None) => None,
            Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some((inner, key)))),
            Ok(Some(Err(source))) => {
                let op = "get";
                Some((Err(StoreError::Request { op, key, source }), None))
            }
            Err(_) => {
                let (op, limit) = ("get", OP_TIMEOUT);
                Some((Err(StoreError::Timeout { op, key, limit }), None))
            }
        }
    });
    Ok(Some(stream.boxed()))
}

/// How [`put_stream`] stores the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// As read (e.g. `pg_dump -Fc` output, already compressed).
    None,
    /// One LZ4 frame.
    Lz4,
}

/// Uploads everything `reader` yields to `key` as a multipart upload
/// (aborted on error), optionally LZ4-compressed on the way; returns the
/// stored (compressed) size. Overwrites: callers pick fresh keys (backup ids).
pub async fn put_stream<R: AsyncRead + Unpin>(
    store: &dyn ObjectStore,
    key: &Path,
    mut reader: R,
    compression: Compression,
) -> Result<u64, StoreError> {
    let upload = bounded("start upload", key, store.put_multipart(key)).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
    match feed(&mut writer, key, &mut reader, compression).await {
        Ok(size) => {
            bounded("finish upload", key, writer.finish()).await?;
            Ok(size)
        }
        Err(e) => {
            // Best effort: a dangling upload is also removed by the bucket's
            // lifecycle rules, if any.
            let _ = tokio::time::timeout(OP_TIMEOUT, writer.abort()).await;
            Err(e)
        }
    }
}

/// Reads `reader` to its end into `writer`; returns the bytes written.
async fn feed<R: AsyncRead + Unpin>(
    writer: &mut WriteMultipart,
    key: &Path,
    reader: &mut R,
    compression: Compression,
) -> Result<u64, StoreError> {
    let compress_err = |source| StoreError::Compress {
        key: key.to_string(),
        source,
    };
    let mut lz4 = (compression == Compression::Lz4).then(Lz4Stream::new);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut size = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .await
            .map_err(|source| StoreError::Read {
                key: key.to_string(),
                source,
            })?;
        let out = match (&mut lz4, n) {
            (_, 0) => break,
            (Some(lz4), n) => {
                lz4.push(&buf[..n]).map_err(compress_err)?;
                lz4.take()
            }
            (None, n) => buf[..n].to_vec(),
        };
        size += out.len() as u64;
        bounded(
            "upload part",
            key,
            writer.wait_for_capacity(PARTS_IN_FLIGHT),
        )
        .await?;
        writer.write(&out);
    }
    if let Some(lz4) = lz4 {
        let tail = lz4.finish().map_err(compress_err)?;
        size += tail.len() as u64;
        writer.write(&tail);
    }
    Ok(size)
}

/// Every object under `prefix` (recursively). Each page must arrive within
/// [`OP_TIMEOUT`].
pub async fn list(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<ObjectMeta>, StoreError> {
    let mut stream = store.list(Some(prefix));
    let mut out = Vec::new();
    loop {
        let next = bounded("list", prefix, async { stream.next().await.transpose() }).await?;
        match next {
            Some(meta) => out.push(meta),
            None => return Ok(out),
        }
    }
}

/// The "folders" directly under `prefix` (one level, e.g. the tenants'
/// uids under `tenants/`), within [`OP_TIMEOUT`].
pub async fn list_folders(store: &dyn ObjectStore, prefix: &Path) -> Result<Vec<Path>, StoreError> {
    let listed = bounded("list", prefix, store.list_with_delimiter(Some(prefix))).await?;
    Ok(listed.common_prefixes)
}

/// Deletes `key`; an absent object is not an error.
pub async fn delete(store: &dyn ObjectStore, key: &Path) -> Result<(), StoreError> {
    let delete = async {
        match store.delete(key).await {
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            other => other,
        }
    };
    bounded("delete", key, delete).await
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
