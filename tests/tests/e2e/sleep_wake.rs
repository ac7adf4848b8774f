//! Sleep when idle, wake on request or schedule (#20): tenants with
//! `spec.idle` go to sleep (their processes gone), concurrent requests and
//! webhooks wake them through the wake gate and all succeed, a running
//! execution keeps a tenant awake (one started while it drains too), and a schedule every minute runs every
//! tick exactly once while its tenant sleeps between runs.
//!
//! Requests reach a sleeping tenant as a user's would: through the ingress
//! on kubesim. On realkube they go to the wake gate's Service instead: a
//! real API server refuses nodesim's loopback pod addresses in
//! EndpointSlices, so there the Ingress → wake-gate Service hop cannot be
//! expressed (docs/testing.md); everything behind it (the gate, the
//! operator, the real API server) is the same.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use atoll_crds::{Phase, Tenant, WakeCause};
use atoll_testkit::cluster::ClusterKind;
use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use serde_json::Value;

use crate::Report;
use crate::harness::{LIMIT, Platform, RELEASE_NAMESPACE, eventually, pids};
use crate::scenarios::{token_when_synced, world};

/// After 10 s without activity a tenant sleeps (the shortest idle time).
const IDLE: &str = "  idle:\n    after: 10s\n";
/// `sleep_wake`'s idle time: long enough for the set-up (identity's sync,
/// the token, two flows saved) on the real control plane, so that the
/// tenant is awake when its execution starts.
const IDLE_SLOWER: &str = "  idle:\n    after: 20s\n";

/// The door to a tenant's host: the ingress (kubesim) or the wake gate's
/// Service (realkube), with the tenant's Host header.
#[derive(Clone)]
struct Door {
    http: reqwest::Client,
    base: String,
    host: String,
}

/// What came back.
struct Reply {
    status: u16,
    body: String,
    took: Duration,
}

