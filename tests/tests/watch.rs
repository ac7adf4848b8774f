//! Watch semantics (replay, 410 Gone, bookmarks, timeouts, selector
//! transitions) and a kube watcher recovering from injected faults and
//! closed watch streams.

use std::collections::BTreeSet;
use std::time::Duration;

use atoll_testkit::kubesim::{Fault, FaultRule, KubeSim, Verb};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

const TIMEOUT: Duration = Duration::from_secs(30);

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"v": "0"}}),
    )
    .expect("valid ConfigMap")
}

fn rv_of(cm: &ConfigMap) -> String {
    cm.metadata
        .resource_version
        .clone()
        .expect("resourceVersion")
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> WatchEvent<ConfigMap> {
    tokio::time::timeout(TIMEOUT, stream.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("event decodes")
}

#[tokio::test]
async fn watch_replays_after_a_version_and_reports_gone_when_too_old() {
    let sim = KubeSim::builder().history(16).build();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let first = cms
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .expect("a");
    cms.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .expect("b");
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"v": "1"}})),
    )
    .await
    .expect("patched");
    let mut stream = cms
        .watch(&WatchParams::default(), &rv_of(&first))
        .await
        .expect("watch")
        .boxed();
    match next_event(&mut stream).await {
        WatchEvent::Added(o) => assert_eq!(o.metadata.name.as_deref(), Some("b")),
        other => panic!("expected b ADDED, got {other:?}"),
    }
    match next_event(&mut stream).await {
        WatchEvent::Modified(o) => assert_eq!(o.data.expect("data")["v"], "1"),
        other => panic!("expected a MODIFIED, got {other:?}"),
    }
    for i in 0..20 {
        cms.patch(
            "b",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"v": i.to_string()}})),
        )
        .await
        .expect("patched");
    }
    let mut stale = cms
        .watch(&WatchParams::default(), &rv_of(&first))
        .await
        .expect("watch")
        .boxed();
    match next_event(&mut stale).await {
        WatchEvent::Error(e) => assert_eq!((e.code, e.reason.as_str()), (410, "Expired")),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
}

#[tokio::test]
async fn bookmarks_timeouts_and_selector_transitions() {
    let sim = KubeSim::builder()
        .bookmark_interval(Duration::from_millis(50))
        .build();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    let created = cms
        .create(&PostParams::default(), &cm("a", json!({"app": "web"})))
        .await
        .expect("a");

    let mut with_bookmarks = cms
        .watch(&WatchParams::default(), &rv_of(&created))
        .await
        .expect("watch")
        .boxed();
    assert!(matches!(
        next_event(&mut with_bookmarks).await,
        WatchEvent::Bookmark(_)
    ));

    let selected = WatchParams::default().disable_bookmarks().labels("app=web");
    let mut web = cms
        .watch(&selected, &rv_of(&created))
        .await
        .expect("watch")
        .boxed();
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "db"}}})),
    )
    .await
    .expect("relabelled");
    assert!(
        matches!(next_event(&mut web).await, WatchEvent::Deleted(_)),
        "leaving the selector reads as a deletion"
    );
    cms.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .expect("relabelled");
    assert!(matches!(next_event(&mut web).await, WatchEvent::Added(_)));

    let short = cms
        .watch(
            &WatchParams::default().timeout(1),
            &sim.resource_version().to_string(),
        )
        .await
        .expect("watch");
    let ended = tokio::time::timeout(TIMEOUT, short.collect::<Vec<_>>()).await;
    assert!(ended.is_ok(), "the stream ends after timeoutSeconds");
}

