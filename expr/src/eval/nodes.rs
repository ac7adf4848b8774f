//! Rendering template nodes: prints, `if`, `for` loops, `set`, `filter`
//! blocks and macro calls.

use super::{MAX_DEPTH, R, Renderer};
use crate::error::{Error, ErrorKind, Pos};
use crate::ops;
use crate::parser::{Args, Expr, Macro, Node};
use crate::value::{Map, Value};

impl Renderer<'_> {
    pub(crate) fn nodes(&mut self, nodes: &[Node], out: &mut String) -> R<()> {
        for node in nodes {
            self.node(node, out)?;
        }
        Ok(())
    }

    fn node(&mut self, node: &Node, out: &mut String) -> R<()> {
        match node {
            Node::Text(t) => self.write(out, t, Pos::default()),
            Node::Print(e) => {
                let v = self.eval(e)?;
                self.write(out, &v.to_print(), e.pos)
            }
            Node::If(branches, otherwise) => {
                for (cond, body) in branches {
                    let v = self.eval(cond)?;
                    let yes = match v {
                        Value::Null => {
                            return Err(Error::render(
                                "null value given to if statement",
                                cond.pos,
                            ));
                        }
                        Value::List(_) | Value::Map(_) => {
                            return Err(Error::render(
                                format!(
                                    "Unsupported value type {} in an if statement",
                                    v.class_name()
                                ),
                                cond.pos,
                            ));
                        }
                        other => ops::truthy(&other).map_err(|m| Error::render(m, cond.pos))?,
                    };
                    if yes {
                        return self.nodes(body, out);
                    }
                }
                self.nodes(otherwise, out)
            }
            Node::For {
                var,
                iter,
                body,
                otherwise,
                pos,
            } => self.for_loop(var, iter, body, otherwise, *pos, out),
            Node::Set(name, e) => {
                let v = self.eval(e)?;
                self.assign(name, v);
                Ok(())
            }
            Node::Filter(chain, body) => {
                let mut inner = String::new();
                self.nodes(body, &mut inner)?;
                let mut v = Value::from(inner);
                for (name, args, pos) in chain {
                    v = self.apply_filter(name, v, args, *pos)?;
                }
                self.write(out, &v.to_print(), Pos::default())
            }
            Node::Block(name) => {
                let Some(body) = self.template.blocks.get(name).cloned() else {
                    return Ok(());
                };
                self.nodes(&body, out)
            }
        }
    }

    fn for_loop(
        &mut self,
        var: &str,
        iter: &Expr,
        body: &[Node],
        otherwise: &[Node],
        pos: Pos,
        out: &mut String,
    ) -> R<()> {
        let items: Vec<Value> = match self.eval(iter)? {
            Value::Null => Vec::new(),
            Value::List(items) => items.as_ref().clone(),
            Value::Map(map) => map
                .iter()
                .map(|(k, v)| {
                    let mut entry = Map::new();
                    entry.insert("key".into(), Value::from(k.as_str()));
                    entry.insert("value".into(), v.clone());
                    Value::map(entry)
                })
                .collect(),
            Value::String(s) => s.chars().map(|c| Value::from(c.to_string())).collect(),
            other => {
                return Err(Error::render(
                    format!("cannot loop over a {}", other.type_name()),
                    iter.pos,
                ));
            }
        };
        if items.is_empty() {
            return self.nodes(otherwise, out);
        }
        let length = items.len();
        self.frames.push(Map::new());
        let mut result = Ok(());
        for (index, item) in items.into_iter().enumerate() {
            if let Err(e) = self.step(pos) {
                result = Err(e);
                break;
            }
            let mut lp = Map::new();
            lp.insert("index".into(), Value::Long(index as i64));
            lp.insert("revindex".into(), Value::Long((length - index - 1) as i64));
            lp.insert("length".into(), Value::Long(length as i64));
            lp.insert("first".into(), Value::Bool(index == 0));
            lp.insert("last".into(), Value::Bool(index + 1 == length));
            let top = self.frames.len() - 1;
            self.frames[top].insert("loop".into(), Value::map(lp));
            self.frames[top].insert(var.to_owned(), item);
            if let Err(e) = self.nodes(body, out) {
                result = Err(e);
                break;
            }
        }
        self.frames.pop();
        result
    }

    pub(super) fn call_macro(&mut self, name: &str, m: &Macro, args: &Args, pos: Pos) -> R<Value> {
        if self.depth >= MAX_DEPTH {
            return Err(Error::new(
                ErrorKind::Limit,
                format!("macro `{name}` nested too deeply"),
                pos,
            ));
        }
        if args.positional.len() > m.params.len() {
            return Err(Error::render(
                format!("macro `{name}` takes {} arguments", m.params.len()),
                pos,
            ));
        }
        let mut frame = Map::new();
        for (i, (param, default)) in m.params.iter().enumerate() {
            let arg = match args.positional.get(i) {
                Some(e) => Some(e),
                None => args.named.iter().find(|(n, _)| n == param).map(|(_, e)| e),
            };
            let v = match (arg, default) {
                (Some(e), _) => self.eval(e)?,
                (None, Some(d)) => self.eval(d)?,
                (None, None) => Value::Null,
            };
            frame.insert(param.clone(), v);
        }
        self.frames.push(frame);
        let saved = std::mem::replace(&mut self.barrier, self.frames.len() - 1);
        self.depth += 1;
        let mut out = String::new();
        let result = self.nodes(&m.body, &mut out);
        self.depth -= 1;
        self.barrier = saved;
        self.frames.pop();
        result.map(|()| Value::from(out))
    }
}
