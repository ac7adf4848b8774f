//! Values as Kestra's expressions see them: Java number kinds, ordered maps,
//! and printing exactly as Kestra prints (compact JSON for maps and lists,
//! null map values dropped, numbers as Java's `toString`).

use std::fmt::Write as _;
use std::sync::Arc;

use indexmap::IndexMap;

/// An ordered map (insertion order, as Jackson's `LinkedHashMap`).
pub type Map = IndexMap<String, Value>;

/// A value. Numbers keep their Java kind: template literals are `Long`
/// (integers) and `Double` (decimals), JSON integers that fit 32 bits are
/// `Int`, the `number` filter may produce any kind.
#[derive(Debug, Clone, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    /// `java.lang.Integer`
    Int(i32),
    /// `java.lang.Long`
    Long(i64),
    /// `java.lang.Float`
    Float(f32),
    /// `java.lang.Double`
    Double(f64),
    /// `java.math.BigDecimal`, kept as its plain decimal text (`12.50`).
    BigDecimal(Arc<str>),
    /// `java.math.BigInteger`, kept as its decimal text.
    BigInteger(Arc<str>),
    String(Arc<str>),
    List(Arc<Vec<Value>>),
    Map(Arc<Map>),
}

impl Value {
    pub fn str(s: impl Into<Arc<str>>) -> Value {
        Value::String(s.into())
    }

    pub fn list(items: Vec<Value>) -> Value {
        Value::List(Arc::new(items))
    }

    pub fn map(map: Map) -> Value {
        Value::Map(Arc::new(map))
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    pub fn is_number(&self) -> bool {
        matches!(
            self,
            Value::Int(_)
                | Value::Long(_)
                | Value::Float(_)
                | Value::Double(_)
                | Value::BigDecimal(_)
                | Value::BigInteger(_)
        )
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The number as an `f64` (any numeric kind).
    pub fn as_f64(&self) -> Option<f64> {
        Some(match self {
            Value::Int(i) => f64::from(*i),
            Value::Long(l) => *l as f64,
            Value::Float(f) => f64::from(*f),
            Value::Double(d) => *d,
            Value::BigDecimal(s) | Value::BigInteger(s) => s.parse().ok()?,
            _ => return None,
        })
    }

    /// The number as an `i64` when it is an integer kind.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(i64::from(*i)),
            Value::Long(l) => Some(*l),
            Value::BigInteger(s) => s.parse().ok(),
            _ => None,
        }
    }

