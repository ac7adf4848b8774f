//! The kubelet half of a pass: stop the pods no longer wanted, confirm
//! the deletion of pods that never ran, start new pods (and retry waiting
//! ones), and report their status.

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};

use super::context::{ClusterDns, Context, fetch_referenced, service_account_token};
use super::informers::key_of;
use super::kubelet::{self, PodRuntime};
use super::node::{Node, PassScope};
use super::status::{POD_STATUS, is_conflict_or_missing, patch_status};
use super::{PodInfo, Program};

/// Pods by uid.
type Live<'a> = HashMap<String, &'a Arc<Pod>>;

/// Deletes a pod at once: the node confirms its containers are gone, as
/// kubelet does after a graceful deletion.
fn confirm_deletion() -> DeleteParams {
    DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    }
}

/// A retried image pull that fails again waits in `ImagePullBackOff`, as
/// kubelet alternates it with `ErrImagePull`.
fn back_off_pulls(runtime: &mut PodRuntime, old: &PodRuntime) {
    for (name, reason, message) in &mut runtime.waiting {
        let failed_before = old
            .waiting
            .iter()
            .any(|(n, r, _)| n == name && r == "ErrImagePull");
        if reason == "ErrImagePull" && failed_before {
            let image = message.split('"').nth(1).unwrap_or_default().to_owned();
            *reason = "ImagePullBackOff".to_owned();
            *message = format!("Back-off pulling image \"{image}\"");
        }
    }
}

impl Node {
    pub(super) async fn sync_pods(&mut self, pods: &[Arc<Pod>], scope: &PassScope) {
        let live: Live<'_> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .filter(|p| self.on_this_node(p))
            .filter_map(|p| Some((p.uid()?, p)))
            .collect();
        self.stop_unwanted(pods, &live);
        self.confirm_never_ran(pods, scope).await;
        let mut started = self.start_pods(&live, scope).await;
        self.advance_pods(&live, &mut started);
        self.report_pods(&live, &started, scope).await;
    }

    /// Bound to this node, or to none (kubesim has no scheduler).
    fn on_this_node(&self, pod: &Pod) -> bool {
        pod.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_none_or(|n| n == self.config.node_name)
    }

    /// Stops the runtimes of pods that are gone or terminating, in the
    /// background; a terminating pod's deletion is confirmed after.
    fn stop_unwanted(&mut self, pods: &[Arc<Pod>], live: &Live<'_>) {
        let gone: Vec<String> = self
            .runtimes
            .keys()
            .filter(|uid| !live.contains_key(*uid))
            .cloned()
            .collect();
        for uid in gone {
            let Some(runtime) = self.runtimes.remove(&uid) else {
                continue;
            };
            let key = (runtime.namespace.clone(), runtime.name.clone());
            let pool = self.pod_pool.clone();
            let changed = self.changed.clone();
            let dirty = self.dirty.clone();
            let api = Api::<Pod>::namespaced(self.client.clone(), &runtime.namespace);
            let deleted = pods
                .iter()
                .find(|p| p.uid().as_deref() == Some(uid.as_str()));
            let terminating = deleted.is_some();
            // The deletion's grace period, which may be shorter than the pod's.
            let grace = deleted
                .and_then(|p| p.metadata.deletion_grace_period_seconds)
                .and_then(|s| u64::try_from(s).ok())
                .map_or(Duration::MAX, Duration::from_secs);
            let task = tokio::spawn(async move {
                let ip = runtime.ip;
                let name = runtime.name.clone();
                runtime.stop_within(grace).await;
                pool.release(ip);
                if terminating {
                    let _ = api.delete(&name, &confirm_deletion()).await;
                }
                dirty
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .volumes_released = true;
                changed.notify_one();
            });
            self.stopping.insert(key, task);
        }
        self.stopping.retain(|_, task| !task.is_finished());
    }

    /// Terminating pods this node never ran (deleted before they started):
    /// confirms at once, as kubelet does.
    async fn confirm_never_ran(&self, pods: &[Arc<Pod>], scope: &PassScope) {
        for pod in pods {
            let key = key_of(pod.as_ref());
            let never_ran = pod.metadata.deletion_timestamp.is_some()
                && pod
                    .uid()
                    .is_some_and(|uid| !self.runtimes.contains_key(&uid))
                && !self.stopping.contains_key(&key)
                && self.on_this_node(pod);
            if never_ran
                && (scope.full() || scope.dirty.pods.contains(&key))
                && let Err(error) = Api::<Pod>::namespaced(self.client.clone(), &key.0)
                    .delete(&key.1, &confirm_deletion())
                    .await
                && !is_conflict_or_missing(&error)
            {
                tracing::warn!(%error, pod = %key.1, "confirming pod deletion failed");
            }
        }
    }

