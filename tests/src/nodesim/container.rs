//! How one container of a pod is launched: its program for the image, its
//! environment, mounts, arguments and probes, all pointed at the pod's
//! loopback address and host directories.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use rustix::process::Signal;

use super::config::{ScriptImage, find_in_path, shells};
use super::env::{self, PodFields, resolve_env};
use super::kubelet::{ApiAccess, PodContext, SERVICE_ACCOUNT_MOUNT, log_path, program_for};
use super::pgsocket;
use super::postgres::{self, PostgresInit};
use super::probe::ProbeSpec;
use super::process::{LaunchSpec, Prepare, RestartPolicy};
use super::rewrite::Rewriter;
use super::{NodeSimConfig, Program};

/// Why a container cannot be created: (reason, message).
pub(super) type ContainerError = (String, String);

/// What the containers of one pod share.
#[derive(Clone, Copy)]
pub(super) struct PodSetup<'a> {
    pub(super) ip: Ipv4Addr,
    pub(super) fields: &'a PodFields,
    /// Host directories of the pod's volumes, by volume name.
    pub(super) volumes: &'a HashMap<String, PathBuf>,
    pub(super) api: Option<&'a ApiAccess>,
    /// The pod's scratch directory (removed with the pod).
    pub(super) dir: &'a Path,
}

/// The program-specific part of a launch.
struct Launch {
    program: PathBuf,
    args: Vec<String>,
    prepare: Prepare,
    run_as: Option<(u32, u32)>,
    /// Directories searched for the programs of `exec` probes.
    path_prefix: Vec<PathBuf>,
    stop_signal: Signal,
    /// Script images: the directory playing the image's root, where a
    /// `workingDir` that is no mount is created (and the working directory
    /// without one), so a script never runs in nodesim's own directory.
    root: Option<PathBuf>,
}

/// How a container launches, `None` for an instant one; an error leaves
/// the pod waiting.
pub(super) fn prepare_container(
    pod: &Pod,
    container: &Container,
    setup: PodSetup<'_>,
    config: &NodeSimConfig,
    ctx: &dyn PodContext,
) -> Result<Option<LaunchSpec>, ContainerError> {
    let image = container.image.clone().unwrap_or_default();
    let program = program_for(config, &image).ok_or_else(|| {
        (
            "ErrImagePull".to_owned(),
            format!(
                "failed to pull and unpack image \"{image}\": nodesim has no image rule for it"
            ),
        )
    })?;
    if matches!(program, Program::Instant) {
        return Ok(None);
    }
    let env = container_env(container, setup, ctx)?;
    let rewriter = Rewriter {
        pod_ip: setup.ip,
        services: ctx.services(),
        mounts: container_mounts(container, setup),
    };
    let env_list = env::EnvList(env.clone());
    // The kubeconfig nodesim gives pods with API access is a path on this
    // host already: never mapped again through the container's mounts (an
    // emptyDir at /tmp would otherwise capture it).
    let own_kubeconfig = setup
        .api
        .and_then(|api| api.token_dir.as_ref())
        .map(|dir| dir.join("kubeconfig").display().to_string());
    let mut env: Vec<(String, String)> = env
        .into_iter()
        .map(|(k, v)| {
            if k == "KUBECONFIG" && Some(&v) == own_kubeconfig.as_ref() {
                return (k, v);
            }
            let v = rewriter.rewrite(&v);
            (k, v)
        })
        .collect();
    let expand = |s: &String| rewriter.rewrite(&env::expand(s, &env_list));
    let command: Vec<String> = container.command.iter().flatten().map(expand).collect();
    let args: Vec<String> = container.args.iter().flatten().map(expand).collect();
    let launch = match program {
        Program::Instant => return Ok(None),
        Program::Binary {
            path,
            args: default_args,
        } => binary_launch(path, default_args, &command, args),
        Program::Script(image) => script_launch(image, &command, args, &mut env, setup)?,
        Program::Postgres { bindir } => match postgres_entry(&command, &args) {
            PostgresEntry::Program(words) => {
                // Another program of the image (`bash upgrade.sh`, a binary
                // an init container put into an emptyDir): the image's
                // tools first on `PATH`, as the image's user.
                let image = postgres_tools(bindir);
                let mut launch = script_launch(&image, &words, Vec::new(), &mut env, setup)?;
                launch.run_as = postgres::unprivileged_user();
                own_writable_mounts(container, setup, launch.run_as);
                launch
            }
            PostgresEntry::Server(extra) => {
                let run = PostgresRun {
                    bindir,
                    ip: setup.ip,
                    uid: &setup.fields.uid,
                    config,
                    rewriter: &rewriter,
                };
                run.launch(&mut env, extra)?
            }
        },
    };
    Ok(Some(launch_spec(
        pod, container, setup, config, &rewriter, env, launch,
    )))
}

