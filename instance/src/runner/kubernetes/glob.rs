//! Image allow-list patterns: `*` stands for any run of characters. (The
//! `outputFiles` globs are `runner::glob`'s, as for the Process runner.)

/// Whether `image` matches an allow-list pattern where `*` stands for any
/// run of characters (`python:*`, `registry.example/team/*`); every other
/// character stands for itself.
pub fn image_matches(pattern: &str, image: &str) -> bool {
    let (pattern, text) = (pattern.as_bytes(), image.as_bytes());
    let width = text.len() + 1;
    // rows[i * width + j]: pattern[i..] matches text[j..]; a table over
    // both lengths, so no pattern takes more steps than their product.
    let mut rows = vec![false; (pattern.len() + 1) * width];
    rows[pattern.len() * width + text.len()] = true;
    for i in (0..pattern.len()).rev() {
        for j in (0..=text.len()).rev() {
            rows[i * width + j] = if pattern[i] == b'*' {
                rows[(i + 1) * width + j] || (j < text.len() && rows[i * width + j + 1])
            } else {
                text.get(j) == Some(&pattern[i]) && rows[(i + 1) * width + j + 1]
            };
        }
    }
    rows[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_patterns() {
        assert!(image_matches("python:*", "python:3.12-slim"));
        assert!(image_matches("*", "anything/at:all"));
        assert!(image_matches("ghcr.io/acme/*", "ghcr.io/acme/tools/x:1"));
        assert!(image_matches("alpine:3.20", "alpine:3.20"));
        assert!(!image_matches("alpine:3.20", "alpine:3.21"));
        assert!(!image_matches("python:*", "evil/python:3"));
        assert!(!image_matches("python:*", "python"));
        assert!(image_matches("*/*:*", "a/b:c"));
        assert!(!image_matches("*/*:*", "ab:c"));
    }
}
