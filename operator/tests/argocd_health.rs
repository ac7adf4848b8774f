//! The Argo CD health check (docs/gitops/tenant-health.lua) run by a real Lua
//! interpreter against Tenant statuses computed by the operator's own status
//! code: Provisioning, Ready, Degraded, Suspended, Sleeping and an invalid spec.

use std::io::Write;
use std::process::{Command, Stdio};

use atoll_crds::{FieldError, Tenant, TenantSpec};
use atoll_operator::status::{
    DatabaseState, IdentityState, Observed, WorkloadReadiness, desired_status,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::Value;

/// A Lua table literal for a JSON value.
fn lua(value: &Value) -> String {
    match value {
        Value::Null => "nil".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(items) => format!(
            "{{{}}}",
            items.iter().map(lua).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(map) => format!(
            "{{{}}}",
            map.iter()
                .map(|(k, v)| format!("[{k:?}] = {}", lua(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn lua_binary() -> String {
    std::env::var("ATOLL_LUA").unwrap_or_else(|_| "lua5.4".into())
}

/// Runs the health script on a Tenant; returns (status, message).
fn health(tenant: &Tenant) -> (String, String) {
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/gitops/tenant-health.lua"
    ))
    .expect("health script");
    let object = serde_json::to_value(tenant).expect("tenant JSON");
    let program = format!(
        "obj = {}\nlocal hs = (function()\n{script}\nend)()\nio.write(hs.status, \"\\t\", hs.message or \"\")\n",
        lua(&object)
    );
    let mut child = Command::new(lua_binary())
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{} not runnable ({e}); scripts/test installs lua5.4",
                lua_binary()
            )
        });
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(program.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("lua finishes");
    assert!(
        output.status.success(),
        "lua failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("utf-8");
    let (status, message) = text.split_once('\t').unwrap_or((&text, ""));
    (status.to_owned(), message.to_owned())
}

fn at(seconds: i64) -> Time {
    Time(Timestamp::from_second(seconds).expect("valid"))
}

fn ready() -> WorkloadReadiness {
    WorkloadReadiness {
        desired: 1,
        ready: 1,
        updated: 1,
        observed_current: true,
    }
}

fn tenant_with(spec: TenantSpec, observed: &Observed, previous: Option<&Tenant>) -> Tenant {
    let mut tenant = Tenant::new("acme", spec);
    tenant.metadata.generation = Some(2);
    tenant.status = previous.and_then(|p| p.status.clone());
    tenant.status = Some(desired_status(
        &tenant,
        observed,
        "http://acme.example.com",
        "atoll-acme",
        &at(10),
    ));
    tenant
}

fn applied(db: WorkloadReadiness, instance: WorkloadReadiness) -> Observed {
    Observed::Applied {
        database: DatabaseState::Dedicated(db),
        instance,
        identity: IdentityState::Synced,
        version: "0.1.0".into(),
    }
}

#[test]
fn tenant_health_follows_phase_and_ready() {
    let fresh = Tenant::new("acme", TenantSpec::default());
    assert_eq!(health(&fresh).0, "Progressing", "no status yet");

    let provisioning = tenant_with(
        TenantSpec::default(),
        &applied(WorkloadReadiness::default(), WorkloadReadiness::default()),
        None,
    );
    assert_eq!(health(&provisioning).0, "Progressing");

    let is_ready = tenant_with(TenantSpec::default(), &applied(ready(), ready()), None);
    let (status, message) = health(&is_ready);
    assert_eq!(status, "Healthy");
    assert!(message.contains("http://acme.example.com"), "{message}");

    let degraded = tenant_with(
        TenantSpec::default(),
        &applied(
            WorkloadReadiness {
                ready: 0,
                ..ready()
            },
            ready(),
        ),
        Some(&is_ready),
    );
    assert_eq!(health(&degraded).0, "Degraded");

    let suspended = tenant_with(
        TenantSpec {
            suspended: true,
            ..TenantSpec::default()
        },
        &applied(WorkloadReadiness::default(), WorkloadReadiness::default()),
        None,
    );
    assert_eq!(health(&suspended).0, "Suspended");

    // Asleep after its idle time (#20): healthy, its URL still answers.
    let mut sleeping = is_ready.clone();
    if let Some(status) = sleeping.status.as_mut() {
        let view = atoll_operator::idle::status::IdleView {
            after: Some("15m"),
            mode: atoll_operator::idle::Mode::Asleep,
            idle: Some(atoll_crds::IdleStatus {
                sleeping_since: Some(at(20)),
                ..atoll_crds::IdleStatus::default()
            }),
            url: "http://acme.example.com",
        };
        atoll_operator::idle::status::overlay(status, &view, false, Some(2), &at(20));
    }
    let (status, message) = health(&sleeping);
    assert_eq!(status, "Healthy");
    assert!(
        message.contains("the first request to http://acme.example.com wakes it"),
        "{message}"
    );

    let invalid = tenant_with(
        TenantSpec::default(),
        &Observed::Invalid(vec![FieldError {
            field: "spec.quota.pods".into(),
            message: "must be between 1 and 1000".into(),
        }]),
        None,
    );
    let (status, message) = health(&invalid);
    assert_eq!(status, "Degraded");
    assert!(message.contains("spec.quota.pods"), "{message}");

    // A status for an older generation is not trusted.
    let mut stale = is_ready.clone();
    stale.metadata.generation = Some(3);
    assert_eq!(health(&stale).0, "Progressing");
}