    /// Java class name, as Kestra's `className` filter prints it.
    pub fn class_name(&self) -> &'static str {
        match self {
            Value::Null => "",
            Value::Bool(_) => "java.lang.Boolean",
            Value::Int(_) => "java.lang.Integer",
            Value::Long(_) => "java.lang.Long",
            Value::Float(_) => "java.lang.Float",
            Value::Double(_) => "java.lang.Double",
            Value::BigDecimal(_) => "java.math.BigDecimal",
            Value::BigInteger(_) => "java.math.BigInteger",
            Value::String(_) => "java.lang.String",
            Value::List(_) => "java.util.ArrayList",
            Value::Map(_) => "java.util.LinkedHashMap",
        }
    }

    /// A short type name for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "boolean",
            Value::String(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
            _ => "number",
        }
    }

    /// The text `{{ value }}` prints.
    pub fn to_print(&self) -> String {
        let mut out = String::new();
        self.write_print(&mut out);
        out
    }

    pub fn write_print(&self, out: &mut String) {
        match self {
            Value::Null => {}
            Value::String(s) => out.push_str(s),
            Value::List(_) | Value::Map(_) => self.write_json(out),
            other => other.write_json(out),
        }
    }

    /// Compact JSON as Kestra's Jackson mapper writes it: null map values
    /// dropped, numbers as Java prints them.
    pub fn to_json(&self) -> String {
        let mut out = String::new();
        self.write_json(&mut out);
        out
    }

    pub fn write_json(&self, out: &mut String) {
        match self {
            Value::Null => out.push_str("null"),
            Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Value::Int(i) => {
                let _ = write!(out, "{i}");
            }
            Value::Long(l) => {
                let _ = write!(out, "{l}");
            }
            Value::Float(f) => out.push_str(&java_float(*f)),
            Value::Double(d) => out.push_str(&java_double(*d)),
            Value::BigDecimal(s) | Value::BigInteger(s) => out.push_str(s),
            Value::String(s) => write_json_string(out, s),
            Value::List(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_json(out);
                }
                out.push(']');
            }
            Value::Map(map) => {
                out.push('{');
                let mut first = true;
                for (k, v) in map.iter() {
                    if v.is_null() {
                        continue;
                    }
                    if !first {
                        out.push(',');
                    }
                    first = false;
                    write_json_string(out, k);
                    out.push(':');
                    v.write_json(out);
                }
                out.push('}');
            }
        }
    }

    /// Java-like equality: numbers compare by value across kinds
    /// (`1 == 1.0`), everything else structurally.
    pub fn java_eq(&self, other: &Value) -> bool {
        match (self, other) {
            (a, b) if a.is_number() && b.is_number() => match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x == y,
                _ => a.as_f64() == b.as_f64(),
            },
            (Value::Null, Value::Null) => true,
            (Value::Bool(a), Value::Bool(b)) => a == b,
            (Value::String(a), Value::String(b)) => a == b,
            (Value::List(a), Value::List(b)) => {
                a.len() == b.len() && a.iter().zip(b.iter()).all(|(x, y)| x.java_eq(y))
            }
            (Value::Map(a), Value::Map(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .all(|(k, v)| b.get(k).is_some_and(|w| v.java_eq(w)))
            }
            _ => false,
        }
    }

    /// Converts to `serde_json` (map order kept as far as `serde_json::Map`
    /// keeps it; null map values stay).
    pub fn to_serde(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Long(l) => J::from(*l),
            Value::Float(f) => {
                // Jackson writes a Float with its own shortest digits (12.3).
                let shortest = java_float(*f).parse().unwrap_or(f64::from(*f));
                serde_json::Number::from_f64(shortest).map_or(J::Null, J::Number)
            }
            Value::Double(d) => serde_json::Number::from_f64(*d).map_or(J::Null, J::Number),
            Value::BigDecimal(s) | Value::BigInteger(s) => s
                .parse::<i64>()
                .map(J::from)
                .ok()
                .or_else(|| {
                    s.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map(J::Number)
                })
                .unwrap_or_else(|| J::String(s.to_string())),
            Value::String(s) => J::String(s.to_string()),
            Value::List(items) => J::Array(items.iter().map(Value::to_serde).collect()),
            Value::Map(map) => {
                J::Object(map.iter().map(|(k, v)| (k.clone(), v.to_serde())).collect())
            }
        }
    }
}

impl From<&serde_json::Value> for Value {
    fn from(value: &serde_json::Value) -> Self {
        use serde_json::Value as J;
        match value {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => {
                if let Some(i) = n.as_i64() {
                    i32::try_from(i).map_or(Value::Long(i), Value::Int)
                } else if n.is_u64() {
                    Value::BigInteger(n.to_string().into())
                } else {
                    Value::Double(n.as_f64().unwrap_or(f64::NAN))
                }
            }
            J::String(s) => Value::String(s.as_str().into()),
            J::Array(items) => Value::list(items.iter().map(Value::from).collect()),
            J::Object(map) => Value::map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Value::from(v)))
                    .collect(),
            ),
        }
    }
}

impl From<serde_json::Value> for Value {
    fn from(value: serde_json::Value) -> Self {
        Value::from(&value)
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.into())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s.into())
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Bool(b)
    }
}

impl From<i64> for Value {
    fn from(l: i64) -> Self {
        Value::Long(l)
    }
}

impl From<f64> for Value {
    fn from(d: f64) -> Self {
        Value::Double(d)
    }
}

