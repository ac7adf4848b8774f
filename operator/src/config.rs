//! What the operator is told at start: images, domain, ingress and identity
//! settings. Parsed once (clap, flags or env) and passed to the pure builders.

use std::collections::BTreeMap;

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
}

/// A label map parsed from `k=v,k=v`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(pub BTreeMap<String, String>);

fn parse_labels(text: &str) -> Result<Labels, String> {
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
}
