//! Prometheus metrics of the operator. No per-tenant labels: label values
//! come from small fixed sets (result categories, phases).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
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
struct CauseLabels {
    cause: &'static str,
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
    backups: Family<ResultLabels, Counter>,
    backup_age: Family<PhaseLabels, Gauge<f64, AtomicU64>>,
    archive_lag: Family<PhaseLabels, Gauge<f64, AtomicU64>>,
    backup_times: Arc<Mutex<HashMap<String, BackupTimes>>>,
    sleeps: Counter,
    wakes: Family<CauseLabels, Counter>,
    wake_duration: Family<CauseLabels, Histogram>,
}

const PHASES: [Phase; 6] = [
    Phase::Provisioning,
    Phase::Ready,
    Phase::Sleeping,
    Phase::Suspended,
    Phase::Degraded,
    Phase::Deleting,
];

/// A backed-up tenant's times, for the aggregate gauges.
#[derive(Clone, Copy, Debug, PartialEq)]
struct BackupTimes {
    phase: Phase,
    last_success: Option<jiff::Timestamp>,
    last_archived: Option<jiff::Timestamp>,
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
        let backups = Family::<ResultLabels, Counter>::default();
        registry.register(
            "backups",
            "TenantBackups finished, by result (Completed or Failed)",
            backups.clone(),
        );
        let backup_age = Family::<PhaseLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "backup_last_success_age_seconds",
            "Age of the last successful base backup, the largest over the backed-up tenants of each phase",
            backup_age.clone(),
        );
        let archive_lag = Family::<PhaseLabels, Gauge<f64, AtomicU64>>::default();
        registry.register(
            "wal_archive_lag_seconds",
            "Time since the last WAL segment was archived, the largest over the backed-up tenants of each phase",
            archive_lag.clone(),
        );
        let sleeps = Counter::default();
        registry.register(
            "sleeps",
            "Tenants put to sleep after their idle time (spec.idle)",
            sleeps.clone(),
        );
        let wakes = Family::<CauseLabels, Counter>::default();
        registry.register(
            "wakes",
            "Sleeping tenants woken, by cause (Request, Schedule, Manual)",
            wakes.clone(),
        );
        let wake_duration = Family::<CauseLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.025, 2.0, 12))
        });
        registry.register(
            "wake_duration_seconds",
            "From the wake's request (the first held request, the schedule or the annotation) to the instance ready, by cause",
            wake_duration.clone(),
        );
        Self {
            registry: Arc::new(registry),
            sleeps,
            wakes,
            wake_duration,
            reconciles,
            duration,
            tenants,
            phases: Arc::default(),
            backups,
            backup_age,
            archive_lag,
            backup_times: Arc::default(),
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

    /// Counts a tenant put to sleep.
    pub fn count_sleep(&self) {
        self.sleeps.inc();
    }

    /// Counts a wake that starts, by cause.
    pub fn count_wake(&self, cause: atoll_crds::WakeCause) {
        self.wakes
            .get_or_create(&CauseLabels {
                cause: cause.as_str(),
            })
            .inc();
    }

    /// Records how long a completed wake took.
    pub fn observe_wake(&self, cause: atoll_crds::WakeCause, took: Duration) {
        self.wake_duration
            .get_or_create(&CauseLabels {
                cause: cause.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts a finished TenantBackup (`Completed` or `Failed`).
    pub fn count_backup(&self, result: &'static str) {
        self.backups.get_or_create(&ResultLabels { result }).inc();
    }

    /// Records a backed-up tenant's last successful backup and last
    /// archived segment (`phase` None: the tenant has no backups any more).
    pub fn set_backup_times(
        &self,
        tenant: &str,
        phase: Option<Phase>,
        last_success: Option<jiff::Timestamp>,
        last_archived: Option<jiff::Timestamp>,
    ) {
        let mut times = self
            .backup_times
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match phase {
            Some(phase) => times.insert(
                tenant.to_owned(),
                BackupTimes {
                    phase,
                    last_success,
                    last_archived,
                },
            ),
            None => times.remove(tenant),
        };
        let now = jiff::Timestamp::now();
        let age = |t: jiff::Timestamp| (now - t).total(jiff::Unit::Second).unwrap_or(0.0).max(0.0);
        for phase in PHASES {
            let of_phase = || times.values().filter(|t| t.phase == phase);
            let labels = PhaseLabels {
                phase: phase.as_str(),
            };
            let success = of_phase()
                .filter_map(|t| t.last_success)
                .map(age)
                .fold(0.0, f64::max);
            let lag = of_phase()
                .filter_map(|t| t.last_archived)
                .map(age)
                .fold(0.0, f64::max);
            self.backup_age.get_or_create(&labels).set(success);
            self.archive_lag.get_or_create(&labels).set(lag);
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

    #[test]
    fn backup_gauges_take_the_largest_age_per_phase() {
        let metrics = Metrics::default();
        let ago = |s: i64| jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s);
        metrics.set_backup_times("a", Some(Phase::Ready), Some(ago(100)), Some(ago(10)));
        metrics.set_backup_times("b", Some(Phase::Ready), Some(ago(5000)), Some(ago(30)));
        metrics.set_backup_times("c", Some(Phase::Degraded), Some(ago(7)), None);
        metrics.count_backup("Completed");
        let text = metrics.encode();
        let value = |name: &str| -> f64 {
            let line = text
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{name} in {text}"));
            line.rsplit(' ')
                .next()
                .and_then(|v| v.parse().ok())
                .expect("a number")
        };
        let age = value(r#"atoll_operator_backup_last_success_age_seconds{phase="Ready"}"#);
        assert!((5000.0..5100.0).contains(&age), "{age}");
        let lag = value(r#"atoll_operator_wal_archive_lag_seconds{phase="Ready"}"#);
        assert!((30.0..100.0).contains(&lag), "{lag}");
        assert!(
            text.contains(r#"atoll_operator_backups_total{result="Completed"} 1"#),
            "{text}"
        );
        metrics.set_backup_times("b", None, None, None);
        let text = metrics.encode();
        let age: f64 = text
            .lines()
            .find(|l| {
                l.starts_with(r#"atoll_operator_backup_last_success_age_seconds{phase="Ready"}"#)
            })
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .expect("age");
        assert!(age < 1000.0, "{age}");
        assert!(!text.contains("\"b\""), "no per-tenant labels");
    }
}
