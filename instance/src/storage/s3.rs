//! The S3-compatible backend: objects named after their storage path in
//! one bucket, reached with path-style URLs. Each request is presigned just
//! before it is sent; errors name the storage path and the server's answer,
//! never the credentials or a signed URL.

use std::time::Duration;

use bytes::Bytes;
use reqwest::StatusCode;
use rusty_s3::actions::{DeleteObject, GetObject, HeadObject, ListObjectsV2, PutObject, S3Action};
use rusty_s3::{Bucket, Credentials, UrlStyle};

use super::{StorageError, StoragePath};
use crate::config::S3Settings;

/// How long a presigned request stays valid (it is sent at once).
const SIGNED_FOR: Duration = Duration::from_secs(300);
/// Keys asked for per ListObjectsV2 page.
const PAGE: usize = 1000;
/// Objects deleted at once by `delete_prefix`.
const DELETES_AT_ONCE: usize = 8;

/// A bucket and the credentials to reach it.
pub(super) struct S3 {
    endpoint: String,
    bucket: Bucket,
    credentials: Credentials,
    http: reqwest::Client,
}

/// The credentials are never printed.
impl std::fmt::Debug for S3 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3")
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket.name())
            .finish_non_exhaustive()
    }
}

impl S3 {
    pub(super) fn new(settings: &S3Settings) -> Result<S3, StorageError> {
        let bad = |reason: &str| StorageError::Io {
            path: settings.endpoint.clone(),
            reason: reason.to_owned(),
        };
        let endpoint: reqwest::Url = settings
            .endpoint
            .parse()
            .map_err(|_| bad("the S3 endpoint is not a URL"))?;
        let bucket = Bucket::new(
            endpoint,
            UrlStyle::Path,
            settings.bucket.clone(),
            settings.region.clone(),
        )
        .map_err(|_| bad("the S3 endpoint must be an http(s) URL with a host"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|_| bad("cannot build the HTTP client"))?;
        Ok(S3 {
            endpoint: settings.endpoint.clone(),
            bucket,
            credentials: Credentials::new(
                settings.access_key_id.clone(),
                settings.secret_access_key.clone(),
            ),
            http,
        })
    }

    fn creds(&self) -> Option<&Credentials> {
        Some(&self.credentials)
    }

    pub(super) async fn put(&self, path: &StoragePath, bytes: Bytes) -> Result<(), StorageError> {
        let url = PutObject::new(&self.bucket, self.creds(), path.as_str()).sign(SIGNED_FOR);
        let response = self
            .http
            .put(url)
            .body(bytes)
            .send()
            .await
            .map_err(|e| sent(&path.uri(), &e))?;
        if response.status().is_success() {
            return Ok(());
        }
        Err(answered(&path.uri(), response).await)
    }

    pub(super) async fn get(&self, path: &StoragePath) -> Result<Bytes, StorageError> {
        let url = GetObject::new(&self.bucket, self.creds(), path.as_str()).sign(SIGNED_FOR);
        let response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| sent(&path.uri(), &e))?;
        match response.status() {
            s if s.is_success() => response.bytes().await.map_err(|e| sent(&path.uri(), &e)),
            StatusCode::NOT_FOUND => Err(StorageError::NotFound(path.uri())),
            _ => Err(answered(&path.uri(), response).await),
        }
    }

    /// The size of one object.
    pub(super) async fn size(&self, path: &StoragePath) -> Result<u64, StorageError> {
        let url = HeadObject::new(&self.bucket, self.creds(), path.as_str()).sign(SIGNED_FOR);
        let response = self
            .http
            .head(url)
            .send()
            .await
            .map_err(|e| sent(&path.uri(), &e))?;
        match response.status() {
            s if s.is_success() => Ok(response
                .headers()
                .get(reqwest::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)),
            StatusCode::NOT_FOUND => Err(StorageError::NotFound(path.uri())),
            _ => Err(answered(&path.uri(), response).await),
        }
    }

