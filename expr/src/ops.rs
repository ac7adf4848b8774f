//! Operators with Pebble 3.2.2's semantics: Java number widening,
//! truncating integer division, `+` concatenating strings and lists,
//! comparisons only between numbers.

use crate::value::Value;

const BAD_MATH: &str = "invalid operands for mathematical operation";
const BAD_COMPARE: &str = "invalid operands for mathematical comparison";

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Int(_) => 1,
        Value::Long(_) => 2,
        Value::BigInteger(_) => 2,
        Value::Float(_) => 3,
        Value::Double(_) => 4,
        Value::BigDecimal(_) => 4,
        _ => 0,
    }
}

pub(crate) fn add(a: &Value, b: &Value) -> Result<Value, String> {
    match (a, b) {
        (Value::List(x), Value::List(y)) => {
            let mut out = x.as_ref().clone();
            out.extend(y.iter().cloned());
            Ok(Value::list(out))
        }
        (Value::List(x), other) => {
            let mut out = x.as_ref().clone();
            out.push(other.clone());
            Ok(Value::list(out))
        }
        (Value::String(_), _) | (_, Value::String(_)) => {
            Ok(Value::from(format!("{}{}", java_string(a), java_string(b))))
        }
        _ => arith(Arith::Add, a, b),
    }
}

/// `String.valueOf` of a value, as Java's string `+` does.
fn java_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        other => other.to_print(),
    }
}

pub(crate) fn arith(op: Arith, a: &Value, b: &Value) -> Result<Value, String> {
    let r = rank(a).max(rank(b));
    if rank(a) == 0 || rank(b) == 0 {
        return Err(BAD_MATH.into());
    }
    if r <= 2 {
        let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) else {
            return Err(BAD_MATH.into());
        };
        if matches!(op, Arith::Div | Arith::Rem) && y == 0 {
            return Err("/ by zero".into());
        }
        if r == 1 {
            let (x, y) = (x as i32, y as i32);
            return Ok(Value::Int(match op {
                Arith::Add => x.wrapping_add(y),
                Arith::Sub => x.wrapping_sub(y),
                Arith::Mul => x.wrapping_mul(y),
                Arith::Div => x.wrapping_div(y),
                Arith::Rem => x.wrapping_rem(y),
            }));
        }
        return Ok(Value::Long(match op {
            Arith::Add => x.wrapping_add(y),
            Arith::Sub => x.wrapping_sub(y),
            Arith::Mul => x.wrapping_mul(y),
            Arith::Div => x.wrapping_div(y),
            Arith::Rem => x.wrapping_rem(y),
        }));
    }
    let (Some(x), Some(y)) = (a.as_f64(), b.as_f64()) else {
        return Err(BAD_MATH.into());
    };
    let d = match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
        Arith::Rem => x % y,
    };
    Ok(if r == 3 {
        Value::Float(d as f32)
    } else {
        Value::Double(d)
    })
}

pub(crate) fn negate(v: &Value) -> Result<Value, String> {
    Ok(match v {
        Value::Int(i) => Value::Int(i.wrapping_neg()),
        Value::Long(l) => Value::Long(l.wrapping_neg()),
        Value::Float(f) => Value::Float(-f),
        Value::Double(d) => Value::Double(-d),
        Value::BigDecimal(s) | Value::BigInteger(s) => {
            Value::Double(-s.parse::<f64>().unwrap_or(0.0))
        }
        _ => return Err(BAD_MATH.into()),
    })
}

/// `<`, `>`, `<=`, `>=`: numbers only; null on either side is false.
pub(crate) fn compare(a: &Value, b: &Value) -> Result<Option<std::cmp::Ordering>, String> {
    if a.is_null() || b.is_null() {
        return Ok(None);
    }
    if !a.is_number() || !b.is_number() {
        return Err(BAD_COMPARE.into());
    }
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return Ok(Some(x.cmp(&y)));
    }
    Ok(a.as_f64()
        .zip(b.as_f64())
        .and_then(|(x, y)| x.partial_cmp(&y)))
}

/// `contains`: a list holds the element (or every element of a list), a
/// map the key, a string the substring; null holds nothing.
pub(crate) fn contains(a: &Value, b: &Value) -> Result<bool, String> {
    Ok(match a {
        Value::Null => false,
        Value::List(items) => match b {
            Value::List(wanted) => wanted.iter().all(|w| items.iter().any(|i| i.java_eq(w))),
            _ => items.iter().any(|i| i.java_eq(b)),
        },
        Value::Map(map) => map.contains_key(&b.to_print()),
        Value::String(s) => s.contains(&b.to_print()),
        _ => {
            return Err(
                "Contains operator can only be used on Collections, Maps and arrays".into(),
            );
        }
    })
}

/// `a isIn b` (Kestra's InExpression): `a`'s text equals the text of an
/// item of the list, or of a key or a value of the map; false otherwise.
pub(crate) fn is_in(a: &Value, b: &Value) -> bool {
    if a.is_null() {
        return false;
    }
    let text = a.to_print();
    match b {
        Value::List(items) => items.iter().any(|i| !i.is_null() && i.to_print() == text),
        Value::Map(map) => map
            .iter()
            .any(|(k, v)| *k == text || (!v.is_null() && v.to_print() == text)),
        _ => false,
    }
}

/// `a..b`: an inclusive range of integers, or of characters.
pub(crate) fn range(a: &Value, b: &Value, step: i64) -> Result<Value, String> {
    if step == 0 {
        return Err("The increment of the range function must be different than 0".into());
    }
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        let span = if step > 0 {
            i128::from(y) - i128::from(x)
        } else {
            i128::from(x) - i128::from(y)
        };
        if span / i128::from(step).abs() > 1_000_000 {
            return Err("range is too large (more than 1000000 items)".into());
        }
        let mut out = Vec::new();
        let mut i = x;
        while (step > 0 && i <= y) || (step < 0 && i >= y) {
            out.push(Value::Long(i));
            let Some(next) = i.checked_add(step) else {
                break;
            };
            i = next;
        }
        return Ok(Value::list(out));
    }
    if let (Some(x), Some(y)) = (a.as_str(), b.as_str()) {
        let (Some(x), Some(y)) = (x.chars().next(), y.chars().next()) else {
            return Err("range of empty strings".into());
        };
        let mut out = Vec::new();
        let (mut i, y) = (x as i64, y as i64);
        if (y - i).abs() / step.abs().max(1) > 1_000_000 {
            return Err("range is too large (more than 1000000 items)".into());
        }
        while (step > 0 && i <= y) || (step < 0 && i >= y) {
            if let Some(c) = char::from_u32(i as u32) {
                out.push(Value::from(c.to_string()));
            }
            let Some(next) = i.checked_add(step) else {
                break;
            };
            i = next;
        }
        return Ok(Value::list(out));
    }
    Err("range needs two numbers or two characters".into())
}

/// Truthiness for `and`, `or`, `not` and the ternary condition: booleans,
/// numbers other than 0, non-empty strings; null is false.
pub(crate) fn truthy(v: &Value) -> Result<bool, String> {
    Ok(match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        n if n.is_number() => n.as_f64().is_some_and(|f| f != 0.0),
        _ => {
            return Err(format!(
                "Unsupported value type {} in a condition",
                v.class_name()
            ));
        }
    })
}
