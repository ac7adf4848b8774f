//! How nodesim runs: which program runs for which image, and the knobs
//! of [`NodeSimConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::postgres;
use super::process::Backoff;

/// The field manager of every write nodesim makes.
pub const FIELD_MANAGER: &str = "nodesim";

/// What runs for a container image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A local executable. The container's `command` (minus its first word,
    /// the in-image path) and `args` are its arguments; without `command`,
    /// `args` follows these default arguments.
    Binary {
        /// The executable.
        path: PathBuf,
        /// Arguments before the container's `args` when it sets no `command`.
        args: Vec<String>,
    },
    /// A real PostgreSQL server started like the official `postgres` image.
    Postgres {
        /// Directory of `initdb` and `postgres`.
        bindir: PathBuf,
    },
    /// Nothing runs; the container is reported running and ready at once.
    Instant,
    /// A script image (`python:*`, `alpine:*`, ...): the container's
    /// `command` and `args` run as written on this host, each word that
    /// names an interpreter of the image resolved to the local one (see
    /// [`ScriptImage`]).
    Script(ScriptImage),
}

/// What a script image offers: the interpreters a container's command may
/// name, and what runs without one.
///
/// The first word of `command` (or of [`ScriptImage::default_command`]
/// without one) is resolved by its last path segment: an interpreter of
/// the image (`python`, `/usr/local/bin/python3`, `/bin/sh`) runs the
/// local program; another absolute path runs as it is when it exists here;
/// a bare name is looked up in `PATH`. The interpreters are also linked,
/// under their names, into a directory that leads the container's default
/// `PATH`, so a shell script calling `python` finds it too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptImage {
    /// Names in the image and the local programs they stand for.
    pub interpreters: Vec<(String, PathBuf)>,
    /// The image's entrypoint and command, for containers without `command`.
    pub default_command: Vec<String>,
}

/// The local Python 3: `$ATOLL_NODESIM_PYTHON`, else the system one
/// (`/usr/local/bin/python3`, `/usr/bin/python3`), else the first
/// `python3` in `PATH`.
pub fn local_python() -> PathBuf {
    if let Some(p) = std::env::var_os("ATOLL_NODESIM_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    ["/usr/local/bin/python3", "/usr/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| find_in_path("python3", &std::env::var("PATH").unwrap_or_default()))
        .unwrap_or_else(|| PathBuf::from("python3"))
}

/// The first executable file `name` in the directories of `path`.
pub fn find_in_path(name: &str, path: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// The local shells: `sh` and, where it exists, `bash`.
pub(super) fn shells(with_bash: bool) -> Vec<(String, PathBuf)> {
    let mut shells = vec![("sh".to_owned(), PathBuf::from("/bin/sh"))];
    let bash = ["/bin/bash", "/usr/bin/bash"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file());
    if let (true, Some(bash)) = (with_bash, bash) {
        shells.push(("bash".to_owned(), bash));
    }
    shells
}

/// Maps images that start with `prefix` (after dropping the registry host
/// and `library/`) to a program; a prefix without `/` also matches the
/// image's last path segment (`atoll-instance` matches
/// `registry.example.com/acme/atoll-instance:0.1.0`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRule {
    /// Image prefix, e.g. `postgres:` or `atoll/atoll-instance`.
    pub prefix: String,
    /// What runs.
    pub program: Program,
}

