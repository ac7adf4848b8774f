//! One store test suite, run on SQLite and on a throwaway PostgreSQL.

mod support;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use atoll_instance::execution::{Execution, NewLog, State};
use atoll_instance::flow::Label;
use atoll_instance::store::{
    ExecutionFilter, FlowExpect, Repository, Store, StoreError, TriggerKey,
};
use jiff::Timestamp;
use serde_json::Map;

const LEASE: Duration = Duration::from_secs(60);

fn execution(id: &str, namespace: &str, flow_id: &str) -> Execution {
    Execution::new(
        id.into(),
        namespace.into(),
        flow_id.into(),
        1,
        Vec::new(),
        Map::new(),
        Timestamp::now(),
    )
}

async fn flows_are_revisioned(store: &Store) {
    let first = store
        .save_flow("acme.team", "hello", "v1", FlowExpect::Any)
        .await
        .expect("save")
        .expect("saved");
    assert_eq!(first.revision, 1);
    let same = store
        .save_flow("acme.team", "hello", "v1", FlowExpect::Any)
        .await
        .expect("save")
        .expect("saved");
    assert_eq!(same.revision, 1, "unchanged source keeps the revision");
    let second = store
        .save_flow("acme.team", "hello", "v2", FlowExpect::Any)
        .await
        .expect("save")
        .expect("saved");
    assert_eq!(second.revision, 2);
    let latest = store
        .get_flow("acme.team", "hello", None)
        .await
        .expect("get");
    assert_eq!(latest.map(|f| f.source), Some("v2".into()));
    let old = store
        .get_flow("acme.team", "hello", Some(1))
        .await
        .expect("get");
    assert_eq!(old.map(|f| f.source), Some("v1".into()));
    let revisions = store
        .flow_revisions("acme.team", "hello")
        .await
        .expect("revisions");
    assert_eq!(revisions.len(), 2);

    assert!(
        store
            .delete_flow("acme.team", "hello")
            .await
            .expect("delete")
    );
    assert!(
        !store
            .delete_flow("acme.team", "hello")
            .await
            .expect("delete")
    );
    assert_eq!(
        store
            .get_flow("acme.team", "hello", None)
            .await
            .expect("get"),
        None
    );
    let again = store
        .save_flow("acme.team", "hello", "v2", FlowExpect::Any)
        .await
        .expect("save")
        .expect("saved");
    assert_eq!(
        again.revision, 4,
        "re-creating after a delete is a new revision"
    );
}

/// A create needs the flow absent (or deleted) and an update needs it
/// live; a save that does not meet its expectation stores nothing.
async fn flow_saves_check_presence(store: &Store) {
    let update = |source| store.save_flow("acme.team", "presence", source, FlowExpect::Live);
    assert_eq!(
        update("v0").await.expect("update"),
        None,
        "nothing to update"
    );
    let create = |source| store.save_flow("acme.team", "presence", source, FlowExpect::Absent);
    let created = create("v1").await.expect("create").expect("created");
    assert_eq!(created.revision, 1);
    assert_eq!(create("v2").await.expect("create"), None, "already exists");
    let updated = update("v2").await.expect("update").expect("updated");
    assert_eq!(updated.revision, 2);
    assert!(
        store
            .delete_flow("acme.team", "presence")
            .await
            .expect("delete")
    );
    assert_eq!(update("v3").await.expect("update"), None, "deleted");
    let recreated = create("v3").await.expect("create").expect("re-created");
    assert_eq!(recreated.revision, 4);
}

/// Names that are not plain identifiers take the same locks and are
/// stored as given.
async fn odd_names_are_saved(store: &Store) {
    for source in ["v1", "v2"] {
        store
            .save_flow("o'dd; ns", "x y\\", source, FlowExpect::Any)
            .await
            .expect("save")
            .expect("saved");
    }
    let latest = store
        .get_flow("o'dd; ns", "x y\\", None)
        .await
        .expect("get");
    assert_eq!(
        latest.map(|f| (f.revision, f.source)),
        Some((2, "v2".into()))
    );
}

