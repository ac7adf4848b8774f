//! JSON request bodies held to the schema the OpenAPI document publishes
//! for them. serde alone is more lenient than the document: a struct also
//! deserializes from a JSON array of its fields (`[]` is a valid
//! `{"keys"?: [...]}`), and limits written as schema attributes (lengths,
//! patterns) are only documentation. Every JSON body is therefore checked
//! against `T`'s JSON schema first, then read into `T`; the 400 names the
//! place in the body that is wrong.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ApiError;
use super::error::ApiResult;

/// One compiled validator per body type, built on first use.
static VALIDATORS: LazyLock<Mutex<HashMap<TypeId, Arc<jsonschema::Validator>>>> =
    LazyLock::new(Default::default);

fn validator<T: JsonSchema + 'static>() -> Arc<jsonschema::Validator> {
    let mut cache = VALIDATORS.lock().unwrap_or_else(|e| e.into_inner());
    cache
        .entry(TypeId::of::<T>())
        .or_insert_with(|| {
            let schema = schemars::schema_for!(T);
            let validator = jsonschema::validator_for(schema.as_value())
                .unwrap_or_else(|e| panic!("the schema of a request body compiles: {e}"));
            Arc::new(validator)
        })
        .clone()
}

/// `bytes` as a `T`, or a 400 (`invalidBody`) that says the body must be
/// `expected` and what is wrong where.
pub(super) fn parse<T>(bytes: &[u8], expected: &str) -> ApiResult<T>
where
    T: DeserializeOwned + JsonSchema + 'static,
{
    let invalid = |detail: String| {
        ApiError::bad_request(
            "invalidBody",
            format!("the body must be {expected}: {detail}"),
        )
    };
    let value: Value = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    conform::<T>(&value).map_err(invalid)?;
    serde_json::from_value(value).map_err(|e| invalid(e.to_string()))
}

/// Whether `value` is what `T`'s schema allows; the first violation, with
/// its place (a JSON pointer into the body), otherwise.
fn conform<T: JsonSchema + 'static>(value: &Value) -> Result<(), String> {
    let validator = validator::<T>();
    match validator.iter_errors(value).next() {
        None => Ok(()),
        Some(error) => {
            let place = error.instance_path().to_string();
            let place = if place.is_empty() {
                "/".to_owned()
            } else {
                place
            };
            Err(format!("at {place}: {}", short(&error.to_string())))
        }
    }
}

/// A violation's message without the offending value when that is long
/// (the caller sent it; echoing a megabyte back helps nobody).
fn short(message: &str) -> String {
    const MAX: usize = 300;
    if message.len() <= MAX {
        return message.to_owned();
    }
    let mut end = MAX;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &message[..end])
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, JsonSchema, PartialEq)]
    struct Keys {
        #[serde(default)]
        #[schemars(inner(length(min = 1, max = 3)))]
        keys: Option<Vec<String>>,
    }

    fn message(e: ApiError) -> String {
        match e {
            ApiError::BadRequest { message, .. } => message,
            other => panic!("expected a 400, got {other:?}"),
        }
    }

    #[test]
    fn an_object_that_fits_is_read() {
        let keys: Keys = parse(br#"{"keys": ["a", "bc"]}"#, "keys").expect("read");
        assert_eq!(keys.keys, Some(vec!["a".into(), "bc".into()]));
        let none: Keys = parse(b"{}", "keys").expect("read");
        assert_eq!(none.keys, None);
    }

    #[test]
    fn an_array_is_not_an_object_even_when_serde_would_take_it() {
        assert!(
            serde_json::from_slice::<Keys>(b"[]").is_ok(),
            "serde's leniency"
        );
        let m = message(parse::<Keys>(b"[]", "{\"keys\": [...]}").expect_err("refused"));
        assert!(
            m.starts_with("the body must be {\"keys\": [...]}: at /:"),
            "{m}"
        );
        assert!(m.contains("object"), "{m}");
    }

    #[test]
    fn a_limit_of_the_schema_is_enforced_at_its_place() {
        let m =
            message(parse::<Keys>(br#"{"keys": ["a", "toolong"]}"#, "keys").expect_err("refused"));
        assert!(m.contains("at /keys/1:"), "{m}");
    }

    #[test]
    fn text_that_is_not_json_says_so() {
        let m = message(parse::<Keys>(b"{", "keys").expect_err("refused"));
        assert!(m.starts_with("the body must be keys: EOF"), "{m}");
    }

    #[test]
    fn a_long_violation_is_cut() {
        let long = "x".repeat(5000);
        let body = format!(r#"{{"keys": ["{long}"]}}"#);
        let m = message(parse::<Keys>(body.as_bytes(), "keys").expect_err("refused"));
        assert!(m.len() < 500, "{}", m.len());
    }
}
