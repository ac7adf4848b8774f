//! Evaluating expressions: operators, attributes, filters, tests and
//! function calls.

use super::{MAX_OUTPUT, R, Renderer};
use crate::builtins::{self, Args as Bound};
use crate::error::{Error, ErrorKind, Pos};
use crate::lookup;
use crate::methods;
use crate::ops::{self, Arith};
use crate::parser::{Args, BinOp, Expr, ExprKind, Interp, UnOp};
use crate::value::{Map, Value};

impl Renderer<'_> {
    pub(crate) fn eval(&mut self, e: &Expr) -> R<Value> {
        self.step(e.pos)?;
        match &e.kind {
            ExprKind::Lit(v) => Ok(v.clone()),
            ExprKind::Var(name) => self
                .lookup(name)
                .ok_or_else(|| Error::undefined(name, e.pos)),
            ExprKind::Interp(parts) => {
                let mut s = String::new();
                for part in parts {
                    match part {
                        Interp::Lit(l) => s.push_str(l),
                        Interp::Expr(x) => s.push_str(&self.eval(x)?.to_print()),
                    }
                }
                Ok(Value::from(s))
            }
            ExprKind::List(items) => {
                let v = Value::list(items.iter().map(|i| self.eval(i)).collect::<R<_>>()?);
                check_nesting(&v, e.pos)?;
                Ok(v)
            }
            ExprKind::Map(entries) => {
                let mut map = Map::new();
                for (k, v) in entries {
                    let key = self.eval(k)?.to_print();
                    map.insert(key, self.eval(v)?);
                }
                let v = Value::map(map);
                check_nesting(&v, e.pos)?;
                Ok(v)
            }
            ExprKind::Attr(obj, name) => {
                let base = self.eval(obj)?;
                attribute(&base, &Value::from(name.as_str()), name, e.pos)
                    .or_else(|err| methods::property(&base, name).ok_or(err))
            }
            ExprKind::Method(obj, name, args) => self.method(obj, name, args, e.pos),
            ExprKind::Index(obj, index) => {
                let base = self.eval(obj)?;
                let key = self.eval(index)?;
                let label = key.to_print();
                attribute(&base, &key, &label, e.pos)
            }
            ExprKind::Call(name, args) => self.call(name, args, e.pos),
            ExprKind::Filter(input, name, args) => {
                let v = if name == "default" {
                    match self.eval(input) {
                        Err(err) if err.is_undefined() => Value::Null,
                        other => other?,
                    }
                } else {
                    self.eval(input)?
                };
                self.apply_filter(name, v, args, e.pos)
            }
            ExprKind::Test {
                value,
                name,
                args,
                negated,
            } => {
                let result = self.test(value, name, args, e.pos)?;
                Ok(Value::Bool(result != *negated))
            }
            ExprKind::Unary(op, operand) => self.unary(*op, operand, e.pos),
            ExprKind::Binary(op, a, b) => self.binary(*op, a, b, e.pos),
            ExprKind::Ternary(c, a, b) => {
                let cond = self.eval(c)?;
                if ops::truthy(&cond).map_err(|m| Error::render(m, c.pos))? {
                    self.eval(a)
                } else {
                    self.eval(b)
                }
            }
        }
    }

    fn method(&mut self, obj: &Expr, name: &str, args: &Args, pos: Pos) -> R<Value> {
        if !args.named.is_empty() {
            return Err(Error::render(
                format!("method `{name}` takes no named arguments"),
                pos,
            ));
        }
        let base = self.eval(obj)?;
        let args = args
            .positional
            .iter()
            .map(|a| self.eval(a))
            .collect::<R<Vec<_>>>()?;
        methods::call(&base, name, &args).map_err(|m| Error::render(m, pos))
    }

    fn unary(&mut self, op: UnOp, operand: &Expr, pos: Pos) -> R<Value> {
        let v = self.eval(operand)?;
        match op {
            UnOp::Not => Ok(Value::Bool(
                !ops::truthy(&v).map_err(|m| Error::render(m, pos))?,
            )),
            UnOp::Neg => ops::negate(&v).map_err(|m| Error::render(m, pos)),
            UnOp::Plus if v.is_number() => Ok(v),
            UnOp::Plus => Err(Error::render(
                "invalid operands for mathematical operation",
                pos,
            )),
        }
    }

    fn binary(&mut self, op: BinOp, a: &Expr, b: &Expr, pos: Pos) -> R<Value> {
        let err = |m: String| Error::render(m, pos);
        match op {
            BinOp::Coalesce => {
                return match self.eval(a) {
                    Ok(Value::Null) => self.eval(b),
                    Err(e) if e.is_undefined() => self.eval(b),
                    other => other,
                };
            }
            BinOp::CoalesceUndefined => {
                return match self.eval(a) {
                    Err(e) if e.is_undefined() => self.eval(b),
                    other => other,
                };
            }
            BinOp::And => {
                let x = self.eval(a)?;
                if !ops::truthy(&x).map_err(err)? {
                    return Ok(Value::Bool(false));
                }
                let y = self.eval(b)?;
                return Ok(Value::Bool(ops::truthy(&y).map_err(err)?));
            }
            BinOp::Or => {
                let x = self.eval(a)?;
                if ops::truthy(&x).map_err(err)? {
                    return Ok(Value::Bool(true));
                }
                let y = self.eval(b)?;
                return Ok(Value::Bool(ops::truthy(&y).map_err(err)?));
            }
            _ => {}
        }
        let x = self.eval(a)?;
        let y = self.eval(b)?;
        let cmp = |want: fn(std::cmp::Ordering) -> bool| -> R<Value> {
            Ok(Value::Bool(
                ops::compare(&x, &y).map_err(err)?.is_some_and(want),
            ))
        };
        match op {
            BinOp::Eq => Ok(Value::Bool(x.java_eq(&y))),
            BinOp::Ne => Ok(Value::Bool(!x.java_eq(&y))),
            BinOp::Lt => cmp(|o| o.is_lt()),
            BinOp::Gt => cmp(|o| o.is_gt()),
            BinOp::Le => cmp(|o| o.is_le()),
            BinOp::Ge => cmp(|o| o.is_ge()),
            BinOp::Add => {
                let v = ops::add(&x, &y).map_err(err)?;
                self.charge_built(&v, pos)?;
                Ok(v)
            }
            BinOp::Sub => ops::arith(Arith::Sub, &x, &y).map_err(err),
            BinOp::Mul => ops::arith(Arith::Mul, &x, &y).map_err(err),
            BinOp::Div => ops::arith(Arith::Div, &x, &y).map_err(err),
            BinOp::Rem => ops::arith(Arith::Rem, &x, &y).map_err(err),
            BinOp::Concat => {
                let v = Value::from(format!("{}{}", x.to_print(), y.to_print()));
                self.charge_built(&v, pos)?;
                Ok(v)
            }
            BinOp::Range => {
                let v = ops::range(&x, &y, 1).map_err(err)?;
                self.charge_built(&v, pos)?;
                Ok(v)
            }
            BinOp::Contains => Ok(Value::Bool(ops::contains(&x, &y).map_err(err)?)),
            BinOp::IsIn => Ok(Value::Bool(ops::is_in(&x, &y))),
            BinOp::And | BinOp::Or | BinOp::Coalesce | BinOp::CoalesceUndefined => {
                unreachable!("handled above")
            }
        }
    }

    fn test(&mut self, value: &Expr, name: &str, args: &Args, pos: Pos) -> R<bool> {
        if name == "defined" {
            return match self.eval(value) {
                Ok(v) => Ok(!v.is_null()),
                Err(e) if e.is_undefined() => Ok(false),
                Err(e) => Err(e),
            };
        }
        let Some(test) = builtins::test(name) else {
            return Err(Error::render(format!("Unknown test `{name}`"), pos));
        };
        let v = self.eval(value)?;
        let bound = self.bind(test.params, args, "test", name, pos)?;
        (test.f)(&v, &bound).map_err(|m| Error::render(format!("test `{name}`: {m}"), pos))
    }

    pub(crate) fn apply_filter(
        &mut self,
        name: &str,
        input: Value,
        args: &Args,
        pos: Pos,
    ) -> R<Value> {
        let Some(filter) = builtins::filter(name) else {
            let message = match builtins::removed_filter(name) {
                Some(why) => format!("Unknown filter `{name}`: {why}"),
                None => format!("Unknown filter `{name}`"),
            };
            return Err(Error::render(message, pos));
        };
        let bound = self.bind(filter.params, args, "filter", name, pos)?;
        let v = (filter.f)(self, input, &bound).map_err(|m| wrap(m, "filter", name, pos))?;
        self.charge_built(&v, pos)?;
        Ok(v)
    }

    fn call(&mut self, name: &str, args: &Args, pos: Pos) -> R<Value> {
        if let Some(m) = self.template.macros.get(name).cloned() {
            return self.call_macro(name, &m, args, pos);
        }
        if let Some(params) = lookup::params(name) {
            let bound = self.bind(params, args, "function", name, pos)?;
            let call = lookup::call(name, params, &bound.0);
            return match self.lookups.get(&call) {
                Some(Ok(v)) => Ok(v.clone()),
                Some(Err(message)) => Err(wrap(message.clone(), "function", name, pos)),
                None => Err(Error::needs_lookup(call, pos)),
            };
        }
        if name == "fileURI" {
            let bound = self.bind(&["path", "namespace"], args, "function", name, pos)?;
            return self
                .file_uri(&bound)
                .map_err(|m| wrap(m, "function", name, pos));
        }
        if let Some(feature) = builtins::needs(name) {
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("{name}() needs {feature}, which this instance does not have yet"),
                pos,
            ));
        }
        let Some(function) = builtins::function(name) else {
            let message = if name == "parent" {
                "Unknown function `parent`: Kestra removes template inheritance (`extends`)".into()
            } else {
                format!("Unknown function `{name}`")
            };
            return Err(Error::render(message, pos));
        };
        let bound = self.bind(function.params, args, "function", name, pos)?;
        let v = (function.f)(self, &bound).map_err(|m| wrap(m, "function", name, pos))?;
        self.charge_built(&v, pos)?;
        Ok(v)
    }
    fn bind(&mut self, params: &[&str], args: &Args, kind: &str, name: &str, pos: Pos) -> R<Bound> {
        let variadic = params.first() == Some(&"*");
        let mut values: Vec<Option<Value>> = vec![None; if variadic { 0 } else { params.len() }];
        for (i, e) in args.positional.iter().enumerate() {
            let v = self.eval(e)?;
            if variadic {
                values.push(Some(v));
            } else if i < params.len() {
                values[i] = Some(v);
            } else {
                return Err(Error::render(
                    format!("{kind} `{name}` takes at most {} arguments", params.len()),
                    e.pos,
                ));
            }
        }
        for (arg, e) in &args.named {
            let Some(i) = params.iter().position(|p| p == arg) else {
                return Err(Error::render(
                    format!("{kind} `{name}` has no argument named `{arg}`"),
                    pos,
                ));
            };
            values[i] = Some(self.eval(e)?);
        }
        Ok(Bound(values))
    }

    /// Values built by operators, filters and functions cost one step per
    /// list item and per KiB of text; no string may outgrow the output.
    fn charge_built(&mut self, v: &Value, pos: Pos) -> R<()> {
        match v {
            Value::List(items) => {
                check_nesting(v, pos)?;
                self.charge(items.len(), pos)
            }
            Value::Map(_) => check_nesting(v, pos),
            Value::String(s) if s.len() > MAX_OUTPUT => Err(Error::new(
                ErrorKind::Limit,
                format!("a string grew larger than {MAX_OUTPUT} bytes"),
                pos,
            )),
            Value::String(s) => self.charge(s.len() / 1024, pos),
            _ => Ok(()),
        }
    }
}

