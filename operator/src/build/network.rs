//! NetworkPolicies: deny everything, then open exactly the paths a tenant
//! needs. Tenants can never reach each other.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::backup::BACKUP_AGENT_PORT;
use super::database::{DATABASE, DATABASE_PORT};
use super::tasks::{INSTANCE_FROM_TASK_PODS, TASK_PODS_NETWORK_POLICY, task_pod_selector};
use super::{INSTANCE, INSTANCE_PORT, TenantContext};

pub(super) fn selector(labels: BTreeMap<String, String>) -> LabelSelector {
    LabelSelector {
        match_labels: Some(labels),
        ..LabelSelector::default()
    }
}

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        protocol: Some(protocol.to_owned()),
        port: Some(IntOrString::Int(number)),
        ..NetworkPolicyPort::default()
    }
}

/// The policy letting the instance reach a Dedicated database.
pub const DATABASE_NETWORK_POLICY: &str = "database-from-instance";
/// The policy of a backed-up database pod: out to the object store, in
/// from the operator to the backup agent (#19).
pub const BACKUP_NETWORK_POLICY: &str = "database-backup";
/// The policy of an External tenant's dump and restore-dump pods: out to
/// the shared server and the object store only (#19).
pub const DUMP_NETWORK_POLICY: &str = "dump-egress";

/// Everything in `all` except the blocked ranges.
fn outside<'a>(all: &str, blocked: impl Iterator<Item = &'a str>) -> NetworkPolicyPeer {
    let except: Vec<String> = blocked.map(str::to_owned).collect();
    NetworkPolicyPeer {
        ip_block: Some(IPBlock {
            cidr: all.to_owned(),
            except: (!except.is_empty()).then_some(except),
        }),
        ..NetworkPolicyPeer::default()
    }
}

pub(super) fn policy(
    ctx: &TenantContext<'_>,
    name: &str,
    pods: LabelSelector,
    ingress: Option<Vec<NetworkPolicyIngressRule>>,
    egress: Option<Vec<NetworkPolicyEgressRule>>,
) -> NetworkPolicy {
    let mut types = Vec::new();
    if ingress.is_some() {
        types.push("Ingress".to_owned());
    }
    if egress.is_some() {
        types.push("Egress".to_owned());
    }
    // No rule at all is left out, not sent as `[]`: the API server stores
    // no empty list, so an applied `[]` would differ from what is stored
    // and every apply would be a write (a new generation each time).
    let ingress = ingress.filter(|rules| !rules.is_empty());
    let egress = egress.filter(|rules| !rules.is_empty());
    NetworkPolicy {
        metadata: ctx.meta(name, None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods),
            policy_types: Some(types),
            ingress,
            egress,
        }),
    }
}

/// All policies of a tenant's namespace.
pub fn network_policies(ctx: &TenantContext<'_>) -> Vec<NetworkPolicy> {
    let instance_pods = selector(ctx.selector(INSTANCE));
    let database_pods = selector(ctx.selector(DATABASE));
    let mut policies = vec![
        // Nothing in, nothing out, unless a policy below allows it.
        policy(
            ctx,
            "default-deny",
            LabelSelector::default(),
            Some(vec![]),
            Some(vec![]),
        ),
        allow_dns(ctx),
        instance_from_ingress(ctx, instance_pods.clone()),
    ];
    if ctx.dedicated_database() {
        policies.push(policy(
            ctx,
            DATABASE_NETWORK_POLICY,
            database_pods.clone(),
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(instance_pods.clone()),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![port("TCP", DATABASE_PORT)]),
            }]),
            None,
        ));
    }
    policies.push(policy(
        ctx,
        "instance-egress",
        instance_pods.clone(),
        None,
        Some(instance_egress(ctx, database_pods)),
    ));
    policies.extend(task_pod_policies(ctx, instance_pods));
    policies
}

/// A backed-up database pod reaches its object store (outside the cluster
/// minus the blocked ranges, or the in-cluster store the chart names), and
/// only the operator's pods reach its backup agent.
pub fn backup_network_policy(ctx: &TenantContext<'_>) -> NetworkPolicy {
    let backup = &ctx.config.backup;
    let mut egress = vec![outside_the_cluster(ctx)];
    egress.extend(in_cluster_store(ctx));
    policy(
        ctx,
        BACKUP_NETWORK_POLICY,
        selector(ctx.selector(DATABASE)),
        Some(vec![NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(selector(backup.operator_namespace_selector.0.clone())),
                pod_selector: Some(selector(backup.operator_pod_selector.0.clone())),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![port("TCP", BACKUP_AGENT_PORT)]),
        }]),
        Some(egress),
    )
}

/// The in-cluster object store the chart names, if any.
pub(super) fn in_cluster_store(ctx: &TenantContext<'_>) -> Option<NetworkPolicyEgressRule> {
    let backup = &ctx.config.backup;
    if backup.backup_store_namespace_selector.0.is_empty() {
        return None;
    }
    Some(NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(selector(backup.backup_store_namespace_selector.0.clone())),
            pod_selector: Some(selector(backup.backup_store_pod_selector.0.clone())),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port("TCP", i32::from(backup.backup_store_port))]),
    })
}

/// A shared database server: it may sit anywhere, private ranges
/// included; only its port is opened.
pub(super) fn shared_server() -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![NetworkPolicyPeer {
            ip_block: Some(IPBlock {
                cidr: "0.0.0.0/0".to_owned(),
                except: None,
            }),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port("TCP", DATABASE_PORT)]),
    }
}

