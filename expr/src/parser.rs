//! Pebble grammar as Kestra configures it: the template tags and the
//! expression language with Pebble's operator precedence (`~` and `??`
//! bind tighter than `|`; `is` and `contains` looser than arithmetic).

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Pos};
use crate::lexer::{StrPart, Tok, Token, lex, lex_expression};
use crate::value::Value;

/// Deepest expression nesting the parser accepts (parentheses, operands,
/// filter chains and attribute chains all count), so evaluating and
/// dropping the tree cannot overflow the stack.
const MAX_DEPTH: usize = 100;

#[derive(Debug, Clone)]
pub(crate) struct Expr {
    pub kind: ExprKind,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub(crate) enum ExprKind {
    Lit(Value),
    Var(String),
    Interp(Vec<Interp>),
    List(Vec<Expr>),
    Map(Vec<(Expr, Expr)>),
    Attr(Box<Expr>, String),
    Index(Box<Expr>, Box<Expr>),
    /// `value.method(args)`: the Java methods Pebble can call on strings,
    /// lists and maps (a fixed list, see `methods.rs`).
    Method(Box<Expr>, String, Args),
    Call(String, Args),
    Filter(Box<Expr>, String, Args),
    Test {
        value: Box<Expr>,
        name: String,
        args: Args,
        negated: bool,
    },
    Unary(UnOp, Box<Expr>),
    Binary(BinOp, Box<Expr>, Box<Expr>),
    Ternary(Box<Expr>, Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone)]
pub(crate) enum Interp {
    Lit(String),
    Expr(Expr),
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Args {
    pub positional: Vec<Expr>,
    pub named: Vec<(String, Expr)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnOp {
    Not,
    Neg,
    Plus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Or,
    And,
    Contains,
    IsIn,
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Concat,
    Range,
    Coalesce,
    CoalesceUndefined,
}

#[derive(Debug, Clone)]
pub(crate) enum Node {
    Text(String),
    Print(Expr),
    If(Vec<(Expr, Vec<Node>)>, Vec<Node>),
    For {
        var: String,
        iter: Expr,
        body: Vec<Node>,
        otherwise: Vec<Node>,
        pos: Pos,
    },
    Set(String, Expr),
    Filter(Vec<(String, Args, Pos)>, Vec<Node>),
    Block(String),
}

#[derive(Debug)]
pub(crate) struct Macro {
    pub params: Vec<(String, Option<Expr>)>,
    pub body: Vec<Node>,
}

/// A parsed template.
#[derive(Debug)]
pub struct Template {
    pub(crate) nodes: Vec<Node>,
    pub(crate) macros: HashMap<String, Arc<Macro>>,
    pub(crate) blocks: HashMap<String, Arc<Vec<Node>>>,
}

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

pub(crate) fn parse(src: &str) -> Result<Template, Error> {
    let tokens = lex(src)?;
    let mut p = Parser {
        toks: tokens,
        i: 0,
        depth: 0,
        macros: HashMap::new(),
        blocks: HashMap::new(),
    };
    let (nodes, end) = p.nodes(&[])?;
    if let Some((name, pos)) = end {
        return Err(Error::syntax(
            format!("Unexpected tag name \"{name}\""),
            pos,
        ));
    }
    Ok(Template {
        nodes,
        macros: p.macros,
        blocks: p.blocks,
    })
}

/// An interpolated expression (`"#{...}"`), nested `depth` deep in the
/// expression around it.
fn parse_expression(src: &str, pos: Pos, depth: usize) -> Result<Expr, Error> {
    if depth > MAX_DEPTH {
        return Err(Error::syntax("expression nested too deeply", pos));
    }
    let toks = lex_expression(src, pos)?;
    let mut p = Parser {
        toks,
        i: 0,
        depth,
        macros: HashMap::new(),
        blocks: HashMap::new(),
    };
    let e = p.expr(0)?;
    if let Some(t) = p.peek() {
        return Err(Error::syntax(
            format!("unexpected {} in expression", describe(&t.tok)),
            t.pos,
        ));
    }
    Ok(e)
}

/// The tag that ended a body, with its position.
type EndTag = Option<(String, Pos)>;

struct Parser {
    toks: Vec<Token>,
    i: usize,
    depth: usize,
    macros: HashMap<String, Arc<Macro>>,
    blocks: HashMap<String, Arc<Vec<Node>>>,
}

fn describe(tok: &Tok) -> String {
    match tok {
        Tok::Text(_) => "text".into(),
        Tok::PrintOpen => "`{{`".into(),
        Tok::PrintClose => "`}}`".into(),
        Tok::TagOpen => "`{%`".into(),
        Tok::TagClose => "`%}`".into(),
        Tok::Name(n) => format!("`{n}`"),
        Tok::Int(i) => format!("`{i}`"),
        Tok::Float(f) => format!("`{f}`"),
        Tok::Str(_) => "string".into(),
        Tok::Op(o) => format!("`{o}`"),
    }
}

fn binary(tok: &Tok) -> Option<(BinOp, u8)> {
    Some(match tok {
        Tok::Name(n) => match n.as_str() {
            "or" => (BinOp::Or, 10),
            "and" => (BinOp::And, 15),
            "contains" => (BinOp::Contains, 20),
            "isIn" => (BinOp::IsIn, 20),
            "equals" => (BinOp::Eq, 30),
            _ => return None,
        },
        Tok::Op(o) => match *o {
            "==" => (BinOp::Eq, 30),
            "!=" => (BinOp::Ne, 30),
            "<" => (BinOp::Lt, 30),
            ">" => (BinOp::Gt, 30),
            "<=" => (BinOp::Le, 30),
            ">=" => (BinOp::Ge, 30),
            "+" => (BinOp::Add, 40),
            "-" => (BinOp::Sub, 40),
            "*" => (BinOp::Mul, 60),
            "/" => (BinOp::Div, 60),
            "%" => (BinOp::Rem, 60),
            "~" => (BinOp::Concat, 110),
            ".." => (BinOp::Range, 120),
            "??" => (BinOp::Coalesce, 120),
            "???" => (BinOp::CoalesceUndefined, 120),
            _ => return None,
        },
        _ => return None,
    })
}

/// Precedence of `is` and `|`, which take a test or filter name on the right.
const IS_PRECEDENCE: u8 = 20;
const FILTER_PRECEDENCE: u8 = 100;

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.i)
    }