async fn flows_list_by_namespace_prefix(store: &Store) {
    for (ns, id) in [
        ("list", "a"),
        ("list.sub", "b"),
        ("listx", "c"),
        ("lis_", "d"),
    ] {
        store
            .save_flow(ns, id, "src", FlowExpect::Any)
            .await
            .expect("save");
    }
    let ids = |flows: Vec<atoll_instance::store::FlowRecord>| {
        flows.into_iter().map(|f| f.id).collect::<Vec<_>>()
    };
    assert_eq!(
        ids(store.list_flows(Some("list")).await.expect("list")),
        ["a", "b"]
    );
    // `_` is a LIKE wildcard: it must match only itself.
    assert_eq!(
        ids(store.list_flows(Some("lis_")).await.expect("list")),
        ["d"]
    );
    assert!(store.list_flows(None).await.expect("list").len() >= 4);
}

async fn executions_are_stored_and_searched(store: &Store) {
    let mut first = execution("search-1", "search.a", "f1");
    store.insert_execution(&first).await.expect("insert");
    let dup = store.insert_execution(&first).await;
    assert!(matches!(dup, Err(StoreError::Duplicate(_))), "{dup:?}");
    store
        .insert_execution(&execution("search-2", "search.a.b", "f2"))
        .await
        .expect("insert");
    store
        .insert_execution(&execution("search-3", "search.c", "f1"))
        .await
        .expect("insert");

    let got = store.get_execution("search-1").await.expect("get");
    assert_eq!(got.as_ref(), Some(&first));
    assert_eq!(store.get_execution("nope").await.expect("get"), None);

    let search = |namespace: Option<&str>, flow_id: Option<&str>, states: Vec<State>| {
        let filter = ExecutionFilter {
            namespace: namespace.map(str::to_owned),
            flow_id: flow_id.map(str::to_owned),
            states,
            labels: Vec::new(),
            limit: 100,
            offset: 0,
            ..ExecutionFilter::default()
        };
        async move {
            let mut ids: Vec<String> = store
                .search_executions(&filter)
                .await
                .expect("search")
                .into_iter()
                .map(|e| e.id)
                .filter(|id| id.starts_with("search-"))
                .collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(
        search(Some("search.a"), None, vec![]).await,
        ["search-1", "search-2"]
    );
    assert_eq!(
        search(None, Some("f1"), vec![]).await,
        ["search-1", "search-3"]
    );
    let count = store
        .count_executions(&ExecutionFilter {
            namespace: Some("search.a".into()),
            limit: 1,
            ..ExecutionFilter::default()
        })
        .await
        .expect("count");
    assert_eq!(count, 2, "the count ignores the page size");

    // A time range of creation: [from, until).
    let hour = jiff::SignedDuration::from_hours(1);
    let in_range = |from: Option<Timestamp>, until: Option<Timestamp>| ExecutionFilter {
        namespace: Some("search.a".into()),
        created_from: from,
        created_until: until,
        limit: 10,
        ..ExecutionFilter::default()
    };
    let now = Timestamp::now();
    for (from, until, expected) in [
        (Some(now - hour), Some(now + hour), 2),
        (Some(now + hour), None, 0),
        (None, Some(now - hour), 0),
        (None, Some(now + hour), 2),
    ] {
        let filter = in_range(from, until);
        let found = store.search_executions(&filter).await.expect("search");
        assert_eq!(found.len(), expected, "{from:?}..{until:?}");
        let counted = store.count_executions(&filter).await.expect("count");
        assert_eq!(counted, expected as u64, "{from:?}..{until:?}");
    }

    // Labels: every label searched for must be on the execution.
    let mut labelled = execution("labelled-4", "labelled", "f4");
    labelled.labels = vec![
        Label {
            key: "team".into(),
            value: "data".into(),
        },
        Label {
            key: "env".into(),
            value: "prod".into(),
        },
    ];
    store.insert_execution(&labelled).await.expect("insert");
    let by_labels = |labels: &[(&str, &str)]| ExecutionFilter {
        labels: labels
            .iter()
            .map(|(k, v)| Label {
                key: (*k).into(),
                value: (*v).into(),
            })
            .collect(),
        limit: 10,
        ..ExecutionFilter::default()
    };
    for (labels, expected) in [
        (&[("team", "data")][..], 1),
        (&[("team", "data"), ("env", "prod")][..], 1),
        (&[("team", "data"), ("env", "dev")][..], 0),
        (&[("team", "dat")][..], 0),
    ] {
        let found = store
            .search_executions(&by_labels(labels))
            .await
            .expect("search");
        assert_eq!(found.len(), expected, "{labels:?}");
        let counted = store
            .count_executions(&by_labels(labels))
            .await
            .expect("count");
        assert_eq!(counted, expected as u64, "{labels:?}");
    }

    // Finish one through its lease and search by state.
    let owner = "search-owner";
    loop {
        let claimed = store.claim_execution(owner, LEASE).await.expect("claim");
        match claimed {
            Some(e) if e.id == "search-1" => break,
            Some(_) => continue,
            None => panic!("search-1 was never claimable"),
        }
    }
    first.state.set(State::Success, Timestamp::now());
    store
        .save_execution(&first, owner, LEASE, &[])
        .await
        .expect("save");
    assert_eq!(search(None, None, vec![State::Success]).await, ["search-1"]);
    assert_eq!(
        search(Some("search"), None, vec![State::Created]).await,
        ["search-2", "search-3"],
        "search-2 was claimed but is still CREATED"
    );
}

async fn claims_are_exclusive(store: Arc<Store>) {
    drain(&store).await;
    let ids: Vec<String> = (0..30).map(|i| format!("claim-{i:02}")).collect();
    for id in &ids {
        store
            .insert_execution(&execution(id, "claims", "f"))
            .await
            .expect("insert");
    }
    let mut workers = Vec::new();
    for w in 0..4 {
        let store = store.clone();
        workers.push(tokio::spawn(async move {
            let owner = format!("worker-{w}");
            let mut got = Vec::new();
            while let Some(e) = store.claim_execution(&owner, LEASE).await.expect("claim") {
                got.push(e.id);
            }
            got
        }));
    }
    let mut all = Vec::new();
    for worker in workers {
        all.extend(worker.await.expect("worker"));
    }
    let unique: HashSet<_> = all.iter().cloned().collect();
    assert_eq!(
        all.len(),
        unique.len(),
        "an execution was claimed twice: {all:?}"
    );
    assert_eq!(unique, ids.into_iter().collect::<HashSet<_>>());
}

async fn expired_leases_are_taken_over(store: &Store) {
    drain(store).await;
    let mut e = execution("lease-1", "leases", "f");
    store.insert_execution(&e).await.expect("insert");
    let claimed = store
        .claim_execution("dead", Duration::ZERO)
        .await
        .expect("claim");
    assert_eq!(claimed.map(|c| c.id), Some("lease-1".into()));
    // The first owner "died": its zero-length lease has expired.
    let taken = store.claim_execution("alive", LEASE).await.expect("claim");
    assert_eq!(taken.map(|c| c.id), Some("lease-1".into()));
    e.state.set(State::Running, Timestamp::now());
    let lost = store.save_execution(&e, "dead", LEASE, &[]).await;
    assert!(matches!(lost, Err(StoreError::LeaseLost(_))), "{lost:?}");
    assert!(
        !store
            .renew_lease("lease-1", "dead", LEASE)
            .await
            .expect("renew")
            .held
    );
    let lease = store
        .renew_lease("lease-1", "alive", LEASE)
        .await
        .expect("renew");
    assert!(lease.held && !lease.kill_requested);
    assert_eq!(
        store.claim_execution("third", LEASE).await.expect("claim"),
        None
    );

    assert!(store.request_kill("lease-1").await.expect("kill"));
    assert!(
        store
            .renew_lease("lease-1", "alive", LEASE)
            .await
            .expect("renew")
            .kill_requested
    );

    store
        .release_lease("lease-1", "alive")
        .await
        .expect("release");
    let reclaimed = store.claim_execution("third", LEASE).await.expect("claim");
    assert_eq!(reclaimed.map(|c| c.id), Some("lease-1".into()));

    e.state.set(State::Killed, Timestamp::now());
    store
        .save_execution(&e, "third", LEASE, &[])
        .await
        .expect("save");
    assert_eq!(
        store
            .claim_execution("fourth", Duration::ZERO)
            .await
            .expect("claim"),
        None
    );
    assert!(
        !store.request_kill("lease-1").await.expect("kill"),
        "finished"
    );
}

async fn logs_are_ordered_and_followable(store: &Store) {
    let log = |message: &str| NewLog {
        execution_id: "logs-1".into(),
        task_run_id: Some("tr".into()),
        task_id: Some("t".into()),
        attempt_number: 1,
        level: "INFO".into(),
        message: message.into(),
        timestamp: Timestamp::now(),
    };
    store
        .append_logs(&[log("one"), log("two")])
        .await
        .expect("append");
    store.append_logs(&[]).await.expect("append nothing");
    let first = store.logs("logs-1", 0, 100).await.expect("logs");
    let messages: Vec<_> = first.iter().map(|l| l.message.as_str()).collect();
    assert_eq!(messages, ["one", "two"]);
    store.append_logs(&[log("three")]).await.expect("append");
    let after = store.logs("logs-1", first[1].seq, 100).await.expect("logs");
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].message, "three");
    assert!(store.logs("other", 0, 100).await.expect("logs").is_empty());
}

