//! What a Tenant may claim besides its own objects: a host and a namespace.
//! Pure checks, fed by the reconciler with what it read (the Tenant cache,
//! the namespace as it exists); a refusal becomes `Ready=False` with the
//! refusal's reason and nothing is written.

use std::collections::BTreeMap;

use atoll_crds::Tenant;
use kube::ResourceExt;

use crate::build::{FIELD_MANAGER, MANAGED_BY_LABEL, TENANT_LABEL, TenantContext};

/// Why a Tenant cannot have what it asks for.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The host lies outside the operator's allowed domains.
    #[error(
        "host {host} is not under an allowed domain ({allowed}); set spec.ingress.host to a name under one of them, or ask the platform admin to allow the domain"
    )]
    HostNotAllowed {
        /// The host asked for.
        host: String,
        /// The allowed domains, comma-separated.
        allowed: String,
    },
    /// Another Tenant (older) or identity already serves the host.
    #[error("host {host} is already used by {holder}; choose another spec.ingress.host")]
    HostConflict {
        /// The host asked for.
        host: String,
        /// Who has it: `Tenant <name>` or `identity`.
        holder: String,
    },
    /// The namespace exists and was not made by the operator for this Tenant.
    #[error(
        "namespace {namespace} exists and does not belong to this Tenant ({why}); the operator adopts only namespaces it labelled for the Tenant"
    )]
    NamespaceConflict {
        /// The namespace.
        namespace: String,
        /// What is wrong with it.
        why: String,
    },
}

impl Refusal {
    /// The condition reason shown on the Tenant.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::HostNotAllowed { .. } => "HostNotAllowed",
            Refusal::HostConflict { .. } => "HostConflict",
            Refusal::NamespaceConflict { .. } => "NamespaceConflict",
        }
    }
}

/// The Tenant's host must lie under an allowed domain, not be identity's,
/// and not be served by an older Tenant. `others` are the Tenants the
/// operator knows (the Tenant itself may be among them).
pub fn check_host<'a>(
    ctx: &TenantContext<'_>,
    others: impl IntoIterator<Item = &'a Tenant>,
) -> Result<(), Refusal> {
    let host = ctx.host();
    let config = ctx.config;
    if !config.host_allowed(&host) {
        let allowed = std::iter::once(&config.base_domain)
            .chain(&config.allowed_domains)
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Refusal::HostNotAllowed { host, allowed });
    }
    if config.identity_host().as_deref() == Some(host.as_str()) {
        return Err(Refusal::HostConflict {
            host,
            holder: "identity".to_owned(),
        });
    }
    let me = ctx.tenant;
    let holder = others
        .into_iter()
        .filter(|other| other.metadata.uid != me.metadata.uid)
        .filter(|other| other.metadata.deletion_timestamp.is_none())
        .filter(|other| host_of(other, &config.base_domain) == host)
        .filter(|other| older(other, me))
        .min_by_key(|other| age_key(other));
    match holder {
        Some(other) => Err(Refusal::HostConflict {
            host,
            holder: format!("Tenant {}", other.name_any()),
        }),
        None => Ok(()),
    }
}

/// Whether another Tenant could be serving `host`: cheap enough to run over
/// every cached Tenant on each reconcile (no allocation). A default host
/// `<name>.<baseDomain>` can only clash with an explicit one.
pub fn may_hold(other: &Tenant, host: &str, base_domain: &str) -> bool {
    match other.spec.ingress.host.as_deref() {
        Some(explicit) => explicit == host,
        None => host
            .strip_suffix(base_domain)
            .and_then(|rest| rest.strip_suffix('.'))
            .is_some_and(|name| other.metadata.name.as_deref() == Some(name)),
    }
}

fn host_of(tenant: &Tenant, base_domain: &str) -> String {
    tenant.spec.ingress.host.clone().unwrap_or_else(|| {
        format!(
            "{}.{base_domain}",
            tenant.metadata.name.as_deref().unwrap_or_default()
        )
    })
}

/// Creation time, then name: a total order, so exactly one Tenant wins.
fn age_key(tenant: &Tenant) -> (Option<k8s_openapi::jiff::Timestamp>, String) {
    (
        tenant.metadata.creation_timestamp.as_ref().map(|t| t.0),
        tenant.name_any(),
    )
}

fn older(a: &Tenant, b: &Tenant) -> bool {
    age_key(a) < age_key(b)
}

