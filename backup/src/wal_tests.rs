//! Unit tests of `wal` against `object_store`'s in-memory store.

use super::*;
use object_store::memory::InMemory;
use object_store::path::Path as ObjPath;

const UID: &str = "u1";
const SEGMENT: &str = "000000010000000000000007";

fn segment_bytes(seed: u8) -> Vec<u8> {
    let mut data = vec![0u8; 16 * 1024 * 1024];
    for (i, b) in data.iter_mut().take(64 * 1024).enumerate() {
        *b = (i as u8).wrapping_mul(seed);
    }
    data
}

#[tokio::test]
async fn segments_are_compressed_histories_are_not() {
    let (store, layout) = (InMemory::new(), Layout::new(Some("p")));
    let dir = tempfile::tempdir().expect("temp dir");
    let seg = dir.path().join(SEGMENT);
    std::fs::write(&seg, segment_bytes(3)).expect("write");
    let hist = dir.path().join("00000002.history");
    std::fs::write(&hist, "1\t0/3000000\tno recovery target specified\n").expect("write");

    let pushed = push_to(&store, &layout, UID, &seg).await.expect("push");
    assert_eq!(pushed, PutOutcome::Created);
    push_to(&store, &layout, UID, &hist)
        .await
        .expect("push history");
    let key = ObjPath::from("p/tenants/u1/wal/000000010000000000000007.lz4");
    let raw = store::get_bytes(&store, &key)
        .await
        .expect("get")
        .expect("stored as .lz4");
    assert!(raw.len() < 1024 * 1024, "compressed: {}", raw.len());
    let history = ObjPath::from("p/tenants/u1/wal/00000002.history");
    let stored = store::get_bytes(&store, &history)
        .await
        .expect("get")
        .expect("stored");
    assert!(stored.starts_with(b"1\t0/3000000"), "stored as is");

    let dest = dir.path().join("RECOVERYXLOG");
    let got = fetch_from(&store, &layout, UID, SEGMENT, &dest)
        .await
        .expect("fetch");
    assert_eq!(got, Fetched::Written);
    assert!(std::fs::read(&dest).expect("read") == segment_bytes(3));
    let dest = dir.path().join("RECOVERYHISTORY");
    fetch_from(&store, &layout, UID, "00000002.history", &dest)
        .await
        .expect("fetch");
    assert_eq!(std::fs::read(&dest).expect("read"), stored);
}

#[tokio::test]
async fn same_content_is_success_other_content_a_conflict() {
    let (store, layout) = (InMemory::new(), Layout::new(None));
    let dir = tempfile::tempdir().expect("temp dir");
    let seg = dir.path().join(SEGMENT);
    std::fs::write(&seg, segment_bytes(3)).expect("write");
    push_to(&store, &layout, UID, &seg).await.expect("push");
    let again = push_to(&store, &layout, UID, &seg)
        .await
        .expect("push again");
    assert_eq!(again, PutOutcome::AlreadyThere);
    std::fs::write(&seg, segment_bytes(5)).expect("write");
    let err = push_to(&store, &layout, UID, &seg)
        .await
        .expect_err("conflict");
    assert!(
        matches!(err, WalError::Store(StoreError::Conflict { .. })),
        "{err}"
    );
    let dest = dir.path().join("out");
    fetch_from(&store, &layout, UID, SEGMENT, &dest)
        .await
        .expect("fetch");
    assert!(
        std::fs::read(&dest).expect("read") == segment_bytes(3),
        "unchanged"
    );
}

#[tokio::test]
async fn absent_invalid_and_unreadable() {
    let (store, layout) = (InMemory::new(), Layout::new(None));
    let dir = tempfile::tempdir().expect("temp dir");
    let dest = dir.path().join("out");
    let got = fetch_from(&store, &layout, UID, SEGMENT, &dest)
        .await
        .expect("fetch");
    assert_eq!(got, Fetched::Absent);
    assert!(!dest.exists());
    let err = fetch_from(&store, &layout, UID, "pg_control", &dest).await;
    assert!(matches!(err, Err(WalError::Layout(_))));
    let err = push_to(&store, &layout, UID, &dir.path().join(SEGMENT)).await;
    let message = err.expect_err("no such file").to_string();
    assert!(
        message.starts_with("cannot read ") && message.contains(SEGMENT),
        "{message}"
    );
    let err = push_to(&store, &layout, UID, &dir.path().join("postmaster.pid")).await;
    assert!(matches!(err, Err(WalError::Layout(_))));
}

#[tokio::test]
async fn a_damaged_object_is_reported() {
    let (store, layout) = (InMemory::new(), Layout::new(None));
    let key = layout.wal(UID, SEGMENT).expect("key");
    store::put_create_or_same(&store, &key, Bytes::from_static(b"garbage"))
        .await
        .expect("put");
    let dir = tempfile::tempdir().expect("temp dir");
    let err = fetch_from(&store, &layout, UID, SEGMENT, &dir.path().join("out")).await;
    let message = err.expect_err("damaged").to_string();
    assert!(message.contains("not a valid lz4 frame"), "{message}");
}
