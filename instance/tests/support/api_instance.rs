//! A real instance over HTTP for API tests: started in-process with a
//! temporary database and storage (a folder, or an S3-compatible bucket),
//! called with [`Call`]s, its stored files listed.

use std::time::Duration;

use atoll_instance::config::{AuthMode, Config, S3Settings, StorageSettings};
use atoll_testkit::eventually;
use atoll_testkit::s3::TestS3;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The instance's tenant.
pub const TENANT: &str = "acme";

/// The running instance, stopped when dropped.
pub struct Instance {
    pub base: String,
    /// The metrics listener's base URL, when it has one.
    pub metrics_base: Option<String>,
    pub http: reqwest::Client,
    shutdown: CancellationToken,
    /// Where the storage keeps its files (a folder, or an S3 bucket's).
    stored_in: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// One request: method, path, bearer token, extra headers, text body.
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    token: Option<&'a str>,
    headers: Vec<(&'a str, &'a str)>,
    body: Option<String>,
}

/// A call without token, headers or body.
pub fn call<'a>(method: Method, path: impl Into<String>) -> Call<'a> {
    Call {
        method,
        path: path.into(),
        token: None,
        headers: Vec::new(),
        body: None,
    }
}

impl<'a> Call<'a> {
    pub fn token(mut self, token: &'a str) -> Self {
        self.token = Some(token);
        self
    }
    pub fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.headers.push((name, value));
        self
    }
    pub fn body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }
}

impl Instance {
    pub async fn start(auth: AuthMode, database_url: Option<String>) -> Instance {
        Instance::start_on(auth, database_url, None).await
    }

    pub async fn start_on(
        auth: AuthMode,
        database_url: Option<String>,
        s3: Option<&TestS3>,
    ) -> Instance {
        Instance::start_full(auth, database_url, s3, false).await
    }

    /// [`Instance::start`] with a metrics listener too (`metrics_base`).
    pub async fn start_with_metrics(auth: AuthMode, database_url: Option<String>) -> Instance {
        Instance::start_full(auth, database_url, None, true).await
    }

    async fn start_full(
        auth: AuthMode,
        database_url: Option<String>,
        s3: Option<&TestS3>,
        metrics: bool,
    ) -> Instance {
        let dir = tempfile::tempdir().expect("temp dir");
        let (storage, stored_in) = match s3 {
            None => (
                StorageSettings::Dir(dir.path().join("storage")),
                dir.path().join("storage"),
            ),
            Some(s3) => (
                StorageSettings::S3(S3Settings {
                    endpoint: s3.endpoint.clone(),
                    bucket: s3.bucket.clone(),
                    region: s3.region.clone(),
                    access_key_id: s3.access_key_id.clone(),
                    secret_access_key: s3.secret_access_key.clone(),
                }),
                s3.dir().join(&s3.bucket),
            ),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let metrics_listener = match metrics {
            true => Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind metrics"),
            ),
            false => None,
        };
        let metrics_base = metrics_listener
            .as_ref()
            .map(|l| format!("http://{}", l.local_addr().expect("addr")));
        let config = Config {
            tenant: TENANT.into(),
            listen: addr,
            data_dir: dir.path().to_owned(),
            database_url: database_url
                .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("db.sqlite").display())),
            auth,
            storage,
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                atoll_instance::server::serve_with_metrics(
                    config,
                    listener,
                    metrics_listener,
                    shutdown,
                )
                .await
            }
        });
        let instance = Instance {
            base: format!("http://{addr}"),
            metrics_base,
            http: reqwest::Client::new(),
            shutdown,
            stored_in,
            _dir: dir,
        };
        let readyz = format!("{}/readyz", instance.base);
        eventually("the instance ready", Duration::from_secs(30), || async {
            let response = instance.http.get(&readyz).send().await;
            response
                .is_ok_and(|r| r.status() == StatusCode::OK)
                .then_some(())
        })
        .await;
        instance
    }

    pub async fn raw(&self, c: Call<'_>) -> (StatusCode, Vec<u8>) {
        let mut request = self
            .http
            .request(c.method, format!("{}{}", self.base, c.path));
        if let Some(token) = c.token {
            request = request.bearer_auth(token);
        }
        for (name, value) in c.headers {
            request = request.header(name, value);
        }
        if let Some(body) = c.body {
            request = request.header("content-type", "text/plain").body(body);
        }
        let response = request.send().await.expect("request");
        let status = response.status();
        (status, response.bytes().await.expect("body").to_vec())
    }

    pub async fn send(&self, c: Call<'_>) -> (StatusCode, Value) {
        let (status, bytes) = self.raw(c).await;
        let text = String::from_utf8_lossy(&bytes).into_owned();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn upload(&self, namespace: &str, path: &str, content: &'static [u8]) -> StatusCode {
        let form = reqwest::multipart::Form::new().part(
            "fileContent",
            reqwest::multipart::Part::bytes(content).file_name("file"),
        );
        let url = format!(
            "{}/api/v1/{TENANT}/namespaces/{namespace}/files?path={}",
            self.base,
            encode(path)
        );
        self.http
            .post(url)
            .multipart(form)
            .send()
            .await
            .expect("upload")
            .status()
    }

    /// Every file under the storage folder, relative, sorted.
    pub fn stored(&self) -> Vec<String> {
        let root = self.stored_in.clone();
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else if let Ok(rel) = path.strip_prefix(&root) {
                    out.push(rel.to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `text` percent-encoded for a query value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