impl From<Map> for Value {
    fn from(map: Map) -> Self {
        Value::map(map)
    }
}

impl From<Vec<Value>> for Value {
    fn from(items: Vec<Value>) -> Self {
        Value::list(items)
    }
}

/// JSON string escaping as Jackson does it (control characters escaped,
/// everything else raw).
pub(crate) fn write_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `Double.toString`: shortest round-trip digits, plain between 1e-3 and
/// 1e7, `d.dddE±n` outside, always with a fraction digit.
pub fn java_double(d: f64) -> String {
    if d.is_nan() {
        return "NaN".into();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    java_format(&format!("{d:e}"), d == 0.0, (1e-3..1e7).contains(&d.abs()))
}

/// `Float.toString`, the same rules over `f32` digits.
pub fn java_float(f: f32) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    java_format(&format!("{f:e}"), f == 0.0, (1e-3..1e7).contains(&f.abs()))
}

fn java_format(sci: &str, zero: bool, plain: bool) -> String {
    let (negative, sci) = match sci.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, sci),
    };
    let sign = if negative { "-" } else { "" };
    if zero {
        return format!("{sign}0.0");
    }
    let (mantissa, exp) = sci.split_once('e').unwrap_or((sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if plain {
        let point = exp + 1;
        let (int, frac) = if point <= 0 {
            (
                "0".to_string(),
                format!("{}{digits}", "0".repeat(point.unsigned_abs() as usize)),
            )
        } else if point as usize >= digits.len() {
            (
                format!("{digits}{}", "0".repeat(point as usize - digits.len())),
                String::new(),
            )
        } else {
            (
                digits[..point as usize].to_string(),
                digits[point as usize..].to_string(),
            )
        };
        let frac = if frac.is_empty() {
            "0".to_string()
        } else {
            frac
        };
        format!("{sign}{int}.{frac}")
    } else {
        let (first, rest) = digits.split_at(1);
        let rest = if rest.is_empty() { "0" } else { rest };
        format!("{sign}{first}.{rest}E{exp}")
    }
}

/// Deserializes JSON or YAML straight into a [`Value`], keeping map order.
impl<'de> serde::Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E>(self, i: i64) -> Result<Value, E> {
        Ok(i32::try_from(i).map_or(Value::Long(i), Value::Int))
    }

    fn visit_u64<E>(self, u: u64) -> Result<Value, E> {
        Ok(match i64::try_from(u) {
            Ok(i) => i32::try_from(i).map_or(Value::Long(i), Value::Int),
            Err(_) => Value::BigInteger(u.to_string().into()),
        })
    }

    fn visit_f64<E>(self, f: f64) -> Result<Value, E> {
        Ok(Value::Double(f))
    }

    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::from(s))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::from(s))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::Deserialize::deserialize(d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::list(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut access: A) -> Result<Value, A::Error> {
        let mut map = Map::new();
        while let Some((k, v)) = access.next_entry::<Value, Value>()? {
            map.insert(k.to_print(), v);
        }
        Ok(Value::map(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_as_java() {
        assert_eq!(java_double(1.0), "1.0");
        assert_eq!(java_double(1.123), "1.123");
        assert_eq!(java_double(1e7), "1.0E7");
        assert_eq!(java_double(1.0e-4), "1.0E-4");
        assert_eq!(java_double(0.001), "0.001");
        assert_eq!(java_double(0.1 + 0.2), "0.30000000000000004");
        assert_eq!(java_double(-2.5), "-2.5");
        assert_eq!(java_double(125.0), "125.0");
        assert_eq!(java_double(1234567.891), "1234567.891");
        assert_eq!(java_float(12.3), "12.3");
    }

    #[test]
    fn null_map_values_are_not_printed() {
        let v = Value::from(serde_json::json!({"a": null, "b": [1, null]}));
        assert_eq!(v.to_print(), r#"{"b":[1,null]}"#);
    }
}