fn line(execution_id: &str, message: &str) -> NewLog {
    NewLog {
        execution_id: execution_id.into(),
        task_run_id: None,
        task_id: None,
        attempt_number: 0,
        level: "INFO".into(),
        message: message.into(),
        timestamp: Timestamp::now(),
    }
}

async fn messages(store: &Store, execution_id: &str) -> Vec<String> {
    let logs = store.logs(execution_id, 0, 10_000).await.expect("logs");
    logs.into_iter().map(|l| l.message).collect()
}

/// An execution created already claimed is its creator's alone until the
/// lease expires; the lines a save carries are written with it, and only
/// while the lease is held.
async fn claimed_inserts_and_saves_with_logs(store: &Store) {
    drain(store).await;
    let mut e = execution("own-1", "own", "f");
    store
        .insert_claimed_execution(&e, "creator", LEASE)
        .await
        .expect("insert claimed");
    assert!(matches!(
        store.insert_claimed_execution(&e, "creator", LEASE).await,
        Err(StoreError::Duplicate(_))
    ));
    assert_eq!(
        store.claim_execution("other", LEASE).await.expect("claim"),
        None
    );
    assert_eq!(
        store
            .claim_one("own-1", "other", LEASE)
            .await
            .expect("claim"),
        None
    );
    assert!(
        store
            .renew_lease("own-1", "creator", LEASE)
            .await
            .expect("renew")
            .held
    );

    e.state.set(State::Running, Timestamp::now());
    let lines = [line("own-1", "a"), line("own-1", "b")];
    store
        .save_execution(&e, "creator", LEASE, &lines)
        .await
        .expect("save");
    assert_eq!(messages(store, "own-1").await, ["a", "b"]);
    let lost = store
        .save_execution(&e, "other", LEASE, &[line("own-1", "c")])
        .await;
    assert!(matches!(lost, Err(StoreError::LeaseLost(_))), "{lost:?}");
    assert_eq!(messages(store, "own-1").await, ["a", "b"], "not written");
    e.state.set(State::Success, Timestamp::now());
    store
        .save_execution(&e, "creator", LEASE, &[line("own-1", "d")])
        .await
        .expect("save finished");
    assert_eq!(messages(store, "own-1").await, ["a", "b", "d"]);
    let stored = store
        .get_execution("own-1")
        .await
        .expect("get")
        .expect("stored");
    assert_eq!(stored.state.current, State::Success);

    // A creator that died: its lease expires and another process takes over.
    let orphan = execution("own-2", "own", "f");
    store
        .insert_claimed_execution(&orphan, "dead", Duration::ZERO)
        .await
        .expect("insert claimed");
    let taken = store.claim_execution("alive", LEASE).await.expect("claim");
    assert_eq!(taken.map(|c| c.id), Some("own-2".into()));
    drain_owned(store, "own-2", "alive").await;

    // More lines than one statement carries, in order.
    let many: Vec<_> = (0..2500)
        .map(|i| line("own-many", &i.to_string()))
        .collect();
    store.append_logs(&many).await.expect("append");
    let expected: Vec<String> = (0..2500).map(|i| i.to_string()).collect();
    assert_eq!(messages(store, "own-many").await, expected);
}