/// How nodesim runs.
#[derive(Debug, Clone)]
pub struct NodeSimConfig {
    /// Where PVC directories, pod scratch space and logs go.
    pub state_dir: PathBuf,
    /// Image rules, first match wins.
    pub images: Vec<ImageRule>,
    /// For images no rule matches; `None` leaves such pods in `ErrImagePull`.
    pub default_program: Option<Program>,
    /// `spec.nodeName` of the pods.
    pub node_name: String,
    /// Where the ingress router listens (`None`: no router).
    pub ingress_listen: Option<SocketAddr>,
    /// Whether Services listen and proxy (off in instant mode, where nothing
    /// would answer).
    pub serve_services: bool,
    /// Probe periods and initial delays are shortened to at most this.
    pub max_probe_period: Duration,
    /// Restart backoff.
    pub backoff: Backoff,
    /// Full resync interval (retries of waiting pods, missed events).
    pub resync: Duration,
    /// The API server's URL as pods reach it (kubesim's HTTP listener).
    /// When set, every pod gets `KUBERNETES_SERVICE_HOST`/`_PORT`, and a
    /// pod that mounts its service-account token (as
    /// `automountServiceAccountToken` decides) gets one from the
    /// TokenRequest API, written as kubelet would under
    /// `/var/run/secrets/kubernetes.io/serviceaccount` (mount paths in env
    /// and args point there), plus `KUBECONFIG` naming a kubeconfig that
    /// uses it: a process on a shared host cannot read the fixed in-cluster
    /// path, and clients try `KUBECONFIG` first. The service account must
    /// exist (kubesim has no controller creating `default`). Go clients
    /// (kubectl) send credentials only over TLS, so against kubesim's plain
    /// HTTP they act without any; kube-rs and plain HTTP clients send them.
    pub api_server: Option<String>,
    /// The CA certificate of an `https` API server (a real one): written
    /// as the token mount's `ca.crt` and named in the pods' kubeconfig.
    pub api_server_ca: Option<PathBuf>,
    /// Kubelet mode: serve kubelet's HTTPS endpoint (container logs, what
    /// the API server proxies `pods/log` to) with this certificate, on a
    /// free loopback port registered in the Node's status. `None`: no
    /// endpoint, and `kubectl logs` cannot reach the node.
    pub kubelet_tls: Option<super::KubeletTls>,
}

impl NodeSimConfig {
    /// Defaults: no image rules, node `nodesim`, no ingress router, probes at
    /// most every 500 ms, backoff 0.5 s doubling to 10 s.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            images: Vec::new(),
            default_program: None,
            node_name: "nodesim".to_owned(),
            ingress_listen: None,
            serve_services: true,
            max_probe_period: Duration::from_millis(500),
            backoff: Backoff::default(),
            resync: Duration::from_secs(5),
            api_server: None,
            api_server_ca: None,
            kubelet_tls: None,
        }
    }

    /// Gives pods access to the API server at `url` with their service
    /// account's token (see [`NodeSimConfig::api_server`]).
    pub fn api_server(mut self, url: impl Into<String>) -> Self {
        self.api_server = Some(url.into());
        self
    }

    /// Gives pods the CA of an `https` API server (see
    /// [`NodeSimConfig::api_server_ca`]).
    pub fn api_server_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.api_server_ca = Some(ca.into());
        self
    }

    /// Serves kubelet's HTTPS endpoint in kubelet mode (see
    /// [`NodeSimConfig::kubelet_tls`]).
    pub fn kubelet_tls(mut self, tls: super::KubeletTls) -> Self {
        self.kubelet_tls = Some(tls);
        self
    }

    /// Adds an image rule.
    pub fn image(mut self, prefix: impl Into<String>, program: Program) -> Self {
        self.images.push(ImageRule {
            prefix: prefix.into(),
            program,
        });
        self
    }

    /// Adds an image rule running a local binary.
    pub fn binary(self, prefix: impl Into<String>, path: impl Into<PathBuf>) -> Self {
        self.image(
            prefix,
            Program::Binary {
                path: path.into(),
                args: Vec::new(),
            },
        )
    }

    /// Maps `postgres:*` and `postgres@*` to the PostgreSQL binaries of
    /// `$ATOLL_PG_BINDIR` (or the Debian default).
    pub fn postgres(self) -> Self {
        let bindir = postgres::bindir_from_env();
        self.image(
            "postgres:",
            Program::Postgres {
                bindir: bindir.clone(),
            },
        )
        .image("postgres@", Program::Postgres { bindir })
    }

    /// Maps the script images task pods use to local interpreters
    /// ([`Program::Script`]): `python:*` to the local Python 3 (as
    /// `python` and `python3`, see [`local_python`]) and `/bin/sh`;
    /// `bash:*`, `ubuntu:*` and `debian:*` to `/bin/sh` and bash;
    /// `alpine:*` and `busybox:*` to `/bin/sh`.
    pub fn script_images(self) -> Self {
        let python = local_python();
        let mut py = vec![
            ("python".to_owned(), python.clone()),
            ("python3".to_owned(), python),
        ];
        py.extend(shells(false));
        let script = |interpreters: Vec<(String, PathBuf)>, default: &[&str]| {
            Program::Script(ScriptImage {
                interpreters,
                default_command: default.iter().map(|s| (*s).to_owned()).collect(),
            })
        };
        self.image("python:", script(py, &["python3"]))
            .image("bash:", script(shells(true), &["bash"]))
            .image("ubuntu:", script(shells(true), &["/bin/bash"]))
            .image("debian:", script(shells(true), &["bash"]))
            .image("alpine:", script(shells(false), &["/bin/sh"]))
            .image("busybox:", script(shells(false), &["sh"]))
    }

    /// Instant mode for every image no rule matches, and no Service
    /// listeners: for scale benchmarks.
    pub fn instant(mut self) -> Self {
        self.default_program = Some(Program::Instant);
        self.serve_services = false;
        self
    }

    /// Runs the ingress router on `addr` (port 0 picks one).
    pub fn ingress(mut self, addr: SocketAddr) -> Self {
        self.ingress_listen = Some(addr);
        self
    }

    /// Where container logs go.
    pub fn logs_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
}

