//! `jq(expression)` with the jaq crates. As Kestra's filter, it always
//! returns the list of every output; a string input is parsed as JSON,
//! a null input gives null.
//!
//! jaq takes no countermeasures against runaway programs, and a stack
//! overflow aborts the process, so: programs whose own `def`s call
//! themselves are rejected before running, the unbounded generators
//! `repeat`, `while`, `until` and `recurse(f)` fail; at most [`MAX_OUTPUTS`]
//! outputs are collected; the program runs on its own thread with a large
//! stack; `range` refuses more than a million values. What this does not
//! bound: programs that loop or allocate without recursion (`"x" * 1e10`,
//! nested ranges), and values nested very deeply inside jq
//! (`reduce range(100000) as $x (null; [.]) | tojson` overflows jaq's
//! recursive serializer, comparisons and drop, which aborts the process).
//! jaq cannot be interrupted or bounded from outside: closing this needs
//! jq in a child process with resource limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Vars, data, unwrap_valr};
use jaq_json::Val;

use super::{Args, Def, FilterFn, def};
use crate::eval::Renderer;
use crate::value::{Map, Value};

pub(crate) const FILTERS: &[Def<FilterFn>] = &[def("jq", &["expression"], jq)];

/// Outputs one `jq` call may produce.
const MAX_OUTPUTS: usize = 10_000;
/// Stack of the thread jq runs on (address space; pages are only
/// committed when used).
const STACK_SIZE: usize = 256 * 1024 * 1024;

fn jq(_: &mut Renderer<'_>, v: Value, a: &Args) -> Result<Value, String> {
    let program = a.str(0, "expression")?;
    let input = match v {
        Value::Null => return Ok(Value::Null),
        Value::String(s) => crate::builtins::json::parse_json(&s)
            .map_err(|e| format!("Unable to parse jq input as JSON: {e}"))?,
        other => other,
    };
    check_program(&program)?;
    let handle = std::thread::Builder::new()
        .name("jq".into())
        .stack_size(STACK_SIZE)
        .spawn(move || run(&program, &input))
        .map_err(|e| format!("cannot start jq: {e}"))?;
    handle
        .join()
        .map_err(|_| "jq failed unexpectedly".to_string())?
}

type JqFilter = jaq_core::Filter<data::JustLut<Val>>;

/// Compiled programs, by program text (compiling the standard library
/// costs far more than running a typical program).
static COMPILED: OnceLock<Mutex<HashMap<String, Arc<JqFilter>>>> = OnceLock::new();
const COMPILED_CACHE_SIZE: usize = 256;

fn compiled(program: &str) -> Result<Arc<JqFilter>, String> {
    let cache = COMPILED.get_or_init(Mutex::default);
    if let Some(f) = cache.lock().ok().and_then(|c| c.get(program).cloned()) {
        return Ok(f);
    }
    let filter = Arc::new(compile(program)?);
    if let Ok(mut c) = cache.lock() {
        if c.len() >= COMPILED_CACHE_SIZE {
            c.clear();
        }
        c.insert(program.to_owned(), filter.clone());
    }
    Ok(filter)
}

