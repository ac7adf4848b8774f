//! Unit tests of `store` against `object_store`'s in-memory store.

use super::*;
use object_store::memory::InMemory;

fn key(k: &str) -> Path {
    Path::from(k)
}

#[tokio::test]
async fn create_then_same_then_conflict() {
    let store = InMemory::new();
    let k = key("t/wal/000000010000000000000001.lz4");
    let first = put_create_or_same(&store, &k, Bytes::from_static(b"one")).await;
    assert_eq!(first.expect("created"), PutOutcome::Created);
    let again = put_create_or_same(&store, &k, Bytes::from_static(b"one")).await;
    assert_eq!(again.expect("same"), PutOutcome::AlreadyThere);
    let other = put_create_or_same(&store, &k, Bytes::from_static(b"two")).await;
    let err = other.expect_err("conflict");
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("different content"), "{err}");
    let kept = get_bytes(&store, &k).await.expect("get");
    assert_eq!(kept.as_deref(), Some(&b"one"[..]), "never overwritten");
}

#[tokio::test]
async fn custom_comparison_decides() {
    let store = InMemory::new();
    let k = key("x");
    put_create_or_same(&store, &k, Bytes::from_static(b"AB"))
        .await
        .expect("created");
    let same_ignoring_case = |existing: &Bytes| existing.eq_ignore_ascii_case(b"ab");
    let outcome = put_create_or_same_by(&store, &k, Bytes::from_static(b"ab"), same_ignoring_case);
    assert_eq!(outcome.await.expect("same"), PutOutcome::AlreadyThere);
}

#[tokio::test]
async fn get_absent_is_none() {
    let store = InMemory::new();
    assert_eq!(get_bytes(&store, &key("nope")).await.expect("get"), None);
    assert!(
        get_stream(&store, &key("nope"))
            .await
            .expect("get")
            .is_none()
    );
}

#[tokio::test]
async fn put_stream_compressed_round_trips_and_lists() {
    let store = InMemory::new();
    let data: Vec<u8> = (0..20_000_000u32).map(|i| (i % 97) as u8).collect();
    let k = key("t/base/20261207T093000Z/base.tar.lz4");
    let size = put_stream(&store, &k, &data[..], Compression::Lz4)
        .await
        .expect("upload");
    let stored = get_bytes(&store, &k).await.expect("get").expect("present");
    assert_eq!(stored.len() as u64, size);
    assert_eq!(crate::compress::decompress(&stored).expect("lz4"), data);

    let raw = key("t/dumps/20261207T093000Z/dump.pgc");
    let size = put_stream(&store, &raw, &b"pgdump"[..], Compression::None).await;
    assert_eq!(size.expect("upload"), 6);
    let mut chunks = get_stream(&store, &raw)
        .await
        .expect("get")
        .expect("present");
    let mut got = Vec::new();
    while let Some(chunk) = chunks.next().await {
        got.extend_from_slice(&chunk.expect("chunk"));
    }
    assert_eq!(got, b"pgdump");

    let listed = list(&store, &key("t")).await.expect("list");
    let mut names: Vec<String> = listed.iter().map(|m| m.location.to_string()).collect();
    names.sort();
    assert_eq!(names, [k.to_string(), raw.to_string()]);
    delete(&store, &raw).await.expect("delete");
    delete(&store, &raw)
        .await
        .expect("deleting an absent object is fine");
    assert_eq!(list(&store, &key("t")).await.expect("list").len(), 1);
}

#[tokio::test]
async fn a_failing_reader_aborts_the_upload() {
    struct Failing;
    impl AsyncRead for Failing {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Err(std::io::Error::other("pg_basebackup died")))
        }
    }
    let store = InMemory::new();
    let k = key("t/base/x/base.tar.lz4");
    let err = put_stream(&store, &k, Failing, Compression::Lz4)
        .await
        .expect_err("fails");
    assert!(err.to_string().contains("pg_basebackup died"), "{err}");
    assert_eq!(
        get_bytes(&store, &k).await.expect("get"),
        None,
        "nothing stored"
    );
}

fn settings(path_style: bool) -> Settings {
    Settings {
        endpoint: "https://s3.example.com:9000".into(),
        bucket: "b-1".into(),
        region: "us-east-1".into(),
        path_style,
        prefix: None,
        allow_http: false,
        tenant_uid: "u1".into(),
        tenant_name: None,
        credentials: None,
    }
}

#[test]
fn virtual_hosted_endpoints_carry_the_bucket() {
    assert_eq!(
        bucket_endpoint(&settings(true)),
        "https://s3.example.com:9000"
    );
    assert_eq!(
        bucket_endpoint(&settings(false)),
        "https://b-1.s3.example.com:9000"
    );
    assert!(open(&settings(false)).is_ok());
}
