//! Attempt-scoped file transfer: the input files a task pod may fetch and
//! the output files it may upload, behind a random token that only this
//! instance's memory and that pod's helper containers hold.
//!
//! Each running attempt is registered under a key (its pod's name) with a
//! 256-bit token; the registration ends, and the token with it, when the
//! [`AttemptFiles`] handle is dropped (the attempt ended, was killed or
//! timed out). The API routes (`api/attempts.rs`) serve only the inputs of
//! the attempt the token opens, and accept only outputs that match its
//! patterns, within [`MAX_OUTPUT_FILE_BYTES`], [`MAX_OUTPUT_TOTAL_BYTES`]
//! and [`MAX_OUTPUT_FILES`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::constant_time;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use bytes::Bytes;

/// Largest output file accepted.
pub const MAX_OUTPUT_FILE_BYTES: usize = 64 * 1024 * 1024;
/// Most bytes of output files one attempt may upload.
pub const MAX_OUTPUT_TOTAL_BYTES: usize = 256 * 1024 * 1024;
/// Most output files one attempt may upload.
pub const MAX_OUTPUT_FILES: usize = 1000;

/// The attempts that may transfer files right now (shared by the runner,
/// which opens them, and the API, which serves them).
#[derive(Clone, Default)]
pub struct Attempts {
    open: Arc<Mutex<HashMap<String, Arc<Attempt>>>>,
}

/// The keys only: tokens are never printed.
impl std::fmt::Debug for Attempts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let keys: Vec<String> = self.lock().keys().cloned().collect();
        f.debug_struct("Attempts").field("open", &keys).finish()
    }
}

/// One attempt's files, as the API sees them once its token matched.
pub struct Attempt {
    token: String,
    inputs: BTreeMap<String, Bytes>,
    patterns: Vec<String>,
    outputs: Mutex<BTreeMap<String, Bytes>>,
}

impl std::fmt::Debug for Attempt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attempt")
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("patterns", &self.patterns)
            .finish_non_exhaustive()
    }
}

/// Why an output file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputRefused {
    #[error("invalid path: {0}")]
    Path(String),
    #[error("`{0}` matches none of the task's outputFiles patterns")]
    NotDeclared(String),
    #[error("`{path}` is larger than {limit} bytes")]
    TooLarge { path: String, limit: usize },
    #[error("the task's output files exceed {0}")]
    TooMany(String),
}

impl Attempts {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Attempt>>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens an attempt under `key` with a fresh random token; it closes when
    /// the handle is dropped.
    pub fn open(
        &self,
        key: &str,
        inputs: BTreeMap<String, Bytes>,
        patterns: Vec<String>,
    ) -> Result<AttemptFiles, String> {
        let token = random_token()?;
        let attempt = Arc::new(Attempt {
            token: token.clone(),
            inputs,
            patterns,
            outputs: Mutex::new(BTreeMap::new()),
        });
        self.lock().insert(key.to_owned(), attempt.clone());
        Ok(AttemptFiles {
            attempts: self.clone(),
            key: key.to_owned(),
            token,
            attempt,
        })
    }

    /// The attempt `key` if `token` is its token (compared in constant
    /// time); `None` for an unknown key or a wrong token alike.
    pub fn authorize(&self, key: &str, token: &str) -> Option<Arc<Attempt>> {
        let attempt = self.lock().get(key).cloned()?;
        constant_time::verify_slices_are_equal(attempt.token.as_bytes(), token.as_bytes())
            .is_ok()
            .then_some(attempt)
    }

    /// Whether an attempt is open under `key` (its pod is not an orphan).
    pub fn is_open(&self, key: &str) -> bool {
        self.lock().contains_key(key)
    }
}

impl Attempt {
    /// The input files' paths and sizes.
    pub fn input_list(&self) -> Vec<(String, usize)> {
        self.inputs
            .iter()
            .map(|(path, content)| (path.clone(), content.len()))
            .collect()
    }

    /// One input file.
    pub fn input(&self, path: &str) -> Option<Bytes> {
        self.inputs.get(path).cloned()
    }

    /// How many more bytes of output this attempt may upload.
    pub fn output_room(&self) -> usize {
        let outputs = self.outputs.lock().unwrap_or_else(PoisonError::into_inner);
        let used: usize = outputs.values().map(Bytes::len).sum();
        MAX_OUTPUT_TOTAL_BYTES.saturating_sub(used)
    }

    /// Whether `path` may be uploaded (before its body is read).
    pub fn check_output_path(&self, path: &str) -> Result<(), OutputRefused> {
        crate::runner::check_relative(path).map_err(|e| OutputRefused::Path(e.to_owned()))?;
        if !self
            .patterns
            .iter()
            .any(|p| crate::runner::glob::matches(p, path))
        {
            return Err(OutputRefused::NotDeclared(path.to_owned()));
        }
        Ok(())
    }

