//! Makes a container's env values and args work on one shared host.
//!
//! Three rewrites, applied to every env value and arg (pure string work):
//!
//! - **Listen addresses.** Each pod gets its own loopback address (its pod IP,
//!   `127.a.b.c`), so two pods can both listen on their declared
//!   `containerPort` without colliding. `0.0.0.0` and `[::]` become the pod IP,
//!   and a value that is only `:PORT` becomes `POD_IP:PORT`.
//! - **In-cluster DNS names.** `svc.ns`, `svc.ns.svc` and
//!   `svc.ns.svc.cluster.local` (with or without a trailing dot or `:port`)
//!   become the Service's loopback address; ports stay as written because each
//!   Service listens on its own declared ports at its own address. A
//!   StatefulSet pod's own name, `pod.svc.ns.svc[.cluster.local]`, becomes
//!   its pod IP.
//! - **Mount paths.** A volume's `mountPath`, wherever it stands as a path
//!   (at the start, after whitespace, `=`, `:`, `,`, a quote or a URL's
//!   `://`), points into
//!   the host directory that backs the volume.

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Finds the loopback address of a Service.
pub trait ServiceResolver {
    /// The address of Service `name` in `namespace`. `explicit` is true when
    /// the name carried the `.svc` suffix, i.e. it certainly means a Service,
    /// even one that does not exist yet.
    fn resolve(&self, namespace: &str, name: &str, explicit: bool) -> Option<Ipv4Addr>;

    /// The pod IP behind `pod.service.namespace.svc` (a StatefulSet pod's
    /// own name), if that pod runs.
    fn resolve_pod(&self, _namespace: &str, _service: &str, _pod: &str) -> Option<Ipv4Addr> {
        None
    }
}

/// Rewrites the strings of one container.
pub struct Rewriter<'a> {
    /// The pod's loopback address.
    pub pod_ip: Ipv4Addr,
    /// Service addresses.
    pub services: &'a dyn ServiceResolver,
    /// `(mountPath, host directory)` pairs, longest mount path first.
    pub mounts: Vec<(String, PathBuf)>,
}

impl std::fmt::Debug for Rewriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rewriter")
            .field("pod_ip", &self.pod_ip)
            .field("mounts", &self.mounts)
            .finish_non_exhaustive()
    }
}

impl Rewriter<'_> {
    /// Applies all three rewrites to `value`.
    pub fn rewrite(&self, value: &str) -> String {
        let value = self.rewrite_mounts(value);
        let value = self.rewrite_listen(&value);
        self.rewrite_hosts(&value)
    }

    fn rewrite_mounts(&self, value: &str) -> String {
        replace_paths(value, &self.mounts)
    }

    fn rewrite_listen(&self, value: &str) -> String {
        let ip = self.pod_ip.to_string();
        if let Some(port) = value.strip_prefix(':')
            && !port.is_empty()
            && port.bytes().all(|b| b.is_ascii_digit())
        {
            return format!("{ip}:{port}");
        }
        replace_whole_address(value, "0.0.0.0", &ip).replace("[::]", &ip)
    }

    /// Rewrites only in-cluster Service names.
    pub fn rewrite_hosts(&self, value: &str) -> String {
        let mut out = String::with_capacity(value.len());
        let mut run_start = None;
        for (i, ch) in value
            .char_indices()
            .chain(std::iter::once((value.len(), ' ')))
        {
            let in_name = ch.is_ascii_alphanumeric() || ch == '-' || ch == '.';
            match (in_name && i < value.len(), run_start) {
                (true, None) => run_start = Some(i),
                (true, Some(_)) => {}
                (false, Some(start)) => {
                    let run = &value[start..i];
                    match self.service_host(run) {
                        Some(replacement) => out.push_str(&replacement),
                        None => out.push_str(run),
                    }
                    run_start = None;
                    if i < value.len() {
                        out.push(ch);
                    }
                }
                (false, None) => {
                    if i < value.len() {
                        out.push(ch);
                    }
                }
            }
        }
        out
    }

    /// The replacement for a host name run, if it names a Service.
    fn service_host(&self, run: &str) -> Option<String> {
        let name = run.strip_suffix('.').unwrap_or(run);
        let lower = name.to_ascii_lowercase();
        let parts: Vec<&str> = lower.split('.').collect();
        let (svc, ns, explicit) = match parts.as_slice() {
            [svc, ns] => (*svc, *ns, false),
            [svc, ns, "svc"] | [svc, ns, "svc", "cluster", "local"] => (*svc, *ns, true),
            [pod, svc, ns, "svc"] | [pod, svc, ns, "svc", "cluster", "local"] => {
                if ![pod, svc, ns].iter().all(|l| is_dns_label(l)) {
                    return None;
                }
                return self
                    .services
                    .resolve_pod(ns, svc, pod)
                    .map(|ip| ip.to_string());
            }
            _ => return None,
        };
        if !is_dns_label(svc) || !is_dns_label(ns) {
            return None;
        }
        self.services
            .resolve(ns, svc, explicit)
            .map(|ip| ip.to_string())
    }
}

