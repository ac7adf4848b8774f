//! Files over real HTTP on loopback, with identity tokens: FILE inputs
//! uploaded with an execution and downloaded back only through that
//! execution, namespace files, hostile paths; on a directory and on a real
//! S3-compatible server (s3s-fs).

mod support;

use std::time::Duration;

use atoll_instance::config::{AuthMode, Config, S3Settings, StorageSettings};
use atoll_testkit::eventually;
use atoll_testkit::s3::TestS3;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use support::identity::{KEY_A_PEM, TestIdentity, sign};
use tokio_util::sync::CancellationToken;

const TENANT: &str = "acme";

const UPLOAD: &str = r#"
id: upload
namespace: acme.team
inputs:
  - {id: data, type: FILE}
tasks:
  - id: say
    type: io.kestra.plugin.core.log.Log
    message: "got {{ inputs.data }}"
"#;

struct Instance {
    base: String,
    http: reqwest::Client,
    identity: TestIdentity,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Instance {
    /// An instance of tenant `acme` with identity auth on `storage` (a
    /// directory in its data directory when `None`).
    async fn start(storage: Option<StorageSettings>) -> Instance {
        let identity = TestIdentity::start().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = Config {
            tenant: TENANT.into(),
            listen: addr,
            data_dir: dir.path().to_owned(),
            database_url: format!("sqlite:{}", dir.path().join("files.db").display()),
            auth: AuthMode::Identity {
                issuer: identity.issuer.clone(),
                tenant_uid: format!("uid-{TENANT}"),
            },
            storage: storage.unwrap_or_else(|| StorageSettings::Dir(dir.path().join("storage"))),
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move { atoll_instance::server::serve(config, listener, shutdown).await }
        });
        let i = Instance {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            identity,
            shutdown,
            _dir: dir,
        };
        let readyz = format!("{}/readyz", i.base);
        eventually("the instance ready", Duration::from_secs(30), || async {
            let response = i.http.get(&readyz).send().await;
            response
                .is_ok_and(|r| r.status() == StatusCode::OK)
                .then_some(())
        })
        .await;
        let editor = i.token(TENANT, "Editor");
        let (status, body) = i
            .request(Method::POST, "/api/v1/flows", &editor)
            .header("content-type", "application/x-yaml")
            .body(UPLOAD)
            .send()
            .await
            .map(answer)
            .expect("create flow")
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        i
    }

    fn token(&self, tenant: &str, role: &str) -> String {
        sign(&self.identity.claims(tenant, role), KEY_A_PEM, "key-a")
    }

    fn request(&self, method: Method, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
    }

    async fn call(&self, method: Method, path: &str, token: &str) -> (StatusCode, Value) {
        answer(
            self.request(method, path, token)
                .send()
                .await
                .expect("send"),
        )
        .await
    }

    /// Starts `upload` with `form`, waiting for its end.
    async fn run(&self, form: Form, token: &str) -> (StatusCode, Value) {
        let response = self
            .request(
                Method::POST,
                "/api/v1/executions/acme.team/upload?wait=true",
                token,
            )
            .multipart(form)
            .send()
            .await
            .expect("send");
        answer(response).await
    }

