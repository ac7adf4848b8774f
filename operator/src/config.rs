//! What the operator is told at start: images, domain, ingress and identity
//! settings. Parsed once (clap, flags or env) and passed to the pure builders.

use std::collections::BTreeMap;

pub use crate::backup_config::BackupConfig;

/// Settings that shape every tenant's objects.
#[derive(Clone, Debug, PartialEq, Eq, clap::Args)]
pub struct OperatorConfig {
    /// Instance image without tag, used when a Tenant sets none.
    #[arg(
        long,
        env = "ATOLL_INSTANCE_IMAGE",
        default_value = "atoll/atoll-instance"
    )]
    pub instance_image: String,

    /// Instance version (image tag) used when a Tenant sets none.
    #[arg(long, env = "ATOLL_INSTANCE_VERSION", default_value = env!("CARGO_PKG_VERSION"))]
    pub instance_version: String,

    /// PostgreSQL image with tag for Dedicated databases.
    #[arg(long, env = "ATOLL_POSTGRES_IMAGE", default_value = "postgres:16")]
    pub postgres_image: String,

    /// Tenants are served at <name>.<base-domain> unless they set a host.
    #[arg(long, env = "ATOLL_BASE_DOMAIN", default_value = "atoll.localhost")]
    pub base_domain: String,

    /// Port appended to tenant URLs when the ingress does not listen on the
    /// scheme's default port (the sandbox's router listens on 8080).
    #[arg(long, env = "ATOLL_PUBLIC_PORT")]
    pub public_port: Option<u16>,

    /// IngressClass for tenants that set none. Unset: the cluster default.
    #[arg(long, env = "ATOLL_INGRESS_CLASS")]
    pub ingress_class: Option<String>,

    /// cert-manager ClusterIssuer for tenants that set no TLS. Unset: plain
    /// HTTP unless the Tenant asks for TLS.
    #[arg(long, env = "ATOLL_CLUSTER_ISSUER")]
    pub cluster_issuer: Option<String>,

    /// Public URL of the identity service (token issuer) that instances trust.
    #[arg(long, env = "ATOLL_IDENTITY_ISSUER")]
    pub identity_issuer: Option<String>,

    /// Prefix of tenant namespaces.
    #[arg(long, env = "ATOLL_NAMESPACE_PREFIX", default_value = "atoll-")]
    pub namespace_prefix: String,

    /// Labels (k=v,k=v) selecting the namespace of the ingress controller,
    /// the only place allowed to reach instances.
    #[arg(
        long,
        env = "ATOLL_INGRESS_NAMESPACE_SELECTOR",
        default_value = "kubernetes.io/metadata.name=ingress-nginx",
        value_parser = parse_labels
    )]
    pub ingress_namespace_selector: Labels,

    /// Labels (k=v,k=v) selecting the identity service's namespace, which
    /// instances may reach for JWKS.
    #[arg(
        long,
        env = "ATOLL_IDENTITY_NAMESPACE_SELECTOR",
        default_value = "kubernetes.io/metadata.name=atoll-system",
        value_parser = parse_labels
    )]
    pub identity_namespace_selector: Labels,

    /// Labels (k=v,k=v) selecting identity's pods in that namespace: the
    /// only pods there that instances may reach.
    #[arg(
        long,
        env = "ATOLL_IDENTITY_POD_SELECTOR",
        default_value = "app.kubernetes.io/name=atoll-identity",
        value_parser = parse_labels
    )]
    pub identity_pod_selector: Labels,

    /// Port identity's pods listen on (the container port, which is what a
    /// NetworkPolicy matches).
    #[arg(long, env = "ATOLL_IDENTITY_PORT", default_value_t = 8080)]
    pub identity_port: u16,

    /// Address ranges (CIDR, comma-separated) that instances may never
    /// reach outside the cluster: cloud metadata, private and link-local
    /// networks, in IPv4 and IPv6. Replaces the default list when set.
    #[arg(
        long,
        env = "ATOLL_EGRESS_BLOCKED_CIDRS",
        default_value = DEFAULT_BLOCKED_CIDRS,
        value_parser = parse_cidrs
    )]
    pub egress_blocked_cidrs: Cidrs,

    /// Address ranges (CIDR, comma-separated) of the Kubernetes API
    /// server's endpoints (`kubectl get endpointslices -n default -l
    /// kubernetes.io/service-name=kubernetes`). Instances whose tasks run as
    /// pods may reach them on `api-server-port`. Unset: no such rule, and
    /// instances reach the API server only when its addresses lie outside
    /// the blocked ranges (or the cluster enforces no NetworkPolicy).
    #[arg(
        long,
        env = "ATOLL_API_SERVER_CIDRS",
        default_value = "",
        value_parser = parse_cidrs
    )]
    pub api_server_cidrs: Cidrs,

    /// Port the API server's endpoints listen on (what a NetworkPolicy
    /// matches, after the `kubernetes` Service's translation).
    #[arg(long, env = "ATOLL_API_SERVER_PORT", default_value_t = 6443)]
    pub api_server_port: u16,

    /// The chart's ClusterRole of task-pod rights (pods: create, get, list,
    /// watch, delete; pods/log: get) that each tenant's instance is bound
    /// to, in its namespace only, when its tasks run as pods.
    #[arg(
        long,
        env = "ATOLL_TASK_PODS_CLUSTER_ROLE",
        default_value = "atoll-task-pods"
    )]
    pub task_pods_cluster_role: String,

    /// ClusterRole (listing pods) that the operator binds, in the
    /// namespace of each Tenant with spec.idle only, to its own service
    /// account ([`Self::activity_reader`]): it lists that tenant's instance
    /// pods to read their activity, and holds no pod listing elsewhere.
    #[arg(
        long,
        env = "ATOLL_ACTIVITY_CLUSTER_ROLE",
        default_value = "atoll-instance-activity"
    )]
    pub activity_cluster_role: String,

    /// The operator's own service account, `<namespace>/<name>`: the
    /// subject of those RoleBindings.
    #[arg(
        long,
        env = "ATOLL_ACTIVITY_READER",
        default_value = "atoll-system/atoll-operator"
    )]
    pub activity_reader: String,

    /// Domains (comma-separated) under which Tenants may set
    /// spec.ingress.host. The base domain is always allowed.
    #[arg(long, env = "ATOLL_ALLOWED_DOMAINS", value_delimiter = ',')]
    pub allowed_domains: Vec<String>,

    /// Backups (#19): image, platform object store, network peers.
    #[command(flatten)]
    pub backup: BackupConfig,

    /// The wake gate's Service in the operator's namespace (#20): a
    /// sleeping tenant's host is routed to the ready pods behind it (the
    /// operator copies that Service's EndpointSlices into the tenant's
    /// namespace).
    #[arg(
        long,
        env = "ATOLL_WAKE_GATE_SERVICE",
        default_value = "atoll-wake-gate"
    )]
    pub wake_gate_service: String,

    /// Labels (k=v,k=v) selecting the wake gate's pods in the operator's
    /// namespace: the only pods besides the ingress controller that reach a
    /// tenant's instance (held requests of a waking tenant).
    #[arg(
        long,
        env = "ATOLL_WAKE_GATE_POD_SELECTOR",
        default_value = "app.kubernetes.io/name=atoll-wake-gate",
        value_parser = parse_labels
    )]
    pub wake_gate_pod_selector: Labels,
}