    /// Keeps an uploaded output file (a second upload of a path replaces it).
    pub fn put_output(&self, path: &str, content: Bytes) -> Result<(), OutputRefused> {
        self.check_output_path(path)?;
        if content.len() > MAX_OUTPUT_FILE_BYTES {
            return Err(OutputRefused::TooLarge {
                path: path.to_owned(),
                limit: MAX_OUTPUT_FILE_BYTES,
            });
        }
        let mut outputs = self.outputs.lock().unwrap_or_else(PoisonError::into_inner);
        let others: usize = outputs
            .iter()
            .filter(|(p, _)| p.as_str() != path)
            .map(|(_, c)| c.len())
            .sum();
        if others + content.len() > MAX_OUTPUT_TOTAL_BYTES {
            return Err(OutputRefused::TooMany(format!(
                "{MAX_OUTPUT_TOTAL_BYTES} bytes"
            )));
        }
        if !outputs.contains_key(path) && outputs.len() >= MAX_OUTPUT_FILES {
            return Err(OutputRefused::TooMany(format!("{MAX_OUTPUT_FILES} files")));
        }
        outputs.insert(path.to_owned(), content);
        Ok(())
    }
}

/// An open attempt, held by the runner for as long as the attempt runs;
/// dropping it closes the attempt and its token stops working.
pub struct AttemptFiles {
    attempts: Attempts,
    key: String,
    token: String,
    attempt: Arc<Attempt>,
}

impl std::fmt::Debug for AttemptFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AttemptFiles")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl AttemptFiles {
    /// The key the pod's helpers address the attempt by.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The attempt's token (for the pod's helper containers only).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The output files uploaded so far.
    pub fn outputs(&self) -> BTreeMap<String, Bytes> {
        self.attempt
            .outputs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Drop for AttemptFiles {
    fn drop(&mut self) {
        let mut open = self.attempts.lock();
        if open
            .get(&self.key)
            .is_some_and(|a| Arc::ptr_eq(a, &self.attempt))
        {
            open.remove(&self.key);
        }
    }
}

/// 256 random bits, hex-encoded.
fn random_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| "the system random generator failed".to_owned())?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(attempts: &Attempts, key: &str) -> AttemptFiles {
        let inputs = BTreeMap::from([("in/data.csv".to_owned(), Bytes::from_static(b"a,b"))]);
        attempts
            .open(key, inputs, vec!["*.txt".into(), "out/**".into()])
            .expect("open")
    }

    #[test]
    fn a_token_opens_only_its_own_attempt_and_expires_with_it() {
        let attempts = Attempts::default();
        let one = open(&attempts, "pod-one");
        let two = open(&attempts, "pod-two");
        assert_eq!(one.token().len(), 64);
        assert_ne!(one.token(), two.token());
        assert!(attempts.authorize("pod-one", one.token()).is_some());
        assert!(attempts.authorize("pod-one", two.token()).is_none());
        assert!(attempts.authorize("pod-one", "").is_none());
        assert!(attempts.authorize("pod-three", one.token()).is_none());
        let token = one.token().to_owned();
        drop(one);
        assert!(attempts.authorize("pod-one", &token).is_none());
        assert!(!attempts.is_open("pod-one"));
        assert!(attempts.is_open("pod-two"));
        assert!(!format!("{attempts:?}").contains(two.token()));
    }

    #[test]
    fn outputs_must_match_the_patterns_and_stay_inside() {
        let attempts = Attempts::default();
        let files = open(&attempts, "pod");
        let attempt = attempts.authorize("pod", files.token()).expect("token");
        attempt
            .put_output("result.txt", Bytes::from_static(b"42"))
            .expect("declared");
        attempt
            .put_output("out/deep/x.bin", Bytes::from_static(b"x"))
            .expect("declared");
        for path in ["other.csv", "sub/result.txt"] {
            assert!(matches!(
                attempt.put_output(path, Bytes::new()),
                Err(OutputRefused::NotDeclared(_))
            ));
        }
        for path in ["../x.txt", "/etc/x.txt", "out/../../x.txt", "a\\b.txt", ""] {
            assert!(
                matches!(
                    attempt.put_output(path, Bytes::new()),
                    Err(OutputRefused::Path(_))
                ),
                "{path}"
            );
        }
        let outputs = files.outputs();
        assert_eq!(outputs.len(), 2);
        assert_eq!(outputs["result.txt"], Bytes::from_static(b"42"));
    }
}
