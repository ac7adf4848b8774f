//! The Helm chart as the tests install it: `helm template` of
//! `charts/atoll`, split into objects. helm is the one `ATOLL_HELM` names
//! (`scripts/test` installs it and sets it), else the first on `PATH`.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// The release name the tests render the chart with.
pub const RELEASE_NAME: &str = "atoll";
/// The namespace the tests install the chart into.
pub const RELEASE_NAMESPACE: &str = "atoll-system";

/// Why the chart could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum ChartError {
    /// No helm to run.
    #[error("helm not found: set ATOLL_HELM to its path (scripts/test installs helm and sets it)")]
    HelmMissing,
    /// helm could not be started.
    #[error("running {helm}: {source}")]
    Run {
        /// The helm binary.
        helm: PathBuf,
        /// Why it did not start.
        source: std::io::Error,
    },
    /// helm ran and failed.
    #[error("helm {args} failed:\n{output}")]
    Failed {
        /// The arguments, space separated.
        args: String,
        /// What helm wrote to stdout and stderr (lint reports on stdout).
        output: String,
    },
}

/// The workspace's root folder.
pub fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the testkit lives in a folder of the workspace")
}

/// The chart's folder.
pub fn chart_dir() -> PathBuf {
    workspace_root().join("charts/atoll")
}

/// A tool the tests run: the path in `env` when set, else the first `name`
/// on `PATH`.
pub fn tool(env: &str, name: &str) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// helm: `ATOLL_HELM`, else the first `helm` on `PATH`.
pub fn helm() -> Result<PathBuf, ChartError> {
    tool("ATOLL_HELM", "helm").ok_or(ChartError::HelmMissing)
}

/// What `helm <args>` printed to stdout, or why it failed.
pub fn run_helm<S: AsRef<OsStr>>(args: &[S]) -> Result<String, ChartError> {
    let helm = helm()?;
    let output = std::process::Command::new(&helm)
        .args(args)
        .output()
        .map_err(|source| ChartError::Run {
            helm: helm.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(ChartError::Failed {
            args: args
                .iter()
                .map(|a| a.as_ref().to_string_lossy())
                .collect::<Vec<_>>()
                .join(" "),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// What the tests set on every render: the simulated cluster has no TLS,
/// so identity's issuer is its plain-http Service URL, which the chart
/// refuses unless told that this is a development install.
pub const TEST_VALUES: [&str; 2] = ["--set", "identity.allowInsecureIssuer=true"];

/// `helm template atoll charts/atoll --namespace atoll-system
/// --set identity.allowInsecureIssuer=true <extra>` (`extra` may override
/// it).
pub fn template<S: AsRef<OsStr>>(extra: &[S]) -> Result<String, ChartError> {
    let chart = chart_dir();
    let mut args: Vec<&OsStr> = vec![
        OsStr::new("template"),
        OsStr::new(RELEASE_NAME),
        chart.as_os_str(),
        OsStr::new("--namespace"),
        OsStr::new(RELEASE_NAMESPACE),
    ];
    args.extend(TEST_VALUES.iter().map(OsStr::new));
    args.extend(extra.iter().map(AsRef::as_ref));
    run_helm(&args)
}

/// The objects of a rendered manifest (comments and empty documents left
/// out).
pub fn documents(rendered: &str) -> Vec<Value> {
    rendered
        .split("\n---")
        .filter_map(|doc| serde_norway::from_str::<Value>(doc).ok())
        .filter(Value::is_object)
        .collect()
}

/// A rendered manifest reordered for `kubectl apply`: CustomResourceDefinitions
/// first, since nothing may use a kind before its definition exists.
pub fn crds_first(rendered: &str) -> String {
    let (crds, rest): (Vec<&str>, Vec<&str>) = rendered
        .split("\n---")
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .partition(|d| d.contains("\nkind: CustomResourceDefinition"));
    crds.into_iter()
        .chain(rest)
        .map(|d| {
            format!(
                "---\n{}\n",
                d.trim_start_matches("---").trim_start_matches('\n')
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crds_come_first_and_documents_parse() {
        let rendered = "---\n# Source: a\napiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: a\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: b\n---\n# empty\n";
        let ordered = crds_first(rendered);
        assert!(ordered.find("CustomResourceDefinition") < ordered.find("ServiceAccount"));
        let docs = documents(&ordered);
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0]["metadata"]["name"], "b");
    }
}
