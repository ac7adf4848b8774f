//! `application/x-www-form-urlencoded`: reading one field of a body or
//! query, and writing query strings and form bodies.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

/// What stays unescaped in a form value: RFC 3986's unreserved characters.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The first value of field `name` in `text` (a query string or a form
/// body), decoded; `None` when absent or not UTF-8.
pub(crate) fn field(text: &str, name: &str) -> Option<String> {
    text.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(key)? == name).then(|| decode(value)).flatten()
    })
}

fn decode(text: &str) -> Option<String> {
    let spaced = text.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

/// `pairs` as `a=1&b=2`, each value escaped.
pub(crate) fn encode(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={}", utf8_percent_encode(value, VALUE)))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_found_and_decoded() {
        let body = "a=1&_csrf=x%2By+z&_csrf=second&flag";
        assert_eq!(field(body, "_csrf").as_deref(), Some("x+y z"));
        assert_eq!(field(body, "a").as_deref(), Some("1"));
        assert_eq!(field(body, "flag").as_deref(), Some(""));
        assert_eq!(field(body, "missing"), None);
    }

    #[test]
    fn values_are_escaped() {
        assert_eq!(
            encode(&[("return_to", "/ui/flows?q=a b&c"), ("x", "é")]),
            "return_to=%2Fui%2Fflows%3Fq%3Da%20b%26c&x=%C3%A9"
        );
    }
}
