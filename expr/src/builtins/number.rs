//! Number filters and functions.

use super::{Args, Def, FilterFn, FunctionFn, def};
use crate::eval::Renderer;
use crate::value::Value;

pub(crate) const FILTERS: &[Def<FilterFn>] = &[
    def("abs", &[], abs),
    def("numberFormat", &["format", "locale"], number_format),
    def("number", &["type"], number),
    def("string", &[], string),
];

pub(crate) const FUNCTIONS: &[Def<FunctionFn>] = &[
    def("max", &["*"], |_, a| {
        extreme(a, std::cmp::Ordering::Greater)
    }),
    def("min", &["*"], |_, a| extreme(a, std::cmp::Ordering::Less)),
    def("randomInt", &["lower", "upper"], random_int),
];

fn abs(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    Ok(match v {
        Value::Int(i) => Value::Int(i.wrapping_abs()),
        Value::Long(l) => Value::Long(l.wrapping_abs()),
        Value::Float(f) => Value::Float(f.abs()),
        Value::Double(d) => Value::Double(d.abs()),
        Value::BigDecimal(s) => Value::BigDecimal(s.trim_start_matches('-').into()),
        Value::BigInteger(s) => Value::BigInteger(s.trim_start_matches('-').into()),
        other => return Err(format!("abs needs a number, not a {}", other.type_name())),
    })
}

/// Java's `DecimalFormat` for the common patterns: `#`/`0` digits,
/// `,` grouping, `.` fraction, `%`, literal prefix and suffix; HALF_EVEN.
fn number_format(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let pattern = a.str(0, "format")?;
    let mut x = v
        .as_f64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .ok_or("numberFormat needs a number")?;
    let start = pattern.find(['#', '0', ',', '.']).unwrap_or(pattern.len());
    let end = pattern.rfind(['#', '0', ',', '.']).map_or(start, |i| i + 1);
    let (prefix, body, suffix) = (&pattern[..start], &pattern[start..end], &pattern[end..]);
    if prefix.contains('%') || suffix.contains('%') {
        x *= 100.0;
    }
    let (int_pat, frac_pat) = body.split_once('.').unwrap_or((body, ""));
    let min_int = int_pat.chars().filter(|c| *c == '0').count();
    let group = int_pat.rfind(',').map(|i| int_pat.len() - i - 1);
    let min_frac = frac_pat.chars().filter(|c| *c == '0').count();
    let max_frac = frac_pat.chars().filter(|c| *c == '0' || *c == '#').count();
    let fixed = format!("{:.*}", max_frac, x.abs());
    let (int_digits, frac_digits) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let mut frac = frac_digits.to_string();
    while frac.len() > min_frac && frac.ends_with('0') {
        frac.pop();
    }
    let mut int = int_digits.trim_start_matches('0').to_string();
    while int.len() < min_int {
        int.insert(0, '0');
    }
    if let Some(g) = group.filter(|g| *g > 0) {
        let digits: Vec<char> = int.chars().collect();
        let mut grouped = String::new();
        for (i, c) in digits.iter().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(g) {
                grouped.push(',');
            }
            grouped.push(*c);
        }
        int = grouped;
    }
    let negative = x < 0.0
        && (int.chars().any(|c| c.is_ascii_digit() && c != '0') || frac.chars().any(|c| c != '0'));
    let mut out = String::new();
    out.push_str(&prefix.replace('\'', ""));
    if negative {
        out.push('-');
    }
    out.push_str(&int);
    if !frac.is_empty() {
        out.push('.');
        out.push_str(&frac);
    }
    if int.is_empty() && frac.is_empty() {
        out.push('0');
    }
    out.push_str(&suffix.replace('\'', ""));
    Ok(Value::from(out))
}

/// commons-lang `NumberUtils.createNumber`, or the requested type.
fn number(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let Value::String(s) = &v else {
        return Err("'number' filter can only be applied to String".into());
    };
    let text = s.trim();
    let bad = || format!("For input string: \"{text}\"");
    match a.opt_str(0).map(|t| t.to_uppercase()).as_deref() {
        None => {
            if let Ok(i) = text.parse::<i32>() {
                return Ok(Value::Int(i));
            }
            if let Ok(l) = text.parse::<i64>() {
                return Ok(Value::Long(l));
            }
            if !text.is_empty()
                && text
                    .trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit())
            {
                return Ok(Value::BigInteger(text.into()));
            }
            // commons-lang: up to 7 decimals a Float, up to 16 a Double,
            // beyond that a BigDecimal.
            let d = text.parse::<f64>().map_err(|_| bad())?;
            let mantissa = text.split(['e', 'E']).next().unwrap_or(text);
            let decimals = mantissa.split_once('.').map_or(0, |(_, f)| f.len());
            if decimals <= 7
                && let Ok(f) = text.parse::<f32>()
                && f.is_finite()
                && !(f == 0.0 && d != 0.0)
            {
                return Ok(Value::Float(f));
            }
            if decimals <= 16 && d.is_finite() {
                return Ok(Value::Double(d));
            }
            Ok(Value::BigDecimal(text.into()))
        }
        Some("INT" | "INTEGER") => text.parse().map(Value::Int).map_err(|_| bad()),
        Some("LONG") => text.parse().map(Value::Long).map_err(|_| bad()),
        Some("FLOAT") => text.parse().map(Value::Float).map_err(|_| bad()),
        Some("DOUBLE") => text.parse().map(Value::Double).map_err(|_| bad()),
        Some("BIGDECIMAL") => text
            .parse::<f64>()
            .map(|_| Value::BigDecimal(text.into()))
            .map_err(|_| bad()),
        Some("BIGINTEGER") => {
            if !text.is_empty()
                && text
                    .trim_start_matches('-')
                    .chars()
                    .all(|c| c.is_ascii_digit())
            {
                Ok(Value::BigInteger(text.into()))
            } else {
                Err(bad())
            }
        }
        Some(other) => Err(format!(
            "unknown number type `{other}` (INT, LONG, FLOAT, DOUBLE, BIGDECIMAL, BIGINTEGER)"
        )),
    }
}

fn string(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    match &v {
        n if n.is_number() => Ok(Value::from(n.to_print())),
        Value::String(s) => {
            if s.trim().parse::<f64>().is_ok() {
                Ok(v.clone())
            } else {
                Err("'string' filter expects a valid number".into())
            }
        }
        _ => Err("'string' filter expects a Number".into()),
    }
}

fn extreme(a: &Args, want: std::cmp::Ordering) -> Result<Value, String> {
    let mut best: Option<&Value> = None;
    for v in a.all() {
        let x = v.as_f64().ok_or("max/min need numbers")?;
        if best.is_none_or(|b| b.as_f64().and_then(|y| x.partial_cmp(&y)) == Some(want)) {
            best = Some(v);
        }
    }
    best.cloned()
        .ok_or_else(|| "max/min need at least one argument".into())
}

fn random_int(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let lower = a.int(0, "lower")?;
    let upper = a.int(1, "upper")?;
    if upper <= lower {
        return Err("upper must be greater than lower".into());
    }
    let span = (i128::from(upper) - i128::from(lower)) as u128;
    let r = u64::from_le_bytes(
        uuid::Uuid::new_v4().as_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]),
    );
    Ok(Value::Long(
        (i128::from(lower) + (u128::from(r) % span) as i128) as i64,
    ))
}