/// A binary of this workspace, next to the running executable (tests run
/// from `target/<profile>/deps`, binaries live in `target/<profile>`).
pub fn workspace_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let mut dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join(name)
}

#[cfg(test)]
mod tests {
    use super::super::kubelet;
    use super::*;

    #[test]
    fn images_match_by_prefix_after_normalisation() {
        let config = NodeSimConfig::new("/tmp/x")
            .postgres()
            .binary("atoll/atoll-instance", "/bin/true");
        assert!(matches!(
            kubelet::program_for(&config, "registry.example.com/library/postgres:16"),
            Some(Program::Postgres { .. })
        ));
        assert!(matches!(
            kubelet::program_for(
                &config,
                "registry.example.com:5000/atoll/atoll-instance:0.1.0"
            ),
            Some(Program::Binary { .. })
        ));
        assert!(matches!(
            kubelet::program_for(&config, "bitnami/postgres:16"),
            Some(Program::Postgres { .. })
        ));
        assert_eq!(kubelet::program_for(&config, "redis:7"), None);
        assert_eq!(
            kubelet::program_for(&config.instant(), "redis:7"),
            Some(&Program::Instant)
        );
    }

    #[test]
    fn script_images_map_to_local_interpreters() {
        let config = NodeSimConfig::new("/tmp/x").script_images();
        let script = |image: &str| match kubelet::program_for(&config, image) {
            Some(Program::Script(s)) => s.clone(),
            other => panic!("{image}: {other:?}"),
        };
        let python = script("python:3.13-slim");
        assert_eq!(python.default_command, ["python3"]);
        assert!(python.interpreters.iter().any(|(n, _)| n == "python"));
        for image in [
            "ubuntu",
            "bash:5",
            "alpine:3.20",
            "busybox",
            "docker.io/library/debian:12",
        ] {
            let s = script(image);
            assert!(
                s.interpreters
                    .iter()
                    .any(|(n, p)| n == "sh" && p.ends_with("sh")),
                "{image}"
            );
        }
        assert_eq!(kubelet::program_for(&config, "nosuch/image:1"), None);
        assert_eq!(kubelet::program_for(&config, "pythonic:1"), None);
    }
}