impl Door {
    fn new(p: &Platform, url: &str) -> Door {
        let host = url
            .split("://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .unwrap_or_default()
            .to_owned();
        let gate = match p.cluster().map(|c| c.kind()) {
            Some(ClusterKind::RealKube) => p
                .node("the wake gate's Service")
                .and_then(|node| node.service_ip(RELEASE_NAMESPACE, "atoll-wake-gate"))
                .map(|ip| SocketAddr::from((ip, 80))),
            _ => None,
        };
        let addr = gate.unwrap_or_else(|| p.ingress_addr());
        Door {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()
                .expect("http client"),
            base: format!("http://{addr}"),
            host,
        }
    }

    async fn call(&self, method: &str, path: &str, token: Option<&str>) -> Reply {
        self.try_call(method, path, token)
            .await
            .expect("the door answers")
    }

    /// Starts an execution with a `POST` to `path` (`what` names it in a
    /// failure): its id and how long the answer took.
    async fn start(&self, path: &str, token: Option<&str>, what: &str) -> (String, Duration) {
        let reply = self.call("POST", path, token).await;
        assert!(
            (200..300).contains(&reply.status),
            "{what}: {} {}",
            reply.status,
            reply.body
        );
        let body: Value = serde_json::from_str(&reply.body).expect(what);
        let id = body["id"].as_str().expect("execution id").to_owned();
        (id, reply.took)
    }

    /// `None` when nothing listens behind the door.
    async fn try_call(&self, method: &str, path: &str, token: Option<&str>) -> Option<Reply> {
        let started = Instant::now();
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .header("host", &self.host);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.text().await.unwrap_or_default();
        Some(Reply {
            status,
            body,
            took: started.elapsed(),
        })
    }
}

async fn tenant(p: &Platform, name: &str) -> Tenant {
    p.tenants().get(name).await.expect("the Tenant")
}

fn phase(t: &Tenant) -> Option<Phase> {
    t.status.as_ref().and_then(|s| s.phase)
}

async fn instance_pods(p: &Platform, namespace: &str) -> Vec<Pod> {
    Api::<Pod>::namespaced(p.client.clone(), namespace)
        .list(&ListParams::default().labels("app.kubernetes.io/component=instance"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Waits until the tenant sleeps: phase Sleeping, its instance scaled to
/// zero and no instance pod left (and, on nodesim, its processes gone).
async fn wait_asleep(p: &Platform, name: &str, report: &Report) -> Tenant {
    let namespace = format!("atoll-{name}");
    let before = match p.node("the instance's processes") {
        Some(node) => pids(p, node, &namespace).await,
        None => Vec::new(),
    };
    let started = Instant::now();
    let asleep = eventually(&format!("{name} to sleep"), LIMIT, || async {
        let t = tenant(p, name).await;
        (phase(&t) == Some(Phase::Sleeping)).then_some(t)
    })
    .await;
    let deployments = Api::<Deployment>::namespaced(p.client.clone(), &namespace);
    eventually(&format!("{name}'s instance to be gone"), LIMIT, || async {
        let replicas = deployments.get("instance").await.ok()?.spec?.replicas;
        (replicas == Some(0) && instance_pods(p, &namespace).await.is_empty()).then_some(())
    })
    .await;
    if p.simulated() {
        let after = match p.node("the instance's processes") {
            Some(node) => pids(p, node, &namespace).await,
            None => Vec::new(),
        };
        let gone: Vec<u32> = before
            .into_iter()
            .filter(|pid| !after.contains(pid))
            .collect();
        assert!(!gone.is_empty(), "{name}: no instance process stopped");
        report.figure(format!(
            "{name} asleep after {:.1}s: {} instance process(es) gone, Deployment at 0",
            started.elapsed().as_secs_f64(),
            gone.len()
        ));
    }
    asleep
}

fn last_wake(t: &Tenant) -> Option<atoll_crds::Wake> {
    t.status.as_ref()?.idle.as_ref()?.last_wake.clone()
}

fn sleeping_since(t: &Tenant) -> Time {
    t.status
        .as_ref()
        .and_then(|s| s.idle.as_ref()?.sleeping_since.clone())
        .expect("sleepingSince")
}

/// The wake asked for since `since` (status times are whole seconds), once
/// recorded: the operator records it when the Deployment reports the
/// instance ready, which can be after the gate, asking the starting pod
/// itself, has forwarded the first requests.
async fn recorded_wake(p: &Platform, name: &str, since: &Time) -> atoll_crds::Wake {
    eventually(&format!("{name}'s wake to be recorded"), LIMIT, || async {
        last_wake(&tenant(p, name).await)
            .filter(|w| w.requested_at.0 >= since.0 && w.ready_at.is_some())
    })
    .await
}

const SLOW: &str = "id: slow\nnamespace: team\ntasks:\n  - {id: nap, type: io.kestra.plugin.core.flow.Sleep, duration: PT30S}\n";
const DRAINED: &str = "id: drained\nnamespace: team\ntasks:\n  - {id: nap, type: io.kestra.plugin.core.flow.Sleep, duration: PT10S}\n";
const HOOKED: &str = "id: hooked\nnamespace: team\ntasks:\n  - {id: say, type: io.kestra.plugin.core.log.Log, message: woken by a webhook}\ntriggers:\n  - {id: hook, type: io.kestra.plugin.core.trigger.Webhook, key: wake-up-key}\n";

/// A running execution keeps the tenant awake; idle, it sleeps; ten
/// concurrent requests wake it once and all succeed; asleep again, a
/// webhook wakes it and its execution runs; an execution started on the
/// instance while it drains keeps it awake.
pub async fn sleep_wake(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let alice = "alice@sw-acme.example";
    let world = world(
        p,
        &[alice],
        &[("sw-acme", &[(alice, "Admin")], IDLE_SLOWER)],
    )
    .await;
    let acme = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[0], "sw-acme").await;
    for flow in [SLOW, DRAINED, HOOKED] {
        let saved = acme.save_flow(&token, flow).await;
        assert!((200..300).contains(&saved.status), "{}", saved.body);
    }

    // Work in flight: a 30 s execution outlives the 20 s idle time.
    let id = acme.run(&token, "team", "slow").await;
    let state = eventually("the slow execution to end, awake", LIMIT, || async {
        let t = tenant(p, "sw-acme").await;
        assert_ne!(
            phase(&t),
            Some(Phase::Sleeping),
            "sw-acme slept while an execution ran"
        );
        let answer = acme
            .call(
                "GET",
                &format!("/api/v1/executions/{id}"),
                Some(&token),
                None,
            )
            .await?;
        let state = answer.json()["state"]["current"].as_str()?.to_owned();
        ["SUCCESS", "FAILED", "KILLED", "WARNING"]
            .contains(&state.as_str())
            .then_some(state)
    })
    .await;
    assert_eq!(state, "SUCCESS");
    report.figure("a 30 s execution ran past the 20 s idle time; the tenant stayed awake");

    let asleep = wait_asleep(p, "sw-acme", &report).await;
    let since = sleeping_since(&asleep);
    let url = asleep
        .status
        .as_ref()
        .and_then(|s| s.url.clone())
        .expect("url");
    let door = Door::new(p, &url);

    // Ten concurrent requests: all succeed, one wake.
    let started = Instant::now();
    let replies = futures::future::join_all((0..10).map(|_| {
        let door = door.clone();
        let token = token.clone();
        async move {
            door.call("GET", "/api/v1/flows/team/slow", Some(&token))
                .await
        }
    }))
    .await;
    for reply in &replies {
        assert_eq!(reply.status, 200, "a held request failed: {}", reply.body);
        assert!(reply.body.contains("\"slow\""), "{}", reply.body);
    }
    let slowest = replies.iter().map(|r| r.took).max().unwrap_or_default();
    let wake = recorded_wake(p, "sw-acme", &since).await;
    assert_eq!(wake.cause, WakeCause::Request);
    let pods = instance_pods(p, "atoll-sw-acme").await;
    assert_eq!(pods.len(), 1, "one wake, one instance pod: {pods:?}");
    report.figure(format!(
        "10 concurrent requests to the sleeping tenant: 10 × 200, one wake ({} ms to ready), all answered within {:.2}s of the first",
        wake.duration_milliseconds.unwrap_or_default(),
        slowest.max(started.elapsed()).as_secs_f64()
    ));

    // Asleep again; a webhook wakes it and its execution runs.
    let since = sleeping_since(&wait_asleep(p, "sw-acme", &report).await);
    let (execution, took) = door
        .start(
            "/api/v1/executions/webhook/team/hooked/wake-up-key",
            None,
            "webhook",
        )
        .await;
    let state = acme.wait_final(&token, &execution).await;
    assert_eq!(state, "SUCCESS");
    let wake = recorded_wake(p, "sw-acme", &since).await;
    assert_eq!(wake.cause, WakeCause::Request);
    report.figure(format!(
        "a webhook woke the sleeping tenant in {:.2}s; its execution {execution} succeeded",
        took.as_secs_f64()
    ));

    drained_work_keeps_it_awake(p, &door, &token, &report).await;
    p.delete_tenant("sw-acme", true).await;
}

/// Work that reaches the instance while its tenant drains (its host
/// already at the gate, its workloads not yet stopped: an ingress
/// controller that has not followed the Ingress yet sends it there) keeps
/// the tenant awake: the execution it starts is not stopped with it.
async fn drained_work_keeps_it_awake(p: &Platform, door: &Door, token: &str, report: &Report) {
    let draining = eventually("sw-acme to begin its sleep", LIMIT, || async {
        let t = tenant(p, "sw-acme").await;
        (phase(&t) == Some(Phase::Sleeping)).then_some(t)
    })
    .await;
    let since = sleeping_since(&draining);
    let pods = instance_pods(p, "atoll-sw-acme").await;
    let [pod] = pods.as_slice() else {
        panic!("one instance pod while sw-acme drains: {pods:?}");
    };
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.clone())
        .expect("the instance pod's IP");
    let direct = Door {
        base: format!("http://{ip}:8080"),
        ..door.clone()
    };
    let (id, _) = direct
        .start(
            "/api/v1/executions/team/drained",
            Some(token),
            "an execution started while draining",
        )
        .await;
    let state = eventually(
        "the execution started while draining to end",
        LIMIT,
        || async {
            let Some(reply) = direct
                .try_call("GET", &format!("/api/v1/executions/{id}"), Some(token))
                .await
            else {
                panic!("sw-acme's instance was stopped with an execution started in its drain");
            };
            let body: Value = serde_json::from_str(&reply.body).ok()?;
            let state = body["state"]["current"].as_str()?.to_owned();
            ["SUCCESS", "FAILED", "KILLED", "WARNING"]
                .contains(&state.as_str())
                .then_some(state)
        },
    )
    .await;
    assert_eq!(state, "SUCCESS", "the execution started while draining");
    let wake = recorded_wake(p, "sw-acme", &since).await;
    assert_eq!(wake.cause, WakeCause::Request);
    let after = instance_pods(p, "atoll-sw-acme").await;
    assert_eq!(
        after
            .iter()
            .map(|p| p.metadata.uid.clone())
            .collect::<Vec<_>>(),
        vec![pod.metadata.uid.clone()],
        "the instance pod that took the work kept running"
    );
    report.figure(format!(
        "an execution started on the instance in its drain kept sw-acme awake (same pod, wake {} ms) and succeeded",
        wake.duration_milliseconds.unwrap_or_default()
    ));
}

const TICKER: &str = "id: ticker\nnamespace: team\ntasks:\n  - {id: tick, type: io.kestra.plugin.core.log.Log, message: tick}\ntriggers:\n  - {id: every-minute, type: io.kestra.plugin.core.trigger.Schedule, cron: \"*/1 * * * *\"}\n";

/// How long the schedule is watched.
const WATCHED: Duration = Duration::from_secs(600);

/// A schedule every minute over 10 minutes: the tenant sleeps between
/// runs, the operator wakes it ahead of each, and every tick runs exactly
/// once.
pub async fn sleep_schedule_ticks(platform: Arc<Platform>, report: Arc<Report>) {
    let p = &*platform;
    let bob = "bob@st-acme.example";
    let world = world(p, &[bob], &[("st-acme", &[(bob, "Admin")], IDLE)]).await;
    let acme = &world.instances[0];
    let token = token_when_synced(p, &world.sessions[0], "st-acme").await;
    let saved = acme.save_flow(&token, TICKER).await;
    assert!((200..300).contains(&saved.status), "{}", saved.body);
    let from = jiff::Timestamp::now();

    // Watch the Tenant (events, not polling) for ten minutes: every sleep
    // and every wake by schedule.
    let api = p.tenants();
    let config = watcher::Config::default().fields("metadata.name=st-acme");
    let mut events = watcher::watcher(api, config).boxed();
    let (mut sleeps, mut was_asleep) = (0usize, false);
    let mut schedule_wakes = BTreeMap::new();
    let deadline = tokio::time::Instant::now() + WATCHED;
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.next()).await {
        let tenants = match event {
            Ok(watcher::Event::Apply(t) | watcher::Event::InitApply(t)) => vec![t],
            _ => continue,
        };
        for t in tenants {
            let asleep = phase(&t) == Some(Phase::Sleeping);
            if asleep && !was_asleep {
                sleeps += 1;
            }
            was_asleep = asleep;
            if let Some(wake) = last_wake(&t).filter(|w| w.cause == WakeCause::Schedule) {
                schedule_wakes.insert(wake.requested_at.0, wake.duration_milliseconds);
            }
        }
    }
    let until = jiff::Timestamp::now();

    // Every minute tick in the window ran exactly once (asking wakes the
    // tenant if it sleeps: the door is the user's).
    let url = tenant(p, "st-acme")
        .await
        .status
        .and_then(|s| s.url)
        .expect("url");
    let door = Door::new(p, &url);
    let executions = eventually("the ticker's executions", LIMIT, || async {
        let reply = door
            .call(
                "GET",
                "/api/v1/executions/search?namespace=team&flowId=ticker&size=100",
                Some(&token),
            )
            .await;
        (reply.status == 200).then(|| serde_json::from_str::<Value>(&reply.body).ok())?
    })
    .await;
    let mut per_tick: BTreeMap<String, usize> = BTreeMap::new();
    for execution in executions["results"].as_array().into_iter().flatten() {
        let trigger = &execution["trigger"];
        let date = trigger["date"]
            .as_str()
            .or_else(|| trigger["variables"]["date"].as_str())
            .unwrap_or_default();
        let tick: jiff::Timestamp = date
            .parse()
            .unwrap_or_else(|e| panic!("tick {date:?} of {execution}: {e}"));
        *per_tick.entry(tick.to_string()).or_default() += 1;
    }
    let expected: Vec<String> = minute_ticks(from, until);
    let counted: Vec<String> = per_tick
        .iter()
        .filter(|(tick, _)| expected.contains(tick))
        .map(|(tick, _)| tick.clone())
        .collect();
    assert_eq!(
        counted, expected,
        "every tick of the window ran: {per_tick:?}"
    );
    let doubles: Vec<_> = per_tick.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubles.is_empty(), "ticks that ran twice: {doubles:?}");
    assert!(sleeps >= 5, "slept only {sleeps} times in ten minutes");
    assert!(
        schedule_wakes.len() >= 5,
        "woken by schedule only {} times: {schedule_wakes:?}",
        schedule_wakes.len()
    );
    let mut durations: Vec<i64> = schedule_wakes.values().flatten().copied().collect();
    durations.sort_unstable();
    report.figure(format!(
        "{} ticks in 10 min, each run exactly once; slept {sleeps} times between them, woken {} times by the schedule (wake {} to {} ms)",
        expected.len(),
        schedule_wakes.len(),
        durations.first().unwrap_or(&0),
        durations.last().unwrap_or(&0)
    ));
    p.delete_tenant("st-acme", true).await;
}

/// Minute boundaries after `from` (the flow's save) and at least 5 s
/// before `until` (a tick at the very end may still be starting).
fn minute_ticks(from: jiff::Timestamp, until: jiff::Timestamp) -> Vec<String> {
    let mut ticks = Vec::new();
    let mut minute = from.as_second().div_euclid(60) * 60 + 60;
    while minute + 5 <= until.as_second() {
        if let Ok(t) = jiff::Timestamp::from_second(minute) {
            ticks.push(t.to_string());
        }
        minute += 60;
    }
    ticks
}
