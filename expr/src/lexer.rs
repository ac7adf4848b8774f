//! Tokens of a Pebble template: text, `{{ }}`, `{% %}` (with `-`
//! whitespace control), comments, and the expression tokens inside.
//! `{% raw %}` (Kestra's pre-processing) and `{% verbatim %}` bodies are
//! returned as text.

use crate::error::{Error, Pos};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    Text(String),
    PrintOpen,
    PrintClose,
    TagOpen,
    TagClose,
    Name(String),
    Int(i64),
    Float(f64),
    /// A string literal; double-quoted ones may interpolate `#{expr}`.
    Str(Vec<StrPart>),
    Op(&'static str),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum StrPart {
    Lit(String),
    Expr(String, Pos),
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub tok: Tok,
    pub pos: Pos,
}

/// Operators and punctuation, longest first.
const OPS: &[&str] = &[
    "???", "??", "..", "==", "!=", "<=", ">=", "<", ">", "+", "-", "*", "/", "%", "~", "|", "?",
    ":", "=", "(", ")", "[", "]", "{", "}", ",", ".",
];

struct Lexer<'a> {
    src: &'a str,
    i: usize,
    line: u32,
    col: u32,
    out: Vec<Token>,
    trim_next: bool,
}

pub(crate) fn lex(src: &str) -> Result<Vec<Token>, Error> {
    let mut lx = Lexer {
        src,
        i: 0,
        line: 1,
        col: 1,
        out: Vec::new(),
        trim_next: false,
    };
    lx.run()?;
    Ok(lx.out)
}

