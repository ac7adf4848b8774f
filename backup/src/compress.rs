//! LZ4 frame compression (pure Rust, `lz4_flex`). Frames carry a content
//! checksum, so a damaged object is detected on decompression.

use std::io::{Read, Write};

/// Compression or decompression failed.
#[derive(Debug, thiserror::Error)]
pub enum CompressError {
    /// The data is not a valid LZ4 frame (or its checksum does not match).
    #[error("not a valid lz4 frame: {0}")]
    Frame(String),
}

fn frame_info(content_size: Option<u64>) -> lz4_flex::frame::FrameInfo {
    lz4_flex::frame::FrameInfo::new()
        .content_checksum(true)
        .content_size(content_size)
        .block_size(lz4_flex::frame::BlockSize::Max4MB)
}

/// Compresses `data` into one LZ4 frame.
pub fn compress(data: &[u8]) -> Result<Vec<u8>, CompressError> {
    let info = frame_info(u64::try_from(data.len()).ok());
    let mut encoder =
        lz4_flex::frame::FrameEncoder::with_frame_info(info, Vec::with_capacity(data.len() / 4));
    encoder
        .write_all(data)
        .map_err(|e| CompressError::Frame(e.to_string()))?;
    encoder
        .finish()
        .map_err(|e| CompressError::Frame(e.to_string()))
}

/// Decompresses one or more concatenated LZ4 frames.
pub fn decompress(data: &[u8]) -> Result<Vec<u8>, CompressError> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4));
    lz4_flex::frame::FrameDecoder::new(data)
        .read_to_end(&mut out)
        .map_err(|e| CompressError::Frame(e.to_string()))?;
    Ok(out)
}

/// An incremental compressor: feed input with [`Lz4Stream::push`], take the
/// compressed bytes produced so far with [`Lz4Stream::take`], end with
/// [`Lz4Stream::finish`]. For streams too large to hold (base backups).
pub struct Lz4Stream {
    encoder: lz4_flex::frame::FrameEncoder<Vec<u8>>,
}

impl std::fmt::Debug for Lz4Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lz4Stream").finish_non_exhaustive()
    }
}

impl Default for Lz4Stream {
    fn default() -> Self {
        Lz4Stream::new()
    }
}

impl Lz4Stream {
    /// A new frame of unknown length.
    pub fn new() -> Lz4Stream {
        Lz4Stream {
            encoder: lz4_flex::frame::FrameEncoder::with_frame_info(frame_info(None), Vec::new()),
        }
    }

    /// Compresses `input` (output becomes available in blocks of up to 4 MB).
    pub fn push(&mut self, input: &[u8]) -> Result<(), CompressError> {
        self.encoder
            .write_all(input)
            .map_err(|e| CompressError::Frame(e.to_string()))
    }

    /// The compressed bytes produced so far (removed from the buffer).
    pub fn take(&mut self) -> Vec<u8> {
        std::mem::take(self.encoder.get_mut())
    }

    /// Ends the frame; returns the remaining compressed bytes.
    pub fn finish(self) -> Result<Vec<u8>, CompressError> {
        self.encoder
            .finish()
            .map_err(|e| CompressError::Frame(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_a_wal_like_buffer() {
        // A 16 MB segment whose tail is zero pages, like a forced switch.
        let mut data = vec![0u8; 16 * 1024 * 1024];
        for (i, b) in data.iter_mut().take(3 * 1024 * 1024).enumerate() {
            *b = (i.wrapping_mul(2_654_435_761) >> 13) as u8;
        }
        let packed = compress(&data).expect("compress");
        assert!(packed.len() < data.len() / 4, "zero pages compress well");
        assert_eq!(decompress(&packed).expect("valid frame"), data);
    }

    #[test]
    fn empty_input_round_trips() {
        assert_eq!(
            decompress(&compress(b"").expect("compress")).expect("valid frame"),
            b""
        );
    }

    #[test]
    fn damage_is_detected() {
        let mut packed = compress(&[7u8; 100_000]).expect("compress");
        let mid = packed.len() / 2;
        packed[mid] ^= 0xff;
        assert!(decompress(&packed).is_err());
        assert!(decompress(b"not lz4").is_err());
    }

    #[test]
    fn stream_equals_one_shot_content() {
        let data: Vec<u8> = (0..10_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut stream = Lz4Stream::new();
        let mut out = Vec::new();
        for chunk in data.chunks(1_000_003) {
            stream.push(chunk).expect("push");
            out.extend(stream.take());
        }
        out.extend(stream.finish().expect("finish"));
        assert_eq!(decompress(&out).expect("valid frame"), data);
    }
}
