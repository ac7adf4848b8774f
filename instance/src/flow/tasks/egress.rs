//! Where tasks may connect: defence in depth against a flow reaching the
//! cloud metadata service, the cluster's private network or the instance's
//! own loopback (server-side request forgery).
//!
//! Unless `ATOLL_HTTP_ALLOW_PRIVATE=true`, the HTTP client of tasks refuses
//! private, loopback, link-local, CGNAT, unspecified, multicast and
//! reserved addresses, IPv4 and IPv6, including the IPv6 forms that carry
//! an IPv4 address (mapped, compatible, NAT64, 6to4). The check is made
//! where it cannot be bypassed:
//!
//! - inside the DNS resolver, so the connection goes to the very addresses
//!   checked (no second lookup a rebinding DNS server could answer
//!   differently);
//! - on the URL itself when its host is an IP literal (the resolver is not
//!   asked then);
//! - on every redirect hop (a public server redirecting to a private one).
//!
//! System proxies are not used by this client: through a proxy the target
//! would be resolved and reached by the proxy, unchecked.

use std::error::Error as StdError;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use atoll_crds::contract;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Redirects followed at most (reqwest's default).
const MAX_REDIRECTS: usize = 10;

/// A task tried to reach an address it may not.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{host} is a private address, not allowed for tasks (set {allow}=true on the instance to allow private addresses)",
    allow = contract::HTTP_ALLOW_PRIVATE
)]
pub(crate) struct Blocked {
    /// The host as the URL names it (never the resolved address).
    pub host: String,
}

/// True for every address a task may not reach by default.
pub(crate) fn is_blocked(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_blocked(v4),
        IpAddr::V6(v6) => v6_blocked(v6),
    }
}

fn v4_blocked(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    ip.is_private() // 10/8, 172.16/12, 192.168/16
        || ip.is_loopback() // 127/8
        || ip.is_link_local() // 169.254/16, the metadata service
        || a == 0 // 0.0.0.0/8
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10, CGNAT
        || ip.is_multicast() // 224/4
        || a >= 240 // 240/4 reserved, 255.255.255.255 broadcast
}

