//! The object store: every object as JSON, one global resourceVersion
//! counter, a bounded history of changes for watch replay, and the write
//! path shared by every verb (metadata rules, status subresource, schema
//! admission, generation, field ownership, no-op detection).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, OnceLock};

use serde_json::{Value, json};
use tokio::sync::broadcast;

use crate::kubesim::admission::{PolicyCache, Requester};
use crate::kubesim::conversion;
use crate::kubesim::error::{ApiError, ApiResult};
use crate::kubesim::fields::Part;
use crate::kubesim::resources::{Registry, ResourceType, StoreKind};
use crate::kubesim::schema::CompiledSchema;
use crate::kubesim::selectors::{FieldSelector, LabelSelector};

mod gc;
mod quota;
mod write;

/// Kind of a watch event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

impl EventType {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as kept in the history and sent to watchers.
#[derive(Debug)]
pub struct Change {
    /// resourceVersion of the change.
    pub rv: u64,
    /// Which resource.
    pub kind: StoreKind,
    /// Namespace (`""` for cluster-scoped).
    pub namespace: String,
    /// Event type.
    pub event: EventType,
    /// The object after the change (the last state for deletions).
    pub object: Arc<Value>,
    /// The object before the change, for selector transitions.
    pub old: Option<Arc<Value>>,
    /// `object` serialized, once for every watcher that sends it.
    pub(crate) json: OnceLock<Vec<u8>>,
}

impl Change {
    /// `object` as JSON (serialized on first use).
    pub fn json(&self) -> &[u8] {
        self.json
            .get_or_init(|| serde_json::to_vec(&*self.object).unwrap_or_default())
    }
}

/// (namespace, name)
pub type ObjectKey = (String, String);
type Located = (StoreKind, String, String);

/// What a write request may say about ownership and intent.
#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    /// `fieldManager`, or the one derived from the user agent.
    pub manager: String,
    /// `dryRun=All`: validate and answer, store nothing.
    pub dry_run: bool,
    /// The new object comes from server-side apply, which has already
    /// updated `managedFields`.
    pub applied: bool,
    /// The main resource or its `status` subresource.
    pub part: Part,
    /// `fieldValidation=Strict`: refuse fields the schema does not declare
    /// (custom resources; built-in kinds are not checked).
    pub strict: bool,
    /// Who asks, for admission policies; `None` for kubesim's own writes
    /// (garbage collection, namespace lifecycle), which are not admitted.
    pub requester: Option<Requester>,
}

/// Deletion options.
#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    /// `Background` (default), `Foreground` or `Orphan`.
    pub propagation: Option<String>,
    /// `preconditions.uid`.
    pub uid: Option<String>,
    /// `preconditions.resourceVersion`.
    pub resource_version: Option<String>,
    /// `dryRun=All`.
    pub dry_run: bool,
    /// `gracePeriodSeconds` (pods, with graceful pod deletion on).
    pub grace_period: Option<i64>,
    /// Who asks, for admission policies; `None` for kubesim's own deletions.
    pub requester: Option<Requester>,
}

/// The result of a write: the object and whether anything changed.
#[derive(Clone, Debug)]
pub struct Written {
    /// The object as stored (or as it would be, for dry runs), as served.
    pub object: Arc<Value>,
    /// Whether the store changed.
    pub wrote: bool,
}

/// The in-memory cluster state.
#[derive(Debug)]
pub struct Store {
    pub(crate) registry: Registry,
    objects: HashMap<StoreKind, BTreeMap<ObjectKey, Arc<Value>>>,
    by_uid: HashMap<String, Located>,
    dependents: HashMap<String, BTreeSet<Located>>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    changes: broadcast::Sender<Arc<Change>>,
    /// Changes made under the current lock, not yet sent to watchers: see
    /// [`Store::publish`].
    outbox: Vec<Arc<Change>>,
    schemas: HashMap<(String, String, String), Arc<CompiledSchema>>,
    admission: PolicyCache,
    name_seed: u64,
    cluster_ips: u64,
    pub(crate) graceful_pods: bool,
}

fn now() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .map_or_else(
            |_| jiff::Timestamp::now().to_string(),
            |t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        )
}

fn name_of(object: &Value) -> Option<&str> {
    object["metadata"]["name"]
        .as_str()
        .filter(|n| !n.is_empty())
}

