//! The expression language, with Pebble's operator precedence.

use super::{
    Args, BinOp, Expr, ExprKind, Interp, MAX_DEPTH, Parser, UnOp, describe, parse_expression,
};
use crate::error::Error;
use crate::lexer::{StrPart, Tok};
use crate::value::Value;

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
    pub(super) fn optional_args(&mut self) -> Result<Args, Error> {
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
