//! Kubelet-only mode's node-side duties towards a real API server: the
//! Node object and its heartbeat (status and a Lease in `kube-node-lease`),
//! and hostPath PersistentVolumes for the claims (the cluster has no
//! provisioner).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, Time};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use super::{FIELD_MANAGER, NodeSimError, kubelet};

/// How often the Lease is renewed (kubelet: 10 s).
pub const LEASE_RENEW: Duration = Duration::from_secs(10);
/// The Lease's duration (kubelet: 40 s).
pub const LEASE_SECONDS: i32 = 40;
/// Every how many renewals the Node status is re-sent with a new heartbeat.
const STATUS_EVERY: u32 = 6;
/// The label on the PersistentVolumes nodesim provisions: the node's name.
pub const PV_LABEL: &str = "nodesim.atoll.dev/node";

/// What a nodesim node offers the scheduler: plenty, since its containers
/// are processes sharing the host.
const CAPACITY: [(&str, &str); 4] = [
    ("cpu", "64"),
    ("memory", "256Gi"),
    ("pods", "1000"),
    ("ephemeral-storage", "1Ti"),
];

/// Waits until Node `name` is Ready and the node lifecycle controller
/// has lifted its not-ready taint (no `NoSchedule` taint is left): the
/// scheduler may bind to it. Panics after `limit`.
pub async fn wait_schedulable(client: &Client, name: &str, limit: Duration) {
    let nodes: Api<Node> = Api::all(client.clone());
    crate::eventually(
        &format!("Node {name} to be Ready and schedulable"),
        limit,
        || async {
            let node = nodes.get_opt(name).await.ok()??;
            let ready = node
                .status?
                .conditions?
                .iter()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let tainted = node
                .spec
                .and_then(|s| s.taints)
                .is_some_and(|t| t.iter().any(|t| t.effect == "NoSchedule"));
            (ready && !tainted).then_some(())
        },
    )
    .await;
}

fn apply() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

fn arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

fn time(t: &Time) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// The Node as kubelet registers it (metadata and spec).
pub fn node_object(name: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": std::env::consts::OS,
                "kubernetes.io/arch": arch(),
                "nodesim.atoll.dev/nodesim": "true",
            },
        },
        "spec": {},
    })
}

/// What a Node status reports of its kubelet.
#[derive(Debug, Clone, Copy)]
pub struct KubeletInfo<'a> {
    /// The version reported (the API server's).
    pub version: &'a str,
    /// The HTTPS port of its endpoint on 127.0.0.1, if it serves one.
    pub port: Option<u16>,
}

/// The Node's status: Ready, no pressure, loopback address, capacity,
/// and the kubelet endpoint's port.
pub fn node_status(name: &str, kubelet: KubeletInfo<'_>, since: &Time, heartbeat: &Time) -> Value {
    let capacity: serde_json::Map<String, Value> = CAPACITY
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
        .collect();
    let condition = |type_: &str, status: &str, reason: &str, message: &str| {
        json!({
            "type": type_, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": time(heartbeat), "lastTransitionTime": time(since),
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name},
        "status": {
            "capacity": capacity,
            "allocatable": capacity,
            "conditions": [
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "nodesim has sufficient memory available"),
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "nodesim has no disk pressure"),
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "nodesim has sufficient PID available"),
                condition("Ready", "True", "KubeletReady", "nodesim is posting ready status"),
            ],
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet.port.unwrap_or(0)}},
            "nodeInfo": {
                "machineID": "nodesim", "systemUUID": "nodesim", "bootID": "nodesim",
                "kernelVersion": "", "osImage": "nodesim",
                "containerRuntimeVersion": "nodesim://0",
                "kubeletVersion": kubelet.version, "kubeProxyVersion": "",
                "operatingSystem": std::env::consts::OS, "architecture": arch(),
            },
        },
    })
}