/// Deepest nesting of lists and maps a template may build (as deep as
/// JSON parsing accepts), so printing and dropping values cannot
/// overflow the stack.
pub(crate) const MAX_NESTING: usize = 128;

fn check_nesting(v: &Value, pos: Pos) -> R<()> {
    if nests_deeper(v, MAX_NESTING) {
        return Err(Error::new(
            ErrorKind::Limit,
            format!("lists and maps nest deeper than {MAX_NESTING} levels"),
            pos,
        ));
    }
    Ok(())
}

/// Whether `v` has containers nested more than `levels` deep (the walk
/// itself goes no deeper than that).
fn nests_deeper(v: &Value, levels: usize) -> bool {
    let children: Box<dyn Iterator<Item = &Value>> = match v {
        Value::List(items) => Box::new(items.iter()),
        Value::Map(map) => Box::new(map.values()),
        _ => return false,
    };
    if levels == 0 {
        return true;
    }
    let mut children = children.peekable();
    children.peek().is_some() && children.any(|c| nests_deeper(c, levels - 1))
}

impl Renderer<'_> {
    /// `fileURI(path)`: the `kestra:///` URI of a namespace file of the
    /// flow's namespace (or of `namespace`); `..` segments are refused.
    fn file_uri(&self, bound: &Bound) -> Result<Value, String> {
        let path = bound.str(0, "path")?;
        let namespace = match bound.opt_str(1) {
            Some(ns) => ns,
            None => match self.root.get("flow").and_then(|f| match f {
                Value::Map(m) => m.get("namespace").cloned(),
                _ => None,
            }) {
                Some(ns) => ns.to_print(),
                None => return Err("there is no `flow.namespace` to find the file in".into()),
            },
        };
        let path = path.trim_start_matches('/');
        if path.is_empty() || path.split('/').any(|s| s == ".." || s == ".") {
            return Err(format!("`{path}` is not a path inside the namespace files"));
        }
        Ok(Value::from(lookup::file_uri(&namespace, path)))
    }
}

fn wrap(message: String, kind: &str, name: &str, pos: Pos) -> Error {
    Error::render(format!("{kind} `{name}` failed: {message}"), pos)
}

/// `a.b` and `a[b]`: map keys, list indexes; anything missing is undefined.
fn attribute(base: &Value, key: &Value, label: &str, pos: Pos) -> R<Value> {
    let found = match base {
        Value::Map(map) => map.get(key.to_print().as_str()).cloned(),
        Value::List(items) => {
            let index = key
                .as_i64()
                .or_else(|| key.as_str().and_then(|s| s.parse().ok()));
            index
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| items.get(i).cloned())
        }
        _ => None,
    };
    found.ok_or_else(|| {
        let mut e = Error::undefined(label, pos);
        if base.is_null() {
            e.message = format!("Unable to find `{label}` on a null value");
        }
        e
    })
}
