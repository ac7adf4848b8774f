//! `Webhook` triggers: a request to
//! `/api/v1/executions/webhook/{namespace}/{flowId}/{key}` starts an
//! execution of the flow when `key` is the key of one of its enabled
//! webhook triggers.
//!
//! The key is the only secret: the route takes no bearer token (the
//! callers are other systems), so it is compared in constant time (SHA-256
//! digests of both sides, compared with a constant-time memcmp, so neither
//! content nor length leaks), and every refusal (unknown flow, disabled
//! flow or trigger, wrong key) looks the same to the caller.

use aws_lc_rs::{constant_time, digest};
use serde_json::{Map, Value, json};

use super::fire::{key_of, triggered_execution};
use crate::engine::{Engine, EngineError};
use crate::execution::Execution;
use crate::flow::{TriggerKind, WebhookTrigger};
use crate::store::Repository;

/// What the webhook request carried, as the execution's `trigger` sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    /// JSON when the body parses as JSON, else its text; null when empty.
    pub body: Value,
    /// Header name (lowercase) → values. Credentials are left out.
    pub headers: Map<String, Value>,
    /// Query parameter → values.
    pub parameters: Map<String, Value>,
}

/// Headers that carry credentials; never stored in an execution.
const DROPPED_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

impl WebhookRequest {
    /// Builds the trigger view of a request (pure).
    pub fn new<'a>(
        body: &[u8],
        headers: impl IntoIterator<Item = (&'a str, &'a str)>,
        query: impl IntoIterator<Item = (String, String)>,
    ) -> WebhookRequest {
        let body = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
        };
        let mut header_map = Map::new();
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            if DROPPED_HEADERS.contains(&name.as_str()) {
                continue;
            }
            push(&mut header_map, name, value.to_owned());
        }
        let mut parameters = Map::new();
        for (name, value) in query {
            push(&mut parameters, name, value);
        }
        WebhookRequest {
            body,
            headers: header_map,
            parameters,
        }
    }
}

fn push(map: &mut Map<String, Value>, key: String, value: String) {
    match map.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(items) => items.push(Value::String(value)),
        other => *other = Value::Array(vec![Value::String(value)]),
    }
}

/// Whether `given` equals `expected`, in time independent of both.
pub(crate) fn key_matches(given: &str, expected: &str) -> bool {
    let a = digest::digest(&digest::SHA256, given.as_bytes());
    let b = digest::digest(&digest::SHA256, expected.as_bytes());
    constant_time::verify_slices_are_equal(a.as_ref(), b.as_ref()).is_ok()
}

/// A webhook call that started an execution.
#[derive(Debug, Clone)]
pub struct WebhookStart {
    pub execution: Execution,
    pub trigger: WebhookTrigger,
}

impl Engine {
    /// Starts an execution for a webhook call. `Ok(None)` when no enabled
    /// webhook trigger of that flow has this key (or the flow is unknown or
    /// disabled): the caller answers all of these alike.
    pub async fn webhook(
        &self,
        namespace: &str,
        flow_id: &str,
        key: &str,
        request: WebhookRequest,
    ) -> Result<Option<WebhookStart>, EngineError> {
        let (flow, revision) = match self.inner.latest_flow(namespace, flow_id).await {
            Ok(found) => found,
            Err(EngineError::FlowNotFound { .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        // Every trigger is compared, so the time taken does not tell which matched.
        let mut matched = None;
        for trigger in &flow.triggers {
            if let TriggerKind::Webhook(spec) = &trigger.kind
                && key_matches(key, &spec.key)
                && matched.is_none()
            {
                matched = Some((trigger, spec));
            }
        }
        let Some((trigger, spec)) = matched else {
            return Ok(None);
        };
        if flow.disabled || trigger.disabled {
            return Ok(None);
        }
        let variables = json!({
            "id": trigger.id,
            "type": trigger.kind.type_name(),
            "body": request.body,
            "headers": request.headers,
            "parameters": request.parameters,
        });
        let execution = triggered_execution(&self.inner, &flow, revision, &spec.inputs, variables)?;
        let trigger_key = key_of(&flow, trigger);
        self.inner
            .store
            .fire_trigger(&trigger_key, &execution.id, None, Some(&execution))
            .await?;
        self.inner.work.notify_one();
        Ok(Some(WebhookStart {
            execution,
            trigger: spec.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_compare_by_content_and_length() {
        assert!(key_matches("a-secret-key", "a-secret-key"));
        assert!(!key_matches("a-secret-kez", "a-secret-key"));
        assert!(!key_matches("a-secret-key-longer", "a-secret-key"));
        assert!(!key_matches("", "a-secret-key"));
    }

    #[test]
    fn requests_become_trigger_variables_without_credentials() {
        let request = WebhookRequest::new(
            br#"{"a": 1}"#,
            [
                ("Content-Type", "application/json"),
                ("Authorization", "Bearer secret"),
                ("X-Many", "1"),
                ("x-many", "2"),
            ],
            [
                ("age".to_owned(), "12".to_owned()),
                ("age".to_owned(), "13".to_owned()),
            ],
        );
        assert_eq!(request.body, json!({"a": 1}));
        assert_eq!(request.headers.get("x-many"), Some(&json!(["1", "2"])));
        assert!(!request.headers.contains_key("authorization"));
        assert_eq!(request.parameters.get("age"), Some(&json!(["12", "13"])));
        assert_eq!(WebhookRequest::new(b"bla", [], []).body, json!("bla"));
        assert_eq!(WebhookRequest::new(b"", [], []).body, Value::Null);
    }
}
