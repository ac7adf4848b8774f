//! The attempt routes on a real loopback listener, with the real file
//! helpers (`task_files`) as their client.

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::runner::kubernetes::files::AttemptFiles;
use crate::task_files;

async fn serve(attempts: &Attempts) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = routes::<Attempts>().with_state(attempts.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/api/v1/task-attempts")
}

fn open(attempts: &Attempts, key: &str) -> AttemptFiles {
    let inputs = BTreeMap::from([
        ("data.csv".to_owned(), Bytes::from_static(b"x,y\n1,2\n")),
        ("lib/helper.py".to_owned(), Bytes::from_static(b"X = 1\n")),
    ]);
    attempts
        .open(key, inputs, vec!["*.json".into(), "out/**".into()])
        .expect("open")
}

#[tokio::test]
async fn only_the_attempts_own_token_opens_its_files() {
    let attempts = Attempts::default();
    let base = serve(&attempts).await;
    let one = open(&attempts, "pod-one");
    let two = open(&attempts, "pod-two");
    let http = reqwest::Client::new();
    let get = |url: String, token: Option<&str>| {
        let request = http.get(url);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move { request.send().await.expect("send").status().as_u16() }
    };
    let list = format!("{base}/pod-one/inputs");
    assert_eq!(get(list.clone(), Some(one.token())).await, 200);
    assert_eq!(get(list.clone(), Some(two.token())).await, 401);
    assert_eq!(get(list.clone(), Some("0".repeat(64).as_str())).await, 401);
    assert_eq!(get(list.clone(), None).await, 401);
    let file = format!("{base}/pod-one/inputs/lib/helper.py");
    assert_eq!(get(file.clone(), Some(one.token())).await, 200);
    assert_eq!(get(file, Some(two.token())).await, 401);
    // Hostile paths: encoded so that no client normalises them away.
    for hostile in [
        "%2E%2E%2Fpod-two%2Finputs%2Fdata.csv",
        "%2Fetc%2Fpasswd",
        "a%5C..%5Cb",
        "lib%2F%2E%2E%2F%2E%2E%2Fx",
    ] {
        let url = format!("{base}/pod-one/inputs/{hostile}");
        assert_eq!(get(url, Some(one.token())).await, 400, "{hostile}");
    }
    let put = |path: &str, token: &str| {
        let request = http
            .put(format!("{base}/pod-one/outputs/{path}"))
            .bearer_auth(token.to_owned())
            .body("{}");
        async move { request.send().await.expect("send").status().as_u16() }
    };
    assert_eq!(put("result.json", one.token()).await, 204);
    assert_eq!(put("result.json", two.token()).await, 401);
    assert_eq!(put("result.csv", one.token()).await, 403);
    assert_eq!(put("%2E%2E%2Fresult.json", one.token()).await, 400);
    assert_eq!(one.outputs().keys().collect::<Vec<_>>(), ["result.json"]);
    assert!(two.outputs().is_empty());
    // The attempt ended: its token opens nothing any more.
    let token = one.token().to_owned();
    drop(one);
    assert_eq!(get(list, Some(&token)).await, 401);
}

#[tokio::test]
async fn the_file_helpers_fetch_inputs_and_upload_declared_outputs() {
    let attempts = Attempts::default();
    let base = serve(&attempts).await;
    let files = open(&attempts, "pod-one");
    let work = tempfile::tempdir().expect("tempdir");
    let client = task_files::Client::new(format!("{base}/pod-one"), files.token().to_owned());
    let fetched = task_files::fetch(&client, work.path())
        .await
        .expect("fetch");
    assert_eq!(fetched, 2);
    let helper = std::fs::read_to_string(work.path().join("lib/helper.py")).expect("fetched");
    assert_eq!(helper, "X = 1\n");
    std::fs::create_dir_all(work.path().join("out/charts")).expect("mkdir");
    std::fs::write(work.path().join("result.json"), r#"{"rows":2}"#).expect("write");
    std::fs::write(work.path().join("out/charts/a b.svg"), "<svg/>").expect("write");
    std::fs::write(work.path().join("scratch.tmp"), "no").expect("write");
    let patterns = vec!["*.json".to_owned(), "out/**".to_owned()];
    let uploaded = task_files::upload(&client, work.path(), &patterns)
        .await
        .expect("upload");
    assert_eq!(uploaded, 2);
    let outputs = files.outputs();
    assert_eq!(
        outputs.keys().collect::<Vec<_>>(),
        ["out/charts/a b.svg", "result.json"]
    );
    assert_eq!(outputs["result.json"], Bytes::from_static(br#"{"rows":2}"#));
    // A pattern the attempt did not declare is refused by the instance,
    // whatever the helper is told.
    let err = task_files::upload(&client, work.path(), &["*.tmp".to_owned()])
        .await
        .expect_err("undeclared");
    assert!(err.contains("403"), "{err}");
}

/// In the whole application the routes answer by the attempt's token alone:
/// not shadowed by the tenant segment, and with authentication disabled
/// for users they still refuse a caller without the token.
#[tokio::test]
async fn the_application_serves_the_routes_outside_user_authentication() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::config::Config {
        database_url: format!("sqlite:{}", dir.path().join("atoll.db").display()),
        data_dir: dir.path().to_owned(),
        storage: crate::config::StorageSettings::Dir(dir.path().join("storage")),
        ..crate::config::Config::default()
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let server = tokio::spawn(crate::server::serve(config, listener, shutdown.clone()));
    let url = format!("http://{addr}/api/v1/task-attempts/atoll-x-1-abc/inputs");
    let answer = atoll_testkit::wait::eventually("the server", Duration::from_secs(30), || {
        let url = url.clone();
        async move { reqwest::get(&url).await.ok() }
    })
    .await;
    assert_eq!(answer.status().as_u16(), 401);
    let body: serde_json::Value = answer.json().await.expect("json");
    assert_eq!(body["message"], "this attempt's token is required");
    shutdown.cancel();
    let _ = server.await;
}