/// Task pods (label `atoll.dev/task-pod: "true"`): nothing comes in; out
/// only to the instance's API (input and output files), to DNS (allow-dns)
/// and outside the cluster minus the blocked ranges, so never to the
/// database, identity or other tenants. Rendered whatever the runner, so a
/// pod carrying the label is fenced even before the Tenant asks for task
/// pods. And the instance admits task pods on its API port.
fn task_pod_policies(ctx: &TenantContext<'_>, instance_pods: LabelSelector) -> [NetworkPolicy; 2] {
    let task_pods = selector(task_pod_selector());
    [
        policy(
            ctx,
            TASK_PODS_NETWORK_POLICY,
            task_pods.clone(),
            Some(vec![]),
            Some(vec![
                NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        pod_selector: Some(instance_pods.clone()),
                        ..NetworkPolicyPeer::default()
                    }]),
                    ports: Some(vec![port("TCP", INSTANCE_PORT)]),
                },
                outside_the_cluster(ctx),
            ]),
        ),
        policy(
            ctx,
            INSTANCE_FROM_TASK_PODS,
            instance_pods,
            Some(vec![NetworkPolicyIngressRule {
                from: Some(vec![NetworkPolicyPeer {
                    pod_selector: Some(task_pods),
                    ..NetworkPolicyPeer::default()
                }]),
                ports: Some(vec![port("TCP", INSTANCE_PORT)]),
            }]),
            None,
        ),
    ]
}

/// Anywhere outside the cluster except the blocked ranges (private
/// networks, metadata), in IPv4 and IPv6.
pub(super) fn outside_the_cluster(ctx: &TenantContext<'_>) -> NetworkPolicyEgressRule {
    NetworkPolicyEgressRule {
        to: Some(vec![
            outside("0.0.0.0/0", ctx.config.egress_blocked_cidrs.v4()),
            outside("::/0", ctx.config.egress_blocked_cidrs.v6()),
        ]),
        ports: None,
    }
}

/// Every pod may resolve names with the cluster's DNS.
fn allow_dns(ctx: &TenantContext<'_>) -> NetworkPolicy {
    policy(
        ctx,
        "allow-dns",
        LabelSelector::default(),
        None,
        Some(vec![NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(LabelSelector::default()),
                pod_selector: Some(selector(BTreeMap::from([(
                    "k8s-app".to_owned(),
                    "kube-dns".to_owned(),
                )]))),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
        }]),
    )
}

/// Users reach the instance only through the ingress controller. A
/// Tenant that sleeps when idle (#20) also lets in the wake gate's pods
/// (the requests they held while it woke) and the operator's pods on the
/// metrics port (its activity, which decides when it sleeps).
fn instance_from_ingress(ctx: &TenantContext<'_>, instance_pods: LabelSelector) -> NetworkPolicy {
    let mut rules = vec![NetworkPolicyIngressRule {
        from: Some(vec![NetworkPolicyPeer {
            namespace_selector: Some(selector(ctx.config.ingress_namespace_selector.0.clone())),
            ..NetworkPolicyPeer::default()
        }]),
        ports: Some(vec![port("TCP", INSTANCE_PORT)]),
    }];
    if ctx.tenant.spec.idle.is_some() {
        let platform = || {
            Some(selector(
                ctx.config.backup.operator_namespace_selector.0.clone(),
            ))
        };
        rules.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: platform(),
                pod_selector: Some(selector(ctx.config.wake_gate_pod_selector.0.clone())),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![port("TCP", INSTANCE_PORT)]),
        });
        rules.push(NetworkPolicyIngressRule {
            from: Some(vec![NetworkPolicyPeer {
                namespace_selector: platform(),
                pod_selector: Some(selector(ctx.config.backup.operator_pod_selector.0.clone())),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![port(
                "TCP",
                i32::from(atoll_crds::contract::METRICS_PORT),
            )]),
        });
    }
    policy(
        ctx,
        "instance-from-ingress",
        instance_pods,
        Some(rules),
        None,
    )
}

/// The instance talks to its database, to identity's pods on identity's
/// port (JWKS) and to the world outside the cluster (HTTP tasks), never to
/// other tenants, private networks or cloud metadata.
fn instance_egress(
    ctx: &TenantContext<'_>,
    database_pods: LabelSelector,
) -> Vec<NetworkPolicyEgressRule> {
    let database = if ctx.dedicated_database() {
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                pod_selector: Some(database_pods),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![port("TCP", DATABASE_PORT)]),
        }
    } else {
        shared_server()
    };
    let mut rules = vec![
        database,
        NetworkPolicyEgressRule {
            to: Some(vec![NetworkPolicyPeer {
                namespace_selector: Some(selector(
                    ctx.config.identity_namespace_selector.0.clone(),
                )),
                pod_selector: Some(selector(ctx.config.identity_pod_selector.0.clone())),
                ..NetworkPolicyPeer::default()
            }]),
            ports: Some(vec![port("TCP", i32::from(ctx.config.identity_port))]),
        },
        outside_the_cluster(ctx),
    ];
    // The instance starts task pods through the API server.
    if super::tasks::runs_task_pods(ctx) && !ctx.config.api_server_cidrs.0.is_empty() {
        rules.push(NetworkPolicyEgressRule {
            to: Some(
                ctx.config
                    .api_server_cidrs
                    .0
                    .iter()
                    .map(|cidr| NetworkPolicyPeer {
                        ip_block: Some(IPBlock {
                            cidr: cidr.clone(),
                            except: None,
                        }),
                        ..NetworkPolicyPeer::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![port("TCP", i32::from(ctx.config.api_server_port))]),
        });
    }
    rules
}