fn lease_object(name: &str, node_uid: Option<&str>) -> Value {
    let renew = MicroTime(k8s_openapi::jiff::Timestamp::now());
    let mut lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": "kube-node-lease"},
        "spec": {
            "holderIdentity": name,
            "leaseDurationSeconds": LEASE_SECONDS,
            "renewTime": serde_json::to_value(&renew).unwrap_or(Value::Null),
        },
    });
    if let Some(uid) = node_uid {
        lease["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "Node", "name": name, "uid": uid}]);
    }
    lease
}

/// Registers Node `name` through `client` (the node's own identity), makes
/// it Ready and starts the heartbeat: the Lease renewed every
/// [`LEASE_RENEW`], the status re-sent every minute. `kubelet_port` is
/// the port of its kubelet endpoint on 127.0.0.1, if it serves one.
pub async fn register(
    client: &Client,
    name: &str,
    kubelet_port: Option<u16>,
) -> Result<JoinHandle<()>, NodeSimError> {
    let err = |source| NodeSimError::Register {
        node: name.to_owned(),
        source,
    };
    let nodes = Api::<Node>::all(client.clone());
    let node = nodes
        .patch(name, &apply(), &Patch::Apply(node_object(name)))
        .await
        .map_err(err)?;
    let version = client
        .apiserver_version()
        .await
        .map(|v| v.git_version)
        .unwrap_or_default();
    let since = super::process::now();
    nodes
        .patch_status(
            name,
            &apply(),
            &Patch::Apply(node_status(
                name,
                KubeletInfo {
                    version: &version,
                    port: kubelet_port,
                },
                &since,
                &since,
            )),
        )
        .await
        .map_err(err)?;
    let leases = Api::<Lease>::namespaced(client.clone(), "kube-node-lease");
    let uid = node.uid();
    leases
        .patch(
            name,
            &apply(),
            &Patch::Apply(lease_object(name, uid.as_deref())),
        )
        .await
        .map_err(err)?;
    let name = name.to_owned();
    Ok(tokio::spawn(async move {
        let mut ticks = 0u32;
        loop {
            tokio::time::sleep(LEASE_RENEW).await;
            ticks = ticks.wrapping_add(1);
            if let Err(error) = leases
                .patch(
                    &name,
                    &apply(),
                    &Patch::Apply(lease_object(&name, uid.as_deref())),
                )
                .await
            {
                tracing::warn!(%error, node = %name, "renewing the node Lease failed");
            }
            if ticks.is_multiple_of(STATUS_EVERY) {
                let status = node_status(
                    &name,
                    KubeletInfo {
                        version: &version,
                        port: kubelet_port,
                    },
                    &since,
                    &super::process::now(),
                );
                if let Err(error) = nodes
                    .patch_status(&name, &apply(), &Patch::Apply(status))
                    .await
                {
                    tracing::warn!(%error, node = %name, "posting node status failed");
                }
            }
        }
    }))
}

/// The PersistentVolume nodesim provisions for `pvc`: its directory as a
/// hostPath, pre-bound to the claim, of the claim's class, size and modes.
pub fn volume_for(node: &str, state_dir: &Path, pvc: &PersistentVolumeClaim) -> Option<Value> {
    let namespace = pvc.namespace()?;
    let uid = pvc.uid()?;
    let spec = pvc.spec.clone().unwrap_or_default();
    let size = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .map_or_else(|| "1Gi".to_owned(), |q| q.0.clone());
    let modes = spec
        .access_modes
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".to_owned()]);
    let dir = kubelet::pvc_dir(state_dir, &namespace, &pvc.name_any());
    Some(json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": format!("pvc-{uid}"), "labels": {PV_LABEL: node}},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": modes,
            "volumeMode": spec.volume_mode.unwrap_or_else(|| "Filesystem".to_owned()),
            "storageClassName": spec.storage_class_name.unwrap_or_default(),
            "persistentVolumeReclaimPolicy": "Retain",
            "hostPath": {"path": dir.display().to_string(), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": namespace, "name": pvc.name_any(), "uid": uid,
            },
        },
    }))
}

