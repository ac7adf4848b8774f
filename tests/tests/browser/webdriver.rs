//! A small W3C WebDriver client for the browser suite: Debian's
//! `chromedriver` drives Debian's `chromium`, headless, one browser per
//! person (each with a profile of its own, so cookies never cross).
//!
//! Written here rather than taken from a crate: the few commands the suite
//! needs are plain JSON over HTTP (W3C WebDriver, "Endpoints"), and the
//! WebDriver crates pull a second `http` and `cookie` major version and
//! an ICU segmenter into the build.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver names element references with.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// The key W3C WebDriver names shadow root references with.
const SHADOW_KEY: &str = "shadow-6066-11e4-a52e-4f735466cecf";

/// How long a page or an element may take to appear.
pub const PAGE_LIMIT: Duration = Duration::from_secs(30);

/// `chromedriver`, started on a free loopback port, killed when dropped.
pub struct Driver {
    _child: tokio::process::Child,
    url: String,
    http: reqwest::Client,
}

/// Where `chromium` and `chromedriver` are: `ATOLL_CHROMIUM` and
/// `ATOLL_CHROMEDRIVER`, else Debian's paths.
pub fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("ATOLL_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let driver = std::env::var_os("ATOLL_CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"));
    (chromium.is_file() && driver.is_file()).then_some((chromium, driver))
}

impl Driver {
    /// Starts `chromedriver` and waits until it says it is ready.
    pub async fn start(driver: &Path) -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = tokio::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver {
            _child: child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        atoll_testkit::wait::eventually("chromedriver to be ready", PAGE_LIMIT, || async {
            let answer = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await;
            let body: Value = answer.ok()?.json().await.ok()?;
            body["value"]["ready"].as_bool().filter(|r| *r)
        })
        .await;
        driver
    }

    /// A new headless browser with an empty profile of its own.
    /// `failure_shot`: where a screenshot goes when a wait times out.
    pub async fn browser(&self, chromium: &Path, profile: &Path, failure_shot: PathBuf) -> Browser {
        let capabilities = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new",
                    // Tests run as root in CI: Chromium's sandbox refuses root.
                    "--no-sandbox",
                    "--disable-dev-shm-usage",
                    "--disable-gpu",
                    "--no-first-run",
                    "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            },
        }}});
        let answer = self
            .http
            .post(format!("{}/session", self.url))
            .json(&capabilities)
            .send()
            .await
            .expect("chromedriver answers");
        let body: Value = answer.json().await.expect("JSON");
        let id = body["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no browser session: {body}"))
            .to_owned();
        Browser {
            http: self.http.clone(),
            session: format!("{}/session/{id}", self.url),
            failure_shot,
        }
    }
}

/// One browser (a WebDriver session).
#[derive(Clone)]
pub struct Browser {
    http: reqwest::Client,
    session: String,
    failure_shot: PathBuf,
}

/// An element of the current page.
#[derive(Clone, Debug)]
pub struct Element(String);

/// What WebDriver answered to a command that failed.
#[derive(Debug)]
pub struct CommandError(pub String);

