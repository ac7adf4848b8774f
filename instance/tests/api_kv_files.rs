//! The KV and namespace-file APIs as Kestra's clients call them, on a real
//! instance over HTTP: typed KV values, TTL and description headers, bulk
//! delete, the paged search across namespaces, inheritance (on SQLite and
//! PostgreSQL); namespace files in nested directories with stats,
//! revisions, move, search and a zip export; bad input refused with a 400
//! naming the problem and nothing changed; roles and other tenants refused.

mod support;

use std::io::Read;

use atoll_instance::config::AuthMode;
use atoll_testkit::s3::TestS3;
use reqwest::{Method, StatusCode};
use serde_json::json;
use support::api_instance::{Instance, TENANT, call, encode};
use support::identity::{self, KEY_A_PEM, TestIdentity};

fn kv(namespace: &str, key: &str) -> String {
    format!("/api/v1/{TENANT}/namespaces/{namespace}/kv/{key}")
}

fn no_auth() -> AuthMode {
    AuthMode::Disabled { explicit: false }
}

async fn kv_store_answers_as_kestra(database_url: Option<String>) {
    let i = Instance::start(no_auth(), database_url).await;
    let typed = [
        ("s", "\"quoted\"", "STRING", json!("quoted")),
        ("t", "some text", "STRING", json!("some text")),
        ("n", "12.5", "NUMBER", json!(12.5)),
        ("b", "false", "BOOLEAN", json!(false)),
        ("j", "{\"a\": [1, 2]}", "JSON", json!({"a": [1, 2]})),
        ("d", "2025-02-28", "DATE", json!("2025-02-28")),
        (
            "dt",
            "2025-02-28T08:00:00Z",
            "DATETIME",
            json!("2025-02-28T08:00:00Z"),
        ),
        ("p", "P3D", "DURATION", json!("P3D")),
    ];
    for (key, body, kind, value) in &typed {
        let (status, _) = i
            .send(call(Method::PUT, kv("company.team", key)).body(*body))
            .await;
        assert_eq!(status, StatusCode::OK, "{key}");
        let (status, got) = i.send(call(Method::GET, kv("company.team", key))).await;
        assert_eq!(status, StatusCode::OK, "{got}");
        assert_eq!(
            (&got["type"], &got["value"]),
            (&json!(kind), value),
            "{key}"
        );
    }
    // TTL and description headers; a bad TTL changes nothing.
    let (status, _) = i
        .send(
            call(Method::PUT, kv("company.team", "n"))
                .header("ttl", "PT1H")
                .header("description", "the n")
                .body("7"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, err) = i
        .send(
            call(Method::PUT, kv("company.team", "n"))
                .header("ttl", "one hour")
                .body("8"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["message"].as_str().unwrap_or_default().contains("ttl"),
        "{err}"
    );
    let (_, got) = i.send(call(Method::GET, kv("company.team", "n"))).await;
    assert_eq!(got["value"], json!(7), "the refused write changed nothing");

    // Inheritance: the parents' keys only, the nearest parent's first.
    for (ns, key, body) in [
        ("company", "shared", "\"root\""),
        ("company", "only_root", "1"),
        ("company.team", "shared", "\"team\""),
    ] {
        let (status, _) = i.send(call(Method::PUT, kv(ns, key)).body(body)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, inherited) = i
        .send(call(
            Method::GET,
            format!("/api/v1/{TENANT}/namespaces/company.team.sub/kv/inheritance"),
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{inherited}");
    let seen: Vec<(&str, &str)> = inherited
        .as_array()
        .expect("a list")
        .iter()
        .map(|e| {
            (
                e["namespace"].as_str().unwrap_or(""),
                e["key"].as_str().unwrap_or(""),
            )
        })
        .collect();
    // company.team's own keys and `shared`, and company's `only_root`.
    assert_eq!(seen.len(), typed.len() + 2, "{seen:?}");
    assert!(seen.contains(&("company.team", "shared")), "{seen:?}");
    assert!(seen.contains(&("company", "only_root")), "{seen:?}");
    assert!(!seen.contains(&("company", "shared")), "the nearest wins");

    search_pages_and_filters(&i, typed.len()).await;
    bulk_delete(&i).await;
}

async fn search_pages_and_filters(i: &Instance, in_team: usize) {
    let search = |query: &str| call(Method::GET, format!("/api/v1/{TENANT}/kv?{query}"));
    let (status, page) = i
        .send(search(
            "page=2&size=3&sort=key:desc&filters[namespace][EQUALS]=company.team",
        ))
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["total"], json!(in_team + 1), "{page}");
    let keys: Vec<&str> = page["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter_map(|e| e["key"].as_str())
        .collect();
    // All keys: t shared s p n j dt d b (descending); page 2 of 3.
    assert_eq!(keys, ["p", "n", "j"], "{page}");
    let (_, page) = i.send(search("filters[namespace][PREFIX]=company")).await;
    assert_eq!(page["total"], json!(in_team + 3), "{page}");
    let (_, page) = i.send(search("filters[q][EQUALS]=the%20n")).await;
    assert_eq!(page["total"], json!(1), "description text: {page}");
    for (query, names) in [
        ("filters[colour][EQUALS]=x", "colour"),
        ("filters[key][LIKE]=x", "LIKE"),
        ("sort=value:asc", "value"),
        ("size=0", "size"),
        ("page=0", "page"),
    ] {
        let (status, err) = i.send(search(query)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {err}");
        assert!(
            err["message"].as_str().unwrap_or_default().contains(names),
            "{err}"
        );
    }
}

async fn bulk_delete(i: &Instance) {
    let path = format!("/api/v1/{TENANT}/namespaces/company.team/kv");
    let delete = |body: &str| {
        call(Method::DELETE, path.clone())
            .header("content-type", "application/json")
            .body(body.to_owned())
    };
    let (status, err) = i.send(delete("{\"keys\": [\"s\", \"bad key\"]}")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap_or_default()
            .contains("bad key"),
        "{err}"
    );
    let (status, _) = i.send(call(Method::GET, kv("company.team", "s"))).await;
    assert_eq!(status, StatusCode::OK, "nothing was deleted");
    // serde would read `[]` as a struct with no fields; the document says
    // the body is an object (schemathesis found this one).
    for not_an_object in ["[1, 2]", "[]", "\"keys\""] {
        let (status, err) = i.send(delete(not_an_object)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{not_an_object}: {err}");
    }
    let (status, done) = i
        .send(delete("{\"keys\": [\"s\", \"t\", \"never\"]}"))
        .await;
    assert_eq!(
        (status, done),
        (StatusCode::OK, json!({"keys": ["s", "t"]}))
    );
    let (status, deleted) = i.send(call(Method::DELETE, kv("company.team", "n"))).await;
    assert_eq!((status, deleted), (StatusCode::OK, json!(true)));
    let (_, deleted) = i.send(call(Method::DELETE, kv("company.team", "n"))).await;
    assert_eq!(deleted, json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_store_answers_as_kestra_on_sqlite() {
    kv_store_answers_as_kestra(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_store_answers_as_kestra_on_postgres() {
    let server = atoll_testkit::pg::TestPostgres::start();
    kv_store_answers_as_kestra(Some(server.database_url("kv_api"))).await;
}

fn files(query: &str) -> String {
    format!("/api/v1/{TENANT}/namespaces/company.team/files{query}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_files_are_managed_as_in_kestra_on_a_directory() {
    namespace_files_are_managed_as_in_kestra(&Instance::start(no_auth(), None).await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_files_are_managed_as_in_kestra_on_s3() {
    let Some(s3) = TestS3::start("namespace files on an S3-compatible store") else {
        return;
    };
    let i = Instance::start_on(no_auth(), None, Some(&s3)).await;
    namespace_files_are_managed_as_in_kestra(&i).await;
}

async fn namespace_files_are_managed_as_in_kestra(i: &Instance) {
    for (path, content) in [
        ("/a.txt", &b"A"[..]),
        ("/src/main.py", b"print(1)"),
        ("/src/lib/util.py", b"u = 2"),
    ] {
        assert_eq!(
            i.upload("company.team", path, content).await,
            StatusCode::OK
        );
    }
    let (status, _) = i
        .send(call(Method::POST, files("/directory?path=/empty")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, root) = i.send(call(Method::GET, files("/directory"))).await;
    assert_eq!(
        root,
        json!([
            {"fileName": "a.txt", "type": "File", "size": 1},
            {"fileName": "empty", "type": "Directory", "size": 0},
            {"fileName": "src", "type": "Directory", "size": 13},
        ])
    );
    let (status, stats) = i
        .send(call(Method::GET, files("/stats?path=/src/main.py")))
        .await;
    assert_eq!(
        (status, &stats["size"]),
        (StatusCode::OK, &json!(8)),
        "{stats}"
    );
    let (_, revisions) = i
        .send(call(Method::GET, files("/revisions?path=/a.txt")))
        .await;
    assert_eq!(revisions, json!([{"revision": 1}]));
    let (status, _) = i
        .send(call(Method::GET, files("?path=/a.txt&revision=2")))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "only the current revision");

    // Move: a file, a directory; onto an existing path or into itself no.
    let mv = |from: &str, to: &str| call(Method::PUT, files(&format!("?from={from}&to={to}")));
    assert_eq!(i.send(mv("/a.txt", "/docs/a.txt")).await.0, StatusCode::OK);
    assert_eq!(i.send(mv("/src/lib", "/lib")).await.0, StatusCode::OK);
    assert_eq!(
        i.send(mv("/lib", "/src/main.py")).await.0,
        StatusCode::CONFLICT
    );
    assert_eq!(
        i.send(mv("/src", "/src/inner")).await.0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(i.send(mv("/nope", "/x")).await.0, StatusCode::NOT_FOUND);
    let (_, found) = i.send(call(Method::GET, files("/search?q=PY"))).await;
    assert_eq!(found, json!(["/lib/util.py", "/src/main.py"]));

    let (status, zip) = i.raw(call(Method::GET, files("/export"))).await;
    assert_eq!(status, StatusCode::OK);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).expect("a zip");
    let mut names: Vec<String> = archive
        .file_names()
        .map(|name| name.expect("a name").into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["docs/a.txt", "lib/util.py", "src/main.py"]);
    let mut text = String::new();
    archive
        .by_name("lib/util.py")
        .expect("entry")
        .read_to_string(&mut text)
        .expect("read");
    assert_eq!(text, "u = 2");

    // Delete a file (its folder stays), then a directory.
    let del = |path: &str| call(Method::DELETE, files(&format!("?path={path}")));
    assert_eq!(i.send(del("/docs/a.txt")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(i.send(del("/src")).await.0, StatusCode::NO_CONTENT);
    assert_eq!(i.send(del("/src")).await.0, StatusCode::NOT_FOUND);
    let (_, root) = i.send(call(Method::GET, files("/directory"))).await;
    let names: Vec<&str> = root
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|f| f["fileName"].as_str())
        .collect();
    assert_eq!(names, ["docs", "empty", "lib"]);
    hostile_paths_change_nothing(i).await;
}

async fn hostile_paths_change_nothing(i: &Instance) {
    let before = i.stored();
    let long = format!("/{}", "a/".repeat(700));
    let long_name = format!("/{}", "n".repeat(256));
    let hostile = [
        "/../../etc/passwd",
        "/lib/../../x",
        "//etc/passwd",
        "/a\0b",
        "/a\\b",
        "/./lib",
        "/.atoll-folder",
        long.as_str(),
        long_name.as_str(),
    ];
    for path in hostile {
        let encoded = encode(path);
        for c in [
            call(Method::DELETE, files(&format!("?path={encoded}"))),
            call(Method::GET, files(&format!("?path={encoded}"))),
            call(Method::GET, files(&format!("/stats?path={encoded}"))),
            call(Method::POST, files(&format!("/directory?path={encoded}"))),
            call(Method::PUT, files(&format!("?from=/lib&to={encoded}"))),
        ] {
            let what = format!(
                "{} {}",
                c.method,
                c.path.chars().take(120).collect::<String>()
            );
            let (status, err) = i.send(c).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{what}: {err}");
            assert_eq!(err["code"], json!("invalidPath"), "{what}: {err}");
        }
        assert_eq!(
            i.upload("company.team", path, b"x").await,
            StatusCode::BAD_REQUEST,
            "{path}"
        );
    }
    // A file where a directory is, and a directory where a file is.
    assert_eq!(
        i.upload("company.team", "/lib", b"x").await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        i.upload("company.team", "/lib/util.py/x", b"x").await,
        StatusCode::CONFLICT
    );
    let (status, err) = i
        .send(call(
            Method::PUT,
            files("?from=/empty&to=/lib/util.py/empty"),
        ))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "under a file: {err}");
    assert_eq!(i.stored(), before, "nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_routes_follow_roles_and_tenants() {
    let id = TestIdentity::start().await;
    let i = Instance::start(
        AuthMode::Identity {
            issuer: id.issuer.clone(),
            tenant_uid: format!("uid-{TENANT}"),
        },
        None,
    )
    .await;
    let viewer = identity::sign(&id.claims(TENANT, "Viewer"), KEY_A_PEM, "key-a");
    let other = identity::sign(&id.claims("globex", "Admin"), KEY_A_PEM, "key-a");
    let writes = [
        call(
            Method::DELETE,
            format!("/api/v1/{TENANT}/namespaces/company.team/kv"),
        )
        .body("{\"keys\": []}"),
        call(Method::POST, files("/directory?path=/d")),
        call(Method::PUT, files("?from=/a&to=/b")),
    ];
    for c in writes {
        let what = format!("{} {}", c.method, c.path);
        assert_eq!(
            i.send(c.token(&viewer)).await.0,
            StatusCode::FORBIDDEN,
            "{what}"
        );
    }
    let reads = [
        format!("/api/v1/{TENANT}/kv"),
        format!("/api/v1/{TENANT}/namespaces/company.team/kv/inheritance"),
        files("/stats"),
        files("/search?q=a"),
        files("/export"),
    ];
    for path in reads {
        assert_eq!(
            i.send(call(Method::GET, path.clone()).token(&viewer))
                .await
                .0,
            StatusCode::OK,
            "{path}"
        );
        assert_eq!(
            i.send(call(Method::GET, path.clone()).token(&other))
                .await
                .0,
            StatusCode::UNAUTHORIZED,
            "{path}"
        );
        assert_eq!(
            i.send(call(Method::GET, path.replace(TENANT, "globex")).token(&viewer))
                .await
                .0,
            StatusCode::NOT_FOUND,
            "{path} of another tenant"
        );
    }
}
