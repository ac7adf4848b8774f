//! The write path: create, update and patch results all end in
//! `commit` (carry-over of what clients may not change, defaults,
//! validation and schema, generation, field ownership, admission, no-op
//! detection), then the store.

use std::sync::Arc;

use serde_json::{Value, json};

use super::quota;
use super::{
    Store, WriteOptions, Written, finalizers, meta_mut, name_of, now, present, served,
    spec_changed, unchanged,
};
use crate::kubesim::admission::{self, Operation, Requester};
use crate::kubesim::conversion;
use crate::kubesim::defaults;
use crate::kubesim::error::{ApiError, ApiResult, Cause};
use crate::kubesim::fields::{self, Part, Writer};
use crate::kubesim::resources::{ResourceType, StoreKind};
use crate::kubesim::validation;

impl Store {
    fn next_name_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        // xorshift; deterministic per store, unique enough for generateName.
        let mut out = String::new();
        for _ in 0..5 {
            self.name_seed ^= self.name_seed << 13;
            self.name_seed ^= self.name_seed >> 7;
            self.name_seed ^= self.name_seed << 17;
            out.push(ALPHABET[(self.name_seed % ALPHABET.len() as u64) as usize] as char);
        }
        out
    }

    fn check_namespace(&self, rt: &ResourceType, namespace: &str, name: &str) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let ns_kind = StoreKind {
            group: String::new(),
            plural: "namespaces".into(),
        };
        match self.object(&ns_kind, "", namespace) {
            None => Err(ApiError::not_found(
                crate::kubesim::error::Subject {
                    group: "",
                    resource: "namespaces",
                },
                namespace,
            )),
            Some(ns) if !ns["metadata"]["deletionTimestamp"].is_null() => {
                Err(ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                    rt.plural,
                )))
            }
            Some(_) => Ok(()),
        }
    }

    /// Creates an object (POST).
    pub fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        mut object: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        if !object.is_object() {
            return Err(ApiError::bad_request("the body must be a JSON object"));
        }
        object["apiVersion"] = json!(rt.api_version());
        object["kind"] = json!(rt.kind);
        place_in_namespace(rt, namespace, &mut object)?;
        let name = self.name_or_generate(rt, &mut object)?;
        self.check_namespace(rt, namespace, &name)?;
        if self.object(&rt.store_key(), namespace, &name).is_some() {
            return Err(ApiError::already_exists(rt.subject(), &name));
        }
        initialise(rt, &mut object);
        self.commit(rt, namespace, &name, None, object, options)
    }

    /// The object's name, generated from `generateName` when it has none.
    fn name_or_generate(&mut self, rt: &ResourceType, object: &mut Value) -> ApiResult<String> {
        if name_of(object).is_none()
            && let Some(prefix) = object["metadata"]["generateName"]
                .as_str()
                .map(str::to_string)
        {
            let name = format!("{prefix}{}", self.next_name_suffix());
            meta_mut(object).insert("name".into(), json!(name));
        }
        name_of(object).map(str::to_string).ok_or_else(|| {
            ApiError::invalid(
                &rt.kind,
                &rt.group,
                "",
                vec![Cause {
                    reason: "FieldValueRequired".into(),
                    field: "metadata.name".into(),
                    message: "metadata.name: Required value: name or generateName is required"
                        .into(),
                }],
            )
        })
    }

    /// Replaces an object (PUT), on the main resource or `status`.
    pub fn update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        let old = self
            .object(&rt.store_key(), namespace, name)
            .ok_or_else(|| ApiError::not_found(rt.subject(), name))?;
        if name_of(&object).is_some_and(|n| n != name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({name})",
                name_of(&object).unwrap_or_default()
            )));
        }
        match object["metadata"]["resourceVersion"].as_str() {
            Some(rv)
                if !rv.is_empty() && Some(rv) != old["metadata"]["resourceVersion"].as_str() =>
            {
                return Err(ApiError::conflict(
                    rt.subject(),
                    name,
                    "the object has been modified; please apply your changes to the latest version and try again",
                ));
            }
            Some(rv) if !rv.is_empty() => {}
            _ if rt.custom => {
                // Like the real server for custom resources: an update must
                // name the version it replaces.
                return Err(ApiError::invalid(
                    &rt.kind,
                    &rt.group,
                    name,
                    vec![Cause {
                        reason: "FieldValueInvalid".into(),
                        field: "metadata.resourceVersion".into(),
                        message: "metadata.resourceVersion: Invalid value: 0: must be specified for an update".into(),
                    }],
                ));
            }
            _ => {}
        }
        self.commit(rt, namespace, name, Some(old), object, options)
    }

    /// Writes a new version computed from the old one (patches, apply).
    pub fn replace_with(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        old: Arc<Value>,
        new: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        if let Some(rv) = new["metadata"]["resourceVersion"].as_str()
            && !rv.is_empty()
            && Some(rv) != old["metadata"]["resourceVersion"].as_str()
        {
            return Err(ApiError::conflict(
                rt.subject(),
                name,
                "the object has been modified; please apply your changes to the latest version and try again",
            ));
        }
        self.commit(rt, namespace, name, Some(old), new, options)
    }

    /// The write path every verb ends in.
    /// The write path every verb ends in.
    pub(super) fn commit(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        old: Option<Arc<Value>>,
        new: Value,
        options: &WriteOptions,
    ) -> ApiResult<Written> {
        let new = conversion::to_storage(rt, new);
        let new = self.normalise(rt, (namespace, name), old.as_deref(), new, options.part);
        let mut new = self.validate(rt, name, old.as_ref(), new, options.strict)?;
        if old.is_none() && quota::is_pods(rt) {
            self.admit_pod(namespace, name, &mut new)?;
        }
        if let Some(old) = &old {
            let generation = old["metadata"]["generation"].as_i64().unwrap_or(1);
            let bumped = if spec_changed(old, &new) {
                generation + 1
            } else {
                generation
            };
            meta_mut(&mut new).insert("generation".into(), json!(bumped));
        }
        if !options.applied {
            let writer = Writer {
                manager: &options.manager,
                api_version: &rt.api_version(),
                part: options.part,
                now: &now(),
            };
            fields::track_update(old.as_deref(), &mut new, rt.schema.as_deref(), &writer);
        }
        if let Some(requester) = &options.requester {
            // Validating admission sees the object as it would be stored,
            // and runs even when the write changes nothing.
            let operation = if old.is_some() {
                Operation::Update
            } else {
                Operation::Create
            };
            let old = old.as_ref().map(|o| served(o, rt));
            let objects = (Some(&new), old.as_deref());
            let dry_run = options.dry_run;
            self.admit(
                rt,
                operation,
                (namespace, name),
                objects,
                requester,
                dry_run,
            )?;
        }
        if let Some(old) = &old {
            // Compared as stored: the version written through does not count.
            if unchanged(old, &new) {
                return Ok(Written {
                    object: served(old, rt),
                    wrote: false,
                });
            }
        }
        if options.dry_run {
            return Ok(Written {
                object: Arc::new(present(&new, rt)),
                wrote: false,
            });
        }
        Ok(self.store_written(rt, (namespace, name), new, old))
    }

    /// The new version with what the client may not change carried over,
    /// its identity set and the defaults filled in.
    fn normalise(
        &mut self,
        rt: &ResourceType,
        (namespace, name): (&str, &str),
        old: Option<&Value>,
        mut new: Value,
        part: Part,
    ) -> Value {
        new["apiVersion"] = json!(conversion::storage_api_version(rt));
        new["kind"] = json!(rt.kind);
        if let Some(old) = old {
            new = carry_over(rt, old, new, part);
        }
        let meta = meta_mut(&mut new);
        meta.insert("name".into(), json!(name));
        if rt.namespaced {
            meta.insert("namespace".into(), json!(namespace));
        }
        let mut next_ip = self.cluster_ips;
        defaults::apply(rt, old, &mut new, &mut || {
            next_ip += 1;
            format!("10.96.{}.{}", next_ip / 254, next_ip % 254 + 1)
        });
        self.cluster_ips = next_ip;
        new
    }

    /// Validation (metadata, immutable fields, definitions) and, for custom
    /// resources, the schema: unknown fields (`strict`), structural checks,
    /// defaults, pruning and CEL rules.
    fn validate(
        &mut self,
        rt: &ResourceType,
        name: &str,
        old: Option<&Arc<Value>>,
        new: Value,
        strict: bool,
    ) -> ApiResult<Value> {
        let mut causes = validation::metadata(rt, &new);
        if !rt.custom {
            causes.extend(validation::spec(rt, &new, old.map(|o| o.as_ref())));
        }
        match old {
            Some(old) => causes.extend(validation::update(rt, old, &new)),
            None if conversion::stored_as(&rt.group, &rt.plural) == ("", "events") => {
                causes.extend(validation::event_create(rt, &new));
            }
            None => {}
        }
        causes.extend(admission::check_definition(rt, &new));
        if !causes.is_empty() {
            return Err(ApiError::invalid(&rt.kind, &rt.group, name, causes));
        }
        let Some(schema) = self.schema_for(rt) else {
            return Ok(new);
        };
        let unknown = if strict {
            schema.unknown_fields(&new)
        } else {
            Vec::new()
        };
        if !unknown.is_empty() {
            let listed: Vec<String> = unknown
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect();
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{version}\" cannot be handled as a {kind}: strict decoding error: {}",
                listed.join(", "),
                kind = rt.kind,
                version = rt.version,
            )));
        }
        let old_for_rules = old.map(|o| served(o, rt));
        schema
            .admit(new, old_for_rules.as_deref())
            .map_err(|causes| ApiError::invalid(&rt.kind, &rt.group, name, causes))
    }

    /// Stores a written version; then a deleted object that nothing holds
    /// any more goes, and one whose owners are all gone is collected.
    fn store_written(
        &mut self,
        rt: &ResourceType,
        (namespace, name): (&str, &str),
        new: Value,
        old: Option<Arc<Value>>,
    ) -> Written {
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        // Gone once deleted, unheld, and (pods) past their grace period.
        let finished = !new["metadata"]["deletionTimestamp"].is_null()
            && finalizers(&new).is_empty()
            && new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                == 0;
        let stored = self.put(rt, namespace, name, new, old);
        if finished && is_namespace {
            self.finish_namespace(name);
        } else if finished {
            self.remove(&rt.store_key(), namespace, name, None);
        } else if self.owners_all_gone(&stored) {
            // The garbage collector deletes what only absent owners own.
            self.delete_located(rt, namespace, name, None);
        }
        if rt.group == "apiextensions.k8s.io" {
            self.refresh_custom_types();
        }
        if quota::counted(&rt.store_key()) {
            self.refresh_quotas(namespace);
        }
        Written {
            object: served(&stored, rt),
            wrote: true,
        }
    }

    /// Checks a client's write against the stored admission policies.
    pub(crate) fn admit(
        &mut self,
        rt: &ResourceType,
        operation: Operation,
        (namespace, name): (&str, &str),
        (object, old): (Option<&Value>, Option<&Value>),
        requester: &Requester,
        dry_run: bool,
    ) -> ApiResult<()> {
        let kind = |plural: &str| StoreKind {
            group: admission::GROUP.to_owned(),
            plural: plural.to_owned(),
        };
        let bindings = self.objects(&kind(admission::BINDINGS), Some(""));
        if bindings.is_empty() {
            return Ok(());
        }
        let policies = self.objects(&kind(admission::POLICIES), Some(""));
        let is_namespace = rt.group.is_empty() && rt.plural == "namespaces";
        let namespace_object = if rt.namespaced {
            let namespaces = StoreKind {
                group: String::new(),
                plural: "namespaces".into(),
            };
            self.object(&namespaces, "", namespace)
        } else {
            None
        };
        let request = admission::Request {
            rt,
            operation,
            // The API server's request info names a Namespace's own name as
            // the namespace of a request to it (not of a create by POST).
            namespace: if is_namespace && operation != Operation::Create {
                name
            } else {
                namespace
            },
            name,
            object,
            old,
            namespace_object: namespace_object.as_deref(),
            requester,
            dry_run,
        };
        self.admission.admit(&policies, &bindings, &request)
    }
}

