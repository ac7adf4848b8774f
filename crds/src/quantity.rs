//! Resource quantities (`500m`, `2`, `1Gi`) as Kubernetes writes them.
//!
//! Kubernetes accepts a quantity as a string or a bare number (`cpu: 2`), so
//! [`Quantity`] reads both and its schema is int-or-string, like the core
//! API's own resource fields. Only non-negative amounts are meaningful in a
//! Tenant, so the pattern has no sign.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A non-negative Kubernetes quantity: digits with an optional decimal part,
/// then an optional binary suffix (`Ki`…`Ei`), decimal suffix (`n u m k M G T
/// P E`) or exponent (`e3`).
pub const QUANTITY_PATTERN: &str =
    r"^(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE][-+]?[0-9]+))?$";

/// A resource amount such as `500m`, `2` or `1Gi`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Quantity(pub String);

impl Quantity {
    /// The quantity as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The amount in base units (cores, bytes), or `None` when the text is not
    /// a non-negative quantity. Precise enough to compare amounts; not meant
    /// for arithmetic that must be exact.
    pub fn to_f64(&self) -> Option<f64> {
        parse(&self.0)
    }
}

impl From<&str> for Quantity {
    fn from(s: &str) -> Self {
        Quantity(s.to_owned())
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parse a quantity into base units. Mirrors [`QUANTITY_PATTERN`].
fn parse(text: &str) -> Option<f64> {
    let number_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_end);
    if number.is_empty() || number == "." || number.matches('.').count() > 1 {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            let unsigned = digits.trim_start_matches(['+', '-']);
            if unsigned.is_empty()
                || digits.len() - unsigned.len() > 1
                || !unsigned.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            10f64.powi(digits.parse::<i32>().ok()?)
        }
    };
    Some(value * multiplier)
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m, 2 or 1Gi")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_owned()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Quantity {
    fn schema_name() -> Cow<'static, str> {
        "Quantity".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "x-kubernetes-int-or-string": true,
            "minimum": 0,
            "pattern": QUANTITY_PATTERN,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_suffix_kind() {
        let cases = [
            ("0", 0.0),
            ("2", 2.0),
            ("500m", 0.5),
            ("1.5", 1.5),
            (".5", 0.5),
            ("1k", 1000.0),
            ("1Ki", 1024.0),
            ("1Gi", 1024.0 * 1024.0 * 1024.0),
            ("1e3", 1000.0),
            ("1E-3", 0.001),
        ];
        for (text, want) in cases {
            let got = parse(text).unwrap_or(f64::NAN);
            assert!(
                (got - want).abs() < 1e-9 * want.max(1.0),
                "{text}: {got} != {want}"
            );
        }
    }

    #[test]
    fn rejects_what_the_pattern_rejects() {
        let pattern = regex::Regex::new(QUANTITY_PATTERN).expect("pattern compiles");
        for text in [
            "", ".", "-1", "1.2.3", "1Gb", "1 Gi", "abc", "1e", "1e+-3", "Gi",
        ] {
            assert_eq!(parse(text), None, "{text:?} parsed");
            assert!(!pattern.is_match(text), "{text:?} matched the pattern");
        }
        for text in ["1", "100m", "1.5Gi", "2e6", "0.5"] {
            assert!(parse(text).is_some(), "{text:?} did not parse");
            assert!(pattern.is_match(text), "{text:?} did not match the pattern");
        }
    }

    #[test]
    fn reads_numbers_and_strings() {
        let q: Quantity = serde_json::from_str("2").expect("int");
        assert_eq!(q.as_str(), "2");
        let q: Quantity = serde_json::from_str("\"250m\"").expect("string");
        assert_eq!(q.as_str(), "250m");
    }
}
