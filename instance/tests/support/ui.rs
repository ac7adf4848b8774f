//! A client of the web UI's pages for tests: the instance with identity's
//! stand-in (authentication on), bearer tokens of each role, and requests
//! that do not follow redirects, so they can be checked.

use std::time::Duration;

use atoll_instance::config::AuthMode;
use atoll_testkit::eventually;
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use super::api_instance::{Instance, TENANT, encode};
use super::identity::{self, KEY_A_PEM, TestIdentity};

pub const FLOW: &str = r#"id: greet
namespace: ui.test
description: Greets
labels:
  team: data
inputs:
  - id: name
    type: STRING
    defaults: world
  - id: times
    type: INT
    required: true
tasks:
  - id: hello
    type: io.kestra.plugin.core.log.Log
    message: "Hello {{ inputs.name }} x{{ inputs.times }}"
  - id: both
    type: io.kestra.plugin.core.flow.Parallel
    tasks:
      - id: left
        type: io.kestra.plugin.core.log.Log
        message: left
      - id: right
        type: io.kestra.plugin.core.log.Log
        message: right
triggers:
  - id: nightly
    type: io.kestra.plugin.core.trigger.Schedule
    cron: "0 3 * * *"
"#;

/// One page's answer.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }
}

/// The instance with identity's stand-in, and a client that does not
/// follow redirects (so they can be checked).
pub struct Ui {
    pub instance: Instance,
    pub id: TestIdentity,
    pub http: reqwest::Client,
}

impl Ui {
    pub async fn start() -> Ui {
        let id = TestIdentity::start().await;
        let instance = Instance::start(
            AuthMode::Identity {
                issuer: id.issuer.clone(),
                tenant_uid: format!("uid-{TENANT}"),
            },
            None,
        )
        .await;
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client");
        Ui { instance, id, http }
    }

    pub fn token(&self, role: &str) -> String {
        identity::sign(&self.id.claims(TENANT, role), KEY_A_PEM, "key-a")
    }

    async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.text().await.expect("body");
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, token: &str, path: &str) -> Answer {
        let url = format!("{}{path}", self.instance.base);
        Ui::answer(
            self.http
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("get"),
        )
        .await
    }

    pub async fn post_form(&self, token: &str, path: &str, fields: &[(&str, &str)]) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let url = format!("{}{path}", self.instance.base);
        let request = self
            .http
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        Ui::answer(request.send().await.expect("post")).await
    }

    /// A JSON API call with a text body.
    pub async fn api(
        &self,
        token: &str,
        method: reqwest::Method,
        path: &str,
        body: &str,
    ) -> (StatusCode, Value) {
        let url = format!("{}/api/v1{path}", self.instance.base);
        let response = self
            .http
            .request(method, url)
            .bearer_auth(token)
            .header("content-type", "application/x-yaml")
            .body(body.to_owned())
            .send()
            .await
            .expect("api");
        let status = response.status();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    pub async fn create_flow(&self, token: &str, source: &str) {
        let (status, body) = self
            .api(token, reqwest::Method::POST, "/flows", source)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Waits until the execution page shows `state`.
    pub async fn wait_for_state(&self, token: &str, path: &str, state: &str) -> Answer {
        let needle = format!(
            "id=\"execution-state\"><span class=\"state state-{}\"",
            state.to_lowercase()
        );
        eventually(
            &format!("{path} to show {state}"),
            Duration::from_secs(30),
            || async {
                let page = self.get(token, path).await;
                page.body.contains(&needle).then_some(page)
            },
        )
        .await
    }
}

pub fn assert_page_headers(answer: &Answer) {
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(
        header("content-security-policy"),
        "default-src 'self'; frame-ancestors 'none'"
    );
    assert_eq!(header("x-frame-options"), "DENY");
    assert_eq!(header("cache-control"), "no-store");
    assert!(
        header("content-type").starts_with("text/html"),
        "{}",
        header("content-type")
    );
}

/// The `href` of the first stylesheet link of a page.
pub fn stylesheet(body: &str) -> String {
    let at = body
        .find("rel=\"stylesheet\" href=\"")
        .expect("a stylesheet")
        + 23;
    body[at..].split('"').next().expect("href").to_owned()
}
