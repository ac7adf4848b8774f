//! Unpacking a stored base backup (`base.tar.lz4`) into a data directory:
//! the object is streamed from the store, decompressed on a blocking
//! thread and piped into `tar -x` (the postgres image has GNU tar), so
//! nothing of its size is held in memory or on disk twice.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};

use bytes::{Buf, Bytes};
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path as Key;

use crate::store::{self, StoreError};

/// Why unpacking failed.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The object is missing.
    #[error("{0} is missing from the object store")]
    Missing(String),
    /// The LZ4 frame is damaged, or writing to tar failed.
    #[error("unpacking {key}: {message}")]
    Unpack {
        /// The object.
        key: String,
        /// What went wrong.
        message: String,
    },
}

/// Reads chunks sent by the async side as one byte stream.
struct ChannelReader {
    rx: tokio::sync::mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// Streams `key` (an LZ4 frame of a tar) into `tar -x -C dir`; returns the
/// stored (compressed) bytes read.
pub async fn extract(store: &dyn ObjectStore, key: &Key, dir: &Path) -> Result<u64, ExtractError> {
    let mut stream = store::get_stream(store, key)
        .await?
        .ok_or_else(|| ExtractError::Missing(key.to_string()))?;
    let unpack_err = |message: String| ExtractError::Unpack {
        key: key.to_string(),
        message,
    };
    let mut tar = Command::new("tar")
        .args(["-x", "-f", "-", "-C"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| unpack_err(format!("cannot run tar: {e}")))?;
    let mut stdin = tar
        .stdin
        .take()
        .ok_or_else(|| unpack_err("tar has no stdin".into()))?;
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
    let writer = tokio::task::spawn_blocking(move || {
        let mut decoder = lz4_flex::frame::FrameDecoder::new(ChannelReader {
            rx,
            current: Bytes::new(),
        });
        let copied = std::io::copy(&mut decoder, &mut stdin);
        drop(stdin);
        copied
    });
    let mut size = 0u64;
    let mut failure = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => {
                size += chunk.len() as u64;
                if tx.send(chunk).await.is_err() {
                    break; // The writer stopped; its error says why.
                }
            }
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    drop(tx);
    let copied = writer.await.map_err(|e| unpack_err(e.to_string()))?;
    let out = tokio::task::spawn_blocking(move || tar.wait_with_output())
        .await
        .map_err(|e| unpack_err(e.to_string()))?
        .map_err(|e| unpack_err(format!("tar: {e}")))?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    copied.map_err(|e| unpack_err(format!("damaged LZ4 frame or tar stopped reading: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        return Err(unpack_err(format!("tar {}: {}", out.status, stderr.trim())));
    }
    Ok(size)
}
