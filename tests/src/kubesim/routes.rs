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
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::{HeaderMap, header};

use crate::kubesim::PodLogs;
use crate::kubesim::discovery;
use crate::kubesim::error::{ApiError, ApiResult};
use crate::kubesim::faults::Faults;
use crate::kubesim::log::{RequestLog, Verb};
use crate::kubesim::openapi;
use crate::kubesim::rbac::{Attributes, Policy, UserInfo};
use crate::kubesim::resources::ResourceType;
use crate::kubesim::store::Store;

mod serve;

pub(crate) use serve::content_type;
use serve::resource;

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