    /// Starts new pods and retries waiting ones; returns the uids started.
    async fn start_pods(&mut self, live: &Live<'_>, scope: &PassScope) -> BTreeSet<String> {
        let mut started = BTreeSet::new();
        for (uid, pod) in live {
            let ns = pod.namespace().unwrap_or_default();
            let key = (ns.clone(), pod.name_any());
            let retry = self.runtimes.get(uid).is_some_and(PodRuntime::is_waiting)
                && (scope.full() || scope.dirty.config_namespaces.contains(&ns));
            if (self.runtimes.contains_key(uid) && !retry) || self.stopping.contains_key(&key) {
                continue;
            }
            let ip = match self.runtimes.get(uid) {
                Some(r) => r.ip,
                None => match self.allocate_ip(pod) {
                    Some(ip) => ip,
                    None => {
                        tracing::warn!(namespace = %ns, pod = %pod.name_any(), "no free pod address");
                        continue;
                    }
                },
            };
            let ctx = self.pod_context(pod, ns).await;
            let mut runtime =
                kubelet::start_pod(pod, ip, &self.config, &ctx, &self.containers_changed);
            if let Some(old) = self.runtimes.remove(uid) {
                back_off_pulls(&mut runtime, &old);
                runtime.started = old.started;
                runtime.began = old.began;
            }
            self.runtimes.insert(uid.clone(), runtime);
            started.insert(uid.clone());
        }
        started
    }

    /// Runs the next init container (or the containers) of pods whose
    /// init container completed, and ends pods past their
    /// `activeDeadlineSeconds`; adds the uids of pods that changed.
    fn advance_pods(&mut self, live: &Live<'_>, changed: &mut BTreeSet<String>) {
        for (uid, runtime) in &mut self.runtimes {
            let Some(pod) = live.get(uid) else { continue };
            let deadline = pod.spec.as_ref().and_then(|s| s.active_deadline_seconds);
            if runtime.check_deadline(deadline) | runtime.advance() {
                changed.insert(uid.clone());
            }
        }
    }

    /// A pod address free on the pod's container ports (instant mode, with
    /// nothing listening, needs none free).
    fn allocate_ip(&self, pod: &Pod) -> Option<Ipv4Addr> {
        let ports: Vec<u16> = if self.config.default_program == Some(Program::Instant)
            && self.config.images.is_empty()
        {
            Vec::new()
        } else {
            pod.spec
                .iter()
                .flat_map(|s| s.containers.iter())
                .flat_map(|c| c.ports.iter().flatten())
                .filter_map(|p| u16::try_from(p.container_port).ok())
                .collect()
        };
        self.pod_pool.allocate(&ports)
    }

    /// What the pod starts with: its token and, in kubelet mode, the
    /// Secrets and ConfigMaps its node could read.
    async fn pod_context(&self, pod: &Pod, namespace: String) -> Context<'_> {
        let token = service_account_token(&self.client, &self.cluster, &self.config, pod).await;
        let fetched = if self.kubelet_only {
            Some(fetch_referenced(&self.client, pod).await)
        } else {
            None
        };
        Context {
            namespace,
            stores: &self.stores,
            dns: ClusterDns {
                services: &self.shared.services,
                pods: &self.shared.pods,
            },
            token,
            fetched,
        }
    }

    /// Publishes the addresses and processes of all pods (first, so that a
    /// client that saw a status finds what it describes), then writes the
    /// status of the pods this pass concerns.
    async fn report_pods(&self, live: &Live<'_>, started: &BTreeSet<String>, scope: &PassScope) {
        let index = self
            .runtimes
            .values()
            .map(|runtime| {
                let key = (runtime.namespace.clone(), runtime.name.clone());
                let info = PodInfo {
                    ip: Some(runtime.ip),
                    pids: runtime.pids(),
                    finished: runtime.finished_containers(),
                    not_started: runtime.not_started(),
                };
                (key, info)
            })
            .collect();
        *self.shared.pods.lock().unwrap_or_else(|e| e.into_inner()) = index;
        for (uid, runtime) in &self.runtimes {
            let key = (runtime.namespace.clone(), runtime.name.clone());
            let Some(pod) = live.get(uid) else { continue };
            let wanted = scope.full()
                || started.contains(uid)
                || (scope.containers && runtime.has_processes())
                || scope.dirty.pods.contains(&key);
            if !wanted {
                continue;
            }
            let images: Vec<(String, String)> = pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .collect();
            let status = kubelet::pod_status(runtime, &images, pod.status.as_ref());
            let existing = pod
                .status
                .as_ref()
                .and_then(|s| serde_json::to_value(s).ok());
            let desired = serde_json::to_value(&status).unwrap_or_default();
            patch_status(
                Api::<Pod>::namespaced(self.client.clone(), &runtime.namespace),
                &runtime.name,
                existing,
                desired,
                POD_STATUS,
            )
            .await;
        }
    }
}