/// An execution is only created of its flow's latest live revision.
async fn inserts_check_the_latest_revision(store: &Store) {
    drain(store).await;
    let save = |source: &'static str| store.save_flow("guard", "f", source, FlowExpect::Any);
    save("v1").await.expect("save").expect("saved");
    let mut first = execution("guard-1", "guard", "f");
    first.flow_revision = 1;
    assert!(
        store
            .insert_execution_if_latest(&first, None)
            .await
            .expect("insert")
    );
    save("v2").await.expect("save").expect("saved");
    let mut stale = execution("guard-2", "guard", "f");
    stale.flow_revision = 1;
    assert!(
        !store
            .insert_execution_if_latest(&stale, None)
            .await
            .expect("insert")
    );
    assert!(store.get_execution("guard-2").await.expect("get").is_none());
    let mut current = execution("guard-3", "guard", "f");
    current.flow_revision = 2;
    let claimed = store
        .insert_execution_if_latest(&current, Some(("creator", LEASE)))
        .await
        .expect("insert");
    assert!(claimed);
    let queued = store.claim_execution("other", LEASE).await.expect("claim");
    assert_eq!(
        queued.map(|e| e.id),
        Some("guard-1".into()),
        "guard-3 is claimed"
    );
    assert!(store.delete_flow("guard", "f").await.expect("delete"));
    current.id = "guard-4".into();
    assert!(
        !store
            .insert_execution_if_latest(&current, None)
            .await
            .expect("insert")
    );
    let mut missing = execution("guard-5", "guard", "none");
    missing.flow_revision = 1;
    assert!(
        !store
            .insert_execution_if_latest(&missing, None)
            .await
            .expect("insert")
    );
    drain_owned(store, "guard-1", "other").await;
    drain_owned(store, "guard-3", "creator").await;
}

