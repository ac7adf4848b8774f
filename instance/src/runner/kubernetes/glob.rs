//! The two pattern languages of task pods: image allow-list patterns (`*`
//! any run of characters) and output-file patterns (`*` and `?` within one
//! path segment, `**` across segments, as Kestra's `outputFiles` globs).

/// Whether `image` matches an allow-list pattern where `*` stands for any
/// run of characters (`python:*`, `registry.example/team/*`).
pub fn image_matches(pattern: &str, image: &str) -> bool {
    matches(pattern.as_bytes(), image.as_bytes(), true)
}

/// Whether the relative `path` matches an output-file glob: `*` and `?`
/// never cross a `/`, `**` does.
pub fn path_matches(pattern: &str, path: &str) -> bool {
    matches(pattern.as_bytes(), path.as_bytes(), false)
}

/// Glob matching by dynamic programming over (pattern, text) positions:
/// linear in their product, no backtracking to blow up on hostile patterns.
fn matches(pattern: &[u8], text: &[u8], star_crosses_slash: bool) -> bool {
    let (plen, tlen) = (pattern.len(), text.len());
    let width = tlen + 1;
    // rows[i * width + j]: pattern[i..] matches text[j..].
    let mut rows = vec![false; (plen + 1) * width];
    rows[plen * width + tlen] = true;
    for i in (0..plen).rev() {
        let double = pattern[i] == b'*' && pattern.get(i + 1) == Some(&b'*');
        // The second star of a `**` is handled with the first.
        let second = i > 0 && pattern[i] == b'*' && pattern[i - 1] == b'*';
        for j in (0..=tlen).rev() {
            let here = text.get(j).copied();
            let matched = if pattern[i] == b'*' && !second {
                let next = if double { i + 2 } else { i + 1 };
                let crosses = star_crosses_slash || double;
                let consume = here.is_some_and(|c| crosses || c != b'/');
                // `**/` also matches no folder at all.
                let no_folder =
                    double && pattern.get(next) == Some(&b'/') && rows[(next + 1) * width + j];
                rows[next * width + j] || no_folder || (consume && rows[i * width + j + 1])
            } else if second {
                false
            } else {
                let one = here.is_some_and(|c| {
                    c == pattern[i] || (pattern[i] == b'?' && (star_crosses_slash || c != b'/'))
                });
                one && rows[(i + 1) * width + j + 1]
            };
            rows[i * width + j] = matched;
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
    }

    #[test]
    fn path_patterns() {
        assert!(path_matches("*.txt", "out.txt"));
        assert!(!path_matches("*.txt", "dir/out.txt"));
        assert!(path_matches("**.txt", "dir/out.txt"));
        assert!(path_matches("**/*.txt", "dir/sub/out.txt"));
        assert!(path_matches("**/*.txt", "out.txt"));
        assert!(path_matches("out/**", "out/a/b"));
        assert!(!path_matches("out/**", "other/a"));
        assert!(path_matches("data-?.csv", "data-1.csv"));
        assert!(!path_matches("data-?.csv", "data-12.csv"));
        assert!(path_matches("result.json", "result.json"));
        assert!(!path_matches("result.json", "result.jsonx"));
    }
}