/// The namespace may be created (absent) or adopted only when the operator
/// labelled it for this Tenant (a namespace a Retain deletion kept
/// included), and never when it is the operator's own.
pub fn check_namespace(
    tenant: &str,
    namespace: &str,
    labels: Option<&BTreeMap<String, String>>,
    operator_namespace: &str,
) -> Result<(), Refusal> {
    let refuse = |why: &str| {
        Err(Refusal::NamespaceConflict {
            namespace: namespace.to_owned(),
            why: why.to_owned(),
        })
    };
    if namespace == operator_namespace {
        return refuse("it is the platform's own namespace");
    }
    let Some(labels) = labels else {
        return Ok(());
    };
    if labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(FIELD_MANAGER) {
        return refuse(&format!(
            "it lacks the label {MANAGED_BY_LABEL}={FIELD_MANAGER}"
        ));
    }
    match labels.get(TENANT_LABEL) {
        Some(owner) if owner == tenant => Ok(()),
        Some(owner) => refuse(&format!("it is labelled for Tenant {owner}")),
        None => refuse(&format!("it lacks the label {TENANT_LABEL}={tenant}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OperatorConfig;
    use atoll_crds::TenantSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn tenant(name: &str, host: Option<&str>, created: i64) -> Tenant {
        let mut tenant = Tenant::new(name, TenantSpec::default());
        tenant.metadata.uid = Some(format!("uid-{name}"));
        tenant.spec.ingress.host = host.map(str::to_owned);
        tenant.metadata.creation_timestamp = Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_700_000_000 + created).expect("time"),
        ));
        tenant
    }

    fn config() -> OperatorConfig {
        OperatorConfig {
            base_domain: "tenants.example.com".into(),
            identity_issuer: Some("https://id.tenants.example.com".into()),
            ..OperatorConfig::default()
        }
    }

    fn check(me: &Tenant, all: &[Tenant]) -> Result<(), Refusal> {
        let config = config();
        let ctx = TenantContext::new(me, &config).expect("context");
        check_host(&ctx, all)
    }

    #[test]
    fn the_older_tenant_keeps_a_host_and_the_newer_is_refused() {
        let acme = tenant("acme", None, 0);
        let thief = tenant("thief", Some("acme.tenants.example.com"), 10);
        let all = [acme.clone(), thief.clone()];
        assert_eq!(check(&acme, &all), Ok(()));
        let refusal = check(&thief, &all).expect_err("conflict");
        assert_eq!(refusal.reason(), "HostConflict");
        assert!(refusal.to_string().contains("Tenant acme"), "{refusal}");

        // Two explicit claims: the older wins whichever asks.
        let first = tenant("first", Some("shop.tenants.example.com"), 5);
        let second = tenant("second", Some("shop.tenants.example.com"), 6);
        let all = [second.clone(), first.clone()];
        assert_eq!(check(&first, &all), Ok(()));
        assert_eq!(
            check(&second, &all).expect_err("conflict").reason(),
            "HostConflict"
        );
        assert!(may_hold(
            &first,
            "shop.tenants.example.com",
            "tenants.example.com"
        ));
        assert!(may_hold(
            &acme,
            "acme.tenants.example.com",
            "tenants.example.com"
        ));
        assert!(!may_hold(&acme, "acme.other.com", "tenants.example.com"));
    }

    #[test]
    fn identity_host_and_foreign_domains_are_refused() {
        let id = tenant("id", None, 0);
        let refusal = check(&id, std::slice::from_ref(&id)).expect_err("identity's host");
        assert_eq!(refusal.reason(), "HostConflict");
        assert!(refusal.to_string().contains("identity"));
        let foreign = tenant("evil", Some("login.bank.example"), 0);
        let refusal = check(&foreign, &[]).expect_err("foreign");
        assert_eq!(refusal.reason(), "HostNotAllowed");
        assert!(refusal.to_string().contains("login.bank.example"));
    }

    #[test]
    fn only_namespaces_labelled_for_the_tenant_are_adopted() {
        let ours = BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), FIELD_MANAGER.to_owned()),
            (TENANT_LABEL.to_owned(), "acme".to_owned()),
        ]);
        assert_eq!(
            check_namespace("acme", "atoll-acme", None, "atoll-system"),
            Ok(())
        );
        assert_eq!(
            check_namespace("acme", "atoll-acme", Some(&ours), "atoll-system"),
            Ok(())
        );
        let foreign = BTreeMap::from([("team".to_owned(), "payments".to_owned())]);
        let refusal = check_namespace("acme", "atoll-acme", Some(&foreign), "atoll-system")
            .expect_err("unlabelled");
        assert_eq!(refusal.reason(), "NamespaceConflict");
        assert!(refusal.to_string().contains("atoll-acme"));
        let refusal = check_namespace("other", "atoll-other", Some(&ours), "atoll-system")
            .expect_err("someone else's");
        assert!(refusal.to_string().contains("Tenant acme"));
        let refusal = check_namespace("system", "atoll-system", Some(&ours), "atoll-system")
            .expect_err("platform");
        assert!(refusal.to_string().contains("platform"));
    }
}