/// Ranges instances may not reach by default: RFC 1918, CGNAT (RFC 6598),
/// link-local (cloud metadata at 169.254.169.254), loopback, "this
/// network", and IPv6 unique-local (AWS's metadata at fd00:ec2::254),
/// link-local, loopback, unspecified and NAT64. (IPv4-mapped IPv6 addresses
/// travel as IPv4 and meet the IPv4 ranges; Kubernetes refuses such a range
/// in a NetworkPolicy.)
pub const DEFAULT_BLOCKED_CIDRS: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,169.254.0.0/16,127.0.0.0/8,0.0.0.0/8,fc00::/7,fe80::/10,::1/128,::/128,64:ff9b::/96";

/// A list of CIDR ranges, each checked to be `address/prefix`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Cidrs(pub Vec<String>);

impl Cidrs {
    /// The IPv4 ranges.
    pub fn v4(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .map(String::as_str)
            .filter(|c| !c.contains(':'))
    }

    /// The IPv6 ranges.
    pub fn v6(&self) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .map(String::as_str)
            .filter(|c| c.contains(':'))
    }
}

fn parse_cidrs(text: &str) -> Result<Cidrs, String> {
    let mut cidrs = Vec::new();
    for cidr in text.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let (address, prefix) = cidr
            .split_once('/')
            .ok_or_else(|| format!("{cidr:?} is not a CIDR range (address/prefix)"))?;
        let max = match address.parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(_)) => 32,
            Ok(std::net::IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_some() => {
                return Err(format!(
                    "{cidr:?} is an IPv4-mapped IPv6 range, which Kubernetes refuses in a NetworkPolicy; list the IPv4 range instead"
                ));
            }
            Ok(std::net::IpAddr::V6(_)) => 128,
            Err(_) => return Err(format!("{cidr:?}: {address:?} is not an IP address")),
        };
        match prefix.parse::<u8>() {
            Ok(bits) if bits <= max => cidrs.push(cidr.to_owned()),
            _ => return Err(format!("{cidr:?}: the prefix must be 0 to {max}")),
        }
    }
    Ok(Cidrs(cidrs))
}

impl OperatorConfig {
    /// Whether `host` lies under the base domain or an allowed domain.
    pub fn host_allowed(&self, host: &str) -> bool {
        std::iter::once(&self.base_domain)
            .chain(&self.allowed_domains)
            .map(|domain| domain.trim().trim_matches('.'))
            .filter(|domain| !domain.is_empty())
            .any(|domain| {
                host == domain
                    || host
                        .strip_suffix(domain)
                        .is_some_and(|rest| rest.ends_with('.'))
            })
    }

