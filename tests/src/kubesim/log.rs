//! The request log: every API request kubesim served, with whether it
//! changed the store, so tests can assert "zero writes at rest" or count
//! the writes a reconcile made.

use std::sync::{Arc, Mutex};

/// What a request asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verb {
    /// GET of one object.
    Get,
    /// GET of a collection.
    List,
    /// GET with `watch=true`.
    Watch,
    /// POST.
    Create,
    /// PUT.
    Update,
    /// PATCH other than server-side apply.
    Patch,
    /// PATCH with `application/apply-patch+yaml` (server-side apply).
    Apply,
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
}

impl Verb {
    /// Whether the verb may change the store.
    pub fn is_write(self) -> bool {
        !matches!(self, Self::Get | Self::List | Self::Watch)
    }

    /// The verb as RBAC rules name it (server-side apply is `patch`; an
    /// apply that creates the object is also authorized for `create`, see
    /// [`RequestRecord::also_authorized`]).
    pub fn rbac_verb(self) -> &'static str {
        match self {
            Self::Get => "get",
            Self::List => "list",
            Self::Watch => "watch",
            Self::Create => "create",
            Self::Update => "update",
            Self::Patch | Self::Apply => "patch",
            Self::Delete => "delete",
            Self::DeleteCollection => "deletecollection",
        }
    }
}

/// One served request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// Who asked: the user a bearer token was issued to
    /// (`system:serviceaccount:<namespace>:<name>` for a TokenRequest), or
    /// `None` for a request without credentials.
    pub user: Option<String>,
    /// The verb.
    pub verb: Verb,
    /// API group (`""` for core).
    pub group: String,
    /// Resource plural (`configmaps`).
    pub resource: String,
    /// Subresource (`status`, `log`), or empty.
    pub subresource: String,
    /// Namespace, or empty.
    pub namespace: String,
    /// Object name, or empty for collections.
    pub name: String,
    /// `fieldManager` query parameter, or empty.
    pub field_manager: String,
    /// HTTP status code of the answer.
    pub code: u16,
    /// Whether the store changed (a write that changed nothing is `false`).
    pub wrote: bool,
    /// Whether an injected fault answered it.
    pub faulted: bool,
    /// RBAC verbs the request was authorized for besides its own
    /// ([`Verb::rbac_verb`]), with the same user, resource, namespace and
    /// name: `create` for a server-side apply that created (or was refused
    /// creating) the object, as the API server checks it. Empty otherwise.
    pub also_authorized: Vec<&'static str>,
}

/// A shared, append-only log of requests. Cheap to clone.
///
/// Records are in the order requests were answered, and a write's record is
/// in the log before any other client can see the write: it is pushed
/// while the store lock that applied it is still held, before watchers are
/// sent its changes. So a request that observed a write comes after it,
/// and a [`RequestLog::mark`] taken after seeing a write's effect (through
/// a read or a watch) never counts that write in [`RequestLog::since`] or
/// [`RequestLog::writes_since`], while one taken before does.
#[derive(Clone, Debug, Default)]
pub struct RequestLog {
    records: Arc<Mutex<Vec<RequestRecord>>>,
}

impl RequestLog {
    pub(crate) fn push(&self, record: RequestRecord) {
        self.lock().push(record);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RequestRecord>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Every record so far.
    pub fn records(&self) -> Vec<RequestRecord> {
        self.lock().clone()
    }

    /// The number of records so far: a mark for [`RequestLog::since`].
    pub fn mark(&self) -> usize {
        self.lock().len()
    }

    /// Records after a [`RequestLog::mark`].
    pub fn since(&self, mark: usize) -> Vec<RequestRecord> {
        self.lock().iter().skip(mark).cloned().collect()
    }

    /// How many records after a mark satisfy `predicate`, without copying
    /// any (for polling a long log).
    pub fn count_since(&self, mark: usize, predicate: impl Fn(&RequestRecord) -> bool) -> usize {
        self.lock()
            .iter()
            .skip(mark)
            .filter(|r| predicate(r))
            .count()
    }

    /// Requests that changed the store, after a mark.
    pub fn writes_since(&self, mark: usize) -> Vec<RequestRecord> {
        self.lock()
            .iter()
            .skip(mark)
            .filter(|r| r.wrote)
            .cloned()
            .collect()
    }

    /// How many requests changed the store, in all.
    pub fn write_count(&self) -> usize {
        self.lock().iter().filter(|r| r.wrote).count()
    }

    /// How many requests of a verb were served, in all.
    pub fn count(&self, verb: Verb) -> usize {
        self.lock().iter().filter(|r| r.verb == verb).count()
    }

    /// Forgets every record.
    pub fn clear(&self) {
        self.lock().clear();
    }
}
