//! Pebble grammar as Kestra configures it: the template tags and the
//! expression language with Pebble's operator precedence (`~` and `??`
//! bind tighter than `|`; `is` and `contains` looser than arithmetic).
//!
//! This file holds the syntax tree, the entry points and the token
//! helpers; `tags` parses the template tags and `expr` the expression
//! language.

mod expr;
mod tags;

use std::collections::HashMap;
use std::sync::Arc;

use crate::error::{Error, Pos};
use crate::lexer::{Tok, Token, lex, lex_expression};
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
}
