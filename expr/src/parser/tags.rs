//! Template tags: text, `{{ }}` prints and the `{% %}` tags.

use std::sync::Arc;

use super::{EndTag, Macro, Node, Parser, describe};
use crate::error::{Error, Pos};
use crate::lexer::{StrPart, Tok};

/// Tags Pebble knows but Kestra removes, or that Atoll has no use for.
const REMOVED_TAGS: &[&str] = &[
    "extends",
    "include",
    "import",
    "from",
    "embed",
    "autoescape",
    "cache",
    "flush",
    "parallel",
];

impl Parser {
    /// Nodes until one of the `ends` tags (returned with its position).
    pub(super) fn nodes(&mut self, ends: &[&str]) -> Result<(Vec<Node>, EndTag), Error> {
        let mut nodes = Vec::new();
        while let Some(t) = self.peek().cloned() {
            self.i += 1;
            match t.tok {
                Tok::Text(s) => nodes.push(Node::Text(s)),
                Tok::PrintOpen => {
                    let e = self.expr(0)?;
                    let close = self.next()?;
                    if close.tok != Tok::PrintClose {
                        return Err(Error::syntax(
                            format!("expected `}}}}`, found {}", describe(&close.tok)),
                            close.pos,
                        ));
                    }
                    nodes.push(Node::Print(e));
                }
                Tok::TagOpen => {
                    let (name, pos) = self.expect_name()?;
                    if ends.contains(&name.as_str()) {
                        return Ok((nodes, Some((name, pos))));
                    }
                    if let Some(node) = self.tag(&name, pos)? {
                        nodes.push(node);
                    }
                }
                other => {
                    return Err(Error::syntax(
                        format!("unexpected {}", describe(&other)),
                        t.pos,
                    ));
                }
            }
        }
        if ends.is_empty() {
            Ok((nodes, None))
        } else {
            Err(Error::syntax(
                format!("missing `{{% {} %}}`", ends[ends.len() - 1]),
                self.last_pos(),
            ))
        }
    }

    fn tag(&mut self, name: &str, pos: Pos) -> Result<Option<Node>, Error> {
        Ok(Some(match name {
            "if" => self.if_tag()?,
            "for" => self.for_tag(pos)?,
            "set" => {
                let (var, _) = self.expect_name()?;
                self.expect_op("=")?;
                let e = self.expr(0)?;
                self.expect_tag_close()?;
                Node::Set(var, e)
            }
            "filter" => {
                let mut chain = Vec::new();
                loop {
                    let (f, fpos) = self.expect_name()?;
                    let args = self.optional_args()?;
                    chain.push((f, args, fpos));
                    if self.is_op("|") {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                self.expect_tag_close()?;
                let (body, _) = self.nodes(&["endfilter"])?;
                self.expect_tag_close()?;
                Node::Filter(chain, body)
            }
            "macro" => {
                self.macro_tag()?;
                return Ok(None);
            }
            "block" => {
                let t = self.next()?;
                let block = match t.tok {
                    Tok::Name(n) => n,
                    Tok::Str(parts) => parts
                        .into_iter()
                        .map(|p| match p {
                            StrPart::Lit(s) => s,
                            StrPart::Expr(s, _) => s,
                        })
                        .collect(),
                    other => {
                        return Err(Error::syntax(
                            format!("expected a block name, found {}", describe(&other)),
                            t.pos,
                        ));
                    }
                };
                self.expect_tag_close()?;
                let (body, _) = self.nodes(&["endblock"])?;
                while !matches!(self.peek_tok(), Some(Tok::TagClose) | None) {
                    self.i += 1;
                }
                self.expect_tag_close()?;
                self.blocks.insert(block.clone(), Arc::new(body));
                Node::Block(block)
            }
            _ if REMOVED_TAGS.contains(&name) => {
                return Err(Error::syntax(
                    format!(
                        "Unexpected tag name \"{name}\": Kestra removes the `{name}` tag from Pebble"
                    ),
                    pos,
                ));
            }
            _ => {
                return Err(Error::syntax(
                    format!("Unexpected tag name \"{name}\""),
                    pos,
                ));
            }
        }))
    }

    fn if_tag(&mut self) -> Result<Node, Error> {
        let mut branches = Vec::new();
        let mut cond = self.expr(0)?;
        self.expect_tag_close()?;
        loop {
            let (body, end) = self.nodes(&["elseif", "else", "endif"])?;
            branches.push((cond, body));
            match end.map(|(n, _)| n).as_deref() {
                Some("elseif") => {
                    cond = self.expr(0)?;
                    self.expect_tag_close()?;
                }
                Some("else") => {
                    self.expect_tag_close()?;
                    let (otherwise, _) = self.nodes(&["endif"])?;
                    self.expect_tag_close()?;
                    return Ok(Node::If(branches, otherwise));
                }
                _ => {
                    self.expect_tag_close()?;
                    return Ok(Node::If(branches, Vec::new()));
                }
            }
        }
    }

    fn for_tag(&mut self, pos: Pos) -> Result<Node, Error> {
        let (var, _) = self.expect_name()?;
        let (kw, kpos) = self.expect_name()?;
        if kw != "in" {
            return Err(Error::syntax(format!("expected `in`, found `{kw}`"), kpos));
        }
        let iter = self.expr(0)?;
        self.expect_tag_close()?;
        let (body, end) = self.nodes(&["else", "endfor"])?;
        self.expect_tag_close()?;
        let otherwise = if end.is_some_and(|(n, _)| n == "else") {
            let (otherwise, _) = self.nodes(&["endfor"])?;
            self.expect_tag_close()?;
            otherwise
        } else {
            Vec::new()
        };
        Ok(Node::For {
            var,
            iter,
            body,
            otherwise,
            pos,
        })
    }

    fn macro_tag(&mut self) -> Result<(), Error> {
        let (name, _) = self.expect_name()?;
        self.expect_op("(")?;
        let mut params = Vec::new();
        while !self.is_op(")") {
            let (param, _) = self.expect_name()?;
            let default = if self.is_op("=") {
                self.i += 1;
                Some(self.expr(0)?)
            } else {
                None
            };
            params.push((param, default));
            if self.is_op(",") {
                self.i += 1;
            } else {
                break;
            }
        }
        self.expect_op(")")?;
        self.expect_tag_close()?;
        let (body, _) = self.nodes(&["endmacro"])?;
        self.expect_tag_close()?;
        self.macros.insert(name, Arc::new(Macro { params, body }));
        Ok(())
    }
}