/// As the pod's `fsGroup` makes a volume's root writable by the pod's
/// user on a real node: the roots of the container's writable mounts go
/// to the user it runs as (so a program of the PostgreSQL image can
/// create PGDATA in an empty data volume, as `atoll-backup restore`
/// does). Best effort: a failure shows as the program's own error.
fn own_writable_mounts(container: &Container, setup: PodSetup<'_>, user: Option<(u32, u32)>) {
    let Some((uid, gid)) = user else {
        return;
    };
    for mount in container.volume_mounts.iter().flatten() {
        if mount.read_only == Some(true) || mount.sub_path.as_deref().is_some_and(|p| !p.is_empty())
        {
            continue;
        }
        if let Some(dir) = setup.volumes.get(&mount.name) {
            let _ = std::fs::create_dir_all(dir);
            let _ = std::os::unix::fs::chown(dir, Some(uid), Some(gid));
        }
    }
}

/// The container's environment; with API access, the API server's address
/// comes first (as kubelet puts it) and the container's own variables win.
fn container_env(
    container: &Container,
    setup: PodSetup<'_>,
    ctx: &dyn PodContext,
) -> Result<Vec<(String, String)>, ContainerError> {
    let mut env = resolve_env(container, setup.fields, ctx)
        .map_err(|e| ("CreateContainerConfigError".to_owned(), e.to_string()))?;
    let Some(api) = setup.api else {
        return Ok(env);
    };
    let mut service = vec![
        ("KUBERNETES_SERVICE_HOST".to_owned(), api.host.clone()),
        ("KUBERNETES_SERVICE_PORT".to_owned(), api.port.clone()),
    ];
    if let Some(dir) = &api.token_dir {
        service.push((
            "KUBECONFIG".to_owned(),
            dir.join("kubeconfig").display().to_string(),
        ));
    }
    service.retain(|(name, _)| !env.iter().any(|(n, _)| n == name));
    service.append(&mut env);
    Ok(service)
}

/// Mount paths and the host directories behind them, longest path first
/// (so the rewriter maps the most specific mount).
fn container_mounts(container: &Container, setup: PodSetup<'_>) -> Vec<(String, PathBuf)> {
    let mut mounts: Vec<(String, PathBuf)> = container
        .volume_mounts
        .iter()
        .flatten()
        .filter_map(|m| {
            let dir = setup.volumes.get(&m.name)?;
            let dir = match m.sub_path.as_deref() {
                Some(sub) if !sub.is_empty() && !sub.split('/').any(|p| p == "..") => dir.join(sub),
                _ => dir.clone(),
            };
            let _ = std::fs::create_dir_all(&dir);
            Some((m.mount_path.clone(), dir))
        })
        .collect();
    if let Some(dir) = setup.api.and_then(|a| a.token_dir.as_ref()) {
        mounts.push((SERVICE_ACCOUNT_MOUNT.to_owned(), dir.clone()));
    }
    mounts.sort_by_key(|(path, _)| std::cmp::Reverse(path.len()));
    mounts
}

/// One of our binaries: the container's `command` (minus the in-image
/// path) or the default arguments, then `args`.
fn binary_launch(
    path: &Path,
    default_args: &[String],
    command: &[String],
    args: Vec<String>,
) -> Launch {
    let args = if command.is_empty() {
        default_args.iter().cloned().chain(args).collect()
    } else {
        command.iter().skip(1).cloned().chain(args).collect()
    };
    let dir = path.parent().map(Path::to_path_buf).into_iter().collect();
    Launch {
        program: path.to_path_buf(),
        args,
        prepare: Prepare::Nothing,
        run_as: None,
        path_prefix: dir,
        stop_signal: Signal::TERM,
        root: None,
    }
}

