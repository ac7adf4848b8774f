//! String filters.

use super::{Args, Def, FilterFn, def, input_str};
use crate::eval::Renderer;
use crate::value::Value;

pub(crate) const FILTERS: &[Def<FilterFn>] = &[
    def("abbreviate", &["length"], abbreviate),
    def("capitalize", &[], capitalize),
    def("title", &[], title),
    def("lower", &[], |_, v, _| {
        map_str(&v, "lower", |s| s.to_lowercase())
    }),
    def("upper", &[], |_, v, _| {
        map_str(&v, "upper", |s| s.to_uppercase())
    }),
    def("trim", &[], |_, v, _| {
        map_str(&v, "trim", |s| s.trim().to_string())
    }),
    def("replace", &["replace_pairs", "regexp"], replace),
    def("split", &["delimiter", "limit"], split),
    def("urlencode", &[], urlencode),
    def("urldecode", &[], urldecode),
    def("slugify", &[], |_, v, _| map_str(&v, "slugify", slugify)),
    def("substringBefore", &["separator"], |_, v, a| {
        substring(v, a, "substringBefore", Side::Before, false)
    }),
    def("substringAfter", &["separator"], |_, v, a| {
        substring(v, a, "substringAfter", Side::After, false)
    }),
    def("substringBeforeLast", &["separator"], |_, v, a| {
        substring(v, a, "substringBeforeLast", Side::Before, true)
    }),
    def("substringAfterLast", &["separator"], |_, v, a| {
        substring(v, a, "substringAfterLast", Side::After, true)
    }),
    def("startsWith", &["prefix"], |_, v, a| {
        Ok(Value::Bool(
            input_str(&v, "startsWith")?.starts_with(&a.str(0, "prefix")?),
        ))
    }),
    def("endsWith", &["suffix"], |_, v, a| {
        Ok(Value::Bool(
            input_str(&v, "endsWith")?.ends_with(&a.str(0, "suffix")?),
        ))
    }),
    def("escapeChar", &["type"], escape_char),
    def("indent", &["amount", "prefix"], |_, v, a| {
        indent(v, a, false)
    }),
    // Kestra filters outside the documentation (read from its sources).
    def("regexMatch", &["regex"], |_, v, a| {
        if v.is_null() {
            return Ok(Value::Bool(false));
        }
        Ok(Value::Bool(regex(a)?.is_match(&v.to_print())))
    }),
    def("regexExtract", &["regex", "group"], regex_extract),
    def("regexReplace", &["regex", "replacement"], |_, v, a| {
        if v.is_null() {
            return Ok(Value::Null);
        }
        let replacement = a.str(1, "replacement")?;
        Ok(Value::from(
            regex(a)?
                .replace_all(&v.to_print(), replacement.as_str())
                .into_owned(),
        ))
    }),
    def("condenseString", &[], |_, v, _| match v {
        Value::String(s) => Ok(Value::from(s.replace('\n', ""))),
        _ => Err("condense can only be applied on strings".into()),
    }),
    def("nindent", &["amount", "prefix"], |_, v, a| {
        indent(v, a, true)
    }),
];

fn map_str(v: &Value, name: &str, f: impl Fn(&str) -> String) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    Ok(Value::from(f(&input_str(v, name)?)))
}

fn regex(a: &Args) -> Result<regex::Regex, String> {
    let pattern = a.str(0, "regex")?;
    regex::Regex::new(&pattern).map_err(|e| format!("invalid regex `{pattern}`: {e}"))
}

fn regex_extract(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let group = if a.opt(1).is_some() {
        a.int(1, "group")?
    } else {
        0
    };
    let text = v.to_print();
    let Some(caps) = regex(a)?.captures(&text) else {
        return Ok(Value::Null);
    };
    let group = usize::try_from(group).map_err(|_| "group must not be negative")?;
    if group >= caps.len() {
        return Err(format!("No group {group}"));
    }
    Ok(caps
        .get(group)
        .map_or(Value::Null, |m| Value::from(m.as_str())))
}

fn abbreviate(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let s = input_str(&v, "abbreviate")?;
    let max = usize::try_from(a.int(0, "length")?).map_err(|_| "length must be positive")?;
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= max {
        return Ok(Value::from(s.into_owned()));
    }
    if max < 3 {
        return Err("length must be at least 3".into());
    }
    let mut out: String = chars[..max - 3].iter().collect();
    out.push_str("...");
    Ok(Value::from(out))
}

fn capitalize(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    map_str(&v, "capitalize", |s| {
        let mut c = s.chars();
        match c.next() {
            Some(f) => f.to_uppercase().chain(c).collect(),
            None => String::new(),
        }
    })
}

fn title(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    map_str(&v, "title", |s| {
        let mut out = String::with_capacity(s.len());
        let mut start = true;
        for c in s.chars() {
            if start && !c.is_whitespace() {
                out.extend(c.to_uppercase());
                start = false;
            } else {
                out.push(c);
            }
            if c.is_whitespace() {
                start = true;
            }
        }
        out
    })
}