    /// Every object under `prefix/`, page after page.
    pub(super) async fn list(
        &self,
        prefix: &StoragePath,
    ) -> Result<Vec<(StoragePath, u64)>, StorageError> {
        let folder = format!("{}/", prefix.as_str());
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut action = ListObjectsV2::new(&self.bucket, self.creds());
            action.with_prefix(folder.as_str());
            action.with_max_keys(PAGE);
            // Keys unencoded (XML-escaped only): servers differ in how
            // they would encode them.
            action.query_mut().remove("encoding-type");
            if let Some(token) = &token {
                action.with_continuation_token(token.as_str());
            }
            let url = action.sign(SIGNED_FOR);
            let response = self
                .http
                .get(url)
                .send()
                .await
                .map_err(|e| sent(&prefix.uri(), &e))?;
            if !response.status().is_success() {
                return Err(answered(&prefix.uri(), response).await);
            }
            let body = response.text().await.map_err(|e| sent(&prefix.uri(), &e))?;
            let page = super::s3_list::parse(&body).ok_or_else(|| StorageError::Io {
                path: prefix.uri(),
                reason: "the S3 listing could not be read".into(),
            })?;
            for (key, size) in page.objects {
                match StoragePath::new(&key) {
                    Ok(path) => out.push((path, size)),
                    Err(_) => {
                        tracing::warn!(key = %key.escape_debug(), "skipping an object whose key is not a storage path")
                    }
                }
            }
            match page.next {
                Some(next) => token = Some(next),
                None => break,
            }
        }
        out.sort();
        Ok(out)
    }

    /// Deletes one object; `false` when there was none.
    pub(super) async fn delete(&self, path: &StoragePath) -> Result<bool, StorageError> {
        // S3 answers a delete of a missing object as a success: ask first.
        match self.size(path).await {
            Ok(_) => {}
            Err(StorageError::NotFound(_)) => return Ok(false),
            Err(err) => return Err(err),
        }
        self.remove(path).await?;
        Ok(true)
    }

    async fn remove(&self, path: &StoragePath) -> Result<(), StorageError> {
        let url = DeleteObject::new(&self.bucket, self.creds(), path.as_str()).sign(SIGNED_FOR);
        let response = self
            .http
            .delete(url)
            .send()
            .await
            .map_err(|e| sent(&path.uri(), &e))?;
        if response.status().is_success() || response.status() == StatusCode::NOT_FOUND {
            return Ok(());
        }
        Err(answered(&path.uri(), response).await)
    }

    /// Deletes every object under `prefix/`.
    pub(super) async fn delete_prefix(&self, prefix: &StoragePath) -> Result<(), StorageError> {
        use futures::{StreamExt, TryStreamExt};
        let objects = self.list(prefix).await?;
        futures::stream::iter(objects)
            .map(|(path, _)| async move { self.remove(&path).await })
            .buffer_unordered(DELETES_AT_ONCE)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(())
    }
}

/// A request that got no answer: what went wrong, never the URL (which
/// carries the signature).
fn sent(what: &str, err: &reqwest::Error) -> StorageError {
    let reason = if err.is_timeout() {
        "the S3 server did not answer in time".to_owned()
    } else if err.is_body() || err.is_decode() {
        "the S3 server's answer was cut short".to_owned()
    } else {
        // The underlying I/O error's kind (connection refused, reset...).
        let mut source = std::error::Error::source(err);
        let mut kind = None;
        while let Some(e) = source {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                kind = Some(io.kind().to_string());
            }
            source = e.source();
        }
        match kind {
            Some(kind) => format!("the S3 server could not be reached: {kind}"),
            None => "the S3 server could not be reached".to_owned(),
        }
    };
    StorageError::Io {
        path: what.to_owned(),
        reason,
    }
}

/// An error answer: its status and S3 error code, never the request.
async fn answered(what: &str, response: reqwest::Response) -> StorageError {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let code = body
        .split_once("<Code>")
        .and_then(|(_, rest)| rest.split_once("</Code>"))
        .map(|(code, _)| code)
        .filter(|c| c.len() <= 64 && c.chars().all(|c| c.is_ascii_alphanumeric()));
    StorageError::Io {
        path: what.to_owned(),
        reason: match code {
            Some(code) => format!("the S3 server answered {status} ({code})"),
            None => format!("the S3 server answered {status}"),
        },
    }
}