/// Sets the object's namespace to the request's (refusing another one), or
/// drops it for cluster-scoped kinds.
fn place_in_namespace(rt: &ResourceType, namespace: &str, object: &mut Value) -> ApiResult<()> {
    let meta = meta_mut(object);
    if !rt.namespaced {
        meta.remove("namespace");
        return Ok(());
    }
    match meta.get("namespace").and_then(Value::as_str) {
        Some(ns) if !ns.is_empty() && ns != namespace => Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        )),
        _ => {
            meta.insert("namespace".into(), json!(namespace));
            Ok(())
        }
    }
}

/// What the server sets on a new object: identity, creation time,
/// generation 1, no status where a subresource owns it (or the initial
/// status of namespaces, pods and CRDs).
fn initialise(rt: &ResourceType, object: &mut Value) {
    let meta = meta_mut(object);
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(now()));
    meta.insert("generation".into(), json!(1));
    for server_owned in [
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "resourceVersion",
        "selfLink",
    ] {
        meta.remove(server_owned);
    }
    // Status is the server's (and controllers') to write: a create through
    // an endpoint with a status subresource starts without one.
    if rt.status_subresource
        && let Some(m) = object.as_object_mut()
    {
        m.remove("status");
    }
    match (rt.group.as_str(), rt.plural.as_str()) {
        ("", "namespaces") => {
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        ("", "pods") => object["status"] = json!({"phase": "Pending"}),
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            object["status"] = crd_status(object);
        }
        _ => {}
    }
}