    fn peek_tok(&self) -> Option<&Tok> {
        self.toks.get(self.i).map(|t| &t.tok)
    }

    fn last_pos(&self) -> Pos {
        self.toks
            .get(self.i)
            .or_else(|| self.toks.last())
            .map(|t| t.pos)
            .unwrap_or_default()
    }

    fn next(&mut self) -> Result<Token, Error> {
        let t = self
            .toks
            .get(self.i)
            .cloned()
            .ok_or_else(|| Error::syntax("unexpected end of template", self.last_pos()))?;
        self.i += 1;
        Ok(t)
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Op(o)) if *o == op)
    }

    fn is_name(&self, name: &str) -> bool {
        matches!(self.peek_tok(), Some(Tok::Name(n)) if n == name)
    }

    fn expect_op(&mut self, op: &str) -> Result<(), Error> {
        let t = self.next()?;
        match t.tok {
            Tok::Op(o) if o == op => Ok(()),
            other => Err(Error::syntax(
                format!("expected `{op}`, found {}", describe(&other)),
                t.pos,
            )),
        }
    }

    fn expect_name(&mut self) -> Result<(String, Pos), Error> {
        let t = self.next()?;
        match t.tok {
            Tok::Name(n) => Ok((n, t.pos)),
            other => Err(Error::syntax(
                format!("expected a name, found {}", describe(&other)),
                t.pos,
            )),
        }
    }

    fn expect_tag_close(&mut self) -> Result<(), Error> {
        let t = self.next()?;
        match t.tok {
            Tok::TagClose => Ok(()),
            other => Err(Error::syntax(
                format!("expected `%}}`, found {}", describe(&other)),
                t.pos,
            )),
        }
    }

    /// Nodes until one of the `ends` tags (returned with its position).
    fn nodes(&mut self, ends: &[&str]) -> Result<(Vec<Node>, EndTag), Error> {
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

    fn optional_args(&mut self) -> Result<Args, Error> {
        if self.is_op("(") {
            self.i += 1;
            self.args()
        } else {
            Ok(Args::default())
        }
    }

    /// Arguments after `(` up to and including `)`.
    fn args(&mut self) -> Result<Args, Error> {
        let mut args = Args::default();
        while !self.is_op(")") {
            let named = matches!(self.peek_tok(), Some(Tok::Name(_)))
                && matches!(
                    self.toks.get(self.i + 1).map(|t| &t.tok),
                    Some(Tok::Op("="))
                );
            if named {
                let (name, _) = self.expect_name()?;
                self.i += 1;
                args.named.push((name, self.expr(0)?));
            } else {
                if !args.named.is_empty() {
                    return Err(Error::syntax(
                        "positional argument after a named one",
                        self.last_pos(),
                    ));
                }
                args.positional.push(self.expr(0)?);
            }
            if self.is_op(",") {
                self.i += 1;
            } else {
                break;
            }
        }
        self.expect_op(")")?;
        Ok(args)
    }

    pub(crate) fn expr(&mut self, min: u8) -> Result<Expr, Error> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Error::syntax(
                "expression nested too deeply",
                self.last_pos(),
            ));
        }
        let result = self.expr_inner(min);
        self.depth -= 1;
        result
    }

    fn expr_inner(&mut self, min: u8) -> Result<Expr, Error> {
        let mut left = self.operand()?;
        let mut chain = 0;
        while let Some(tok) = self.peek_tok() {
            chain += 1;
            if self.depth + chain > MAX_DEPTH {
                return Err(Error::syntax(
                    "expression nested too deeply",
                    self.last_pos(),
                ));
            }
            let opos = self.last_pos();
            if matches!(tok, Tok::Op("|")) && FILTER_PRECEDENCE >= min {
                self.i += 1;
                let (name, fpos) = self.expect_name()?;
                let args = self.optional_args()?;
                left = Expr {
                    kind: ExprKind::Filter(Box::new(left), name, args),
                    pos: fpos,
                };
                continue;
            }
            if matches!(tok, Tok::Name(n) if n == "is") && IS_PRECEDENCE >= min {
                self.i += 1;
                let negated = self.is_name("not");
                if negated {
                    self.i += 1;
                }
                let (name, tpos) = self.expect_name()?;
                let args = self.optional_args()?;
                left = Expr {
                    kind: ExprKind::Test {
                        value: Box::new(left),
                        name,
                        args,
                        negated,
                    },
                    pos: tpos,
                };
                continue;
            }
            let Some((op, prec)) = binary(tok) else { break };
            if prec < min {
                break;
            }
            self.i += 1;
            let right = self.expr(prec + 1)?;
            left = Expr {
                kind: ExprKind::Binary(op, Box::new(left), Box::new(right)),
                pos: opos,
            };
        }
        if min == 0 && self.is_op("?") {
            return self.ternary(left);
        }
        Ok(left)
    }

    /// `cond ? a : b`, after the condition.
    fn ternary(&mut self, cond: Expr) -> Result<Expr, Error> {
        let pos = self.last_pos();
        self.i += 1;
        let then = self.expr(0)?;
        self.expect_op(":")?;
        let otherwise = self.expr(0)?;
        Ok(Expr {
            kind: ExprKind::Ternary(Box::new(cond), Box::new(then), Box::new(otherwise)),
            pos,
        })
    }

    /// A unary operator with its operand, or a primary with its postfix
    /// attribute and subscript accesses. `not` binds tighter than `and`
    /// and `or` (Pebble's testNotOperatorPrecedence).
    fn operand(&mut self) -> Result<Expr, Error> {
        let pos = self.last_pos();
        let unary = match self.peek_tok() {
            Some(Tok::Name(n)) if n == "not" => Some((UnOp::Not, 50)),
            Some(Tok::Op("-")) => Some((UnOp::Neg, 200)),
            Some(Tok::Op("+")) => Some((UnOp::Plus, 200)),
            _ => None,
        };
        if let Some((op, prec)) = unary {
            self.i += 1;
            let operand = self.expr(prec)?;
            return Ok(Expr {
                kind: ExprKind::Unary(op, Box::new(operand)),
                pos,
            });
        }
        let primary = self.primary()?;
        self.postfix(primary)
    }

    fn primary(&mut self) -> Result<Expr, Error> {
        let t = self.next()?;
        let pos = t.pos;
        let kind = match t.tok {
            Tok::Int(i) => ExprKind::Lit(Value::Long(i)),
            Tok::Float(f) => ExprKind::Lit(Value::Double(f)),
            Tok::Str(parts) => self.string(parts)?,
            Tok::Name(n) => match n.as_str() {
                "true" | "TRUE" => ExprKind::Lit(Value::Bool(true)),
                "false" | "FALSE" => ExprKind::Lit(Value::Bool(false)),
                "null" | "NULL" | "none" | "NONE" => ExprKind::Lit(Value::Null),
                _ if self.is_op("(") => {
                    self.i += 1;
                    ExprKind::Call(n, self.args()?)
                }
                _ => ExprKind::Var(n),
            },
            Tok::Op("(") => {
                let e = self.expr(0)?;
                self.expect_op(")")?;
                return Ok(e);
            }
            Tok::Op("[") => {
                let mut items = Vec::new();
                while !self.is_op("]") {
                    items.push(self.expr(0)?);
                    if self.is_op(",") {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                self.expect_op("]")?;
                ExprKind::List(items)
            }
            Tok::Op("{") => {
                let mut entries = Vec::new();
                while !self.is_op("}") {
                    let key = self.expr(0)?;
                    self.expect_op(":")?;
                    let value = self.expr(0)?;
                    entries.push((key, value));
                    if self.is_op(",") {
                        self.i += 1;
                    } else {
                        break;
                    }
                }
                self.expect_op("}")?;
                ExprKind::Map(entries)
            }
            other => {
                return Err(Error::syntax(
                    format!("unexpected {} in expression", describe(&other)),
                    pos,
                ));
            }
        };
        Ok(Expr { kind, pos })
    }

    fn string(&mut self, parts: Vec<StrPart>) -> Result<ExprKind, Error> {
        if let [StrPart::Lit(s)] = parts.as_slice() {
            return Ok(ExprKind::Lit(Value::str(s.as_str())));
        }
        let mut out = Vec::new();
        for part in parts {
            out.push(match part {
                StrPart::Lit(s) => Interp::Lit(s),
                StrPart::Expr(src, pos) => {
                    Interp::Expr(parse_expression(&src, pos, self.depth + 1)?)
                }
            });
        }
        Ok(ExprKind::Interp(out))
    }

    fn postfix(&mut self, mut e: Expr) -> Result<Expr, Error> {
        let mut chain = 0;
        loop {
            chain += 1;
            if self.depth + chain > MAX_DEPTH {
                return Err(Error::syntax(
                    "expression nested too deeply",
                    self.last_pos(),
                ));
            }
            if self.is_op(".") {
                let pos = self.last_pos();
                self.i += 1;
                let t = self.next()?;
                let name = match t.tok {
                    Tok::Name(n) => n,
                    Tok::Int(i) => i.to_string(),
                    other => {
                        return Err(Error::syntax(
                            format!("expected an attribute name, found {}", describe(&other)),
                            t.pos,
                        ));
                    }
                };
                if self.is_op("(") {
                    self.i += 1;
                    let args = self.args()?;
                    e = Expr {
                        kind: ExprKind::Method(Box::new(e), name, args),
                        pos,
                    };
                    continue;
                }
                e = Expr {
                    kind: ExprKind::Attr(Box::new(e), name),
                    pos,
                };
            } else if self.is_op("[") {
                let pos = self.last_pos();
                self.i += 1;
                let index = self.expr(0)?;
                self.expect_op("]")?;
                e = Expr {
                    kind: ExprKind::Index(Box::new(e), Box::new(index)),
                    pos,
                };
            } else {
                return Ok(e);
            }
        }
    }
}
