//! The HTTP face of kubesim: an axum router that parses Kubernetes API
//! paths and query parameters, applies injected faults, dispatches to the
//! verb handlers, and logs each request.
//!
//! The request log is faithful to what other clients can see: a write is
//! served under one hold of the store lock, and its record is pushed
//! before that lock is released and before watchers are sent its changes
//! ([`Locked`]). So a request that observed a write (a read, or a watch
//! event) is logged after it, and a test that saw a write's effect finds
//! its record before any mark it takes next.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, Method, Uri, header};

use crate::kubesim::PodLogs;
use crate::kubesim::admission::Requester;
use crate::kubesim::discovery;
use crate::kubesim::error::{ApiError, ApiResult};
use crate::kubesim::faults::Faults;
use crate::kubesim::fields::Part;
use crate::kubesim::handlers::{self, Output, Request, Served, flag};
use crate::kubesim::log::{RequestLog, RequestRecord, Verb};
use crate::kubesim::openapi;
use crate::kubesim::rbac::{Attributes, Policy, UserInfo};
use crate::kubesim::resources::ResourceType;
use crate::kubesim::store::{Store, WriteOptions};

/// State shared by every request.
pub(crate) struct Shared {
    /// Locked only through [`Shared::lock`], which sends watchers the
    /// changes made under the lock when releasing it.
    pub(crate) store: Mutex<Store>,
    pub(crate) log: RequestLog,
    pub(crate) faults: Faults,
    pub(crate) pod_logs: RwLock<Option<Arc<dyn PodLogs>>>,
    pub(crate) bookmark_interval: Duration,
    /// Bearer tokens issued through the TokenRequest API, and their users.
    pub(crate) tokens: Mutex<HashMap<String, UserInfo>>,
    /// Whether token holders are authorized with RBAC.
    pub(crate) rbac: bool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// The store, locked. Changes made through it reach watchers when it is
/// released ([`Store::publish`]), so that readers and watchers see a write
/// at the same moment: after whoever holds the lock has logged it.
pub(crate) struct Locked<'a>(MutexGuard<'a, Store>);

impl Deref for Locked<'_> {
    type Target = Store;

    fn deref(&self) -> &Store {
        &self.0
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Store {
        &mut self.0
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.0.publish();
    }
}