/// Keeps what a client may not change: identity, timestamps, and status or
/// everything but status depending on the endpoint.
fn carry_over(rt: &ResourceType, old: &Value, mut new: Value, part: Part) -> Value {
    if part == Part::Status {
        let mut merged = old.clone();
        merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
        if merged["status"].is_null()
            && let Some(m) = merged.as_object_mut()
        {
            m.remove("status");
        }
        if let Some(rv) = new["metadata"].get("resourceVersion") {
            meta_mut(&mut merged).insert("resourceVersion".into(), rv.clone());
        }
        // Field ownership of status writers is tracked on the stored list.
        if let Some(mf) = new["metadata"].get("managedFields") {
            meta_mut(&mut merged).insert("managedFields".into(), mf.clone());
        }
        return merged;
    }
    if rt.status_subresource {
        match old.get("status") {
            Some(status) => new["status"] = status.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
    }
    let meta = meta_mut(&mut new);
    for key in [
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ] {
        match old["metadata"].get(key) {
            Some(v) => {
                meta.insert(key.into(), v.clone());
            }
            None => {
                meta.remove(key);
            }
        }
    }
    if meta
        .get("resourceVersion")
        .is_none_or(|v| v.as_str().is_none_or(str::is_empty))
    {
        meta.insert(
            "resourceVersion".into(),
            old["metadata"]["resourceVersion"].clone(),
        );
    }
    if meta.get("managedFields").is_none() && old["metadata"].get("managedFields").is_some() {
        meta.insert(
            "managedFields".into(),
            old["metadata"]["managedFields"].clone(),
        );
    }
    if rt.group.is_empty() && rt.plural == "namespaces" {
        new["spec"] = old["spec"].clone();
    }
    new
}

/// The status a CRD gets at once: names accepted, established.
fn crd_status(crd: &Value) -> Value {
    let now = now();
    json!({
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": crd["spec"]["versions"].as_array().map(|vs| {
            vs.iter().filter(|v| v["storage"].as_bool() == Some(true)).map(|v| v["name"].clone()).collect::<Vec<_>>()
        }).unwrap_or_default(),
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ]
    })
}
