//! Prometheus metrics of the operator. No per-tenant labels: label values
//! come from small fixed sets (result categories, phases).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use atoll_crds::Phase;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

/// The operator's metrics, cheap to clone.
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Arc<Registry>,
    reconciles: Family<ResultLabels, Counter>,
    duration: Histogram,
    tenants: Family<PhaseLabels, Gauge>,
    phases: Arc<Mutex<HashMap<String, Phase>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("atoll_operator");
        let reconciles = Family::<ResultLabels, Counter>::default();
        registry.register(
            "reconciles",
            "Reconciles by result: ok or the error category",
            reconciles.clone(),
        );
        let duration = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "reconcile_duration_seconds",
            "Time spent in one reconcile",
            duration.clone(),
        );
        let tenants = Family::<PhaseLabels, Gauge>::default();
        registry.register("tenants", "Tenants by phase", tenants.clone());
        Self {
            registry: Arc::new(registry),
            reconciles,
            duration,
            tenants,
            phases: Arc::default(),
        }
    }
}

impl Metrics {
    /// Counts one reconcile and its duration.
    pub fn observe_reconcile(&self, error_category: Option<&'static str>, took: Duration) {
        self.reconciles
            .get_or_create(&ResultLabels {
                result: error_category.unwrap_or("ok"),
            })
            .inc();
        self.duration.observe(took.as_secs_f64());
    }

    /// Records a tenant's phase (None: the tenant is gone).
    pub fn set_phase(&self, tenant: &str, phase: Option<Phase>) {
        let mut phases = self
            .phases
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let previous = match phase {
            Some(phase) => phases.insert(tenant.to_owned(), phase),
            None => phases.remove(tenant),
        };
        if previous == phase {
            return;
        }
        if let Some(old) = previous {
            self.tenants
                .get_or_create(&PhaseLabels {
                    phase: old.as_str(),
                })
                .dec();
        }
        if let Some(new) = phase {
            self.tenants
                .get_or_create(&PhaseLabels {
                    phase: new.as_str(),
                })
                .inc();
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_move_between_gauges() {
        let metrics = Metrics::default();
        metrics.set_phase("a", Some(Phase::Provisioning));
        metrics.set_phase("b", Some(Phase::Provisioning));
        metrics.set_phase("a", Some(Phase::Ready));
        metrics.set_phase("b", None);
        metrics.observe_reconcile(None, Duration::from_millis(3));
        metrics.observe_reconcile(Some("ApplyFailed"), Duration::from_millis(3));
        let text = metrics.encode();
        assert!(
            text.contains(r#"atoll_operator_tenants{phase="Ready"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"atoll_operator_tenants{phase="Provisioning"} 0"#),
            "{text}"
        );
        assert!(
            text.contains(r#"atoll_operator_reconciles_total{result="ApplyFailed"} 1"#),
            "{text}"
        );
        assert!(!text.contains("\"a\""), "no per-tenant labels");
    }
}