    /// GET of a file: status, bytes, Content-Disposition.
    async fn download(&self, path: &str, token: &str) -> (StatusCode, Vec<u8>, String) {
        let response = self
            .request(Method::GET, path, token)
            .send()
            .await
            .expect("send");
        let status = response.status();
        let disposition = response
            .headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = response.bytes().await.expect("body").to_vec();
        (status, bytes, disposition)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn answer(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("body");
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn file_form(name: &str, bytes: &'static [u8]) -> Form {
    Form::new().part("data", Part::bytes(bytes).file_name(name.to_owned()))
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A FILE input is uploaded, becomes a kestra:/// URI, and is downloadable
/// through its own execution only, by a token of this tenant only.
/// `objects` is where the storage keeps them on disk.
async fn file_inputs(i: &Instance, objects: &std::path::Path) {
    let editor = i.token(TENANT, "Editor");
    let viewer = i.token(TENANT, "Viewer");
    let (status, a) = i.run(file_form("hello.txt", b"hello file"), &editor).await;
    assert_eq!(status, StatusCode::OK, "{a}");
    assert_eq!(a["state"]["current"], "SUCCESS", "{a}");
    let id = a["id"].as_str().expect("id");
    let uri = a["inputs"]["data"].as_str().expect("a URI input");
    assert_eq!(
        uri,
        format!("kestra:///acme/team/upload/executions/{id}/inputs/data/hello.txt")
    );
    let path = format!("/api/v1/executions/{id}/file?path={}", encode(uri));
    for route in [
        path.clone(),
        format!("/api/v1/acme{}", &path["/api/v1".len()..]),
    ] {
        let (status, bytes, disposition) = i.download(&route, &viewer).await;
        assert_eq!(status, StatusCode::OK, "{route}");
        assert_eq!(bytes, b"hello file");
        assert!(
            disposition.contains("filename=\"hello.txt\""),
            "{disposition}"
        );
    }
    let metas = format!("/api/v1/executions/{id}/file/metas?path={}", encode(uri));
    let (status, body) = i.call(Method::GET, &metas, &viewer).await;
    assert_eq!(
        (status, body["size"].as_u64()),
        (StatusCode::OK, Some(10)),
        "{body}"
    );

    // Another execution cannot serve A's file, nor can `..` reach it.
    let (_, b) = i.run(file_form("other.txt", b"b"), &editor).await;
    let b_id = b["id"].as_str().expect("id");
    let (status, body) = i
        .call(
            Method::GET,
            &format!("/api/v1/executions/{b_id}/file?path={}", encode(uri)),
            &viewer,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("executions/{b_id}/"))),
        "{body}"
    );
    let sneaky =
        format!("kestra:///acme/team/upload/executions/{b_id}/../{id}/inputs/data/hello.txt");
    let (status, body) = i
        .call(
            Method::GET,
            &format!("/api/v1/executions/{b_id}/file?path={}", encode(&sneaky)),
            &viewer,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, _) = i
        .call(
            Method::GET,
            &format!(
                "/api/v1/executions/{id}/file?path={}",
                encode(&format!("{uri}.missing"))
            ),
            &viewer,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Another tenant's token, even an Admin's: refused.
    let stranger = i.token("globex", "Admin");
    let (status, bytes, _) = i.download(&path, &stranger).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(!String::from_utf8_lossy(&bytes).contains("hello file"));
    // A Viewer cannot upload.
    let (status, _) = i.run(file_form("x.txt", b"x"), &viewer).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A FILE input given as text: a file of the namespace, yes; of another
    // namespace or not a kestra:/// URI, no.
    for (given, ok) in [
        (uri.to_owned(), true),
        ("kestra:///acme/team/_files/a.txt".to_owned(), true),
        (
            "kestra:///globex/secret/f/executions/e/inputs/data/x".to_owned(),
            false,
        ),
        ("file:///etc/passwd".to_owned(), false),
        ("/etc/passwd".to_owned(), false),
    ] {
        let (status, body) = i
            .run(Form::new().text("data", given.clone()), &editor)
            .await;
        let want = if ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_REQUEST
        };
        assert_eq!(status, want, "{given}: {body}");
    }
    // A hostile file name: only its last segment is kept.
    let (status, c) = i.run(file_form("../../../etc/passwd", b"c"), &editor).await;
    assert_eq!(status, StatusCode::OK, "{c}");
    let c_uri = c["inputs"]["data"].as_str().expect("uri");
    assert!(
        c_uri.ends_with(&format!(
            "{}/inputs/data/passwd",
            c["id"].as_str().expect("id")
        )),
        "{c_uri}"
    );

    // Deleting the execution deletes its files, and only its.
    let folder = |id: &str| objects.join(format!("acme/team/upload/executions/{id}"));
    assert!(!walk(&folder(id)).is_empty(), "{:?}", folder(id));
    let (status, _) = i
        .call(Method::DELETE, &format!("/api/v1/executions/{id}"), &editor)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(walk(&folder(id)).is_empty(), "A's files are gone");
    assert!(!walk(&folder(b_id)).is_empty(), "B's files are kept");
}

/// Namespace files: upload, list, download, replace, delete.
async fn namespace_files(i: &Instance) {
    let editor = i.token(TENANT, "Editor");
    let viewer = i.token(TENANT, "Viewer");
    let base = "/api/v1/namespaces/acme.team/files";
    for (path, content) in [
        ("/main.py", "print('hi')"),
        ("/lib/util.py", "X = 1"),
        ("/lib/data.csv", "a,b"),
    ] {
        let form = Form::new().part(
            "fileContent",
            Part::bytes(content.as_bytes().to_vec()).file_name("f"),
        );
        let response = i
            .request(
                Method::POST,
                &format!("{base}?path={}", encode(path)),
                &editor,
            )
            .multipart(form)
            .send()
            .await
            .expect("send");
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let (status, list) = i
        .call(Method::GET, &format!("{base}/directory?path=/"), &viewer)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(
        list,
        serde_json::json!([
            {"type": "Directory", "fileName": "lib", "size": 8},
            {"type": "File", "fileName": "main.py", "size": 11},
        ])
    );
    let (_, list) = i
        .call(Method::GET, &format!("{base}/directory?path=/lib"), &viewer)
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(2), "{list}");
    let (status, bytes, disposition) = i
        .download(&format!("{base}?path=/lib/util.py"), &viewer)
        .await;
    assert_eq!(
        (status, bytes.as_slice()),
        (StatusCode::OK, b"X = 1".as_slice())
    );
    assert!(disposition.contains("util.py"), "{disposition}");
    // Viewers read, Editors write.
    let form = Form::new().part("fileContent", Part::bytes(b"no".to_vec()).file_name("f"));
    let response = i
        .request(Method::POST, &format!("{base}?path=/x.py"), &viewer)
        .multipart(form)
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let (status, _) = i
        .call(Method::DELETE, &format!("{base}?path=/main.py"), &editor)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = i
        .call(Method::GET, &format!("{base}?path=/main.py"), &viewer)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = i
        .call(Method::DELETE, &format!("{base}?path=/lib"), &editor)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, list) = i
        .call(Method::GET, &format!("{base}/directory?path=/"), &viewer)
        .await;
    assert_eq!(list, serde_json::json!([]));
    let (status, _) = i
        .call(Method::DELETE, &format!("{base}?path=/nothing"), &editor)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Hostile paths: refused, naming the problem, and nothing written.
    for (hostile, names) in [
        ("/../../etc/passwd", "`..`"),
        ("/lib/../../x", "`..`"),
        ("//etc/passwd", "relative"),
        ("/a/./b", "`.`"),
        ("/a\u{1}b", "control"),
        ("/a\\..\\b", "backslash"),
        ("/a//b", "empty"),
    ] {
        let form = Form::new().part("fileContent", Part::bytes(b"evil".to_vec()).file_name("f"));
        let response = i
            .request(
                Method::POST,
                &format!("{base}?path={}", encode(hostile)),
                &editor,
            )
            .multipart(form)
            .send()
            .await
            .expect("send");
        let (status, body) = answer(response).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{hostile:?}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(names), "{hostile:?}: {message}");
        let (status, _) = i
            .call(
                Method::GET,
                &format!("{base}?path={}", encode(hostile)),
                &viewer,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{hostile:?}");
    }
    let (_, list) = i
        .call(Method::GET, &format!("{base}/directory?path=/"), &viewer)
        .await;
    assert_eq!(list, serde_json::json!([]), "nothing written");
    // Another tenant's token lists nothing.
    let stranger = i.token("globex", "Admin");
    let (status, _) = i
        .call(Method::GET, &format!("{base}/directory?path=/"), &stranger)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_a_directory() {
    let i = Instance::start(None).await;
    let objects = i._dir.path().join("storage");
    file_inputs(&i, &objects).await;
    // A file over the limit: refused naming it, nothing left behind.
    let editor = i.token(TENANT, "Editor");
    let big = vec![b'x'; 64 * 1024 * 1024 + 1];
    let form = Form::new().part("data", Part::bytes(big).file_name("big.bin"));
    let (status, body) = i.run(form, &editor).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("input `data`") && m.contains("64 MiB")),
        "{body}"
    );
    assert!(
        !walk(&objects).iter().any(|p| p.contains("big.bin")),
        "nothing kept"
    );
    namespace_files(&i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_on_an_s3_compatible_store() {
    let Some(s3) = TestS3::start("files on an S3-compatible store") else {
        return;
    };
    let i = Instance::start(Some(StorageSettings::S3(S3Settings {
        endpoint: s3.endpoint.clone(),
        bucket: s3.bucket.clone(),
        region: s3.region.clone(),
        access_key_id: s3.access_key_id.clone(),
        secret_access_key: s3.secret_access_key.clone(),
    })))
    .await;
    file_inputs(&i, &s3.dir().join(&s3.bucket)).await;
    namespace_files(&i).await;
}

/// Every file under `dir`, as paths.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}