fn meta_mut(object: &mut Value) -> &mut serde_json::Map<String, Value> {
    if !object["metadata"].is_object() {
        object["metadata"] = json!({});
    }
    object["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// Whether two objects are equal at the top level apart from the `skipped`
/// keys (compared in place: no copies of either).
fn equal_except(old: &Value, new: &Value, skipped: &[&str]) -> bool {
    match (old.as_object(), new.as_object()) {
        (Some(old), Some(new)) => {
            let kept = |m: &'_ serde_json::Map<String, Value>| {
                m.iter()
                    .filter(|(k, _)| !skipped.contains(&k.as_str()))
                    .count()
            };
            kept(old) == kept(new)
                && old
                    .iter()
                    .filter(|(k, _)| !skipped.contains(&k.as_str()))
                    .all(|(k, v)| new.get(k) == Some(v))
        }
        _ => old == new,
    }
}

/// Whether two objects differ outside metadata and status: what bumps
/// `metadata.generation`.
fn spec_changed(old: &Value, new: &Value) -> bool {
    !equal_except(old, new, &["metadata", "status", "apiVersion", "kind"])
}

/// Whether a new version equals the stored one, apart from the apiVersion
/// it was written through and the resourceVersion it names.
fn unchanged(old: &Value, new: &Value) -> bool {
    equal_except(old, new, &["apiVersion", "metadata"])
        && equal_except(&old["metadata"], &new["metadata"], &["resourceVersion"])
}

fn finalizers(object: &Value) -> Vec<String> {
    object["metadata"]["finalizers"]
        .as_array()
        .map(|f| {
            f.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn owner_uids(object: &Value) -> Vec<String> {
    object["metadata"]["ownerReferences"]
        .as_array()
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r["uid"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    /// An empty cluster with the `default`, `kube-system` and `kube-public`
    /// namespaces.
    pub fn new(history_limit: usize) -> Self {
        let (changes, _) = broadcast::channel(65_536);
        let mut store = Self {
            registry: Registry::builtin(),
            objects: HashMap::new(),
            by_uid: HashMap::new(),
            dependents: HashMap::new(),
            rv: 0,
            history: VecDeque::new(),
            history_limit: history_limit.max(16),
            changes,
            outbox: Vec::new(),
            schemas: HashMap::new(),
            admission: PolicyCache::default(),
            name_seed: 0x9e37_79b9_7f4a_7c15,
            // 10.96.0.1 is the `kubernetes` Service in a real cluster.
            cluster_ips: 1,
            graceful_pods: false,
        };
        let namespaces = store
            .registry
            .find("", "v1", "namespaces")
            .expect("namespaces are built in");
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let object = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let options = WriteOptions {
                manager: "kubesim".into(),
                ..WriteOptions::default()
            };
            store
                .create(&namespaces, "", object, &options)
                .expect("built-in namespaces are valid");
        }
        store.publish();
        store
    }

    /// The current resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Subscribes to every future change.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Change>> {
        self.changes.subscribe()
    }

    /// Changes after `rv` from the history, or 410 when they are gone.
    pub fn changes_since(&self, rv: u64) -> ApiResult<Vec<Arc<Change>>> {
        if let Some(oldest) = self.history.front()
            && rv + 1 < oldest.rv
        {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                oldest.rv - 1
            )));
        }
        Ok(self.history.iter().filter(|c| c.rv > rv).cloned().collect())
    }

    /// Objects of a resource, in one namespace or all.
    pub fn objects(&self, kind: &StoreKind, namespace: Option<&str>) -> Vec<Arc<Value>> {
        let Some(map) = self.objects.get(kind) else {
            return Vec::new();
        };
        match namespace {
            Some(ns) => map
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => map.values().cloned().collect(),
        }
    }

    /// One object.
    pub fn object(&self, kind: &StoreKind, namespace: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(kind)?
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Reads one object, 404 if missing.
    pub fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<Arc<Value>> {
        self.object(&rt.store_key(), namespace, name)
            .map(|o| served(&o, rt))
            .ok_or_else(|| ApiError::not_found(rt.subject(), name))
    }

    /// Lists objects matching the selectors, after `continue_from`, at most
    /// `limit`; returns the items and the key to continue from.
    pub fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &LabelSelector,
        fields: &FieldSelector,
        limit: Option<usize>,
        continue_from: Option<&ObjectKey>,
    ) -> (Vec<Arc<Value>>, Option<ObjectKey>) {
        let Some(map) = self.objects.get(&rt.store_key()) else {
            return (Vec::new(), None);
        };
        // Keys sort by (namespace, name): a namespaced list, or a page after
        // `continue_from`, starts where it should instead of scanning.
        let lower = match (continue_from, namespace) {
            (Some(after), _) => Bound::Excluded(after.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_owned(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let mut items = Vec::new();
        let mut iter = map
            .range((lower, Bound::Unbounded))
            .take_while(|((ns, _), _)| namespace.is_none_or(|n| n == ns))
            .filter(|(_, o)| labels.matches(o) && conversion::fields_match(fields, o, rt));
        let mut last = None;
        for (key, object) in iter.by_ref() {
            items.push(served(object, rt));
            last = Some(key.clone());
            if limit.is_some_and(|l| items.len() >= l) {
                break;
            }
        }
        let more = limit.is_some() && iter.next().is_some();
        (items, if more { last } else { None })
    }

    fn schema_for(&mut self, rt: &ResourceType) -> Option<Arc<CompiledSchema>> {
        let schema = rt.schema.as_ref()?;
        let key = (rt.group.clone(), rt.version.clone(), rt.plural.clone());
        Some(
            self.schemas
                .entry(key)
                .or_insert_with(|| Arc::new(CompiledSchema::new(schema.clone())))
                .clone(),
        )
    }
    /// Serves exactly the resources the stored CRDs define.
    fn refresh_custom_types(&mut self) {
        let crd_kind = StoreKind {
            group: "apiextensions.k8s.io".into(),
            plural: "customresourcedefinitions".into(),
        };
        let crds = self.objects(&crd_kind, Some(""));
        self.registry.set_custom(&crds);
        self.schemas.clear();
    }

    /// Stores a new version, bumps the resourceVersion, records the change.
    fn put(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        mut object: Value,
        old: Option<Arc<Value>>,
    ) -> Arc<Value> {
        self.rv += 1;
        meta_mut(&mut object).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let object = Arc::new(object);
        let kind = rt.store_key();
        let key = (namespace.to_string(), name.to_string());
        let located = (kind.clone(), namespace.to_string(), name.to_string());
        if let Some(old) = &old {
            for owner in owner_uids(old) {
                if let Some(set) = self.dependents.get_mut(&owner) {
                    set.remove(&located);
                }
            }
        }
        for owner in owner_uids(&object) {
            self.dependents
                .entry(owner)
                .or_default()
                .insert(located.clone());
        }
        if let Some(uid) = object["metadata"]["uid"].as_str() {
            self.by_uid.insert(uid.to_string(), located);
        }
        self.objects
            .entry(kind.clone())
            .or_default()
            .insert(key, object.clone());
        let event = if old.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(Change {
            rv: self.rv,
            kind,
            namespace: namespace.to_string(),
            event,
            object: object.clone(),
            old,
            json: OnceLock::new(),
        });
        object
    }

    /// Keeps a change in the history (read under the lock) and holds it
    /// for watchers until [`Store::publish`].
    fn record(&mut self, change: Change) {
        let change = Arc::new(change);
        self.history.push_back(change.clone());
        while self.history.len() > self.history_limit {
            self.history.pop_front();
        }
        self.outbox.push(change);
    }

    /// Sends the changes made since the last call to watchers. Whoever
    /// locks the store for writing calls it just before releasing the lock
    /// (`routes::Locked` does), so that watchers see a write when readers
    /// can: after the request that made it is in the request log.
    pub(crate) fn publish(&mut self) {
        for change in self.outbox.drain(..) {
            // No receivers is fine.
            let _ = self.changes.send(change);
        }
    }
}

/// The stored object as served at a version: only apiVersion differs.
/// A copy to change; [`served`] shares the stored object where it can.
pub fn present(object: &Value, rt: &ResourceType) -> Value {
    let mut out = conversion::from_storage(rt, object.clone());
    out["apiVersion"] = json!(rt.api_version());
    out
}

/// The stored object as served at a version, shared with the store when
/// it is stored at that version (copied only to rewrite `apiVersion`).
pub fn served(object: &Arc<Value>, rt: &ResourceType) -> Arc<Value> {
    if object["apiVersion"]
        .as_str()
        .is_some_and(|v| rt.is_api_version(v))
    {
        object.clone()
    } else {
        Arc::new(present(object, rt))
    }
}

/// Sets `metadata.name`.
pub fn set_name(object: &mut Value, name: &str) {
    meta_mut(object).insert("name".into(), json!(name));
}
