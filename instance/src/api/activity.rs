//! The instance's activity report, `GET /activity` on the metrics listener
//! only (the operator reads it to decide when an idle tenant may sleep and
//! when it must wake for its next scheduled run; the answer is
//! [`InstanceActivity`], the contract both sides share), and what it needs
//! kept: when the last request came, recorded by [`record_request`] on the
//! public listener.

use std::sync::atomic::{AtomicI64, Ordering};

use atoll_crds::contract::{InstanceActivity, RecoverMissedSchedules};
use axum::Json;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jiff::Timestamp;

use super::{ApiError, AppState};

/// When the instance started and when it last served a user or a client.
#[derive(Debug)]
pub struct Activity {
    started_at: Timestamp,
    /// Milliseconds since the epoch of the last counted request; 0: none.
    last_request: AtomicI64,
}

impl Activity {
    /// An instance started at `started_at` that has served no request yet.
    pub fn new(started_at: Timestamp) -> Activity {
        Activity {
            started_at,
            last_request: AtomicI64::new(0),
        }
    }

    /// When the instance started.
    pub fn started_at(&self) -> Timestamp {
        self.started_at
    }

    /// Records a request at `now` (milliseconds since the epoch). Requests
    /// in the same millisecond only read the shared value, and concurrent
    /// ones never move it back.
    pub fn record(&self, now: i64) {
        if self.last_request.load(Ordering::Relaxed) < now {
            self.last_request.fetch_max(now, Ordering::Relaxed);
        }
    }

    /// The last request recorded, if any.
    pub fn last_request(&self) -> Option<Timestamp> {
        match self.last_request.load(Ordering::Relaxed) {
            0 => None,
            ms => Timestamp::from_millisecond(ms).ok(),
        }
    }
}

impl Default for Activity {
    /// Started now.
    fn default() -> Self {
        Activity::new(Timestamp::now())
    }
}

/// Whether a request on the public listener is a user's or a client's:
/// not the kubelet's probes, nor a task pod moving its files (the
/// execution it belongs to is counted as running).
fn is_activity(path: &str) -> bool {
    !(path == "/healthz" || path == "/readyz" || path.starts_with("/api/v1/task-attempts/"))
}

/// Records the request's arrival as the instance's last activity (a path
/// comparison, a clock read and, at most once a millisecond, one atomic
/// write), before handling it.
pub(super) async fn record_request(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    if is_activity(request.uri().path()) {
        state.activity.record(Timestamp::now().as_millisecond());
    }
    next.run(request).await
}

/// `GET /activity`.
pub(super) async fn activity(State(state): State<AppState>) -> Response {
    let now = Timestamp::now();
    let engine = match state.engine.activity(now).await {
        Ok(engine) => engine,
        Err(err) => return ApiError::from(err).into_response(),
    };
    Json(InstanceActivity {
        last_request_at: state.activity.last_request(),
        running: engine.executions.running,
        queued: engine.executions.queued,
        paused: engine.executions.paused,
        next_timer_at: engine.executions.next_timer,
        next_schedule_at: engine.next_schedule,
        started_at: state.activity.started_at(),
        // The instance has no setting of its own: triggers that set none
        // recover every missed tick, as in Kestra.
        recover_missed_schedules: RecoverMissedSchedules::All,
    })
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_request_only_moves_forward() {
        let activity = Activity::new(Timestamp::UNIX_EPOCH);
        assert_eq!(activity.last_request(), None);
        activity.record(1_000);
        activity.record(500);
        assert_eq!(
            activity.last_request(),
            Timestamp::from_millisecond(1_000).ok()
        );
        activity.record(2_345);
        assert_eq!(
            activity.last_request().map(|t| t.to_string()).as_deref(),
            Some("1970-01-01T00:00:02.345Z")
        );
    }

    #[test]
    fn probes_and_task_pods_are_not_activity() {
        for path in ["/healthz", "/readyz", "/api/v1/task-attempts/k/inputs/a"] {
            assert!(!is_activity(path), "{path}");
        }
        for path in [
            "/",
            "/ui/flows",
            "/api/v1/acme/flows/search",
            "/api/v1/executions/webhook/ns/f/key",
            "/healthz/x",
        ] {
            assert!(is_activity(path), "{path}");
        }
    }
}
