//! Watch streams: newline-delimited `WatchEvent`s, replayed from the
//! history after the requested resourceVersion (410 Gone, as an `ERROR`
//! event, when that is too old), synthetic `ADDED` events when no version
//! is given, selector transitions (an object leaving the selector is
//! `DELETED` for that watcher), periodic bookmarks, `timeoutSeconds`, and
//! closing on demand for fault tests.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::{broadcast, watch};
use tokio::time::{Instant, Interval};

use crate::kubesim::conversion;
use crate::kubesim::resources::ResourceType;
use crate::kubesim::selectors::{FieldSelector, LabelSelector};
use crate::kubesim::store::{Change, EventType, Store, present, served};

/// What a watch asks for.
#[derive(Clone, Debug)]
pub struct WatchRequest {
    /// The resource, at the version the client speaks.
    pub rt: Arc<ResourceType>,
    /// Namespace, or all.
    pub namespace: Option<String>,
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
    /// `resourceVersion`; `None` (or `0`) starts with the current state.
    pub resource_version: Option<u64>,
    /// `allowWatchBookmarks`.
    pub bookmarks: bool,
    /// `timeoutSeconds`.
    pub timeout: Option<Duration>,
    /// `sendInitialEvents`: after the synthetic `ADDED` events, a bookmark
    /// annotated `k8s.io/initial-events-end` (streaming lists).
    pub send_initial_events: bool,
}

impl WatchRequest {
    fn selects(&self, object: &Value) -> bool {
        self.labels.matches(object) && conversion::fields_match(&self.fields, object, &self.rt)
    }

    fn concerns(&self, change: &Change) -> bool {
        // The store key, compared without building it: every watcher sees
        // every change.
        let (group, plural) = conversion::stored_as(&self.rt.group, &self.rt.plural);
        change.kind.group == group
            && change.kind.plural == plural
            && self
                .namespace
                .as_deref()
                .is_none_or(|ns| ns == change.namespace)
    }

    /// The event this watcher sees for a change, if any.
    fn render(&self, change: &Change) -> Option<Bytes> {
        if !self.concerns(change) {
            return None;
        }
        let now = self.selects(&change.object);
        let before = change.old.as_deref().is_some_and(|o| self.selects(o));
        let event = match change.event {
            EventType::Added if now => EventType::Added,
            EventType::Modified if now && before => EventType::Modified,
            EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            EventType::Deleted if now || before => EventType::Deleted,
            _ => return None,
        };
        // Every watcher of the version the object is stored at shares one
        // serialization of it.
        let stored_version = change.object["apiVersion"]
            .as_str()
            .is_some_and(|v| self.rt.is_api_version(v));
        Some(if stored_version {
            line_of_json(event.as_str(), change.json())
        } else {
            line(event.as_str(), &present(&change.object, &self.rt))
        })
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.rt.kind, "apiVersion": self.rt.api_version(), "metadata": metadata}),
        )
    }
}

/// One event: `{"type":…,"object":…}` and a newline.
fn line(kind: &str, object: &Value) -> Bytes {
    line_of_json(kind, &serde_json::to_vec(object).unwrap_or_default())
}

/// One event around an object already serialized.
fn line_of_json(kind: &str, object: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(object.len() + kind.len() + 24);
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
    Bytes::from(out)
}

struct Watcher {
    request: WatchRequest,
    pending: VecDeque<Bytes>,
    changes: broadcast::Receiver<Arc<Change>>,
    closer: watch::Receiver<u64>,
    deadline: Option<Instant>,
    bookmarks: Interval,
    last_rv: u64,
    done: bool,
}

/// Opens a watch: the replay is taken and the live feed subscribed under
/// one lock (the caller's, on `store`), so no change is missed or seen
/// twice.
pub fn open(
    store: &Store,
    closer: watch::Receiver<u64>,
    request: WatchRequest,
    bookmark_interval: Duration,
) -> impl Stream<Item = Result<Bytes, std::convert::Infallible>> + Send + 'static {
    let mut pending = VecDeque::new();
    let mut done = false;
    let (changes, last_rv) = {
        let changes = store.subscribe();
        match request.resource_version {
            None => {
                let ns = request.namespace.as_deref();
                for object in store.objects(&request.rt.store_key(), ns) {
                    if request.selects(&object) {
                        pending.push_back(line("ADDED", &served(&object, &request.rt)));
                    }
                }
                if request.send_initial_events {
                    pending.push_back(request.bookmark(store.resource_version(), true));
                }
            }
            Some(rv) => match store.changes_since(rv) {
                Ok(replay) => pending.extend(replay.iter().filter_map(|c| request.render(c))),
                Err(gone) => {
                    pending.push_back(line("ERROR", &gone.status()));
                    done = true;
                }
            },
        }
        (changes, store.resource_version())
    };
    let mut bookmarks =
        tokio::time::interval_at(Instant::now() + bookmark_interval, bookmark_interval);
    bookmarks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let watcher = Watcher {
        deadline: request.timeout.map(|t| Instant::now() + t),
        request,
        pending,
        changes,
        closer,
        bookmarks,
        last_rv,
        done,
    };
    futures::stream::unfold(watcher, next)
}

async fn next(mut w: Watcher) -> Option<(Result<Bytes, std::convert::Infallible>, Watcher)> {
    loop {
        if let Some(line) = w.pending.pop_front() {
            return Some((Ok(line), w));
        }
        if w.done {
            return None;
        }
        let deadline = w.deadline;
        tokio::select! {
            received = w.changes.recv() => match received {
                Ok(change) => {
                    if change.rv > w.last_rv {
                        w.last_rv = change.rv;
                        if let Some(line) = w.request.render(&change) {
                            w.pending.push_back(line);
                        }
                    }
                }
                // Too slow a reader, or the store is gone: end the stream;
                // the client resumes from the last version it saw.
                Err(_) => w.done = true,
            },
            _ = w.closer.changed() => w.done = true,
            _ = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            } => w.done = true,
            _ = w.bookmarks.tick() => {
                if w.request.bookmarks {
                    let bookmark = w.request.bookmark(w.last_rv, false);
                    w.pending.push_back(bookmark);
                }
            }
        }
    }
}