fn compile(program: &str) -> Result<JqFilter, String> {
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs())
        .chain(bounded_defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: program,
                path: (),
            },
        )
        .map_err(|errs| {
            format!(
                "Unable to parse jq value `{program}`: {}",
                errs.iter()
                    .map(|(_, e)| format!("{e:?}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errs| {
            format!(
                "Unable to parse jq value `{program}`: {}",
                errs.iter()
                    .map(|(_, e)| format!("{e:?}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )
        })?;
    Ok(filter)
}

/// Definitions over jaq's standard library. The unbounded generators
/// `repeat`, `while`, `until` and `recurse(f)` fail (the standard
/// library's own uses, like `..`, keep the originals). `range` refuses more than a
/// million values, so `[range(1e12)]` fails at once instead of exhausting
/// memory. `env` would hand a flow the instance's own environment (its
/// database URL, its keys), `halt` would end nothing useful, and
/// `stderr`/`debug` would write into the instance's log stream: all are
/// shadowed (jaq resolves a name to the latest definition, natives
/// included).
const BOUNDED_DEFS: &str = r#"
def repeat(f): error("jq: `repeat` is not allowed in Atoll (it can run without end)");
def while(cond; update): error("jq: `while` is not allowed in Atoll (it can run without end)");
def until(cond; next): error("jq: `until` is not allowed in Atoll (it can run without end)");
def recurse(f): error("jq: `recurse(f)` is not allowed in Atoll (it can run without end); use `..`");
def recurse(f; cond): error("jq: `recurse(f; cond)` is not allowed in Atoll (it can run without end); use `..`");
def env: error("jq: env is not available in Atoll");
def halt: error("jq: halt is not available in Atoll");
def halt($code): error("jq: halt is not available in Atoll");
def halt_error: error("jq: halt_error is not available in Atoll");
def halt_error($code): error("jq: halt_error is not available in Atoll");
def stderr_empty: empty;
def debug_empty: empty;
def stderr: .;
def debug: .;
def debug(msgs): .;
def _unbounded_range($from; $upto; $by): range($from; $upto; $by);
def range($from; $upto; $by):
  if ($by > 0 and ($upto - $from) / $by > 1000000) or ($by < 0 and ($from - $upto) / (0 - $by) > 1000000)
  then error("jq: range would produce more than 1000000 values")
  else _unbounded_range($from; $upto; $by) end;
def range($from; $upto): range($from; $upto; 1);
def range($upto): range(0; $upto);
"#;

fn bounded_defs() -> impl Iterator<Item = jaq_core::load::parse::Def<&'static str>> {
    jaq_core::load::parse(BOUNDED_DEFS, |p| p.defs())
        .unwrap_or_default()
        .into_iter()
}

fn run(program: &str, input: &Value) -> Result<Value, String> {
    let filter = compiled(program)?;
    let ctx = Ctx::<data::JustLut<Val>>::new(&filter.lut, Vars::new([]));
    let mut outputs = Vec::new();
    for out in filter.id.run((ctx, to_val(input))).map(unwrap_valr) {
        let out = out.map_err(|e| format!("Failed to resolve JQ expression `{program}`: {e}"))?;
        if outputs.len() == MAX_OUTPUTS {
            return Err(format!("jq produced more than {MAX_OUTPUTS} outputs"));
        }
        outputs.push(from_val(&out));
    }
    Ok(Value::list(outputs))
}

/// Rejects programs whose own `def`s call themselves (jaq would recurse
/// until the stack overflows). The unbounded generators are shadowed in
/// [`BOUNDED_DEFS`] instead.
fn check_program(program: &str) -> Result<(), String> {
    let code = blank_strings(program);
    let words = words(&code);
    for (i, (at, word)) in words.iter().enumerate() {
        if *word != "def" || code[..*at].ends_with(['.', '$']) {
            continue;
        }
        let Some((name_at, name)) = words.get(i + 1) else {
            continue;
        };
        let body = def_body(&code[name_at + name.len()..]);
        let recursive = body.match_indices(name).any(|(p, _)| {
            let before = body[..p].chars().last();
            let after = body[p + name.len()..].chars().next();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$' || c == '.')
                && !after.is_some_and(|c| c.is_alphanumeric() || c == '_')
        });
        if recursive {
            return Err(format!(
                "jq: the recursive function `{name}` is not allowed (it can run without end)"
            ));
        }
    }
    Ok(())
}

/// The program with the text of its string literals blanked out, so names
/// inside strings are not taken for code (byte offsets are kept).
fn blank_strings(program: &str) -> String {
    let mut out = String::with_capacity(program.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in program.chars() {
        if in_string {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
                out.push('"');
                continue;
            }
            out.extend(std::iter::repeat_n(' ', c.len_utf8()));
        } else {
            in_string = c == '"';
            out.push(c);
        }
    }
    out
}

/// Identifier-like words with their byte offsets.
fn words(code: &str) -> Vec<(usize, &str)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, c) in code.char_indices() {
        let word_char = c.is_alphanumeric() || c == '_';
        match (word_char, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, &code[s..i]));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, &code[s..]));
    }
    out
}

/// The text of a `def` from after its name to its closing `;` (nested
/// `def`s close their own `;` first).
fn def_body(rest: &str) -> &str {
    let mut depth = 0i32;
    let mut pending = 0;
    let mut word = String::new();
    for (i, c) in rest.char_indices() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if word == "def" {
            pending += 1;
        }
        word.clear();
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            ';' if depth == 0 && pending == 0 => return &rest[..i],
            ';' if depth == 0 => pending -= 1,
            _ => {}
        }
    }
    rest
}

fn to_val(v: &Value) -> Val {
    match v {
        Value::Null => Val::Null,
        Value::Bool(b) => Val::from(*b),
        Value::Int(i) => Val::from(*i as isize),
        Value::Long(l) => isize::try_from(*l).map_or(Val::from(*l as f64), Val::from),
        Value::Float(f) => Val::from(f64::from(*f)),
        Value::Double(d) => Val::from(*d),
        Value::BigDecimal(s) | Value::BigInteger(s) => {
            Val::from(s.parse::<f64>().unwrap_or(f64::NAN))
        }
        Value::String(s) => Val::from(s.to_string()),
        Value::List(items) => items.iter().map(to_val).collect(),
        Value::Map(map) => {
            let mut m = jaq_json::Map::default();
            for (k, item) in map.iter() {
                m.insert(Val::from(k.clone()), to_val(item));
            }
            Val::obj(m)
        }
    }
}

fn from_val(v: &Val) -> Value {
    match v {
        Val::Null => Value::Null,
        Val::Bool(b) => Value::Bool(*b),
        Val::Num(n) => match n {
            jaq_json::Num::Int(i) => {
                let i = *i as i64;
                i32::try_from(i).map_or(Value::Long(i), Value::Int)
            }
            jaq_json::Num::Float(f) => Value::Double(*f),
            jaq_json::Num::BigInt(b) => Value::BigInteger(b.to_string().into()),
            jaq_json::Num::Dec(s) => match s.parse::<i64>() {
                Ok(i) => i32::try_from(i).map_or(Value::Long(i), Value::Int),
                Err(_) => Value::Double(s.parse().unwrap_or(f64::NAN)),
            },
        },
        Val::TStr(b) | Val::BStr(b) => Value::from(String::from_utf8_lossy(b).into_owned()),
        Val::Arr(items) => Value::list(items.iter().map(from_val).collect()),
        Val::Obj(map) => {
            let mut out = Map::new();
            for (k, item) in map.iter() {
                let key = match k {
                    Val::TStr(b) | Val::BStr(b) => String::from_utf8_lossy(b).into_owned(),
                    other => other.to_string(),
                };
                out.insert(key, from_val(item));
            }
            Value::map(out)
        }
    }
}
