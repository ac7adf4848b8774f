//! Renders every case of `catalogue.yaml` (Kestra's documented expression
//! language) and compares the output per the case's `match`.
//!
//! The support table `docs/expressions.md` is generated from the results:
//! `ATOLL_EXPR_TABLE=docs/expressions.md cargo test -p atoll-expr --test catalogue`
//! rewrites it; without the variable the test fails when the table is out
//! of date, or when fewer cases pass than the recorded floor.

use std::fmt::Write as _;
use std::path::PathBuf;

use atoll_expr::{Engine, ErrorKind, Lookups, Map, Value};

/// Cases known to pass; raise it as support grows.
const PASSING_FLOOR: usize = 535;

#[derive(Debug)]
struct CaseResult {
    template: String,
    passed: bool,
    /// Why it failed (empty when passed).
    reason: String,
}

#[derive(Debug)]
struct EntryResult {
    name: String,
    kind: String,
    group: String,
    status: String,
    needs: String,
    lookup: String,
    cases: Vec<CaseResult>,
}

fn field<'a>(map: &'a Map, key: &str) -> Option<&'a Value> {
    map.get(key)
}

fn text(map: &Map, key: &str) -> String {
    field(map, key).map(Value::to_print).unwrap_or_default()
}

fn json_eq(a: &str, b: &str) -> bool {
    match (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

fn set_eq(a: &str, b: &str) -> bool {
    let (Ok(serde_json::Value::Array(mut x)), Ok(serde_json::Value::Array(mut y))) = (
        serde_json::from_str::<serde_json::Value>(a),
        serde_json::from_str::<serde_json::Value>(b),
    ) else {
        return false;
    };
    let key = |v: &serde_json::Value| v.to_string();
    x.sort_by_key(key);
    y.sort_by_key(key);
    x == y
}

fn matches(how: &str, expected: &str, actual: &str) -> bool {
    match how {
        "" => expected == actual,
        "json" => json_eq(expected, actual),
        "set" => set_eq(expected, actual),
        "regex" => {
            regex::Regex::new(&format!("^(?:{expected})$")).is_ok_and(|r| r.is_match(actual))
        }
        "lines-unordered" => {
            let mut x: Vec<&str> = expected.lines().collect();
            let mut y: Vec<&str> = actual.lines().collect();
            x.sort_unstable();
            y.sort_unstable();
            x == y
        }
        "json-fragments" => {
            let x: Vec<&str> = expected.split(" // ").collect();
            let y: Vec<&str> = actual.split(" // ").collect();
            x.len() == y.len() && x.iter().zip(&y).all(|(a, b)| json_eq(a, b))
        }
        other => match other.strip_prefix("contains:") {
            Some(s) => actual.contains(s),
            None => false,
        },
    }
}

fn short(s: &str) -> String {
    let one_line = s.replace('\n', "\\n").replace('|', "\\|");
    if one_line.chars().count() > 120 {
        format!("{}…", one_line.chars().take(120).collect::<String>())
    } else {
        one_line
    }
}

/// Renders `template`, answering its lookup calls from the case's
/// `answers` (as the instance answers them from its data).
fn render_answering(
    engine: &Engine,
    template: &str,
    context: &Map,
    answers: &Map,
) -> Result<String, atoll_expr::Error> {
    let mut lookups = Lookups::new();
    loop {
        match engine.render_with(template, context, &lookups) {
            Err(e) if e.kind == ErrorKind::Lookup => {
                let call = e.lookup().expect("a lookup error names its call").clone();
                let answer = answers
                    .get(call.to_string().as_str())
                    .map(Value::to_serde)
                    .ok_or_else(|| format!("the case gives no answer for {call}"));
                if lookups.len() > answers.len() {
                    return Err(e);
                }
                lookups.insert(&call, answer);
            }
            other => return other,
        }
    }
}

fn run_case(engine: &Engine, entry: &Map, case: &Map) -> CaseResult {
    let template = text(case, "template");
    let context = match field(case, "context") {
        Some(Value::Map(m)) => m.as_ref().clone(),
        _ => Map::new(),
    };
    let needs = text(entry, "needs");
    let answers = match field(case, "answers") {
        Some(Value::Map(m)) => m.as_ref().clone(),
        _ => Map::new(),
    };
    let result = render_answering(engine, &template, &context, &answers);
    let fail = |reason: String| CaseResult {
        template: template.clone(),
        passed: false,
        reason,
    };
    if !needs.is_empty() {
        return match result {
            Err(e) if e.kind == ErrorKind::Unavailable => {
                let want = text(case, "error");
                if e.to_string().contains(&want) {
                    CaseResult {
                        template: template.clone(),
                        passed: true,
                        reason: String::new(),
                    }
                } else {
                    fail(format!("error `{e}` does not mention `{want}`"))
                }
            }
            Err(e) => fail(format!("fails without naming the missing feature: {e}")),
            Ok(out) => fail(format!("renders `{out}` although it needs {needs}")),
        };
    }
    if let Some(want) = field(case, "error") {
        let want = want.to_print();
        return match result {
            Err(e) if e.to_string().contains(&want) => CaseResult {
                template: template.clone(),
                passed: true,
                reason: String::new(),
            },
            Err(e) => fail(format!("error `{e}` does not contain `{want}`")),
            Ok(out) => fail(format!("renders `{out}` instead of failing with `{want}`")),
        };
    }
    let expected = text(case, "expected");
    let how = text(case, "match");
    match result {
        Ok(out) if matches(&how, &expected, &out) => CaseResult {
            template: template.clone(),
            passed: true,
            reason: String::new(),
        },
        Ok(out) => fail(format!("renders `{out}`, expected `{expected}`")),
        Err(e) => fail(format!("fails: {e}")),
    }
}

fn run() -> Vec<EntryResult> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/catalogue.yaml");
    let source = std::fs::read_to_string(&path).expect("catalogue.yaml is readable");
    let catalogue: Value = serde_norway::from_str(&source).expect("catalogue.yaml parses");
    let Value::Map(root) = catalogue else {
        panic!("catalogue.yaml is a map")
    };
    let Some(Value::List(entries)) = root.get("entries") else {
        panic!("catalogue.yaml has entries")
    };
    let engine = Engine::new();
    let mut out = Vec::new();
    for entry in entries.iter() {
        let Value::Map(entry) = entry else { continue };
        let Some(Value::List(cases)) = entry.get("cases") else {
            continue;
        };
        let cases = cases
            .iter()
            .filter_map(|c| match c {
                Value::Map(c) => Some(run_case(&engine, entry, c)),
                _ => None,
            })
            .collect();
        out.push(EntryResult {
            name: text(entry, "name"),
            kind: text(entry, "kind"),
            group: text(entry, "group"),
            status: text(entry, "status"),
            needs: text(entry, "needs"),
            lookup: text(entry, "lookup"),
            cases,
        });
    }
    out
}

fn support(e: &EntryResult) -> String {
    let passed = e.cases.iter().filter(|c| c.passed).count();
    let total = e.cases.len();
    if !e.needs.is_empty() {
        return if passed == total {
            format!("not yet: needs {}", e.needs)
        } else {
            format!(
                "not yet: needs {} (wrong error in {} of {total})",
                e.needs,
                total - passed
            )
        };
    }
    if !e.lookup.is_empty() && passed == total {
        return format!("supported (reads {})", e.lookup);
    }
    let verdict = if passed == total {
        "supported"
    } else if passed == 0 {
        "not supported"
    } else {
        "partial"
    };
    match e.status.as_str() {
        "removed-by-kestra" if passed == total => "rejected, as in Kestra".into(),
        "" => verdict.into(),
        status => format!("{verdict} ({status})"),
    }
}

fn table(results: &[EntryResult]) -> String {
    let cases: usize = results.iter().map(|e| e.cases.len()).sum();
    let passed: usize = results
        .iter()
        .map(|e| e.cases.iter().filter(|c| c.passed).count())
        .sum();
    let full = results
        .iter()
        .filter(|e| e.cases.iter().all(|c| c.passed))
        .count();
    let mut md = String::new();
    md.push_str("# Kestra expressions in Atoll: what is supported\n\n");
    md.push_str(
        "Generated by `ATOLL_EXPR_TABLE=docs/expressions.md cargo test -p atoll-expr --test catalogue`\n\
         from `expr/tests/catalogue.yaml` (every documented filter, function, test, operator, tag\n\
         and syntax entry, with cases checked against Kestra's own rendering). Do not edit by hand.\n\
         The design note is `docs/expressions-research.md`.\n\n",
    );
    let _ = writeln!(
        md,
        "**{passed} of {cases} cases pass; {full} of {} entries pass every case.**\n",
        results.len()
    );
    md.push_str(
        "An entry marked *not yet: needs …* depends on a platform feature this instance does not\n\
         have; using it fails with a message naming that feature.\n\n",
    );
    md.push_str("| entry | kind | group | support | cases passing | failing cases |\n");
    md.push_str("| --- | --- | --- | --- | --- | --- |\n");
    for e in results {
        let passed = e.cases.iter().filter(|c| c.passed).count();
        let failing: Vec<String> = e
            .cases
            .iter()
            .filter(|c| !c.passed)
            .map(|c| format!("`{}`: {}", short(&c.template), short(&c.reason)))
            .collect();
        let _ = writeln!(
            md,
            "| `{}` | {} | {} | {} | {passed}/{} | {} |",
            e.name.replace('|', "\\|"),
            e.kind,
            e.group,
            support(e),
            e.cases.len(),
            failing.join("<br>")
        );
    }
    let documented: Vec<&str> = results.iter().map(|e| e.name.as_str()).collect();
    let extra: Vec<String> = atoll_expr::builtin_names()
        .into_iter()
        .filter(|n| !documented.contains(n))
        .map(|n| format!("`{n}`"))
        .collect();
    md.push_str("\n## Beyond the catalogue\n\n");
    let _ = writeln!(
        md,
        "Builtins Kestra has but does not document (read from its sources): {}.\n",
        extra.join(", ")
    );
    md.push_str(
        "Java methods and properties Pebble reaches by reflection, on strings: `length`, `empty`,\n\
         `blank`, `length()`, `isEmpty()`, `isBlank()`, `trim()`, `strip()`, `toUpperCase()`,\n\
         `toLowerCase()`, `contains(s)`, `startsWith(s)`, `endsWith(s)`, `equals(x)`,\n\
         `equalsIgnoreCase(s)`, `indexOf(s)`, `replace(a, b)`, `substring(from[, to])`, `charAt(i)`,\n\
         `toString()`; on lists: `size`, `empty`, `size()`, `isEmpty()`, `contains(x)`, `indexOf(x)`,\n\
         `get(i)`; on maps: `size()`, `isEmpty()`, `containsKey(k)`, `get(k)`, `keySet()`, `values()`.\n\
         Other methods fail naming the method.\n",
    );
    md
}

#[test]
fn catalogue() {
    let results = run();
    let cases: usize = results.iter().map(|e| e.cases.len()).sum();
    let passed: usize = results
        .iter()
        .map(|e| e.cases.iter().filter(|c| c.passed).count())
        .sum();
    let full = results
        .iter()
        .filter(|e| e.cases.iter().all(|c| c.passed))
        .count();
    let partial = results
        .iter()
        .filter(|e| {
            let p = e.cases.iter().filter(|c| c.passed).count();
            p > 0 && p < e.cases.len()
        })
        .count();
    println!(
        "entries: {full} fully passing, {partial} partially, {} failing (of {}); cases: {passed} of {cases} passing",
        results.len() - full - partial,
        results.len()
    );
    for e in &results {
        for c in e.cases.iter().filter(|c| !c.passed) {
            println!(
                "FAIL {:<22} {}  =>  {}",
                e.name,
                short(&c.template),
                short(&c.reason)
            );
        }
    }
    let generated = table(&results);
    let doc = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/expressions.md");
    if let Ok(target) = std::env::var("ATOLL_EXPR_TABLE") {
        let target = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(target);
        std::fs::write(&target, &generated).expect("the table is writable");
    } else {
        let current = std::fs::read_to_string(&doc).unwrap_or_default();
        assert!(
            current == generated,
            "docs/expressions.md is out of date; regenerate it with \
             `ATOLL_EXPR_TABLE=docs/expressions.md cargo test -p atoll-expr --test catalogue`"
        );
    }
    assert!(
        passed >= PASSING_FLOOR,
        "only {passed} cases pass, fewer than the recorded floor {PASSING_FLOOR}"
    );
}