impl<'a> Lexer<'a> {
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.col,
        }
    }

    fn rest(&self) -> &'a str {
        &self.src[self.i..]
    }

    fn advance(&mut self, n: usize) {
        for c in self.src[self.i..self.i + n].chars() {
            if c == '\n' {
                self.line += 1;
                self.col = 1;
            } else {
                self.col += 1;
            }
        }
        self.i += n;
    }

    fn push_text(&mut self, mut text: &str, trim_end: bool) {
        if self.trim_next {
            text = text.trim_start();
            self.trim_next = false;
        }
        if trim_end {
            text = text.trim_end();
        }
        if !text.is_empty() {
            self.out.push(Token {
                tok: Tok::Text(text.to_string()),
                pos: self.pos(),
            });
        }
    }

    fn run(&mut self) -> Result<(), Error> {
        loop {
            let rest = self.rest();
            let next = ["{{", "{%", "{#"].iter().filter_map(|d| rest.find(d)).min();
            let Some(at) = next else {
                self.push_text(rest, false);
                return Ok(());
            };
            let text = &rest[..at];
            let after = &rest[at + 2..];
            let trim = after.starts_with('-');
            let opener = &rest[at..at + 2];
            if opener == "{%" && self.raw_block(text, at)? {
                continue;
            }
            self.push_text(text, trim);
            self.advance(at);
            let pos = self.pos();
            self.advance(2 + usize::from(trim));
            match opener {
                "{#" => {
                    let Some(end) = self.rest().find("#}") else {
                        return Err(Error::syntax("unclosed comment", pos));
                    };
                    if self.rest()[..end].ends_with('-') {
                        self.trim_next = true;
                    }
                    self.advance(end + 2);
                }
                "{{" => {
                    self.out.push(Token {
                        tok: Tok::PrintOpen,
                        pos,
                    });
                    self.expression("}}", pos)?;
                }
                _ => {
                    self.out.push(Token {
                        tok: Tok::TagOpen,
                        pos,
                    });
                    self.expression("%}", pos)?;
                }
            }
        }
    }

    /// `{% raw %}…{% endraw %}` and `{% verbatim %}…{% endverbatim %}`:
    /// the body is text. Kestra strips raw blocks before Pebble sees
    /// them, ignoring their whitespace control; `verbatim` honours it.
    fn raw_block(&mut self, text: &str, at: usize) -> Result<bool, Error> {
        let rest = self.rest();
        let Some(open) = tag_words(&rest[at..]) else {
            return Ok(false);
        };
        if open.word != "raw" && open.word != "verbatim" {
            return Ok(false);
        }
        let kestra_raw = open.word == "raw";
        let end_word = format!("end{}", open.word);
        let pos = self.pos();
        let body_start = at + open.len;
        let mut search = body_start;
        let (body_end, close) = loop {
            let Some(found) = rest[search..].find("{%") else {
                return Err(Error::syntax(format!("unclosed {} block", open.word), pos));
            };
            let start = search + found;
            match tag_words(&rest[start..]) {
                Some(close) if close.word == end_word => break (start, close),
                _ => search = start + 2,
            }
        };
        let mut body = &rest[body_start..body_end];
        if !kestra_raw {
            if open.trim_after {
                body = body.trim_start();
            }
            if close.trim_before {
                body = body.trim_end();
            }
        }
        let body = body.to_string();
        self.push_text(text, !kestra_raw && open.trim_before);
        if !body.is_empty() {
            self.out.push(Token {
                tok: Tok::Text(body),
                pos,
            });
        }
        self.advance(body_end + close.len);
        self.trim_next = !kestra_raw && close.trim_after;
        Ok(true)
    }

    fn expression(&mut self, close: &'static str, open: Pos) -> Result<(), Error> {
        // Brackets open in this expression: `}}` inside `{...}` closes the map.
        let mut brackets: Vec<&'static str> = Vec::new();
        loop {
            let rest = self.rest();
            let trimmed = rest.trim_start();
            self.advance(rest.len() - trimmed.len());
            let rest = self.rest();
            let pos = self.pos();
            if rest.is_empty() {
                return Err(Error::syntax(
                    format!("unclosed `{}`", if close == "}}" { "{{" } else { "{%" }),
                    open,
                ));
            }
            let dash_close =
                brackets.is_empty() && rest.starts_with('-') && rest[1..].starts_with(close);
            if brackets.is_empty() && rest.starts_with(close) || dash_close {
                self.advance(close.len() + usize::from(dash_close));
                self.trim_next = dash_close;
                self.out.push(Token {
                    tok: if close == "}}" {
                        Tok::PrintClose
                    } else {
                        Tok::TagClose
                    },
                    pos,
                });
                return Ok(());
            }
            let c = rest.chars().next().unwrap_or(' ');
            let tok = if c.is_ascii_alphabetic() || c == '_' {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                self.advance(name.len());
                Tok::Name(name)
            } else if c.is_ascii_digit() {
                self.number(pos)?
            } else if c == '\'' || c == '"' {
                self.string(c, pos)?
            } else if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
                self.advance(op.len());
                match *op {
                    "(" => brackets.push(")"),
                    "[" => brackets.push("]"),
                    "{" => brackets.push("}"),
                    ")" | "]" | "}" if brackets.pop() != Some(*op) => {
                        return Err(Error::syntax(format!("unbalanced `{op}`"), pos));
                    }
                    _ => {}
                }
                Tok::Op(op)
            } else {
                return Err(Error::syntax(format!("unexpected character `{c}`"), pos));
            };
            self.out.push(Token { tok, pos });
        }
    }

    fn number(&mut self, pos: Pos) -> Result<Tok, Error> {
        let rest = self.rest();
        let int_len = rest.chars().take_while(char::is_ascii_digit).count();
        let mut len = int_len;
        let bytes = rest.as_bytes();
        let mut float = false;
        if bytes.get(len) == Some(&b'.') && bytes.get(len + 1).is_some_and(u8::is_ascii_digit) {
            float = true;
            len += 1 + rest[len + 1..]
                .chars()
                .take_while(char::is_ascii_digit)
                .count();
        }
        let text = &rest[..len];
        let long_suffix = !float && matches!(bytes.get(len), Some(b'l' | b'L'));
        let tok = if float {
            Tok::Float(
                text.parse()
                    .map_err(|_| Error::syntax("invalid number", pos))?,
            )
        } else {
            Tok::Int(
                text.parse()
                    .map_err(|_| Error::syntax(format!("number `{text}` is too large"), pos))?,
            )
        };
        self.advance(len + usize::from(long_suffix));
        Ok(tok)
    }

    /// Pebble keeps backslashes, except before the quote character.
    fn string(&mut self, quote: char, pos: Pos) -> Result<Tok, Error> {
        let rest = self.rest();
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut chars = rest.char_indices().skip(1).peekable();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some((_, n)) if n == quote => lit.push(n),
                    Some((_, n)) => {
                        lit.push('\\');
                        lit.push(n);
                    }
                    None => break,
                }
            } else if c == quote {
                end = Some(i);
                break;
            } else if c == '#' && quote == '"' && chars.peek().is_some_and(|(_, n)| *n == '{') {
                chars.next();
                let start = i + 2;
                let mut depth = 1;
                let mut stop = None;
                for (j, d) in chars.by_ref() {
                    match d {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                stop = Some(j);
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let Some(stop) = stop else {
                    return Err(Error::syntax("unclosed `#{` in string", pos));
                };
                if !lit.is_empty() {
                    parts.push(StrPart::Lit(std::mem::take(&mut lit)));
                }
                parts.push(StrPart::Expr(rest[start..stop].to_string(), pos));
            } else {
                lit.push(c);
            }
        }
        let Some(end) = end else {
            return Err(Error::syntax("unclosed string literal", pos));
        };
        if !lit.is_empty() || parts.is_empty() {
            parts.push(StrPart::Lit(lit));
        }
        self.advance(end + 1);
        Ok(Tok::Str(parts))
    }
}

/// A one-word tag at the start of `s` (`{%- word -%}`).
struct TagWords<'a> {
    word: &'a str,
    trim_before: bool,
    trim_after: bool,
    /// Bytes from `{%` to after `%}`.
    len: usize,
}

fn tag_words(s: &str) -> Option<TagWords<'_>> {
    let inner = s.strip_prefix("{%")?;
    let trim_before = inner.starts_with('-');
    let inner = inner.trim_start_matches('-').trim_start();
    let word_len = inner
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(inner.len());
    let word = &inner[..word_len];
    let after = inner[word_len..].trim_start();
    let trim_after = after.starts_with('-');
    let tail = after
        .strip_prefix('-')
        .unwrap_or(after)
        .strip_prefix("%}")?;
    Some(TagWords {
        word,
        trim_before,
        trim_after,
        len: s.len() - tail.len(),
    })
}

/// Tokens of a bare expression (string interpolation).
pub(crate) fn lex_expression(src: &str, pos: Pos) -> Result<Vec<Token>, Error> {
    let wrapped = format!("{src}}}}}");
    let mut lx = Lexer {
        src: &wrapped,
        i: 0,
        line: pos.line,
        col: pos.column,
        out: Vec::new(),
        trim_next: false,
    };
    lx.expression("}}", pos)?;
    lx.out.pop();
    Ok(lx.out)
}