impl Shared {
    /// Locks the store (every use of it goes through here).
    pub(crate) fn lock(&self) -> Locked<'_> {
        Locked(
            self.store
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    fn tokens(&self) -> std::sync::MutexGuard<'_, HashMap<String, UserInfo>> {
        self.tokens
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new bearer token for `user`: 244 random bits.
    pub(crate) fn issue_token(&self, user: UserInfo) -> String {
        let token = format!(
            "kubesim.{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        self.tokens().insert(token.clone(), user);
        token
    }

    /// The user of the request's bearer token: `Ok(None)` without one,
    /// 401 for a token this server did not issue.
    fn authenticate(&self, headers: &HeaderMap) -> ApiResult<Option<UserInfo>> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        self.tokens()
            .get(token)
            .cloned()
            .map(Some)
            .ok_or_else(ApiError::unauthorized)
    }

    /// RBAC for token holders, from the roles and bindings in the store.
    fn authorize(&self, user: &UserInfo, target: &Target, verb: Verb) -> ApiResult<()> {
        authorize_in(&self.lock(), user, target, verb.rbac_verb())
    }
}

/// The roles and bindings in the store.
fn policy_of(store: &Store) -> ApiResult<Policy> {
    let mut objects = Vec::new();
    for resource in [
        "roles",
        "clusterroles",
        "rolebindings",
        "clusterrolebindings",
    ] {
        if let Some(rt) = store
            .registry
            .find("rbac.authorization.k8s.io", "v1", resource)
        {
            objects.extend(store.objects(&rt.store_key(), None));
        }
    }
    Policy::from_objects(objects.iter().map(AsRef::as_ref))
        .map_err(|e| ApiError::internal(format!("reading RBAC objects: {e}")))
}

/// RBAC's decision on `verb` (an RBAC verb) of `target` for `user`, from
/// the roles and bindings in `store`: the API server's 403 when refused.
fn authorize_in(store: &Store, user: &UserInfo, target: &Target, verb: &str) -> ApiResult<()> {
    let attributes = Attributes {
        verb: verb.to_owned(),
        group: target.rt.group.clone(),
        resource: target.rt.plural.clone(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
    };
    if policy_of(store)?.allows(user, &attributes) {
        Ok(())
    } else {
        Err(ApiError::forbidden_by_rbac(
            target.rt.subject(),
            &attributes.name,
            attributes.forbidden_message(&user.name),
        ))
    }
}

/// Authorization a handler does itself, after the request's own verb was
/// allowed: the API server authorizes `create` as well when a PATCH
/// creates the object (k8s.io/apiserver, `handlers/patch.go`:
/// `createAuthorizerAttributes`, checked only on the create path).
#[derive(Debug)]
pub(crate) struct Access {
    /// The user RBAC applies to: a token holder when RBAC is on; `None`
    /// when everything is allowed.
    rbac_user: Option<UserInfo>,
    /// The verbs authorized so far, for the request log.
    also: Mutex<Vec<&'static str>>,
}

impl Access {
    /// Authorizes `verb` (an RBAC verb) on the request's target too, with
    /// the RBAC objects of `store` (the caller holds its lock), and records
    /// it: the API server's 403 when refused.
    pub(crate) fn also_authorize(
        &self,
        store: &Store,
        target: &Target,
        verb: &'static str,
    ) -> ApiResult<()> {
        self.also
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(verb);
        match &self.rbac_user {
            Some(user) => authorize_in(store, user, target, verb),
            None => Ok(()),
        }
    }

    /// The verbs authorized besides the request's own, for its record.
    fn take_verbs(&self) -> Vec<&'static str> {
        std::mem::take(
            &mut *self
                .also
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The router: discovery and OpenAPI routes, everything else parsed as a
/// resource path.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/version",
            get(|| async { axum::Json(discovery::version()) }),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { "ok" }))
        .route("/livez", get(|| async { "ok" }))
        .route(
            "/api",
            get(|| async { axum::Json(discovery::core_versions()) }),
        )
        .route("/apis", get(apis))
        .route("/api/{version}", get(core_resources))
        .route("/apis/{group}", get(api_group))
        .route("/apis/{group}/{version}", get(group_resources))
        .route("/openapi/v2", get(openapi_v2))
        .route("/openapi/v3", get(openapi_v3_root))
        .route("/openapi/v3/{*path}", get(openapi_v3))
        .fallback(resource)
        .with_state(shared)
}

async fn apis(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.lock();
    axum::Json(discovery::group_list(&store.registry)).into_response()
}

async fn core_resources(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(version): axum::extract::Path<String>,
) -> Response {
    let found = discovery::resource_list(&shared.lock().registry, "", &version);
    found.map_or_else(
        || ApiError::no_route(&format!("/api/{version}")).into_response(),
        |list| axum::Json(list).into_response(),
    )
}

async fn api_group(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(group): axum::extract::Path<String>,
) -> Response {
    let found = discovery::group(&shared.lock().registry, &group);
    found.map_or_else(
        || ApiError::no_route(&format!("/apis/{group}")).into_response(),
        |g| axum::Json(g).into_response(),
    )
}

async fn group_resources(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path((group, version)): axum::extract::Path<(String, String)>,
) -> Response {
    let found = discovery::resource_list(&shared.lock().registry, &group, &version);
    found.map_or_else(
        || ApiError::no_route(&format!("/apis/{group}/{version}")).into_response(),
        |list| axum::Json(list).into_response(),
    )
}

/// `/openapi/v2` as JSON. A client that accepts only the protobuf form
/// gets 406, which kubectl treats as "no OpenAPI v2" rather than as a
/// document it cannot parse.
async fn openapi_v2(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if accept.contains("protobuf") && !accept.contains("json") {
        return (
            http::StatusCode::NOT_ACCEPTABLE,
            "only application/json is served",
        )
            .into_response();
    }
    let registry = shared.lock().registry.clone();
    axum::Json(openapi::v2(&registry)).into_response()
}

async fn openapi_v3_root(State(shared): State<Arc<Shared>>) -> Response {
    let registry = shared.lock().registry.clone();
    axum::Json(openapi::v3_root(&registry)).into_response()
}

async fn openapi_v3(
    State(shared): State<Arc<Shared>>,
    axum::extract::Path(path): axum::extract::Path<String>,
) -> Response {
    let registry = shared.lock().registry.clone();
    match openapi::v3_group(&registry, &path) {
        Some(doc) => axum::Json(doc).into_response(),
        None => ApiError::no_route(&format!("/openapi/v3/{path}")).into_response(),
    }
}

/// A parsed resource path.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) rt: Arc<ResourceType>,
    pub(crate) namespace: Option<String>,
    pub(crate) name: Option<String>,
    pub(crate) subresource: Option<String>,
}