/// Creates a PV for every claim that has none and is not bound, and
/// deletes nodesim's PVs whose claim is gone (they are `Retain`, so the PV
/// controller would only mark them Released).
pub async fn provision_volumes(
    cluster: &Client,
    node: &str,
    state_dir: &Path,
    pvcs: &[Arc<PersistentVolumeClaim>],
) {
    let api = Api::<PersistentVolume>::all(cluster.clone());
    let ours = match api
        .list(&ListParams::default().labels(&format!("{PV_LABEL}={node}")))
        .await
    {
        Ok(list) => list.items,
        Err(error) => {
            tracing::warn!(%error, "listing PersistentVolumes failed");
            return;
        }
    };
    let claims: BTreeSet<String> = pvcs.iter().filter_map(|p| p.uid()).collect();
    let provisioned: BTreeSet<String> = ours
        .iter()
        .filter_map(|pv| pv.spec.as_ref()?.claim_ref.as_ref()?.uid.clone())
        .collect();
    for pvc in pvcs {
        let unbound = pvc
            .spec
            .as_ref()
            .and_then(|s| s.volume_name.as_deref())
            .is_none_or(str::is_empty);
        let Some(uid) = pvc.uid() else { continue };
        if !unbound || provisioned.contains(&uid) || pvc.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let Some(pv) = volume_for(node, state_dir, pvc) else {
            continue;
        };
        let created = match serde_json::from_value::<PersistentVolume>(pv) {
            Ok(pv) => api.create(&PostParams::default(), &pv).await.map(|_| ()),
            Err(error) => {
                tracing::warn!(%error, "building a PersistentVolume failed");
                continue;
            }
        };
        if let Err(error) = created
            && !super::status::is_conflict_or_missing(&error)
        {
            tracing::warn!(%error, pvc = %pvc.name_any(), "creating a PersistentVolume failed");
        }
    }
    for pv in ours {
        let claim = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .and_then(|c| c.uid.clone());
        let orphaned = claim.is_none_or(|uid| !claims.contains(&uid));
        if orphaned
            && pv.metadata.deletion_timestamp.is_none()
            && let Err(error) = api.delete(&pv.name_any(), &DeleteParams::default()).await
            && !super::status::is_conflict_or_missing(&error)
        {
            tracing::warn!(%error, pv = %pv.name_any(), "deleting a PersistentVolume failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_gets_a_pre_bound_host_path_volume() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({
            "metadata": {"name": "data-database-0", "namespace": "atoll-acme", "uid": "u1"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}},
        }))
        .unwrap_or_default();
        let pv = volume_for("n1", Path::new("/state"), &pvc).unwrap_or_default();
        assert_eq!(pv["metadata"]["name"], "pvc-u1");
        assert_eq!(pv["metadata"]["labels"][PV_LABEL], "n1");
        assert_eq!(pv["spec"]["storageClassName"], "");
        assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(pv["spec"]["claimRef"]["uid"], "u1");
        assert_eq!(
            pv["spec"]["hostPath"]["path"],
            "/state/pvc/atoll-acme/data-database-0"
        );
        assert!(serde_json::from_value::<PersistentVolume>(pv).is_ok());
    }

    #[test]
    fn node_status_is_ready_with_capacity() {
        let t = super::super::process::now();
        let kubelet = KubeletInfo {
            version: "v1.37.2",
            port: Some(10250),
        };
        let status = node_status("n1", kubelet, &t, &t);
        let ready = status["status"]["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(ready["status"], "True");
        assert_eq!(status["status"]["allocatable"]["pods"], "1000");
        assert_eq!(
            status["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"],
            10250
        );
        assert!(serde_json::from_value::<Node>(status).is_ok());
    }
}