/// Replaces each mount path where it stands as a whole path (or the start
/// of one): after the start, whitespace, `=`, `:`, `,`, a quote or a URL's
/// `://`, and before the end, `/` or a character that cannot continue a
/// path component. One pass over `value`, the longest mount first at each
/// position, so a replacement is never rewritten again by a shorter mount
/// (`/tmp` must not touch a host directory under `/tmp`).
fn replace_paths(value: &str, mounts: &[(String, PathBuf)]) -> String {
    let starts_path = |c: char| c.is_whitespace() || matches!(c, '=' | ':' | ',' | '\'' | '"');
    let continues_name = |c: char| c.is_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut mounts: Vec<(&str, String)> = mounts
        .iter()
        .map(|(mount, host)| {
            (
                mount.trim_end_matches('/'),
                host.to_string_lossy().into_owned(),
            )
        })
        .filter(|(mount, _)| !mount.is_empty())
        .collect();
    mounts.sort_by_key(|(mount, _)| std::cmp::Reverse(mount.len()));
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    'scan: while let Some(ch) = value[i..].chars().next() {
        let before = &value[..i];
        let at_path_start =
            before.ends_with("://") || before.chars().next_back().is_none_or(starts_path);
        if at_path_start {
            for (mount, host) in &mounts {
                let after = value[i..]
                    .strip_prefix(mount)
                    .map(|rest| rest.chars().next());
                if let Some(after) = after
                    && after.is_none_or(|c| !continues_name(c))
                {
                    out.push_str(host);
                    i += mount.len();
                    continue 'scan;
                }
            }
        }
        out.push(ch);
        i += ch.len_utf8();
    }
    out
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Replaces `address` where it stands as a whole listen address: not inside
/// a longer one such as `10.0.0.0/8` (which holds `0.0.0.0`), nor as a
/// CIDR range (`0.0.0.0/0`).
fn replace_whole_address(value: &str, address: &str, with: &str) -> String {
    let is_part = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || c == '.');
    let mut out = String::with_capacity(value.len());
    let mut copied = 0;
    for (at, _) in value.match_indices(address) {
        let end = at + address.len();
        let before = value[..at].chars().next_back();
        let after = value[end..].chars().next();
        // A digit, dot or prefix length next to it: part of a range.
        if at >= copied && !is_part(before) && !is_part(after) && after != Some('/') {
            out.push_str(&value[copied..at]);
            out.push_str(with);
            copied = end;
        }
    }
    out.push_str(&value[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Table;
    impl ServiceResolver for Table {
        fn resolve(&self, namespace: &str, name: &str, explicit: bool) -> Option<Ipv4Addr> {
            match (namespace, name) {
                ("atoll-acme", "db") => Some(Ipv4Addr::new(127, 200, 0, 7)),
                ("atoll-acme", "later") if explicit => Some(Ipv4Addr::new(127, 200, 0, 8)),
                _ => None,
            }
        }

        fn resolve_pod(&self, namespace: &str, service: &str, pod: &str) -> Option<Ipv4Addr> {
            ((namespace, service, pod) == ("atoll-acme", "db", "db-0"))
                .then_some(Ipv4Addr::new(127, 64, 0, 5))
        }
    }

    fn rewriter() -> Rewriter<'static> {
        Rewriter {
            pod_ip: Ipv4Addr::new(127, 100, 0, 3),
            services: &Table,
            mounts: vec![(
                "/var/lib/postgresql/data".to_owned(),
                PathBuf::from("/tmp/sim/pvc/atoll-acme/data-db-0"),
            )],
        }
    }

    #[test]
    fn service_names_in_every_form_become_the_service_address() {
        let r = rewriter();
        for (input, expected) in [
            ("db.atoll-acme", "127.200.0.7"),
            ("db.atoll-acme:5432", "127.200.0.7:5432"),
            ("db.atoll-acme.svc", "127.200.0.7"),
            (
                "postgres://u:p.w@db.atoll-acme.svc.cluster.local:5432/acme",
                "postgres://u:p.w@127.200.0.7:5432/acme",
            ),
            (
                "http://db.atoll-acme.svc.cluster.local./x",
                "http://127.200.0.7/x",
            ),
            ("--host=db.atoll-acme.svc", "--host=127.200.0.7"),
            ("later.atoll-acme.svc:80", "127.200.0.8:80"),
            ("later.atoll-acme:80", "later.atoll-acme:80"),
            ("example.com", "example.com"),
            (
                "db-0.db.atoll-acme.svc.cluster.local:5432",
                "127.64.0.5:5432",
            ),
            ("db-1.db.atoll-acme.svc:5432", "db-1.db.atoll-acme.svc:5432"),
            ("db.other.svc", "db.other.svc"),
        ] {
            assert_eq!(r.rewrite(input), expected, "{input}");
        }
    }

    #[test]
    fn listen_addresses_become_the_pod_address() {
        let r = rewriter();
        assert_eq!(r.rewrite("0.0.0.0:8080"), "127.100.0.3:8080");
        assert_eq!(
            r.rewrite("10.0.0.0/8,172.16.0.0/12,0.0.0.0/0"),
            "10.0.0.0/8,172.16.0.0/12,0.0.0.0/0"
        );
        assert_eq!(r.rewrite("[::]:8080"), "127.100.0.3:8080");
        assert_eq!(r.rewrite(":8080"), "127.100.0.3:8080");
        assert_eq!(r.rewrite("--listen=0.0.0.0:80"), "--listen=127.100.0.3:80");
        assert_eq!(r.rewrite("127.0.0.1:9000"), "127.0.0.1:9000");
    }

    #[test]
    fn mount_paths_point_into_the_backing_directory() {
        let r = rewriter();
        assert_eq!(
            r.rewrite("/var/lib/postgresql/data/pgdata"),
            "/tmp/sim/pvc/atoll-acme/data-db-0/pgdata"
        );
        assert_eq!(
            r.rewrite("--dir=/var/lib/postgresql/data"),
            "--dir=/tmp/sim/pvc/atoll-acme/data-db-0"
        );
        assert_eq!(
            r.rewrite("/var/lib/postgresql/database"),
            "/var/lib/postgresql/database"
        );
        assert_eq!(
            r.rewrite("echo x > /var/lib/postgresql/data/f; cat '/var/lib/postgresql/data'"),
            "echo x > /tmp/sim/pvc/atoll-acme/data-db-0/f; cat '/tmp/sim/pvc/atoll-acme/data-db-0'"
        );
        assert_eq!(
            r.rewrite("/x/var/lib/postgresql/data"),
            "/x/var/lib/postgresql/data"
        );
        let nested = Rewriter {
            mounts: vec![
                ("/var/run/secrets/x".to_owned(), PathBuf::from("/tmp/pod/x")),
                ("/tmp".to_owned(), PathBuf::from("/tmp/pod/tmp")),
            ],
            ..rewriter()
        };
        assert_eq!(
            nested.rewrite("/var/run/secrets/x/token /tmp/a"),
            "/tmp/pod/x/token /tmp/pod/tmp/a",
            "a replacement is not rewritten again"
        );
        assert_eq!(
            r.rewrite("sqlite:///var/lib/postgresql/data/x.db?mode=rwc"),
            "sqlite:///tmp/sim/pvc/atoll-acme/data-db-0/x.db?mode=rwc"
        );
    }

    #[test]
    fn paths_inside_an_archive_command_setting_point_into_their_volumes() {
        let r = Rewriter {
            mounts: vec![
                (
                    "/etc/atoll-backup".to_owned(),
                    PathBuf::from("/s/pod/volumes/backup-config"),
                ),
                (
                    "/atoll/bin".to_owned(),
                    PathBuf::from("/s/pod/volumes/atoll-bin"),
                ),
            ],
            ..rewriter()
        };
        assert_eq!(
            r.rewrite(
                "archive_command=/atoll/bin/atoll-backup wal-push --config /etc/atoll-backup %p"
            ),
            "archive_command=/s/pod/volumes/atoll-bin/atoll-backup wal-push --config /s/pod/volumes/backup-config %p"
        );
        assert_eq!(
            r.rewrite("restore_command='/atoll/bin/atoll-backup wal-fetch --config=/etc/atoll-backup %f %p'"),
            "restore_command='/s/pod/volumes/atoll-bin/atoll-backup wal-fetch --config=/s/pod/volumes/backup-config %f %p'"
        );
        assert_eq!(r.rewrite("/atoll/binary"), "/atoll/binary");
    }
}
