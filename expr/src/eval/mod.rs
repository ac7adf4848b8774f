//! The evaluator: strict variables (an undefined name is an error that only
//! `is defined`, `??`, `???` and `default` absorb), Pebble's scoping rules,
//! and a step budget and recursion limit per render.
//!
//! This file holds the renderer's state (scopes, budget, output); `nodes`
//! renders the template tags, loops and macro calls, and `expr`
//! evaluates expressions.

mod expr;
mod nodes;

use std::sync::Arc;

use crate::Engine;
use crate::error::{Error, ErrorKind, Pos};
use crate::lookup::Lookups;
use crate::parser::{Node, Template};
use crate::value::{Map, Value};

/// Macro calls and nested `render()` calls one render may stack.
pub(crate) const MAX_DEPTH: usize = 32;
/// Largest output one render may produce.
const MAX_OUTPUT: usize = 16 * 1024 * 1024;

pub(crate) struct Renderer<'a> {
    pub(crate) engine: &'a Engine,
    pub(crate) root: &'a Map,
    pub(crate) lookups: &'a Lookups,
    template: Arc<Template>,
    frames: Vec<Map>,
    /// Frames below this index are invisible (inside a macro).
    barrier: usize,
    pub(crate) fuel: u64,
    pub(crate) depth: usize,
}

type R<T> = Result<T, Error>;

impl<'a> Renderer<'a> {
    pub(crate) fn new(
        engine: &'a Engine,
        root: &'a Map,
        lookups: &'a Lookups,
        template: Arc<Template>,
        fuel: u64,
    ) -> Self {
        Renderer {
            engine,
            root,
            lookups,
            template,
            frames: vec![Map::new()],
            barrier: 0,
            fuel,
            depth: 0,
        }
    }

    pub(crate) fn render_template(&mut self) -> R<String> {
        let mut out = String::new();
        let template = self.template.clone();
        self.nodes(&template.nodes, &mut out)?;
        Ok(out)
    }

    /// Renders another template source with the variables visible here
    /// (`render()`), sharing this render's budget.
    pub(crate) fn render_nested(&mut self, source: &str, pos: Pos) -> R<String> {
        if !source.contains("{{") && !source.contains("{%") {
            return Ok(source.to_owned());
        }
        if self.depth >= MAX_DEPTH {
            return Err(Error::new(
                ErrorKind::Limit,
                "templates nested too deeply",
                pos,
            ));
        }
        let template = self.engine.parse(source)?;
        let saved = std::mem::replace(&mut self.template, template);
        self.depth += 1;
        let mut out = String::new();
        let nodes = self.template.clone();
        let result = self.nodes(&nodes.nodes, &mut out);
        self.depth -= 1;
        self.template = saved;
        result.map(|()| out)
    }

    /// Charges the budget for work proportional to `n` (items built).
    pub(crate) fn charge(&mut self, n: usize, pos: Pos) -> R<()> {
        let n = n as u64;
        if n > self.fuel {
            self.fuel = 0;
            return self.step(pos);
        }
        self.fuel -= n;
        Ok(())
    }

    pub(crate) fn step(&mut self, pos: Pos) -> R<()> {
        if self.fuel == 0 {
            return Err(Error::new(
                ErrorKind::Limit,
                "the template used up its step budget (is it looping forever?)",
                pos,
            ));
        }
        self.fuel -= 1;
        Ok(())
    }

    /// Every variable visible here, as `_context` and `printContext()` see them.
    pub(crate) fn visible(&self) -> Map {
        let mut all = if self.barrier == 0 {
            self.root.clone()
        } else {
            Map::new()
        };
        for frame in &self.frames[self.barrier..] {
            for (k, v) in frame {
                all.insert(k.clone(), v.clone());
            }
        }
        all
    }

    fn lookup(&self, name: &str) -> Option<Value> {
        for frame in self.frames[self.barrier..].iter().rev() {
            if let Some(v) = frame.get(name) {
                return Some(v.clone());
            }
        }
        if self.barrier == 0
            && let Some(v) = self.root.get(name)
        {
            return Some(v.clone());
        }
        if name == "_context" {
            return Some(Value::map(self.visible()));
        }
        None
    }

    fn assign(&mut self, name: &str, value: Value) {
        for frame in self.frames[self.barrier..].iter_mut().rev() {
            if let Some(slot) = frame.get_mut(name) {
                *slot = value;
                return;
            }
        }
        let top = self.frames.len() - 1;
        self.frames[top].insert(name.to_owned(), value);
    }

    fn write(&self, out: &mut String, text: &str, pos: Pos) -> R<()> {
        if out.len() + text.len() > MAX_OUTPUT {
            return Err(Error::new(
                ErrorKind::Limit,
                format!("the output is larger than {MAX_OUTPUT} bytes"),
                pos,
            ));
        }
        out.push_str(text);
        Ok(())
    }

    pub(crate) fn template_block(&self, name: &str) -> Option<Arc<Vec<Node>>> {
        self.template.blocks.get(name).cloned()
    }
}