async fn drain_owned(store: &Store, id: &str, owner: &str) {
    let mut e = store.get_execution(id).await.expect("get").expect("stored");
    e.state.set(State::Cancelled, Timestamp::now());
    store
        .save_execution(&e, owner, LEASE, &[])
        .await
        .expect("save");
}

/// Claims and finishes whatever earlier steps left unfinished.
async fn drain(store: &Store) {
    while let Some(mut e) = store.claim_execution("drain", LEASE).await.expect("claim") {
        e.state.set(State::Cancelled, Timestamp::now());
        store
            .save_execution(&e, "drain", LEASE, &[])
            .await
            .expect("save");
    }
}

async fn trigger_events_fire_once(store: &Store) {
    let key = TriggerKey {
        namespace: "trig".into(),
        flow_id: "f".into(),
        trigger_id: "t".into(),
    };
    let start = Timestamp::from_second(1_700_000_000).expect("time");
    store.init_trigger(&key, start).await.expect("init");
    let later = Timestamp::from_second(1_700_000_100).expect("time");
    store.init_trigger(&key, later).await.expect("init again");
    let state = |store: &Store| {
        let key = key.clone();
        let store = store.clone();
        async move {
            store
                .trigger_states()
                .await
                .expect("states")
                .into_iter()
                .find(|s| s.key == key)
                .expect("state")
        }
    };
    assert_eq!(
        state(store).await.cursor,
        Some(start),
        "init keeps the first cursor"
    );

    let tick = Timestamp::from_second(1_700_000_010).expect("time");
    let first = execution("trig-1", "trig", "f");
    assert!(
        store
            .fire_trigger(&key, "10", Some(tick), Some(&first))
            .await
            .expect("fire")
    );
    let again = execution("trig-2", "trig", "f");
    assert!(
        !store
            .fire_trigger(&key, "10", Some(tick), Some(&again))
            .await
            .expect("fire"),
        "a tick fires once"
    );
    assert!(store.get_execution("trig-2").await.expect("get").is_none());
    let fired = state(store).await;
    assert_eq!(fired.cursor, Some(tick));
    assert_eq!(fired.last_execution_id.as_deref(), Some("trig-1"));
    // The cursor never moves back.
    let earlier = Timestamp::from_second(1_700_000_005).expect("time");
    assert!(
        store
            .fire_trigger(&key, "5", Some(earlier), None)
            .await
            .expect("fire")
    );
    assert_eq!(state(store).await.cursor, Some(tick));

    store.reset_trigger(&key, later, true).await.expect("reset");
    let reset = state(store).await;
    assert_eq!((reset.cursor, reset.disabled), (Some(later), true));

    let purged = store
        .purge_trigger_events(Timestamp::now() + jiff::SignedDuration::from_secs(1))
        .await
        .expect("purge");
    assert!(purged >= 2, "{purged}");
    drain(store).await;
}

