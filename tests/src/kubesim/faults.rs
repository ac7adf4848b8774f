//! Fault injection, configured at run time: scripted faults (the next N
//! matching requests) or random ones (each matching request with a
//! probability), answering 500, 409 or 429 (with `Retry-After`), adding
//! latency or cutting watch streams short; and closing every open watch
//! stream on demand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::kubesim::error::ApiError;
use crate::kubesim::log::Verb;

/// What a fault does to a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer 500 InternalError without touching the store.
    InternalError,
    /// Answer 409 Conflict without touching the store.
    Conflict,
    /// Answer 429 TooManyRequests with this `Retry-After` in seconds.
    TooManyRequests {
        /// Seconds in `Retry-After`.
        retry_after_secs: u64,
    },
    /// Delay the request, then serve it normally.
    Latency(Duration),
    /// For watch requests: serve the watch, but end the stream after this
    /// long (as a load balancer or an API server restart would).
    CloseWatchAfter(Duration),
}

/// When a fault applies.
#[derive(Clone, Debug)]
pub struct FaultRule {
    fault: Fault,
    verbs: Vec<Verb>,
    resource: Option<String>,
    probability: f64,
    remaining: Option<u64>,
}

impl FaultRule {
    /// A rule that applies `fault` to every request (narrow it with the
    /// other methods).
    pub fn new(fault: Fault) -> Self {
        Self {
            fault,
            verbs: Vec::new(),
            resource: None,
            probability: 1.0,
            remaining: None,
        }
    }

    /// Only these verbs.
    pub fn verbs(mut self, verbs: &[Verb]) -> Self {
        self.verbs = verbs.to_vec();
        self
    }

    /// Only writes (create, update, patch, apply, delete).
    pub fn writes(self) -> Self {
        self.verbs(&[
            Verb::Create,
            Verb::Update,
            Verb::Patch,
            Verb::Apply,
            Verb::Delete,
            Verb::DeleteCollection,
        ])
    }

    /// Only this resource plural (`tenants`, `configmaps`).
    pub fn resource(mut self, plural: &str) -> Self {
        self.resource = Some(plural.to_string());
        self
    }

    /// Each matching request with this probability (0.0–1.0).
    pub fn probability(mut self, p: f64) -> Self {
        self.probability = p.clamp(0.0, 1.0);
        self
    }

    /// Only the next `n` matching requests (scripted).
    pub fn times(mut self, n: u64) -> Self {
        self.remaining = Some(n);
        self
    }

    fn matches(&self, verb: Verb, resource: &str) -> bool {
        (self.verbs.is_empty() || self.verbs.contains(&verb))
            && self.resource.as_deref().is_none_or(|r| r == resource)
            && self.remaining != Some(0)
    }
}

#[derive(Debug)]
struct State {
    rules: Vec<FaultRule>,
    rng: u64,
    injected: u64,
}

/// The handle tests use to inject faults. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Faults {
    state: Arc<Mutex<State>>,
    close_watches: Arc<watch::Sender<u64>>,
}

impl Default for Faults {
    fn default() -> Self {
        Self {
            state: Arc::new(Mutex::new(State {
                rules: Vec::new(),
                rng: 0x2545_f491_4f6c_dd1d,
                injected: 0,
            })),
            close_watches: Arc::new(watch::channel(0).0),
        }
    }
}

/// What to do with one request.
#[derive(Debug, Default)]
pub(crate) struct Decision {
    pub(crate) delay: Duration,
    pub(crate) error: Option<ApiError>,
    pub(crate) watch_lifetime: Option<Duration>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds a rule; rules are checked in the order added.
    pub fn add(&self, rule: FaultRule) {
        self.lock().rules.push(rule);
    }

    /// Removes every rule.
    pub fn clear(&self) {
        self.lock().rules.clear();
    }

    /// Seeds the random choices, for reproducible runs.
    pub fn seed(&self, seed: u64) {
        self.lock().rng = seed.max(1);
    }

    /// How many faults (errors and delays) were injected so far.
    pub fn injected(&self) -> u64 {
        self.lock().injected
    }

    /// Ends every watch stream open now (clients see the stream close and
    /// must watch again from their last resourceVersion).
    pub fn close_watches(&self) {
        self.close_watches.send_modify(|n| *n += 1);
    }

    pub(crate) fn watch_closer(&self) -> watch::Receiver<u64> {
        self.close_watches.subscribe()
    }

    pub(crate) fn decide(&self, verb: Verb, resource: &str) -> Decision {
        let mut state = self.lock();
        let mut decision = Decision::default();
        for i in 0..state.rules.len() {
            if !state.rules[i].matches(verb, resource) {
                continue;
            }
            let probability = state.rules[i].probability;
            if probability < 1.0 {
                // xorshift64*
                state.rng ^= state.rng >> 12;
                state.rng ^= state.rng << 25;
                state.rng ^= state.rng >> 27;
                let draw = (state.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64
                    / (1u64 << 53) as f64;
                if draw >= probability {
                    continue;
                }
            }
            let rule = &mut state.rules[i];
            if let Some(n) = rule.remaining.as_mut() {
                *n -= 1;
            }
            let fault = rule.fault.clone();
            state.injected += 1;
            match fault {
                Fault::Latency(d) => decision.delay += d,
                Fault::CloseWatchAfter(d) => {
                    decision.watch_lifetime = Some(decision.watch_lifetime.map_or(d, |w| w.min(d)));
                }
                Fault::InternalError => {
                    decision.error = Some(ApiError::internal("injected fault: internal error"));
                    break;
                }
                Fault::Conflict => {
                    decision.error = Some(ApiError::conflict(
                        crate::kubesim::error::Subject {
                            group: "",
                            resource,
                        },
                        "",
                        "injected fault: the object has been modified; please apply your changes to the latest version and try again",
                    ));
                    break;
                }
                Fault::TooManyRequests { retry_after_secs } => {
                    decision.error = Some(ApiError::too_many_requests(retry_after_secs));
                    break;
                }
            }
        }
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_faults_run_out_and_probabilities_are_respected() {
        let faults = Faults::default();
        faults.add(
            FaultRule::new(Fault::InternalError)
                .verbs(&[Verb::Get])
                .times(2),
        );
        assert!(faults.decide(Verb::Get, "pods").error.is_some());
        assert!(faults.decide(Verb::List, "pods").error.is_none());
        assert!(faults.decide(Verb::Get, "pods").error.is_some());
        assert!(faults.decide(Verb::Get, "pods").error.is_none());
        faults.clear();
        faults.add(FaultRule::new(Fault::Conflict).probability(0.25));
        let hits = (0..4000)
            .filter(|_| faults.decide(Verb::Update, "x").error.is_some())
            .count();
        assert!((800..1200).contains(&hits), "{hits}");
    }
}