fn replace(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let mut s = input_str(&v, "replace")?.into_owned();
    let Some(Value::Map(pairs)) = a.get(0) else {
        return Err("replace needs a map of replacements".into());
    };
    let regexp = a.bool(1).unwrap_or(false);
    for (from, to) in pairs.iter() {
        let to = to.to_print();
        if regexp {
            let re = regex::Regex::new(from).map_err(|e| format!("invalid regex: {e}"))?;
            s = re.replace_all(&s, to.as_str()).into_owned();
        } else {
            s = s.replace(from.as_str(), &to);
        }
    }
    Ok(Value::from(s))
}

/// Java's `String.split(regex, limit)`.
fn split(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let s = input_str(&v, "split")?;
    let delimiter = a.str(0, "delimiter")?;
    let limit = if a.opt(1).is_some() {
        a.int(1, "limit")?
    } else {
        0
    };
    let re = regex::Regex::new(&delimiter).map_err(|e| format!("invalid delimiter: {e}"))?;
    let mut parts: Vec<&str> = if limit > 0 {
        re.splitn(&s, limit as usize).collect()
    } else {
        re.split(&s).collect()
    };
    if parts.len() > 1 && parts.first() == Some(&"") && re.find(&s).is_some_and(|m| m.is_empty()) {
        parts.remove(0);
    }
    if limit == 0 && parts.len() > 1 {
        while parts.last() == Some(&"") {
            parts.pop();
        }
    }
    Ok(Value::list(parts.into_iter().map(Value::from).collect()))
}

/// `URLEncoder.encode(s, UTF-8)`.
fn urlencode(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    let s = input_str(&v, "urlencode")?;
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    Ok(Value::from(out))
}

fn urldecode(_: &mut Renderer<'_>, v: Value, _: &Args) -> Result<Value, String> {
    let s = input_str(&v, "urldecode")?.replace('+', " ");
    let bytes: Vec<u8> = percent_encoding::percent_decode_str(&s).collect();
    String::from_utf8(bytes)
        .map(Value::from)
        .map_err(|_| "the decoded text is not UTF-8".into())
}

/// Kestra's `Slugify.of`: whitespace becomes `-`, accents go (NFD, then
/// everything but `[A-Za-z0-9_-]` is dropped), `_` becomes `-`, dashes
/// collapse, one leading and one trailing dash go, then lower case.
pub(crate) fn slugify(text: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    let dashed: String = text
        .chars()
        .map(|c| {
            if matches!(c, ' ' | '\t' | '\n' | '\u{b}' | '\u{c}' | '\r') {
                '-'
            } else {
                c
            }
        })
        .collect();
    let mut slug = String::with_capacity(dashed.len());
    for c in dashed.nfd() {
        let c = if c == '_' { '-' } else { c };
        if c.is_ascii_alphanumeric() || (c == '-' && !slug.ends_with('-')) {
            slug.push(c);
        }
    }
    let slug = slug.strip_prefix('-').unwrap_or(&slug);
    let slug = slug.strip_suffix('-').unwrap_or(slug);
    slug.to_ascii_lowercase()
}

#[derive(Clone, Copy)]
enum Side {
    Before,
    After,
}

fn substring(v: Value, a: &Args, name: &str, side: Side, last: bool) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::Null);
    }
    let s = input_str(&v, name)?;
    let sep = a.str(0, "separator")?;
    let found = if last { s.rfind(&sep) } else { s.find(&sep) };
    Ok(Value::from(match (found, side) {
        (Some(i), Side::Before) => s[..i].to_string(),
        (Some(i), Side::After) => s[i + sep.len()..].to_string(),
        (None, Side::Before) => s.into_owned(),
        (None, Side::After) => String::new(),
    }))
}

fn escape_char(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let s = input_str(&v, "escapeChar")?;
    let kind = a.str(0, "type")?;
    Ok(Value::from(match kind.to_lowercase().as_str() {
        "single" => s.replace('\'', "\\'"),
        "double" => s.replace('"', "\\\""),
        "shell" => s.replace('\'', "'\\''"),
        other => {
            return Err(format!(
                "unknown escape type `{other}` (single, double or shell)"
            ));
        }
    }))
}

fn indent(v: Value, a: &Args, newline_first: bool) -> Result<Value, String> {
    if v.is_null() {
        return Ok(Value::from(""));
    }
    let s = input_str(&v, "indent")?.into_owned();
    if s.is_empty() {
        return Ok(Value::from(""));
    }
    let amount = usize::try_from(a.int(0, "amount")?)
        .ok()
        .filter(|n| *n <= 1000)
        .ok_or("amount must be between 0 and 1000")?;
    let prefix = a.opt_str(1).unwrap_or_else(|| " ".into()).repeat(amount);
    let mut out = String::new();
    let sep = if s.contains("\r\n") {
        "\r\n"
    } else if s.contains('\r') && !s.contains('\n') {
        "\r"
    } else {
        "\n"
    };
    if newline_first {
        out.push_str(sep);
        out.push_str(&prefix);
    }
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '\r' && chars.peek() == Some(&'\n') {
            continue;
        }
        if c == '\n' || c == '\r' {
            out.push_str(&prefix);
        }
    }
    Ok(Value::from(out))
}