/// A script image's command, run here: its first word resolved to a local
/// program (see [`ScriptImage`]), the image's interpreters linked into
/// `<pod>/bin`, which leads the default `PATH`. The environment gets what
/// an image and kubelet add (`PATH`, `HOME` in the pod's scratch space,
/// `HOSTNAME`) unless the container sets them, nothing else.
fn script_launch(
    image: &ScriptImage,
    command: &[String],
    args: Vec<String>,
    env: &mut Vec<(String, String)>,
    setup: PodSetup<'_>,
) -> Result<Launch, ContainerError> {
    let bin = setup.dir.join("bin");
    let home = setup.dir.join("home");
    let failed = |e: std::io::Error| {
        (
            "CreateContainerError".to_owned(),
            format!("preparing {}: {e}", bin.display()),
        )
    };
    std::fs::create_dir_all(&home).map_err(failed)?;
    std::fs::create_dir_all(&bin).map_err(failed)?;
    for (name, program) in &image.interpreters {
        let link = bin.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(program, &link).map_err(failed)?;
        }
    }
    let mut defaults = vec![
        (
            "PATH".to_owned(),
            format!("{}:{DEFAULT_PATH}", bin.display()),
        ),
        ("HOME".to_owned(), home.display().to_string()),
        ("HOSTNAME".to_owned(), setup.fields.name.clone()),
    ];
    defaults.retain(|(name, _)| !env.iter().any(|(n, _)| n == name));
    let path = defaults
        .iter()
        .chain(env.iter())
        .rev()
        .find(|(n, _)| n == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    env.splice(0..0, defaults);
    let mut words: Vec<String> = if command.is_empty() {
        image.default_command.clone()
    } else {
        command.to_vec()
    };
    words.extend(args);
    let first = words.first().cloned().unwrap_or_default();
    let program = resolve_script_program(image, &first, &path);
    Ok(Launch {
        program,
        args: words.into_iter().skip(1).collect(),
        prepare: Prepare::Nothing,
        run_as: None,
        path_prefix: vec![bin],
        stop_signal: Signal::TERM,
        root: Some(setup.dir.join("root")),
    })
}

/// What a postgres-image container runs, decided as the image's
/// `docker-entrypoint.sh` decides.
#[derive(Debug, PartialEq, Eq)]
enum PostgresEntry {
    /// The server (initialised on first start), with these arguments after
    /// `postgres`.
    Server(Vec<String>),
    /// Another program: these words, the program first.
    Program(Vec<String>),
}

/// The image's entrypoint.
const ENTRYPOINT: &str = "docker-entrypoint.sh";

/// Without `command`, the image runs `docker-entrypoint.sh` with `args`
/// (or its default `postgres`); the entrypoint puts `postgres` before
/// arguments starting with `-` and starts the server when the first word
/// is `postgres`, else runs the words as a program. A `command` of its own
/// (`bash upgrade.sh`, `/atoll/bin/atoll-backup agent`) is a program
/// unless it starts with `postgres` or the entrypoint.
fn postgres_entry(command: &[String], args: &[String]) -> PostgresEntry {
    let base = |w: &str| w.rsplit('/').next().unwrap_or(w).to_owned();
    let mut words: Vec<String> = if command.is_empty() {
        let default = ["postgres".to_owned()];
        let cmd = if args.is_empty() { &default[..] } else { args };
        std::iter::once(ENTRYPOINT.to_owned())
            .chain(cmd.iter().cloned())
            .collect()
    } else {
        command.iter().chain(args).cloned().collect()
    };
    if words.first().is_some_and(|w| base(w) == ENTRYPOINT) {
        words.remove(0);
        if words.first().is_none_or(|w| w.starts_with('-')) {
            words.insert(0, "postgres".to_owned());
        }
    }
    match words.split_first() {
        Some((first, rest)) if base(first) == "postgres" => PostgresEntry::Server(rest.to_vec()),
        _ => PostgresEntry::Program(words),
    }
}

/// The PostgreSQL image as a script image: the shells and every program
/// of `bindir` (`pg_ctl`, `psql`, ...).
fn postgres_tools(bindir: &Path) -> ScriptImage {
    let mut interpreters = shells(true);
    let programs = std::fs::read_dir(bindir).into_iter().flatten().flatten();
    interpreters.extend(programs.map(|e| (e.file_name().to_string_lossy().into_owned(), e.path())));
    ScriptImage {
        interpreters,
        default_command: Vec::new(),
    }
}

/// The `PATH` of a script container that sets none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// The local program for the first word of a script container's command.
fn resolve_script_program(image: &ScriptImage, word: &str, path: &str) -> PathBuf {
    let base = word.rsplit('/').next().unwrap_or(word);
    if let Some((_, local)) = image.interpreters.iter().find(|(n, _)| n == base) {
        return local.clone();
    }
    if word.contains('/') {
        return PathBuf::from(word);
    }
    find_in_path(word, path).unwrap_or_else(|| PathBuf::from(word))
}

