//! Deletion: finalizers and deletionTimestamp, propagation policies
//! (Background, Foreground, Orphan), ownerReference garbage collection,
//! namespace termination, and what deleting a CRD takes with it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    Change, DeleteOptions, EventType, Store, WriteOptions, finalizers, meta_mut, now, owner_uids,
    present, served,
};
use crate::kubesim::admission::Operation;
use crate::kubesim::error::{ApiError, ApiResult};
use crate::kubesim::resources::{ResourceType, StoreKind};

impl Store {
    /// Removes an object for good, then collects what depended on it.
    pub(super) fn remove(
        &mut self,
        kind: &StoreKind,
        namespace: &str,
        name: &str,
        propagation: Option<&str>,
    ) {
        let key = (namespace.to_string(), name.to_string());
        let Some(old) = self.objects.get_mut(kind).and_then(|m| m.remove(&key)) else {
            return;
        };
        self.rv += 1;
        let mut last = (*old).clone();
        meta_mut(&mut last).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let located = (kind.clone(), namespace.to_string(), name.to_string());
        for owner in owner_uids(&old) {
            if let Some(set) = self.dependents.get_mut(&owner) {
                set.remove(&located);
                if set.is_empty() {
                    self.dependents.remove(&owner);
                }
            }
        }
        self.record(Change {
            rv: self.rv,
            kind: kind.clone(),
            namespace: namespace.to_string(),
            event: EventType::Deleted,
            object: Arc::new(last),
            old: Some(old.clone()),
            json: std::sync::OnceLock::new(),
        });
        let uid = old["metadata"]["uid"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.by_uid.remove(&uid);
        self.collect_dependents(&uid, propagation == Some("Orphan"));
        self.finish_foreground_owners(&old);
        if kind.group.is_empty() && kind.plural == "namespaces" {
            // Nothing may outlive its namespace.
            self.purge_namespace(name);
        } else if !namespace.is_empty() {
            self.finish_namespace(namespace);
        }
        if kind.group == "apiextensions.k8s.io" {
            self.refresh_custom_types();
            self.purge_custom_objects(&old);
        }
        if super::quota::counted(kind) && !namespace.is_empty() {
            self.refresh_quotas(namespace);
        }
    }

    fn purge_custom_objects(&mut self, crd: &Value) {
        let (Some(group), Some(plural)) = (
            crd["spec"]["group"].as_str(),
            crd["spec"]["names"]["plural"].as_str(),
        ) else {
            return;
        };
        let kind = StoreKind {
            group: group.into(),
            plural: plural.into(),
        };
        for object in self.objects(&kind, None) {
            let ns = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = object["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.remove(&kind, &ns, &name, None);
        }
    }

    /// Whether an object names owners and none of them exists (by uid).
    pub(super) fn owners_all_gone(&self, object: &Value) -> bool {
        let owners = owner_uids(object);
        object["metadata"]["deletionTimestamp"].is_null()
            && !owners.is_empty()
            && owners.iter().all(|uid| !self.by_uid.contains_key(uid))
    }

    /// Garbage collection: dependents of a deleted owner are deleted (or,
    /// for `Orphan`, released from it).
    fn collect_dependents(&mut self, owner_uid: &str, orphan: bool) {
        let Some(dependents) = self.dependents.remove(owner_uid) else {
            return;
        };
        for (kind, ns, name) in dependents {
            let Some(object) = self.object(&kind, &ns, &name) else {
                continue;
            };
            let Some(rt) = self.registry.storage_type(&kind) else {
                continue;
            };
            if orphan {
                let mut released = (*object).clone();
                if let Some(refs) = released["metadata"]["ownerReferences"].as_array_mut() {
                    refs.retain(|r| r["uid"].as_str() != Some(owner_uid));
                }
                let options = WriteOptions {
                    manager: "kube-controller-manager".into(),
                    ..WriteOptions::default()
                };
                let _ = self.commit(&rt, &ns, &name, Some(object), released, &options);
            } else {
                self.delete_located(&rt, &ns, &name, None);
            }
        }
    }

    /// An owner waiting in foreground deletion goes once its dependents are gone.
    fn finish_foreground_owners(&mut self, dependent: &Value) {
        for owner in owner_uids(dependent) {
            let Some((kind, ns, name)) = self.by_uid.get(&owner).cloned() else {
                continue;
            };
            if self.dependents.get(&owner).is_some_and(|d| !d.is_empty()) {
                continue;
            }
            let Some(object) = self.object(&kind, &ns, &name) else {
                continue;
            };
            if finalizers(&object)
                .iter()
                .any(|f| f == "foregroundDeletion")
            {
                self.drop_finalizer(&kind, &ns, &name, &object, "foregroundDeletion");
            }
        }
    }

    fn drop_finalizer(
        &mut self,
        kind: &StoreKind,
        ns: &str,
        name: &str,
        object: &Arc<Value>,
        finalizer: &str,
    ) {
        let Some(rt) = self.registry.storage_type(kind) else {
            return;
        };
        let mut updated = (**object).clone();
        if let Some(list) = updated["metadata"]["finalizers"].as_array_mut() {
            list.retain(|f| f.as_str() != Some(finalizer));
        }
        let options = WriteOptions {
            manager: "kube-controller-manager".into(),
            ..WriteOptions::default()
        };
        let _ = self.commit(&rt, ns, name, Some(object.clone()), updated, &options);
    }

    fn namespaced_kinds(&self) -> Vec<StoreKind> {
        self.objects.keys().cloned().collect()
    }

    /// Deletes everything in a terminating namespace, and the namespace once empty.
    fn terminate_namespace(&mut self, namespace: &str) {
        for kind in self.namespaced_kinds() {
            for object in self.objects(&kind, Some(namespace)) {
                if !object["metadata"]["deletionTimestamp"].is_null() {
                    continue;
                }
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                if let Some(rt) = self.registry.storage_type(&kind) {
                    self.delete_located(&rt, namespace, &name, None);
                }
            }
        }
        self.finish_namespace(namespace);
    }

    pub(super) fn finish_namespace(&mut self, namespace: &str) {
        let ns_kind = StoreKind {
            group: String::new(),
            plural: "namespaces".into(),
        };
        let Some(ns) = self.object(&ns_kind, "", namespace) else {
            return;
        };
        if ns["metadata"]["deletionTimestamp"].is_null() || !finalizers(&ns).is_empty() {
            return;
        }
        let empty = self
            .objects
            .iter()
            .filter(|(k, _)| **k != ns_kind)
            .all(|(_, m)| {
                m.range((namespace.to_string(), String::new())..)
                    .next()
                    .is_none_or(|((n, _), _)| n != namespace)
            });
        if empty {
            self.remove(&ns_kind, "", namespace, None);
        }
    }

    fn purge_namespace(&mut self, namespace: &str) {
        for kind in self.namespaced_kinds() {
            for object in self.objects(&kind, Some(namespace)) {
                let name = object["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                self.remove(&kind, namespace, &name, None);
            }
        }
    }

    pub(super) fn delete_located(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        propagation: Option<&str>,
    ) {
        let _ = self.delete(
            rt,
            ns,
            name,
            &DeleteOptions {
                propagation: propagation.map(str::to_string),
                ..DeleteOptions::default()
            },
        );
    }

    /// Deletes an object: at once when nothing holds it, otherwise marks it
    /// with a deletionTimestamp until its finalizers are gone. Returns the
    /// object and whether it is gone.
    pub fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> ApiResult<(Value, bool)> {
        let kind = rt.store_key();
        let object = self
            .object(&kind, namespace, name)
            .ok_or_else(|| ApiError::not_found(rt.subject(), name))?;
        check_preconditions(rt, name, &object, options)?;
        if let Some(requester) = &options.requester {
            let old = served(&object, rt);
            self.admit(
                rt,
                Operation::Delete,
                (namespace, name),
                (None, Some(&old)),
                requester,
                options.dry_run,
            )?;
        }
        if options.dry_run {
            return Ok((present(&object, rt), false));
        }
        let propagation = options.propagation.as_deref();
        let is_namespace = kind.group.is_empty() && kind.plural == "namespaces";
        let grace = self.grace_period(&kind, &object, options);
        let held = self.holding_finalizers(&object, propagation);
        if held.is_empty() && !is_namespace && grace == 0 {
            self.remove(&kind, namespace, name, propagation);
            return Ok((present(&object, rt), true));
        }
        self.mark_deleted(rt, (namespace, name), &object, held, grace);
        if is_namespace {
            self.terminate_namespace(name);
        } else if propagation == Some("Foreground") {
            let uid = object["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            self.collect_dependents(&uid, false);
            if let Some(current) = self.object(&kind, namespace, name) {
                self.finish_foreground_owners_of(&current);
            }
        }
        match self.object(&kind, namespace, name) {
            Some(current) => Ok((present(&current, rt), false)),
            None => Ok((present(&object, rt), true)),
        }
    }

    /// The grace period of a deletion: with graceful pod deletion a pod
    /// stays, terminating, until its kubelet (nodesim) deletes it again
    /// with a zero grace period; everything else goes at once.
    fn grace_period(&self, kind: &StoreKind, object: &Value, options: &DeleteOptions) -> i64 {
        let is_pod = kind.group.is_empty() && kind.plural == "pods";
        if !(is_pod && self.graceful_pods) {
            return 0;
        }
        options.grace_period.unwrap_or_else(|| {
            object["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30)
        })
    }

    /// The finalizers that hold the object, `foregroundDeletion` added for
    /// a foreground deletion of an object with dependents.
    fn holding_finalizers(&self, object: &Value, propagation: Option<&str>) -> Vec<String> {
        let mut held = finalizers(object);
        if propagation == Some("Foreground")
            && self
                .dependents
                .get(object["metadata"]["uid"].as_str().unwrap_or_default())
                .is_some_and(|d| !d.is_empty())
            && !held.iter().any(|f| f == "foregroundDeletion")
        {
            held.push("foregroundDeletion".into());
        }
        held
    }

    /// Marks a held object deleted (deletionTimestamp, grace period,
    /// finalizers; a namespace Terminating), unless it already is so.
    fn mark_deleted(
        &mut self,
        rt: &ResourceType,
        (namespace, name): (&str, &str),
        object: &Arc<Value>,
        held: Vec<String>,
        grace: i64,
    ) {
        let grace_changed =
            object["metadata"]["deletionGracePeriodSeconds"].as_i64() != Some(grace);
        if !object["metadata"]["deletionTimestamp"].is_null()
            && held == finalizers(object)
            && !grace_changed
        {
            return;
        }
        let mut marked = (**object).clone();
        let meta = meta_mut(&mut marked);
        if meta.get("deletionTimestamp").is_none_or(Value::is_null) {
            meta.insert("deletionTimestamp".into(), json!(now()));
        }
        meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
        meta.insert("finalizers".into(), json!(held));
        if rt.group.is_empty() && rt.plural == "namespaces" {
            marked["status"]["phase"] = json!("Terminating");
        }
        let generation = marked["metadata"]["generation"].as_i64().unwrap_or(1);
        meta_mut(&mut marked).insert("generation".into(), json!(generation + 1));
        self.put(rt, namespace, name, marked, Some(object.clone()));
    }

    fn finish_foreground_owners_of(&mut self, owner: &Arc<Value>) {
        let uid = owner["metadata"]["uid"].as_str().unwrap_or_default();
        if self.dependents.get(uid).is_none_or(|d| d.is_empty())
            && finalizers(owner).iter().any(|f| f == "foregroundDeletion")
        {
            let ns = owner["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = owner["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if let Some((kind, _, _)) = self.by_uid.get(uid).cloned() {
                self.drop_finalizer(&kind, &ns, &name, owner, "foregroundDeletion");
            }
        }
    }
}

/// `preconditions.uid` and `preconditions.resourceVersion`.
fn check_preconditions(
    rt: &ResourceType,
    name: &str,
    object: &Value,
    options: &DeleteOptions,
) -> ApiResult<()> {
    if let Some(uid) = &options.uid
        && object["metadata"]["uid"].as_str() != Some(uid)
    {
        return Err(ApiError::conflict(
            rt.subject(),
            name,
            &format!(
                "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                object["metadata"]["uid"].as_str().unwrap_or_default()
            ),
        ));
    }
    if let Some(rv) = &options.resource_version
        && object["metadata"]["resourceVersion"].as_str() != Some(rv)
    {
        return Err(ApiError::conflict(
            rt.subject(),
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        ));
    }
    Ok(())
}
