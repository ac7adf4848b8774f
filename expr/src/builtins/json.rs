//! JSON and Ion: `toJson`/`json` filters, `fromJson`/`json` functions,
//! `toIon` and `fromIon` (Ion text for the values JSON can hold).

use super::{Args, Def, FilterFn, FunctionFn, def};
use crate::eval::Renderer;
use crate::value::{Map, Value, java_double, write_json_string};

pub(crate) const FILTERS: &[Def<FilterFn>] = &[
    def("toJson", &[], |_, v, _| Ok(Value::from(v.to_json()))),
    def("json", &[], |_, v, _| Ok(Value::from(v.to_json()))),
    def("toIon", &[], |_, v, _| Ok(Value::from(to_ion(&v)))),
    // Older names of toJson, outside the documentation.
    def("jsonEncode", &[], |_, v, _| Ok(Value::from(v.to_json()))),
];

pub(crate) const FUNCTIONS: &[Def<FunctionFn>] = &[
    def("fromJson", &["json"], from_json),
    def("json", &["json"], from_json),
    def("fromIon", &["ion", "allRows"], from_ion),
    // Older names of fromJson and fromIon, outside the documentation.
    def("jsonDecode", &["json"], from_json),
    def("ionDecode", &["ion", "allRows"], from_ion),
];

/// Parses JSON text keeping map order.
pub(crate) fn parse_json(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
}

fn from_json(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    match a.req(0, "json")? {
        Value::Null => Ok(Value::Null),
        Value::String(s) => parse_json(s),
        other => Ok(other.clone()),
    }
}

fn to_ion(v: &Value) -> String {
    let mut out = String::new();
    write_ion(v, &mut out);
    out
}

fn write_ion(v: &Value, out: &mut String) {
    match v {
        Value::Double(d) => {
            let s = java_double(*d).replace(".0E", "E").replace('E', "e");
            if s.contains('e') {
                out.push_str(&s);
            } else {
                out.push_str(s.trim_end_matches(".0"));
                out.push_str("e0");
            }
        }
        Value::Float(f) => {
            out.push_str(&format!("{f}e0"));
        }
        Value::List(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_ion(item, out);
            }
            out.push(']');
        }
        Value::Map(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let bare = k
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
                if bare {
                    out.push_str(k);
                } else {
                    out.push('\'');
                    out.push_str(&k.replace('\'', "\\'"));
                    out.push('\'');
                }
                out.push(':');
                write_ion(item, out);
            }
            out.push('}');
        }
        Value::String(s) => write_json_string(out, s),
        other => other.write_json(out),
    }
}

fn from_ion(_: &mut Renderer<'_>, a: &Args) -> Result<Value, String> {
    let text = match a.req(0, "ion")? {
        Value::Null => return Ok(Value::Null),
        other => other.to_print(),
    };
    let mut p = IonParser {
        s: text.as_bytes(),
        i: 0,
    };
    let mut rows = Vec::new();
    loop {
        p.ws();
        if p.i >= p.s.len() {
            break;
        }
        rows.push(p.value(0)?);
    }
    if a.bool(1).unwrap_or(false) {
        Ok(Value::list(rows))
    } else {
        rows.into_iter()
            .next()
            .ok_or_else(|| "empty Ion text".into())
    }
}

struct IonParser<'a> {
    s: &'a [u8],
    i: usize,
}

impl IonParser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len()
            && (self.s[self.i].is_ascii_whitespace() || self.s[self.i] == b',')
        {
            self.i += 1;
        }
    }

    fn value(&mut self, depth: usize) -> Result<Value, String> {
        if depth > 100 {
            return Err("Ion value nested too deeply".into());
        }
        self.ws();
        let Some(&c) = self.s.get(self.i) else {
            return Err("unexpected end of Ion text".into());
        };
        match c {
            b'{' => self.structure(depth),
            b'[' | b'(' => self.sequence(c, depth),
            b'"' | b'\'' => self.string(c),
            _ => self.word(c),
        }
    }

    fn structure(&mut self, depth: usize) -> Result<Value, String> {
        self.i += 1;
        let mut map = Map::new();
        loop {
            self.ws();
            match self.s.get(self.i) {
                Some(b'}') => {
                    self.i += 1;
                    return Ok(Value::map(map));
                }
                None => return Err("unclosed Ion struct".into()),
                _ => {}
            }
            let key = self.value(depth + 1)?.to_print();
            self.ws();
            if self.s.get(self.i) != Some(&b':') {
                return Err("expected `:` in Ion struct".into());
            }
            self.i += 1;
            let v = self.value(depth + 1)?;
            map.insert(key, v);
        }
    }

    fn sequence(&mut self, c: u8, depth: usize) -> Result<Value, String> {
        let close = if c == b'[' { b']' } else { b')' };
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.ws();
            match self.s.get(self.i) {
                Some(x) if *x == close => {
                    self.i += 1;
                    return Ok(Value::list(items));
                }
                None => return Err("unclosed Ion list".into()),
                _ => items.push(self.value(depth + 1)?),
            }
        }
    }

    fn string(&mut self, c: u8) -> Result<Value, String> {
        self.i += 1;
        let mut out = Vec::new();
        while let Some(&b) = self.s.get(self.i) {
            self.i += 1;
            if b == c {
                return String::from_utf8(out)
                    .map(Value::from)
                    .map_err(|_| "invalid UTF-8".into());
            }
            if b == b'\\' {
                if let Some(&n) = self.s.get(self.i) {
                    self.i += 1;
                    out.push(match n {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        other => other,
                    });
                }
            } else {
                out.push(b);
            }
        }
        Err("unclosed Ion string".into())
    }

    fn word(&mut self, c: u8) -> Result<Value, String> {
        let start = self.i;
        // Timestamps (`2024-04-21T23:00:00.000Z`) keep their colons.
        let timestamp = c.is_ascii_digit();
        while let Some(&b) = self.s.get(self.i) {
            if b.is_ascii_whitespace() || b",{}[]()".contains(&b) || (b == b':' && !timestamp) {
                break;
            }
            self.i += 1;
        }
        let word = std::str::from_utf8(&self.s[start..self.i]).map_err(|_| "invalid UTF-8")?;
        if word.is_empty() {
            return Err(format!("unexpected `{}` in Ion text", c as char));
        }
        Ok(match word {
            "null" => Value::Null,
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            w => {
                if let Ok(i) = w.parse::<i64>() {
                    i32::try_from(i).map_or(Value::Long(i), Value::Int)
                } else if let Ok(d) = w.parse::<f64>() {
                    Value::Double(d)
                } else {
                    Value::from(w)
                }
            }
        })
    }
}