fn v6_blocked(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| {
        let [a, b] = hi.to_be_bytes();
        let [c, d] = lo.to_be_bytes();
        Ipv4Addr::new(a, b, c, d)
    };
    if let Some(v4) = ip.to_ipv4_mapped() {
        // ::ffff:0:0/96
        return v4_blocked(v4);
    }
    if s[..6] == [0; 6] {
        // ::/128, ::1/128 and the IPv4-compatible ::a.b.c.d
        return ip.is_unspecified() || ip.is_loopback() || v4_blocked(embedded(s[6], s[7]));
    }
    if s[0] == 0x64 && s[1] == 0xff9b {
        // 64:ff9b::/96 (NAT64 of an IPv4 address); 64:ff9b:1::/48 is local use.
        return s[2..6] != [0; 4] || v4_blocked(embedded(s[6], s[7]));
    }
    if s[0] == 0x2002 {
        // 2002::/16, 6to4 of an IPv4 address
        return v4_blocked(embedded(s[1], s[2]));
    }
    (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local, includes fd00:ec2::254
        || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link-local
        || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site-local (deprecated)
        || (s[0] & 0xff00) == 0xff00 // ff00::/8 multicast
}

/// The URL's host when it is an IP literal that may not be reached.
pub(crate) fn blocked_literal(url: &reqwest::Url) -> Option<Blocked> {
    // The URL parser has already normalised every IPv4 spelling (decimal,
    // hex, octal, short forms) to dotted decimal; IPv6 comes in brackets.
    let host = url.host_str()?;
    let ip: IpAddr = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
        .parse()
        .ok()?;
    is_blocked(ip).then(|| Blocked {
        host: host.to_owned(),
    })
}

/// Resolves names and keeps only the addresses tasks may reach.
#[derive(Debug, Clone, Copy)]
struct PublicOnly;

impl Resolve for PublicOnly {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = public_addresses(&resolved);
            if allowed.is_empty() && !resolved.is_empty() {
                return Err(Box::new(Blocked { host }) as Box<dyn StdError + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

fn public_addresses(resolved: &[SocketAddr]) -> Vec<SocketAddr> {
    resolved
        .iter()
        .copied()
        .filter(|a| !is_blocked(a.ip()))
        .collect()
}

fn redirect_policy() -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(|attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
        }
        match blocked_literal(attempt.url()) {
            Some(blocked) => attempt.error(blocked),
            None => attempt.follow(),
        }
    })
}

/// The HTTP client of tasks, with the address policy.
#[derive(Debug, Clone)]
pub(crate) struct TaskHttp {
    /// `None` when the client could not be built (reported on use).
    client: Option<reqwest::Client>,
    allow_private: bool,
}

impl TaskHttp {
    pub fn new(allow_private: bool) -> TaskHttp {
        let mut builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        if !allow_private {
            builder = builder
                .dns_resolver(Arc::new(PublicOnly))
                .redirect(redirect_policy())
                .no_proxy();
        }
        let client = match builder.build() {
            Ok(client) => Some(client),
            Err(err) => {
                tracing::error!(error = %err, "cannot build the HTTP client of tasks; HTTP tasks will fail");
                None
            }
        };
        TaskHttp {
            client,
            allow_private,
        }
    }

    /// The client for a request to `url`, or why the request may not be made.
    pub fn client_for(&self, url: &reqwest::Url) -> Result<&reqwest::Client, String> {
        if !self.allow_private
            && let Some(blocked) = blocked_literal(url)
        {
            return Err(blocked.to_string());
        }
        self.client
            .as_ref()
            .ok_or_else(|| "the HTTP client is not available (see the instance's log)".to_owned())
    }
}

/// The address refusal behind a failed request, if that is why it failed.
pub(crate) fn blocked_cause(err: &(dyn StdError + 'static)) -> Option<String> {
    let mut current = Some(err);
    let mut found = None;
    while let Some(error) = current {
        if let Some(blocked) = error.downcast_ref::<Blocked>() {
            return Some(blocked.to_string());
        }
        // A boxed error may hide its type behind the box: recognise the
        // message (the innermost one, which is only ours).
        let text = error.to_string();
        if text.contains(contract::HTTP_ALLOW_PRIVATE) && text.contains(" is a private address") {
            found = Some(text);
        }
        current = error.source();
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(text: &str) -> bool {
        is_blocked(text.parse().expect(text))
    }

    #[test]
    fn private_and_special_addresses_are_blocked() {
        for ip in [
            "10.0.0.1",
            "10.255.255.255",
            "172.16.0.1",
            "172.31.255.254",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "169.254.0.1",
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "::169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::7f00:1",
            "64:ff9b:1::1",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
        ] {
            assert!(blocked(ip), "{ip} must be blocked");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for ip in [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.216.34",
            "172.32.0.1",
            "172.15.255.255",
            "100.128.0.1",
            "100.63.255.255",
            "169.255.0.1",
            "192.169.0.1",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!blocked(ip), "{ip} must be allowed");
        }
    }

    #[test]
    fn ip_literals_in_urls_are_checked_in_every_spelling() {
        for url in [
            "http://169.254.169.254/latest/meta-data/",
            "http://[::ffff:127.0.0.1]:8080/",
            "http://[::ffff:7f00:1]/",
            "http://2130706433/",
            "http://0x7f.0.0.1/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "https://[fd00:ec2::254]/",
            "http://0/",
        ] {
            let parsed = reqwest::Url::parse(url).expect(url);
            assert!(blocked_literal(&parsed).is_some(), "{url} must be refused");
        }
        let public = reqwest::Url::parse("https://93.184.216.34/").expect("url");
        assert_eq!(blocked_literal(&public), None);
        let named = reqwest::Url::parse("http://localhost/").expect("url");
        assert_eq!(
            blocked_literal(&named),
            None,
            "names are checked when resolved"
        );
    }

    #[test]
    fn the_message_names_the_host_and_the_way_to_allow_it() {
        let text = Blocked {
            host: "metadata.internal".into(),
        }
        .to_string();
        assert!(text.contains("metadata.internal"), "{text}");
        assert!(text.contains("private address"), "{text}");
        assert!(text.contains("ATOLL_HTTP_ALLOW_PRIVATE=true"), "{text}");
    }

    #[tokio::test]
    async fn the_resolver_keeps_only_public_addresses() {
        let err = PublicOnly
            .resolve("localhost".parse().expect("name"))
            .await
            .err()
            .expect("localhost is refused");
        assert_eq!(
            blocked_cause(err.as_ref()),
            Some(
                Blocked {
                    host: "localhost".into()
                }
                .to_string()
            )
        );
        let mixed: Vec<SocketAddr> = ["10.0.0.1:0", "93.184.216.34:0", "[::1]:0"]
            .iter()
            .map(|a| a.parse().expect("addr"))
            .collect();
        assert_eq!(
            public_addresses(&mixed),
            vec!["93.184.216.34:0".parse::<SocketAddr>().expect("addr")]
        );
    }

    #[tokio::test]
    async fn redirects_to_private_addresses_are_refused() {
        // A server on loopback (reached with the check off) redirecting to
        // the metadata address: the policy of the guarded client refuses
        // the hop.
        use axum::response::Redirect;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let app = axum::Router::new()
            .route(
                "/go",
                axum::routing::get(|| async {
                    Redirect::temporary("http://169.254.169.254/latest/meta-data/")
                }),
            )
            .route(
                "/mapped",
                axum::routing::get(|| async { Redirect::temporary("http://[::ffff:7f00:1]/") }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        // The guarded policy on a client that may reach the loopback test
        // server itself (its resolver is not consulted for IP literals).
        let client = reqwest::Client::builder()
            .redirect(redirect_policy())
            .no_proxy()
            .build()
            .expect("client");
        for path in ["/go", "/mapped"] {
            let err = client
                .get(format!("http://{addr}{path}"))
                .send()
                .await
                .expect_err("redirect refused");
            assert!(err.is_redirect(), "{err:?}");
            let cause = blocked_cause(&err).expect("the refusal is the cause");
            assert!(cause.contains("is a private address"), "{cause}");
        }
    }
}
