//! Secrets for `{{ secret('NAME') }}`, and masking them.
//!
//! Secrets are files in one directory (`ATOLL_SECRETS_DIR`), one per key:
//! the operator mounts the tenant's Kubernetes Secrets labelled for the
//! instance there. Only that directory is read, never the instance's
//! environment. Every secret value an execution resolves is masked
//! (`******`) in that execution's log lines, task outputs and errors.

use std::path::PathBuf;
use std::sync::RwLock;

/// What replaces a secret value.
pub const MASK: &str = "******";

/// Values shorter than this are not masked (masking `a` or `1` would
/// garble every line).
pub const MIN_MASKED: usize = 3;

/// Largest secret read (Kubernetes' limit on a Secret).
const MAX_SECRET_BYTES: u64 = 1024 * 1024;

/// The secrets directory.
#[derive(Debug, Clone, Default)]
pub struct Secrets {
    dir: Option<PathBuf>,
}

impl Secrets {
    /// Secrets read from `dir`; `None`: this instance has none.
    pub fn new(dir: Option<PathBuf>) -> Secrets {
        Secrets { dir }
    }

    /// The value of secret `name`. Errors name the secret, never a value.
    pub async fn get(&self, name: &str) -> Result<String, String> {
        check_name(name)?;
        let Some(dir) = &self.dir else {
            return Err(format!(
                "secret `{name}` not found: this instance has no secrets directory ({} is not set)",
                atoll_crds::contract::SECRETS_DIR
            ));
        };
        let path = dir.join(name);
        let not_found = || format!("secret `{name}` not found");
        let meta = match tokio::fs::metadata(&path).await {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(not_found()),
            Err(e) => return Err(format!("secret `{name}` could not be read: {}", e.kind())),
        };
        if !meta.is_file() {
            return Err(not_found());
        }
        if meta.len() > MAX_SECRET_BYTES {
            return Err(format!(
                "secret `{name}` is larger than {MAX_SECRET_BYTES} bytes"
            ));
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| format!("secret `{name}` could not be read: {}", e.kind()))?;
        String::from_utf8(bytes).map_err(|_| format!("secret `{name}` is not UTF-8 text"))
    }
}

/// A secret's name: a Kubernetes Secret key (letters, digits, `-`, `_`,
/// `.`), not a dotfile (`..data` and the like are the mount's own), no
/// path.
fn check_name(name: &str) -> Result<(), String> {
    let shown: String = name.chars().take(100).collect();
    if name.is_empty() || name.len() > 253 {
        return Err("a secret name must be 1 to 253 characters long".into());
    }
    if name.starts_with('.')
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "invalid secret name `{shown}` (letters, digits, `-`, `_` and `.`, not starting with `.`)"
        ));
    }
    Ok(())
}

/// The secret values one execution resolved, to mask in what it writes.
#[derive(Debug, Default)]
pub struct Masker {
    /// Longest first, so a secret containing another is masked whole.
    values: RwLock<Vec<String>>,
}

impl Masker {
    pub fn new() -> Masker {
        Masker::default()
    }

    /// Masks `value` from now on (and each of its lines, and its trimmed
    /// form, as a secret often ends with a newline).
    pub fn add(&self, value: &str) {
        let mut forms = vec![value, value.trim()];
        if value.contains('\n') {
            forms.extend(value.lines().map(str::trim));
        }
        let Ok(mut values) = self.values.write() else {
            return;
        };
        for form in forms {
            if form.chars().count() >= MIN_MASKED && !values.iter().any(|v| v == form) {
                values.push(form.to_owned());
            }
        }
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }

    /// Whether nothing is masked.
    pub fn is_empty(&self) -> bool {
        self.values.read().map(|v| v.is_empty()).unwrap_or(true)
    }

    /// `text` with every secret value replaced by [`MASK`].
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        if let Ok(values) = self.values.read() {
            for value in values.iter() {
                if out.contains(value.as_str()) {
                    out = out.replace(value.as_str(), MASK);
                }
            }
        }
        out
    }

    /// Masks every string (and map key) inside a JSON value.
    pub fn mask_json(&self, value: &mut serde_json::Value) {
        use serde_json::Value as J;
        match value {
            J::String(s) => {
                let masked = self.mask(s);
                if masked != *s {
                    *s = masked;
                }
            }
            J::Array(items) => items.iter_mut().for_each(|v| self.mask_json(v)),
            J::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    self.mask_json(&mut v);
                    map.insert(self.mask(&key), v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn secrets_are_files_and_names_cannot_escape_the_directory() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("API_KEY"), "s3cr3t-value").expect("write");
        std::fs::create_dir(dir.path().join("..data")).expect("mkdir");
        let secrets = Secrets::new(Some(dir.path().to_owned()));
        assert_eq!(secrets.get("API_KEY").await.as_deref(), Ok("s3cr3t-value"));
        let missing = secrets.get("NOPE").await.expect_err("missing");
        assert_eq!(missing, "secret `NOPE` not found");
        for bad in ["../etc/passwd", "a/b", "..data", ".hidden", ""] {
            let err = secrets.get(bad).await.expect_err(bad);
            assert!(err.contains("secret name"), "{bad}: {err}");
        }
        let none = Secrets::default().get("API_KEY").await.expect_err("no dir");
        assert!(none.contains("no secrets directory"), "{none}");
    }

    #[test]
    fn masking_replaces_values_but_not_short_ones() {
        let masker = Masker::new();
        masker.add("ab");
        masker.add("hunter2\n");
        assert_eq!(masker.mask("pw=hunter2 ab"), "pw=****** ab");
        let mut json = serde_json::json!({"k": ["hunter2", 1], "hunter2": "x"});
        masker.mask_json(&mut json);
        assert_eq!(json, serde_json::json!({"k": ["******", 1], "******": "x"}));
    }
}