fn parse_path(store: &Store, path: &str) -> ApiResult<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (group, version, rest) = match segments.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::no_route(path)),
    };
    let registry = &store.registry;
    let (namespace, rest) = match rest {
        ["namespaces", ns, resource, more @ ..]
            if registry
                .find(group, version, resource)
                .is_some_and(|t| t.namespaced) =>
        {
            (
                Some(ns.to_string()),
                std::iter::once(*resource)
                    .chain(more.iter().copied())
                    .collect::<Vec<_>>(),
            )
        }
        other => (None, other.to_vec()),
    };
    let (resource, name, subresource) = match rest.as_slice() {
        [resource] => (*resource, None, None),
        [resource, name] => (*resource, Some(*name), None),
        [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
        _ => return Err(ApiError::no_route(path)),
    };
    let rt = registry
        .find(group, version, resource)
        .ok_or_else(|| ApiError::no_route(path))?;
    if !rt.namespaced && namespace.is_some() {
        return Err(ApiError::no_route(path));
    }
    if let Some(sub) = subresource {
        let known = (sub == "status" && rt.status_subresource)
            || (sub == "log" && rt.group.is_empty() && rt.plural == "pods")
            || (sub == "scale" && rt.scale_subresource())
            || (sub == "token" && rt.group.is_empty() && rt.plural == "serviceaccounts");
        if !known {
            return Err(ApiError::no_route(path));
        }
    }
    Ok(Target {
        rt,
        namespace,
        name: name.map(str::to_string),
        subresource: subresource.map(str::to_string),
    })
}

fn verb_of(
    method: &Method,
    target: &Target,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
) -> ApiResult<Verb> {
    let has_name = target.name.is_some();
    Ok(match (method.as_str(), has_name) {
        ("GET", false) if flag(query, "watch") => Verb::Watch,
        ("GET", false) => Verb::List,
        ("GET", true) => Verb::Get,
        ("POST", false) => Verb::Create,
        // TokenRequest: POST serviceaccounts/<name>/token.
        ("POST", true) if target.subresource.as_deref() == Some("token") => Verb::Create,
        ("PUT", true) => Verb::Update,
        ("PATCH", true) => {
            if content_type(headers).starts_with("application/apply-patch") {
                Verb::Apply
            } else {
                Verb::Patch
            }
        }
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource ({method})"
            )));
        }
    })
}

pub(crate) fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
}

fn manager_of(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

/// Refuses Protocol Buffers bodies (typed Go clients such as `kubectl create
/// configmap` send them); kubesim speaks JSON and YAML only.
fn check_media_type(headers: &HeaderMap) -> ApiResult<()> {
    let media = content_type(headers);
    if media.contains("protobuf") || media.contains("cbor") {
        return Err(ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {media})"
        )));
    }
    Ok(())
}