#[tokio::test]
async fn a_kube_watcher_recovers_from_faults_and_closed_streams() {
    let sim = KubeSim::new();
    let client = sim.client();
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let faults = sim.faults();
    faults.add(
        FaultRule::new(Fault::InternalError)
            .verbs(&[Verb::List])
            .times(2),
    );
    faults.add(
        FaultRule::new(Fault::TooManyRequests {
            retry_after_secs: 1,
        })
        .verbs(&[Verb::Watch])
        .times(1),
    );
    faults.add(FaultRule::new(Fault::Latency(Duration::from_millis(20))).probability(0.5));

    let (reader, writer) = reflector::store::<ConfigMap>();
    let stream = reflector(writer, watcher(cms.clone(), watcher::Config::default()))
        .default_backoff()
        .applied_objects()
        .map_ok(|_| ())
        .for_each(|_| async {});
    let running = tokio::spawn(stream);

    let wanted = |names: &BTreeSet<String>| {
        let reader = reader.clone();
        let names = names.clone();
        async move {
            let deadline = tokio::time::Instant::now() + TIMEOUT;
            loop {
                let seen: BTreeSet<String> = reader
                    .state()
                    .iter()
                    .filter_map(|o| o.metadata.name.clone())
                    .collect();
                if seen == names {
                    return;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "store has {seen:?}, wanted {names:?}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    let mut names = BTreeSet::new();
    for i in 0..5 {
        let name = format!("cm-{i}");
        cms.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .expect("created");
        names.insert(name);
    }
    wanted(&names).await;

    // Streams closed under the watcher, with changes in between: it resumes
    // from its last version and misses nothing.
    let open_watches = || {
        sim.request_log()
            .records()
            .iter()
            .filter(|r| r.verb == Verb::Watch && r.code == 200)
            .count()
    };
    for round in 0..3 {
        // Close only once the watcher has a stream open again.
        let deadline = tokio::time::Instant::now() + TIMEOUT;
        while open_watches() < round + 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "watcher never re-watched"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        faults.close_watches();
        let name = format!("late-{round}");
        cms.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .expect("created");
        names.insert(name);
        cms.delete(&format!("cm-{round}"), &DeleteParams::default())
            .await
            .expect("deleted");
        names.remove(&format!("cm-{round}"));
        wanted(&names).await;
    }
    let log = sim.request_log().records();
    let faulted: Vec<_> = log
        .iter()
        .filter(|r| r.faulted)
        .map(|r| (r.verb, r.code))
        .collect();
    assert!(faulted.contains(&(Verb::List, 500)), "{faulted:?}");
    assert!(faulted.contains(&(Verb::Watch, 429)), "{faulted:?}");
    let watches: Vec<_> = log
        .iter()
        .filter(|r| matches!(r.verb, Verb::Watch | Verb::List))
        .map(|r| (r.verb, r.code))
        .collect();
    let served = watches.iter().filter(|w| **w == (Verb::Watch, 200)).count();
    assert!(served >= 4, "re-watched after each close: {watches:?}");
    running.abort();
}

#[tokio::test]
async fn a_streaming_list_watcher_gets_initial_events_then_changes() {
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    cms.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .expect("created");
    let config = watcher::Config::default().streaming_lists();
    let mut events = watcher(cms.clone(), config).boxed();
    let mut seen = Vec::new();
    while !seen.iter().any(|e| matches!(e, watcher::Event::InitDone)) {
        let event = tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("in time")
            .expect("open");
        seen.push(event.expect("no error"));
    }
    assert!(seen.iter().any(|e| matches!(e, watcher::Event::InitApply(o) if o.metadata.name.as_deref() == Some("before"))));
    cms.create(&PostParams::default(), &cm("after", json!({})))
        .await
        .expect("created");
    loop {
        let event = tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("in time")
            .expect("open");
        if let Ok(watcher::Event::Apply(o)) = event {
            assert_eq!(o.metadata.name.as_deref(), Some("after"));
            break;
        }
    }
}

#[tokio::test]
async fn metadata_only_reads_and_watches() {
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    cms.create(&PostParams::default(), &cm("meta", json!({"app": "x"})))
        .await
        .expect("created");
    let one = cms.get_metadata("meta").await.expect("metadata");
    assert_eq!(one.metadata.labels.expect("labels")["app"], "x");
    let all = cms
        .list_metadata(&ListParams::default())
        .await
        .expect("metadata list");
    assert_eq!(all.items.len(), 1);
    let metadata_only: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(sim.client());
    let mut events = watcher(metadata_only, watcher::Config::default()).boxed();
    let mut names = BTreeSet::new();
    cms.create(&PostParams::default(), &cm("later", json!({})))
        .await
        .expect("created");
    while names.len() < 2 {
        let event = tokio::time::timeout(TIMEOUT, events.next())
            .await
            .expect("in time")
            .expect("open");
        if let Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) = event {
            names.extend(o.metadata.name);
        }
    }
    assert_eq!(
        names,
        BTreeSet::from(["later".to_string(), "meta".to_string()])
    );
}

#[tokio::test]
async fn watches_cut_short_by_a_fault_rule_are_resumed_without_losses() {
    let sim = KubeSim::new();
    let cms: Api<ConfigMap> = Api::default_namespaced(sim.client());
    sim.faults().add(
        FaultRule::new(Fault::CloseWatchAfter(Duration::from_millis(50)))
            .verbs(&[Verb::Watch])
            .probability(0.8),
    );
    let (reader, writer) = reflector::store::<ConfigMap>();
    let running = tokio::spawn(
        reflector(writer, watcher(cms.clone(), watcher::Config::default()))
            .default_backoff()
            .for_each(|_| async {}),
    );
    let mut expected = BTreeSet::new();
    for i in 0..40 {
        let name = format!("cm-{i}");
        cms.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .expect("created");
        expected.insert(name);
    }
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let seen: BTreeSet<String> = reader
            .state()
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        if seen == expected {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "store has {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Streams keep being cut and resumed; a later change still arrives.
    let before = sim.request_log().count(Verb::Watch);
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while sim.request_log().count(Verb::Watch) < before + 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the watcher stopped re-watching"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cms.delete("cm-0", &DeleteParams::default())
        .await
        .expect("deleted");
    expected.remove("cm-0");
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let seen: BTreeSet<String> = reader
            .state()
            .iter()
            .filter_map(|o| o.metadata.name.clone())
            .collect();
        if seen == expected {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "store has {seen:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    running.abort();
}
