//! The container images' build files: each product image ends in a
//! distroless stage with no shell and no package manager, runs as the
//! unprivileged user the chart's security context expects, and starts its
//! binary directly (exec form). Script tasks therefore cannot run inside
//! the instance's own container on a cluster: they run in task pods.

use std::path::Path;

/// The instructions of the last stage of a Dockerfile (after its last
/// `FROM`), upper-cased keyword first.
fn final_stage(text: &str) -> (String, Vec<(String, String)>) {
    let mut from = String::new();
    let mut stage = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
        let keyword = keyword.to_ascii_uppercase();
        if keyword == "FROM" {
            from = rest.trim().to_owned();
            stage.clear();
        } else {
            stage.push((keyword, rest.trim().to_owned()));
        }
    }
    (from, stage)
}

#[test]
fn product_images_have_no_shell() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (crate_dir, binary) in [
        ("instance", "atoll-instance"),
        ("operator", "atoll-operator"),
        ("identity", "atoll-identity"),
    ] {
        let path = root.join(crate_dir).join("Dockerfile");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (from, stage) = final_stage(&text);
        let base = from.split_whitespace().next().unwrap_or_default();
        assert!(
            base.contains("/distroless/") && !base.contains(":debug"),
            "{crate_dir}: the final stage must be a distroless image without a shell, not {from}"
        );
        for (keyword, rest) in &stage {
            assert!(
                !matches!(keyword.as_str(), "RUN" | "SHELL"),
                "{crate_dir}: the final stage runs `{keyword} {rest}`, which needs a shell"
            );
        }
        let user = stage.iter().rev().find(|(k, _)| k == "USER");
        assert_eq!(
            user.map(|(_, u)| u.as_str()),
            Some("65532:65532"),
            "{crate_dir}: the final stage must run as 65532 (nonroot)"
        );
        let entrypoint = stage
            .iter()
            .rev()
            .find(|(k, _)| k == "ENTRYPOINT")
            .map(|(_, e)| e.as_str())
            .unwrap_or_else(|| panic!("{crate_dir}: no ENTRYPOINT"));
        let argv: Vec<String> = serde_json::from_str(entrypoint).unwrap_or_else(|_| {
            panic!("{crate_dir}: ENTRYPOINT must be exec form, not {entrypoint}")
        });
        assert_eq!(
            argv,
            [format!("/usr/local/bin/{binary}")],
            "{crate_dir}: the entrypoint starts the binary itself"
        );
    }
}