/// Every resource request.
async fn resource(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let target = match parse_path(&shared.lock(), uri.path()) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let verb = match verb_of(&method, &target, &query, &headers) {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let user = shared.authenticate(&headers);
    let mut record = RequestRecord {
        user: user
            .as_ref()
            .ok()
            .and_then(Option::as_ref)
            .map(|u| u.name.clone()),
        verb,
        group: target.rt.group.clone(),
        resource: target.rt.plural.clone(),
        subresource: target.subresource.clone().unwrap_or_default(),
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
        field_manager: query.get("fieldManager").cloned().unwrap_or_default(),
        code: 200,
        wrote: false,
        faulted: false,
        also_authorized: Vec::new(),
    };
    let allowed = user.and_then(|user| match user {
        Some(user) if shared.rbac => shared
            .authorize(&user, &target, verb)
            .map(|()| (user, true)),
        Some(user) => Ok((user, false)),
        None => Ok((UserInfo::administrator(), false)),
    });
    let (user, rbac) = match allowed {
        Ok(allowed) => allowed,
        Err(error) => {
            record.code = error.code;
            shared.log.push(record);
            return error.into_response();
        }
    };
    let access = Access {
        rbac_user: rbac.then(|| user.clone()),
        also: Mutex::default(),
    };
    let requester = Requester {
        user,
        subresource: target.subresource.clone().unwrap_or_default(),
    };
    let decision = shared.faults.decide(verb, &target.rt.plural);
    if !decision.delay.is_zero() {
        tokio::time::sleep(decision.delay).await;
    }
    if let Some(error) = decision.error {
        record.code = error.code;
        record.faulted = true;
        shared.log.push(record);
        return error.into_response();
    }
    let request = match prepare(
        &shared,
        (verb, &target, requester, &access),
        &query,
        &headers,
        &body,
        decision.watch_lifetime,
    ) {
        Ok(request) => request,
        Err(error) => return finish(&shared.log, record, &access, Err(error)),
    };
    if verb.is_write() {
        serve_write(&shared, verb, request, record, &access)
    } else {
        let outcome = serve_read(&shared, verb, request).await;
        finish(&shared.log, record, &access, outcome)
    }
}

/// Completes a request's record from its outcome, logs it, and answers.
fn finish(
    log: &RequestLog,
    mut record: RequestRecord,
    access: &Access,
    outcome: Served,
) -> Response {
    record.also_authorized = access.take_verbs();
    let response = match outcome {
        Ok((response, wrote)) => {
            record.wrote = wrote;
            record.code = response.status().as_u16();
            response
        }
        Err(error) => {
            record.code = error.code;
            error.into_response()
        }
    };
    tracing::debug!(
        verb = ?record.verb,
        resource = %record.resource,
        namespace = %record.namespace,
        name = %record.name,
        code = record.code,
        wrote = record.wrote,
        "kubesim request"
    );
    log.push(record);
    response
}

/// The handler's view of a request: 404 for a namespaced resource without
/// a namespace (collections apart), 415 for a body kubesim cannot read.
fn prepare<'a>(
    shared: &'a Arc<Shared>,
    (verb, target, requester, access): (Verb, &'a Target, Requester, &'a Access),
    query: &'a HashMap<String, String>,
    headers: &'a HeaderMap,
    body: &'a Bytes,
    watch_lifetime: Option<Duration>,
) -> ApiResult<Request<'a>> {
    let rt = &target.rt;
    if rt.namespaced && target.namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(ApiError::no_route(
            "a namespaced resource needs a namespace",
        ));
    }
    let part = if target.subresource.as_deref() == Some("status") {
        Part::Status
    } else {
        Part::Main
    };
    if !body.is_empty() {
        check_media_type(headers)?;
    }
    Ok(Request {
        shared,
        target,
        access,
        namespace: target.namespace.clone().unwrap_or_default(),
        name: target.name.clone().unwrap_or_default(),
        query,
        headers,
        body,
        options: WriteOptions {
            manager: manager_of(query, headers),
            dry_run: query.get("dryRun").is_some_and(|d| d == "All"),
            applied: false,
            part,
            strict: query.get("fieldValidation").is_some_and(|v| v == "Strict"),
            requester: Some(requester),
        },
        watch_lifetime,
        output: Output::from_accept(
            headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default(),
        ),
    })
}

/// Serves a write ([`Verb::is_write`]) under one hold of the store lock
/// and logs it before releasing the lock: no other request can see what
/// it changed (readers need the lock; watchers get changes when it is
/// released) before its record is in the log.
fn serve_write(
    shared: &Shared,
    verb: Verb,
    request: Request<'_>,
    record: RequestRecord,
    access: &Access,
) -> Response {
    let mut store = shared.lock();
    let outcome = match verb {
        Verb::Create if request.target.subresource.as_deref() == Some("token") => {
            handlers::token_request(request, &store)
        }
        Verb::Update | Verb::Patch if request.target.subresource.as_deref() == Some("scale") => {
            handlers::scale(request, verb, &mut store)
        }
        Verb::Create => handlers::create(request, &mut store),
        Verb::Update => handlers::update(request, &mut store),
        Verb::Patch => handlers::patch(request, &mut store),
        Verb::Apply => handlers::apply(request, &mut store),
        Verb::Delete => handlers::delete(request, &mut store),
        Verb::DeleteCollection => handlers::delete_collection(request, &mut store),
        Verb::Get | Verb::List | Verb::Watch => {
            Err(ApiError::internal(format!("{verb:?} is not a write")))
        }
    };
    let response = finish(&shared.log, record, access, outcome);
    // Only now may others see the write.
    drop(store);
    response
}

/// Serves a read; it is logged once answered, after any write it saw.
async fn serve_read(shared: &Shared, verb: Verb, request: Request<'_>) -> Served {
    match verb {
        Verb::Get if request.target.subresource.as_deref() == Some("log") => {
            handlers::pod_log(request).await
        }
        Verb::Get if request.target.subresource.as_deref() == Some("scale") => {
            handlers::scale(request, verb, &mut shared.lock())
        }
        Verb::Get => handlers::get(request),
        Verb::List => handlers::list(request),
        Verb::Watch => handlers::watch(request),
        _ => Err(ApiError::internal(format!("{verb:?} is not a read"))),
    }
}