/// A real PostgreSQL started as the official image starts it.
struct PostgresRun<'a> {
    bindir: &'a Path,
    ip: Ipv4Addr,
    uid: &'a str,
    config: &'a NodeSimConfig,
    rewriter: &'a Rewriter<'a>,
}

impl PostgresRun<'_> {
    /// The server with `extra` arguments after nodesim's; adds
    /// `PGHOST`/`PGPORT` and `PATH` (the server's tools first, so an
    /// `archive_command` finds them) to `env` unless set. Its socket goes
    /// into the volume mounted at `/var/run/postgresql`, if any (see
    /// `pgsocket`).
    fn launch(
        &self,
        env: &mut Vec<(String, String)>,
        extra: Vec<String>,
    ) -> Result<Launch, ContainerError> {
        let get = |k: &str| {
            env.iter()
                .rev()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        let mut pgdata = PathBuf::from(
            get("PGDATA").unwrap_or_else(|| self.rewriter.rewrite("/var/lib/postgresql/data")),
        );
        if pgdata.starts_with("/var/lib/postgresql") {
            // No volume behind it: data lives and dies with the pod.
            pgdata = self
                .config
                .state_dir
                .join("pods")
                .join(self.uid)
                .join("pgdata");
        }
        let port: u16 = get("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432);
        let socket_dir = self.socket_dir(port)?;
        let run_as = postgres::unprivileged_user();
        // The image's init scripts: wherever a volume is mounted at
        // /docker-entrypoint-initdb.d.
        let scripts = self.rewriter.rewrite(postgres::INITDB_DIR);
        let scripts = (scripts != postgres::INITDB_DIR).then(|| PathBuf::from(scripts));
        let init = PostgresInit::from_env(self.bindir.to_path_buf(), pgdata, env, run_as)
            .with_init_scripts(scripts, env.clone(), port)
            .with_socket_dir(socket_dir);
        let args = init.server_args(self.ip, port, &extra);
        let path = format!("{}:{DEFAULT_PATH}", self.bindir.display());
        for (k, v) in [
            ("PGHOST", self.ip.to_string()),
            ("PGPORT", port.to_string()),
            ("PATH", path),
        ] {
            if !env.iter().any(|(n, _)| n == k) {
                env.push((k.to_owned(), v));
            }
        }
        Ok(Launch {
            program: self.bindir.join("postgres"),
            args,
            prepare: Prepare::Postgres(Box::new(init)),
            run_as,
            path_prefix: vec![self.bindir.to_path_buf()],
            // The official image stops with SIGINT: a fast shutdown that
            // does not wait for clients to disconnect.
            stop_signal: Signal::INT,
            root: None,
        })
    }

    /// The host directory of the volume mounted at `/var/run/postgresql`,
    /// if any; an error when a socket there would exceed the kernel's limit.
    fn socket_dir(&self, port: u16) -> Result<Option<PathBuf>, ContainerError> {
        let Some((_, dir)) = self
            .rewriter
            .mounts
            .iter()
            .find(|(mount, _)| mount.trim_end_matches('/') == pgsocket::SOCKET_MOUNT)
        else {
            return Ok(None);
        };
        pgsocket::check_socket_dir(dir, port)
            .map_err(|message| ("CreateContainerError".to_owned(), message))?;
        Ok(Some(dir.clone()))
    }
}

/// The process's working directory: `workingDir` where it is (or is in) a
/// mount; for a script image, created under the pod's image root
/// otherwise (as kubelet creates a missing one); `/` for a program run as
/// another user.
fn working_dir(dir: Option<&str>, rewriter: &Rewriter<'_>, launch: &Launch) -> Option<PathBuf> {
    let mapped = dir.map(|w| PathBuf::from(rewriter.rewrite(w)));
    if let Some(mapped) = mapped.as_ref().filter(|w| w.is_dir()) {
        return Some(mapped.clone());
    }
    if let Some(root) = &launch.root {
        let inside = dir.unwrap_or("/").trim_start_matches('/');
        let path = if inside.split('/').any(|p| p == "..") {
            root.clone()
        } else {
            root.join(inside)
        };
        return std::fs::create_dir_all(&path).ok().map(|()| path);
    }
    launch.run_as.map(|_| PathBuf::from("/"))
}

/// The whole launch: the program's part plus what every container has
/// (working directory, log file, grace period, probes, restart policy).
fn launch_spec(
    pod: &Pod,
    container: &Container,
    setup: PodSetup<'_>,
    config: &NodeSimConfig,
    rewriter: &Rewriter<'_>,
    env: Vec<(String, String)>,
    launch: Launch,
) -> LaunchSpec {
    let spec = pod.spec.as_ref();
    let grace = Duration::from_secs(
        spec.and_then(|s| s.termination_grace_period_seconds)
            .unwrap_or(30)
            .max(0) as u64,
    );
    let restart = RestartPolicy::parse(spec.and_then(|s| s.restart_policy.as_deref()));
    let ports = container.ports.clone().unwrap_or_default();
    let probe = |p: &Option<Probe>| {
        p.as_ref().map(|p| {
            let period = config.max_probe_period;
            ProbeSpec::from_probe(p, setup.ip, &ports, &env, &launch.path_prefix, period)
        })
    };
    let readiness = probe(&container.readiness_probe);
    let liveness = probe(&container.liveness_probe);
    let fields = setup.fields;
    let workdir = working_dir(container.working_dir.as_deref(), rewriter, &launch);
    LaunchSpec {
        name: container.name.clone(),
        program: launch.program,
        args: launch.args,
        workdir,
        env,
        run_as: launch.run_as,
        log_path: log_path(
            &config.logs_dir(),
            &fields.namespace,
            &fields.name,
            &fields.uid,
            &container.name,
        ),
        stop_signal: launch.stop_signal,
        grace,
        readiness,
        liveness,
        restart,
        backoff: config.backoff,
        prepare: launch.prepare,
        logs_on_error: container.termination_message_policy.as_deref()
            == Some("FallbackToLogsOnError"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_script_command_runs_the_local_interpreter() {
        let image = ScriptImage {
            interpreters: vec![
                ("python".to_owned(), PathBuf::from("/opt/py/bin/python3")),
                ("sh".to_owned(), PathBuf::from("/bin/sh")),
            ],
            default_command: vec!["python".to_owned()],
        };
        let path = "/usr/local/bin:/usr/bin:/bin";
        let resolve = |word: &str| resolve_script_program(&image, word, path);
        assert_eq!(resolve("python"), PathBuf::from("/opt/py/bin/python3"));
        assert_eq!(
            resolve("/usr/local/bin/python"),
            PathBuf::from("/opt/py/bin/python3")
        );
        assert_eq!(resolve("/bin/sh"), PathBuf::from("/bin/sh"));
        assert!(resolve("cat").ends_with("cat"));
        assert!(resolve("cat").is_absolute());
        assert_eq!(resolve("no-such-program"), PathBuf::from("no-such-program"));
    }

    #[test]
    fn the_postgres_image_starts_the_server_only_as_its_entrypoint_would() {
        let words = |w: &[&str]| w.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let entry = |command: &[&str], args: &[&str]| postgres_entry(&words(command), &words(args));
        let server = |w: &[&str]| PostgresEntry::Server(words(w));
        let program = |w: &[&str]| PostgresEntry::Program(words(w));
        assert_eq!(entry(&[], &[]), server(&[]));
        assert_eq!(entry(&[], &["-c", "a=b"]), server(&["-c", "a=b"]));
        assert_eq!(
            entry(&[], &["postgres", "-c", "a=b"]),
            server(&["-c", "a=b"])
        );
        assert_eq!(entry(&[], &["pg_isready"]), program(&["pg_isready"]));
        assert_eq!(entry(&["postgres"], &["-c", "a=b"]), server(&["-c", "a=b"]));
        assert_eq!(
            entry(&["/usr/local/bin/docker-entrypoint.sh"], &["postgres"]),
            server(&[])
        );
        assert_eq!(
            entry(&["docker-entrypoint.sh", "-p", "5433"], &[]),
            server(&["-p", "5433"])
        );
        assert_eq!(
            entry(&["docker-entrypoint.sh", "bash"], &[]),
            program(&["bash"])
        );
        assert_eq!(
            entry(&["bash", "/x/upgrade.sh"], &[]),
            program(&["bash", "/x/upgrade.sh"])
        );
        assert_eq!(
            entry(&["/atoll/bin/atoll-backup", "agent"], &["--port", "9187"]),
            program(&["/atoll/bin/atoll-backup", "agent", "--port", "9187"])
        );
    }
}
