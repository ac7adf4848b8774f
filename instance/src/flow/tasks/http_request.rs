//! `io.kestra.plugin.core.http.Request`: one HTTP request through the
//! guarded client of [`egress`](super::egress); the response becomes the
//! outputs (`code`, `headers`, `body`, cut at [`MAX_BODY`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::egress::blocked_cause;
use super::{Context, TaskType, strings_in};
use crate::flow::error::ProblemKind;
use crate::flow::model::LogLevel;
use crate::flow::parse::Fields;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    pub uri: String,
    pub method: String,
    pub body: Option<String>,
    pub content_type: Option<String>,
    pub headers: Map<String, Value>,
    /// Accept any status code instead of failing on 4xx/5xx.
    pub allow_failed: bool,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Largest response body kept in outputs; the rest is not read.
const MAX_BODY: usize = 1024 * 1024;

impl TaskType for HttpRequest {
    const NAME: &'static str = "io.kestra.plugin.core.http.Request";
    const ALIASES: &'static [&'static str] = &["io.kestra.plugin.fs.http.Request"];

    fn parse(f: &mut Fields<'_>) -> Self {
        let uri = f.required_string("uri");
        let method = f
            .string("method")
            .unwrap_or_else(|| "GET".into())
            .to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            f.report(
                "method",
                ProblemKind::Field,
                format!(
                    "unknown method `{method}`; supported: {}",
                    METHODS.join(", ")
                ),
            );
        }
        HttpRequest {
            uri,
            method,
            body: f.string("body"),
            content_type: f.string("contentType"),
            headers: f.object("headers"),
            allow_failed: f.bool("allowFailed", false),
        }
    }

    fn templates(&self) -> Vec<(&'static str, &str)> {
        let mut out = vec![("uri", self.uri.as_str())];
        out.extend(self.body.as_deref().map(|b| ("body", b)));
        for value in self.headers.values() {
            out.extend(strings_in(value).into_iter().map(|s| ("headers", s)));
        }
        out
    }

    async fn run(&self, cx: &Context<'_>) -> Result<Map<String, Value>, String> {
        let uri = cx.render(&self.uri).await?;
        let request = self.request(cx, &uri).await?;
        // Errors from the client name the URL; keep only the kind of failure
        // (or the address refusal, which names the host and nothing else).
        let mut response = request.send().await.map_err(|e| {
            if let Some(refused) = blocked_cause(&e) {
                refused
            } else if e.is_timeout() {
                "request timed out".to_owned()
            } else if e.is_connect() {
                "cannot connect to the server".to_owned()
            } else if e.is_redirect() {
                "too many redirects".to_owned()
            } else {
                "request failed".to_owned()
            }
        })?;
        let code = response.status().as_u16();
        let mut headers = Map::new();
        for (name, value) in response.headers() {
            if let Ok(text) = value.to_str() {
                headers.insert(name.as_str().to_owned(), Value::String(text.to_owned()));
            }
        }
        let (bytes, truncated) = read_body(&mut response).await?;
        drop(response);
        if truncated {
            cx.log(
                LogLevel::Warn,
                format!("the response body is larger than {MAX_BODY} bytes: only the first {MAX_BODY} are kept"),
            );
        }
        let body = utf8_prefix(bytes);
        if !self.allow_failed && code >= 400 {
            return Err(format!("server answered HTTP {code}"));
        }
        let mut outputs = Map::new();
        outputs.insert("code".into(), Value::from(code));
        outputs.insert("headers".into(), Value::Object(headers));
        outputs.insert("body".into(), Value::String(body));
        outputs.insert("bodyTruncated".into(), Value::Bool(truncated));
        outputs.insert("uri".into(), Value::String(uri));
        Ok(outputs)
    }
}

impl HttpRequest {
    /// The request to send to `uri` (rendered), headers and body rendered.
    async fn request(
        &self,
        cx: &Context<'_>,
        uri: &str,
    ) -> Result<reqwest::RequestBuilder, String> {
        let url = reqwest::Url::parse(uri).map_err(|e| format!("invalid uri: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("uri must be http or https".into());
        }
        let method = reqwest::Method::from_bytes(self.method.as_bytes())
            .map_err(|_| format!("invalid method `{}`", self.method))?;
        let client = cx.http.client_for(&url)?;
        let mut request = client
            .request(method, url)
            .timeout(cx.timeout.unwrap_or(Duration::from_secs(60)));
        for (name, value) in &self.headers {
            let text = match value {
                Value::String(s) => cx.render(s).await?,
                other => other.to_string(),
            };
            request = request.header(name.as_str(), text);
        }
        if let Some(content_type) = &self.content_type {
            request = request.header(
                reqwest::header::CONTENT_TYPE,
                cx.render(content_type).await?,
            );
        }
        if let Some(body) = &self.body {
            request = request.body(cx.render(body).await?);
        }
        Ok(request)
    }
}

/// Reads the body chunk by chunk, keeping at most [`MAX_BODY`] bytes;
/// `true` when more was sent.
async fn read_body(response: &mut reqwest::Response) -> Result<(Vec<u8>, bool), String> {
    let mut bytes: Vec<u8> = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| {
        if e.is_timeout() {
            "reading the response timed out".to_owned()
        } else {
            "reading the response failed".to_owned()
        }
    })? {
        let room = MAX_BODY - bytes.len();
        if chunk.len() > room {
            bytes.extend_from_slice(&chunk[..room]);
            return Ok((bytes, true));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok((bytes, false))
}

/// The bytes as text; a character cut at the end by truncation is dropped,
/// other invalid sequences become U+FFFD.
fn utf8_prefix(mut bytes: Vec<u8>) -> String {
    if let Err(err) = std::str::from_utf8(&bytes)
        && err.error_len().is_none()
    {
        bytes.truncate(err.valid_up_to());
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_bodies_stay_valid_text() {
        assert_eq!(utf8_prefix("héllo".as_bytes()[..2].to_vec()), "h");
        assert_eq!(utf8_prefix(b"ok".to_vec()), "ok");
        assert_eq!(utf8_prefix(vec![b'a', 0xff, b'b']), "a\u{fffd}b");
    }
}
