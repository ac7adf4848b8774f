//! A browser as far as sign-in needs one (cookies kept by name, redirects
//! followed by the test, every body kept to look for tokens in), and an
//! instance started with identity (the fake provider) and a public URL.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use atoll_instance::config::{AuthMode, Config, StorageSettings};
use atoll_testkit::eventually;
use reqwest::{Method, StatusCode};
use tokio_util::sync::CancellationToken;

use super::fake_op::FakeOp;

/// An instance of `tenant` signing in at the fake provider.
pub struct SsoInstance {
    pub base: String,
    pub public_url: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for SsoInstance {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl SsoInstance {
    /// Started on loopback; its public URL is its own address unless
    /// `public_url` is given; registered at `op` with `role`.
    pub async fn start(
        op: &FakeOp,
        tenant: &str,
        role: &str,
        public_url: Option<&str>,
        database_url: Option<String>,
    ) -> SsoInstance {
        let dir = tempfile::tempdir().expect("temp dir");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let base = format!("http://{addr}");
        let public_url = public_url.map_or_else(|| base.clone(), str::to_owned);
        op.register(tenant, &public_url, role);
        let config = Config {
            tenant: tenant.into(),
            listen: addr,
            data_dir: dir.path().to_owned(),
            database_url: database_url
                .unwrap_or_else(|| format!("sqlite:{}", dir.path().join("db.sqlite").display())),
            public_url: Some(public_url.clone()),
            auth: AuthMode::Identity {
                issuer: op.issuer(),
                tenant_uid: format!("uid-{tenant}"),
            },
            storage: StorageSettings::Dir(dir.path().join("storage")),
            ..Config::default()
        };
        let shutdown = CancellationToken::new();
        tokio::spawn({
            let shutdown = shutdown.clone();
            async move {
                atoll_instance::server::serve_with_metrics(config, listener, None, shutdown).await
            }
        });
        let http = reqwest::Client::new();
        let readyz = format!("{base}/readyz");
        eventually("the instance ready", Duration::from_secs(30), || async {
            let response = http.get(&readyz).send().await;
            response
                .is_ok_and(|r| r.status() == StatusCode::OK)
                .then_some(())
        })
        .await;
        SsoInstance {
            base,
            public_url,
            shutdown,
            _dir: dir,
        }
    }

    /// A server someone else started at `base` (its own public URL).
    pub fn at(base: &str) -> SsoInstance {
        SsoInstance {
            base: base.to_owned(),
            public_url: base.to_owned(),
            shutdown: CancellationToken::new(),
            _dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

/// One answer.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Answer {
    /// The `Set-Cookie` line of cookie `name`, if any.
    pub fn cookie_line(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.set_cookies
            .iter()
            .find(|line| line.starts_with(&prefix))
            .map(String::as_str)
    }
}

pub struct Browser {
    http: reqwest::Client,
    pub cookies: Mutex<BTreeMap<String, String>>,
    /// Every body received.
    pub bodies: Mutex<Vec<String>>,
}

impl Browser {
    pub fn new() -> Browser {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: Mutex::new(BTreeMap::new()),
            bodies: Mutex::new(Vec::new()),
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.cookies.lock().expect("lock").get(name).cloned()
    }

    pub fn set_cookie(&self, name: &str, value: &str) {
        self.cookies
            .lock()
            .expect("lock")
            .insert(name.into(), value.into());
    }

    pub async fn get(&self, url: &str) -> Answer {
        self.send(Method::GET, url, &[], None).await
    }

    /// A request with the browser's cookies, extra headers and a body
    /// (content type, text).
    pub async fn send(
        &self,
        method: Method,
        url: &str,
        headers: &[(&str, &str)],
        body: Option<(&str, String)>,
    ) -> Answer {
        let mut request = self.http.request(method, url);
        let jar = self.cookies.lock().expect("lock").clone();
        if !jar.is_empty() {
            let line: Vec<String> = jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", line.join("; "));
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some((content_type, body)) = body {
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await.expect("request");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let location = header("location");
        let content_type = header("content-type").unwrap_or_default();
        let set_cookies: Vec<String> = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        for line in &set_cookies {
            self.remember(line);
        }
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        self.bodies.lock().expect("lock").push(body.clone());
        Answer {
            status,
            location,
            set_cookies,
            content_type,
            headers,
            body,
        }
    }

    fn remember(&self, line: &str) {
        let Some((name, rest)) = line.split_once('=') else {
            return;
        };
        let value = rest.split(';').next().unwrap_or_default();
        let mut jar = self.cookies.lock().expect("lock");
        if line.contains("Max-Age=0") || value.is_empty() {
            jar.remove(name);
        } else {
            jar.insert(name.into(), value.into());
        }
    }

    /// `/auth/login?return_to=…` at `instance`: the redirect to the
    /// provider's authorization endpoint.
    pub async fn start_login(&self, instance: &SsoInstance, return_to: &str) -> String {
        let login = self
            .get(&instance.url(&format!("/auth/login?return_to={}", encode(return_to))))
            .await;
        assert_eq!(login.status, StatusCode::FOUND, "{}", login.body);
        login.location.expect("a redirect to identity")
    }

    /// The provider's answer to an authorization URL: the callback URL
    /// (rewritten to `instance`'s address when its public URL differs).
    pub async fn authorize(&self, instance: &SsoInstance, authorize_url: &str) -> String {
        let answer = self.get(authorize_url).await;
        assert_eq!(answer.status, StatusCode::FOUND, "{}", answer.body);
        let callback = answer.location.expect("a redirect to the callback");
        callback.replacen(&instance.public_url, &instance.base, 1)
    }

    /// Signs in at `instance` (login, provider, callback): the callback's answer.
    pub async fn sign_in(&self, instance: &SsoInstance, return_to: &str) -> Answer {
        let authorize = self.start_login(instance, return_to).await;
        let callback = self.authorize(instance, &authorize).await;
        self.get(&callback).await
    }

    /// The session's CSRF token, as the pages get it.
    pub async fn csrf(&self, instance: &SsoInstance) -> String {
        let who = self.get(&instance.url("/auth/session")).await;
        assert_eq!(who.status, StatusCode::OK, "{}", who.body);
        let who: serde_json::Value = serde_json::from_str(&who.body).expect("json");
        who["csrfToken"].as_str().expect("a CSRF token").to_owned()
    }

    /// No token the provider issued is in any body this browser received.
    pub fn assert_no_token(&self, op: &FakeOp) {
        let issued = op.state.issued.lock().expect("lock").clone();
        assert!(!issued.is_empty());
        for body in self.bodies.lock().expect("lock").iter() {
            for token in &issued {
                assert!(
                    !body.contains(token.as_str()),
                    "a token reached the browser: {body}"
                );
            }
        }
    }
}

/// `text` escaped for a query value.
pub fn encode(text: &str) -> String {
    percent_encoding::utf8_percent_encode(text, percent_encoding::NON_ALPHANUMERIC).to_string()
}
