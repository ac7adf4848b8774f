//! Flow source as a Viewer may read it: the webhook keys (the one secret a
//! flow holds: whoever knows a key can start the flow) replaced by
//! [`REDACTED`]. Everything else of the source is kept as written
//! (comments, layout), unless the key cannot be removed textually; the
//! flow is then shown re-serialised from its YAML.

use serde_norway::Value;

/// What a webhook key reads as in redacted source.
pub const REDACTED: &str = "******";

/// Shown instead of a source that is not YAML (nothing can be checked in it).
const UNREADABLE: &str = "# the source is hidden: it is not valid YAML\n";

fn parse(source: &str) -> Option<Value> {
    let mut yaml: Value = serde_norway::from_str(source).ok()?;
    yaml.apply_merge().ok()?;
    Some(yaml)
}

fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `key` of every trigger (webhooks; other triggers have none, and a
/// key on one is hidden all the same).
fn trigger_keys(yaml: &Value) -> Vec<String> {
    let mut keys: Vec<String> = yaml
        .get("triggers")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|trigger| trigger.get("key").and_then(scalar_text))
        .filter(|key| !key.is_empty())
        .collect();
    // Longer first, so a key holding another is replaced whole.
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    keys.dedup();
    keys
}

/// Whether any scalar of the document still holds one of `keys`.
fn holds_any(value: &Value, keys: &[String]) -> bool {
    match value {
        Value::String(s) => keys.iter().any(|k| s.contains(k.as_str())),
        Value::Number(n) => {
            let text = n.to_string();
            keys.iter().any(|k| text.contains(k.as_str()))
        }
        Value::Sequence(items) => items.iter().any(|v| holds_any(v, keys)),
        Value::Mapping(map) => map
            .iter()
            .any(|(k, v)| holds_any(k, keys) || holds_any(v, keys)),
        Value::Tagged(tagged) => holds_any(&tagged.value, keys),
        Value::Null | Value::Bool(_) => false,
    }
}

fn replace_keys(value: &mut Value, keys: &[String]) {
    match value {
        Value::String(s) => {
            for key in keys {
                if s.contains(key.as_str()) {
                    *s = s.replace(key.as_str(), REDACTED);
                }
            }
        }
        Value::Number(n) => {
            let text = n.to_string();
            if keys.iter().any(|k| text.contains(k.as_str())) {
                *value = Value::String(REDACTED.into());
            }
        }
        Value::Sequence(items) => items.iter_mut().for_each(|v| replace_keys(v, keys)),
        Value::Mapping(map) => map.values_mut().for_each(|v| replace_keys(v, keys)),
        Value::Tagged(tagged) => replace_keys(&mut tagged.value, keys),
        Value::Null | Value::Bool(_) => {}
    }
}

/// `text` with every `key` replaced by [`REDACTED`], quoted where it
/// stood unquoted (a plain `*` would start a YAML alias).
fn replace_quoted(text: &str, key: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(key) {
        let (before, after) = rest.split_at(at);
        out.push_str(before);
        let quoted = matches!(out.chars().last(), Some('\'' | '"'));
        if quoted {
            out.push_str(REDACTED);
        } else {
            out.push('\'');
            out.push_str(REDACTED);
            out.push('\'');
        }
        rest = &after[key.len()..];
    }
    out.push_str(rest);
    out
}

/// The source with every webhook key replaced by [`REDACTED`].
pub fn redact_webhook_keys(source: &str) -> String {
    let Some(yaml) = parse(source) else {
        return UNREADABLE.into();
    };
    let keys = trigger_keys(&yaml);
    if keys.is_empty() {
        return source.to_owned();
    }
    let mut text = source.to_owned();
    for key in &keys {
        text = replace_quoted(&text, key);
    }
    // The key may be written in a way the text does not show (escapes in
    // a double-quoted string): check what the redacted source says.
    match parse(&text) {
        Some(redacted) if !holds_any(&redacted, &keys) => text,
        _ => {
            let mut yaml = yaml;
            replace_keys(&mut yaml, &keys);
            serde_norway::to_string(&yaml).unwrap_or_else(|_| UNREADABLE.into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_keys_are_hidden_and_the_rest_kept() {
        let source = "id: hooked # a comment\nnamespace: acme\ntasks:\n  - {id: t, type: io.kestra.plugin.core.log.Log, message: hi}\ntriggers:\n  - id: hook\n    type: io.kestra.plugin.core.trigger.Webhook\n    key: the-right-key-123\n  - {id: other, type: io.kestra.plugin.core.trigger.Webhook, key: 'second-key-456'}\n";
        let redacted = redact_webhook_keys(source);
        assert!(!redacted.contains("the-right-key-123"), "{redacted}");
        assert!(!redacted.contains("second-key-456"), "{redacted}");
        assert!(redacted.contains("key: '******'"), "{redacted}");
        assert!(parse(&redacted).is_some(), "still YAML: {redacted}");
        assert!(redacted.contains("# a comment"), "layout kept: {redacted}");
        let plain = "id: x\nnamespace: acme\ntasks: []\n";
        assert_eq!(redact_webhook_keys(plain), plain);
    }

    #[test]
    fn escaped_keys_are_hidden_too() {
        // `\x6b` is `k`: the text never shows the key as such.
        let source = "id: x\nnamespace: acme\ntasks: []\ntriggers:\n  - id: hook\n    type: io.kestra.plugin.core.trigger.Webhook\n    key: \"sec\\x6bret-key-1\"\n";
        let redacted = redact_webhook_keys(source);
        let yaml = parse(&redacted).expect("still YAML");
        assert!(
            !holds_any(&yaml, &["seckret-key-1".to_owned()]),
            "{redacted}"
        );
        assert!(redacted.contains(REDACTED), "{redacted}");
        // Anchors and merges are resolved before looking for keys.
        let anchored = "id: x\nnamespace: acme\ntasks: []\nbase: &k {key: anchored-key-99}\ntriggers:\n  - <<: *k\n    id: hook\n    type: io.kestra.plugin.core.trigger.Webhook\n";
        let redacted = redact_webhook_keys(anchored);
        assert!(!redacted.contains("anchored-key-99"), "{redacted}");
    }

    #[test]
    fn unreadable_sources_are_hidden() {
        assert_eq!(redact_webhook_keys("key: [unclosed"), UNREADABLE);
    }
}