impl Browser {
    async fn command(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, CommandError> {
        let mut request = self.http.request(method, format!("{}{path}", self.session));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let answer = request
            .send()
            .await
            .map_err(|e| CommandError(e.to_string()))?;
        let ok = answer.status().is_success();
        let body: Value = answer
            .json()
            .await
            .map_err(|e| CommandError(e.to_string()))?;
        if ok {
            Ok(body["value"].clone())
        } else {
            Err(CommandError(format!(
                "{}: {}",
                body["value"]["error"].as_str().unwrap_or("error"),
                body["value"]["message"].as_str().unwrap_or_default()
            )))
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.command(reqwest::Method::POST, path, Some(body))
            .await
            .unwrap_or_else(|e| panic!("WebDriver POST {path}: {}", e.0))
    }

    async fn get(&self, path: &str) -> Value {
        self.command(reqwest::Method::GET, path, None)
            .await
            .unwrap_or_else(|e| panic!("WebDriver GET {path}: {}", e.0))
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    /// The current page's URL.
    pub async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The elements matching a CSS selector now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        let found = self
            .command(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await
            .unwrap_or(Value::Null);
        found
            .as_array()
            .map(|all| {
                all.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str())
                    .map(|id| Element(id.to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn wait_for(&self, css: &str) -> Element {
        let what = format!("an element {css:?} on the page");
        self.until(&what, || async {
            self.find_all(css).await.into_iter().next()
        })
        .await
    }

    /// Checks `check` until it returns `Some`; past [`PAGE_LIMIT`], panics
    /// naming `what` with the page's URL and text, to tell what was shown.
    pub async fn until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = tokio::time::Instant::now() + PAGE_LIMIT;
        loop {
            if let Some(value) = check().await {
                return value;
            }
            if tokio::time::Instant::now() >= deadline {
                let url = self.url().await;
                let text = self
                    .command(
                        reqwest::Method::POST,
                        "/execute/sync",
                        Some(json!({"script": "return document.body ? document.body.innerText : ''", "args": []})),
                    )
                    .await
                    .unwrap_or(Value::Null);
                self.screenshot(&self.failure_shot).await;
                panic!(
                    "timed out after {PAGE_LIMIT:?} waiting for {what}; the page at {url} \
                     (screenshot: {}) shows:\n{}",
                    self.failure_shot.display(),
                    text.as_str().unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The first element matching `inner` inside the open shadow root of
    /// the first element matching `host`, waiting for both.
    pub async fn wait_for_in_shadow(&self, host: &str, inner: &str) -> Element {
        let what = format!("an element {inner:?} in the shadow root of {host:?}");
        self.until(&what, || async {
            let host = self.find_all(host).await.into_iter().next()?;
            let root = self
                .command(
                    reqwest::Method::GET,
                    &format!("/element/{}/shadow", host.0),
                    None,
                )
                .await
                .ok()?;
            let root = root[SHADOW_KEY].as_str()?.to_owned();
            let found = self
                .command(
                    reqwest::Method::POST,
                    &format!("/shadow/{root}/element"),
                    Some(json!({"using": "css selector", "value": inner})),
                )
                .await
                .ok()?;
            found[ELEMENT_KEY].as_str().map(|id| Element(id.to_owned()))
        })
        .await
    }

    /// Waits until the page's URL satisfies `check`; returns it.
    pub async fn wait_for_url(&self, what: &str, check: impl Fn(&str) -> bool) -> String {
        self.until(what, || async {
            let url = self.url().await;
            check(&url).then_some(url)
        })
        .await
    }

    /// Waits until the text of the first element matching `css` satisfies
    /// `check`; returns that text.
    pub async fn wait_for_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        let what = format!("the text of {css:?} to change as expected");
        self.until(&what, || async {
            let element = self.find_all(css).await.into_iter().next()?;
            let text = self.text(&element).await;
            check(&text).then_some(text)
        })
        .await
    }

    /// The rendered text of `element`.
    pub async fn text(&self, element: &Element) -> String {
        self.command(
            reqwest::Method::GET,
            &format!("/element/{}/text", element.0),
            None,
        )
        .await
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
    }

    /// Clicks `element`.
    pub async fn click(&self, element: &Element) {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await;
    }

    /// Clears a text field and types `text` into it.
    pub async fn fill(&self, element: &Element, text: &str) {
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await;
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// Types `keys` into `element` as they are (WebDriver key codes, such
    /// as `\u{E009}` for Control, included), without clearing it first.
    pub async fn fill_keys(&self, element: &Element, keys: &[&str]) {
        let text: String = keys.concat();
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await;
    }

    /// Presses and releases each key of `keys` in turn (WebDriver key
    /// codes, e.g. `\u{E00C}` Escape, `\u{E004}` Tab) wherever the focus
    /// is, as a keyboard user would.
    pub async fn press_keys(&self, keys: &str) {
        let strokes: Vec<Value> = keys
            .chars()
            .flat_map(|k| {
                let k = k.to_string();
                [
                    json!({"type": "keyDown", "value": k}),
                    json!({"type": "keyUp", "value": k}),
                ]
            })
            .collect();
        self.post(
            "/actions",
            json!({"actions": [{"type": "key", "id": "keyboard", "actions": strokes}]}),
        )
        .await;
    }

    /// Runs the asynchronous `script` (it calls its last argument with the
    /// result) in the page; returns that result.
    pub async fn execute_async(&self, script: &str, args: Value) -> Value {
        self.post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// Runs `script` in the page with `args`; returns its value.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// The browser's cookies for the current page (HttpOnly ones too).
    pub async fn cookies(&self) -> Vec<Value> {
        self.get("/cookie")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Writes a PNG of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("artifact directory");
        }
        std::fs::write(path, png).expect("screenshot written");
    }

    /// Ends the browser.
    pub async fn quit(self) {
        let _ = self.command(reqwest::Method::DELETE, "", None).await;
    }
}