/// Moves executions' timestamps back by `days`, as if they were that old.
async fn backdate(url: &str, ids: &[&str], days: i64) {
    let then = Timestamp::now().as_microsecond() - days * 24 * 3600 * 1_000_000;
    if url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(url).await.expect("connect");
        for id in ids {
            sqlx::query("UPDATE executions SET created_at = ?1, updated_at = ?1 WHERE id = ?2")
                .bind(then)
                .bind(*id)
                .execute(&pool)
                .await
                .expect("backdate");
        }
        pool.close().await;
    } else {
        let pool = sqlx::PgPool::connect(url).await.expect("connect");
        for id in ids {
            sqlx::query("UPDATE executions SET created_at = $1, updated_at = $1 WHERE id = $2")
                .bind(then)
                .bind(*id)
                .execute(&pool)
                .await
                .expect("backdate");
        }
        pool.close().await;
    }
}

fn with_state(id: &str, state: State) -> Execution {
    let mut e = execution(id, "retention", "f");
    if state == State::Created {
        return e;
    }
    e.state.set(State::Running, Timestamp::now());
    e.state.set(state, Timestamp::now());
    e
}

/// Old ended executions go with their logs, in batches; recent ones and
/// unfinished ones (however old) stay.
async fn old_ended_executions_are_purged(store: &Store, url: &str) {
    let mut old_ended = Vec::new();
    for i in 0..7 {
        let state = [State::Success, State::Failed, State::Killed, State::Warning][i % 4];
        old_ended.push(format!("ret-old-{i}"));
        store
            .insert_execution(&with_state(&old_ended[i], state))
            .await
            .expect("insert");
    }
    for (id, state) in [
        ("ret-old-running", State::Running),
        ("ret-old-paused", State::Paused),
        ("ret-old-created", State::Created),
        ("ret-recent", State::Success),
    ] {
        store
            .insert_execution(&with_state(id, state))
            .await
            .expect("insert");
    }
    let log = |id: &str| NewLog {
        execution_id: id.into(),
        task_run_id: None,
        task_id: None,
        attempt_number: 1,
        level: "INFO".into(),
        message: format!("line of {id}"),
        timestamp: Timestamp::now(),
    };
    let logs: Vec<NewLog> = ["ret-old-0", "ret-old-6", "ret-recent", "ret-old-running"]
        .iter()
        .map(|id| log(id))
        .collect();
    store.append_logs(&logs).await.expect("logs");
    let mut old: Vec<&str> = old_ended.iter().map(String::as_str).collect();
    old.extend(["ret-old-running", "ret-old-paused", "ret-old-created"]);
    backdate(url, &old, 40).await;

    let cutoff = Timestamp::now() - jiff::SignedDuration::from_hours(30 * 24);
    // Batches of 3: 3, 3, 1, then nothing.
    let mut batches = Vec::new();
    loop {
        let deleted = store.purge_executions(cutoff, 3).await.expect("purge");
        batches.push(deleted);
        if deleted < 3 {
            break;
        }
    }
    assert_eq!(batches, [3, 3, 1]);
    for id in &old_ended {
        assert!(
            store.get_execution(id).await.expect("get").is_none(),
            "{id}"
        );
        assert!(
            store.logs(id, 0, 10).await.expect("logs").is_empty(),
            "{id}"
        );
    }
    for id in [
        "ret-old-running",
        "ret-old-paused",
        "ret-old-created",
        "ret-recent",
    ] {
        assert!(
            store.get_execution(id).await.expect("get").is_some(),
            "{id} kept"
        );
    }
    assert_eq!(
        store.logs("ret-recent", 0, 10).await.expect("logs").len(),
        1
    );
    assert_eq!(
        store
            .logs("ret-old-running", 0, 10)
            .await
            .expect("logs")
            .len(),
        1
    );
    assert_eq!(store.purge_executions(cutoff, 3).await.expect("purge"), 0);
}