    /// Identity's own host (from its issuer URL), which no Tenant may take.
    pub fn identity_host(&self) -> Option<String> {
        let issuer = self.identity_issuer.as_deref()?;
        let rest = issuer.split_once("://").map_or(issuer, |(_, rest)| rest);
        let authority = rest.split(['/', '?', '#']).next()?;
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let host = match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => host,
        };
        (!host.is_empty()).then(|| host.to_ascii_lowercase())
    }
}

/// A label map parsed from `k=v,k=v`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(pub BTreeMap<String, String>);

pub(crate) fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut labels = BTreeMap::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        if key.is_empty() {
            return Err(format!("{pair:?} has an empty key"));
        }
        labels.insert(key.to_owned(), value.to_owned());
    }
    Ok(Labels(labels))
}

impl Default for OperatorConfig {
    fn default() -> Self {
        Self {
            instance_image: "atoll/atoll-instance".into(),
            instance_version: env!("CARGO_PKG_VERSION").into(),
            postgres_image: "postgres:16".into(),
            base_domain: "atoll.localhost".into(),
            public_port: None,
            ingress_class: None,
            cluster_issuer: None,
            identity_issuer: None,
            namespace_prefix: "atoll-".into(),
            ingress_namespace_selector: Labels(BTreeMap::from([(
                "kubernetes.io/metadata.name".into(),
                "ingress-nginx".into(),
            )])),
            identity_namespace_selector: Labels(BTreeMap::from([(
                "kubernetes.io/metadata.name".into(),
                "atoll-system".into(),
            )])),
            identity_pod_selector: Labels(BTreeMap::from([(
                "app.kubernetes.io/name".into(),
                "atoll-identity".into(),
            )])),
            identity_port: 8080,
            egress_blocked_cidrs: parse_cidrs(DEFAULT_BLOCKED_CIDRS).unwrap_or_default(),
            allowed_domains: Vec::new(),
            api_server_cidrs: Cidrs::default(),
            api_server_port: 6443,
            task_pods_cluster_role: "atoll-task-pods".into(),
            activity_cluster_role: "atoll-instance-activity".into(),
            activity_reader: "atoll-system/atoll-operator".into(),
            backup: BackupConfig::default(),
            wake_gate_service: "atoll-wake-gate".into(),
            wake_gate_pod_selector: Labels(BTreeMap::from([(
                "app.kubernetes.io/name".into(),
                "atoll-wake-gate".into(),
            )])),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_label_lists() {
        let labels = parse_labels("a=1, b=2").expect("valid");
        assert_eq!(labels.0.len(), 2);
        assert_eq!(labels.0["b"], "2");
        assert!(parse_labels("novalue").is_err());
        assert!(parse_labels("=x").is_err());
        assert_eq!(parse_labels("").expect("empty is fine").0.len(), 0);
    }

    #[test]
    fn the_default_blocked_ranges_cover_metadata_and_private_networks() {
        let cidrs = parse_cidrs(DEFAULT_BLOCKED_CIDRS).expect("valid");
        assert_eq!(cidrs, OperatorConfig::default().egress_blocked_cidrs);
        for range in [
            "169.254.0.0/16",
            "100.64.0.0/10",
            "127.0.0.0/8",
            "10.0.0.0/8",
            "fc00::/7",
            "fe80::/10",
            "::1/128",
        ] {
            assert!(cidrs.0.iter().any(|c| c == range), "{range} missing");
        }
        assert!(cidrs.v4().all(|c| !c.contains(':')));
        assert!(cidrs.v6().all(|c| c.contains(':')));
        assert!(parse_cidrs("10.0.0.0").is_err());
        assert!(parse_cidrs("10.0.0.0/33").is_err());
        assert!(parse_cidrs("fc00::/129").is_err());
        assert!(parse_cidrs("example.com/8").is_err());
        let mapped = parse_cidrs("::ffff:0:0/96").expect_err("IPv4-mapped");
        assert!(mapped.contains("IPv4-mapped"), "{mapped}");
    }

    #[test]
    fn hosts_must_lie_under_an_allowed_domain() {
        let config = OperatorConfig {
            base_domain: "tenants.example.com".into(),
            allowed_domains: vec!["customers.example.org".into()],
            ..OperatorConfig::default()
        };
        assert!(config.host_allowed("acme.tenants.example.com"));
        assert!(config.host_allowed("a.b.customers.example.org"));
        assert!(config.host_allowed("customers.example.org"));
        assert!(!config.host_allowed("eviltenants.example.com"));
        assert!(!config.host_allowed("id.example.com"));
        assert!(!config.host_allowed("example.com"));
    }

    #[test]
    fn identity_host_comes_from_the_issuer() {
        let config = |issuer: &str| OperatorConfig {
            identity_issuer: Some(issuer.into()),
            ..OperatorConfig::default()
        };
        assert_eq!(
            config("https://id.example.com/").identity_host().as_deref(),
            Some("id.example.com")
        );
        assert_eq!(
            config("http://ID.example.com:8090")
                .identity_host()
                .as_deref(),
            Some("id.example.com")
        );
        assert_eq!(OperatorConfig::default().identity_host(), None);
    }
}