async fn suite(store: Store) {
    store.ping().await.expect("ping");
    flows_are_revisioned(&store).await;
    flow_saves_check_presence(&store).await;
    odd_names_are_saved(&store).await;
    flows_list_by_namespace_prefix(&store).await;
    executions_are_stored_and_searched(&store).await;
    expired_leases_are_taken_over(&store).await;
    logs_are_ordered_and_followable(&store).await;
    claimed_inserts_and_saves_with_logs(&store).await;
    inserts_check_the_latest_revision(&store).await;
    trigger_events_fire_once(&store).await;
    claims_are_exclusive(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite:{}", dir.path().join("atoll.db").display());
    let store = Store::connect(&url).await.expect("connect");
    assert_eq!(store.backend(), "sqlite");
    suite(store.clone()).await;
    old_ended_executions_are_purged(&store, &url).await;
    // Migrations are idempotent: a second start on the same file works.
    let again = Store::connect(&url).await.expect("reconnect");
    assert!(
        again
            .get_flow("acme.team", "hello", None)
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_store() {
    let server = atoll_testkit::pg::TestPostgres::start();
    let url = server.database_url("store_suite");
    let store = Store::connect(&url).await.expect("connect");
    assert_eq!(store.backend(), "postgres");
    suite(store.clone()).await;
    old_ended_executions_are_purged(&store, &url).await;
    let again = Store::connect(&url).await.expect("reconnect");
    assert!(
        again
            .get_flow("acme.team", "hello", None)
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test]
async fn unsupported_urls_are_refused() {
    let err = Store::connect("mysql://x").await.expect_err("refused");
    assert!(matches!(err, StoreError::UnsupportedUrl));
}

/// A waking tenant's instance starts beside its PostgreSQL (#20): the
/// store waits for a server that answers "the database system is starting
/// up" (SQLSTATE 57P03, as PostgreSQL does while it replays its WAL), and
/// an error that is not "not there yet" (no such database) still ends the
/// connect at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_connect_waits_for_a_starting_server() {
    use std::sync::atomic::{AtomicUsize, Ordering};

    let server = atoll_testkit::pg::TestPostgres::start();
    let url = server.database_url("waits");
    let (base, _) = url.rsplit_once('/').expect("a database name");
    let (_, port) = base.rsplit_once(':').expect("a port");
    let port: u16 = port.parse().expect("a port number");
    // In front of the server: the first connections get PostgreSQL's own
    // "starting up" answer; later ones are passed through.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let front_port = front.local_addr().expect("addr").port();
    let turned_away = Arc::new(AtomicUsize::new(0));
    let counter = turned_away.clone();
    tokio::spawn(async move {
        while let Ok((mut client, _)) = front.accept().await {
            if counter.fetch_add(1, Ordering::SeqCst) < 3 {
                tokio::spawn(async move {
                    let _ = answer_starting_up(&mut client).await;
                });
                continue;
            }
            tokio::spawn(async move {
                if let Ok(mut upstream) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await
                {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                }
            });
        }
    });
    let through = url.replace(&format!(":{port}/"), &format!(":{front_port}/"));
    let store = Store::connect(&through)
        .await
        .expect("connects once the server answers");
    assert!(
        turned_away.load(Ordering::SeqCst) >= 3,
        "the first connections were turned away and retried"
    );
    store
        .save_flow("acme.team", "hello", "v1", FlowExpect::Any)
        .await
        .expect("the store works");

    let missing = url.replace("/waits", "/no_such_database");
    let err = Store::connect(&missing).await.expect_err("refused");
    assert!(
        matches!(err, StoreError::Connect(_)) && err.to_string().contains("no_such_database"),
        "{err}"
    );
}

/// PostgreSQL's answer while it starts: SSL refused, then after the
/// start-up message a FATAL ErrorResponse 57P03, and the connection closed.
async fn answer_starting_up(client: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const SSL_REQUEST: u32 = 80_877_103;
    let mut head = [0u8; 8];
    client.read_exact(&mut head).await?;
    let mut length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    if u32::from_be_bytes([head[4], head[5], head[6], head[7]]) == SSL_REQUEST {
        client.write_all(b"N").await?;
        client.read_exact(&mut head).await?;
        length = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
    }
    let mut rest = vec![0u8; (length as usize).saturating_sub(8)];
    client.read_exact(&mut rest).await?;
    let mut fields = Vec::new();
    for (code, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "57P03"),
        (b'M', "the database system is starting up"),
    ] {
        fields.push(code);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    client.write_all(&message).await?;
    client.shutdown().await
}
