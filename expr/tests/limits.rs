//! What a hostile or broken template meets: step budget, depth limits,
//! jq guards, and errors that say where and what failed.

use atoll_expr::{Engine, ErrorKind, Map};

fn render(source: &str) -> Result<String, atoll_expr::Error> {
    Engine::new().render(source, &Map::new())
}

#[test]
fn an_endless_loop_runs_out_of_steps() {
    let err = render("{% for i in 0..1000000 %}{% for j in 0..1000000 %}x{% endfor %}{% endfor %}")
        .expect_err("the budget stops it");
    assert_eq!(err.kind, ErrorKind::Limit);
}

#[test]
fn self_recursive_macros_stop() {
    let err =
        render("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}").expect_err("depth limit");
    assert_eq!(err.kind, ErrorKind::Limit);
}

#[test]
fn deeply_nested_expressions_are_rejected_not_overflowing() {
    let source = format!("{{{{ {}1{} }}}}", "(".repeat(5000), ")".repeat(5000));
    let err = render(&source).expect_err("too deep");
    assert_eq!(err.kind, ErrorKind::Syntax);
}

#[test]
fn runaway_jq_programs_are_rejected() {
    for program in [
        "def f: 1 + f; f",
        "repeat(.)",
        "0 | recurse(. + 1)",
        "[.] | until(false; .)",
    ] {
        let err = render(&format!("{{{{ 1 | jq('{program}') }}}}")).expect_err(program);
        assert!(err.message.contains("not allowed"), "{program}: {err}");
    }
    let err = render("{{ 1 | jq('range(20000)') }}").expect_err("output cap");
    assert!(err.message.contains("more than 10000 outputs"), "{err}");
    assert_eq!(
        render("{{ [1, 2] | jq('def double: . * 2; map(double)') | first }}").as_deref(),
        Ok("[2,4]")
    );
}

#[test]
fn errors_name_the_filter_and_the_position() {
    let err = render("line one\n  {{ 'x' | chunk(2) }}").expect_err("chunk needs a list");
    assert!(err.message.contains("filter `chunk`"), "{err}");
    assert_eq!((err.pos.line, err.pos.column), (2, 12));
    let err = render("{{ nope(1) }}").expect_err("unknown function");
    assert!(err.to_string().contains("Unknown function `nope`"), "{err}");
    let err = render("{{ env('X') }}").expect_err("no envs");
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.message.contains("env() needs"), "{err}");
    let err = render("{{ secret('X') }}").expect_err("no answer yet");
    assert_eq!(err.kind, ErrorKind::Lookup);
    assert_eq!(
        err.lookup().map(ToString::to_string).as_deref(),
        Some("secret(key=\"X\")")
    );
}

#[test]
fn strings_cannot_grow_without_bound() {
    let err = render("{% set s = 'xxxxxxxxxxxxxxxx' %}{% for i in 0..40 %}{% set s = s ~ s %}{% endfor %}{{ s | length }}")
        .expect_err("doubling a string 40 times");
    assert_eq!(err.kind, ErrorKind::Limit);
    let err = render(
        "{% set l = [1] %}{% for i in 0..40 %}{% set l = l + l %}{% endfor %}{{ l | length }}",
    )
    .expect_err("doubling a list 40 times");
    assert_eq!(err.kind, ErrorKind::Limit);
}

#[test]
fn jq_ranges_are_bounded() {
    let err = render("{{ 1 | jq('[range(1e12)] | length') }}").expect_err("too large");
    assert!(err.message.contains("more than 1000000 values"), "{err}");
    assert_eq!(
        render("{{ 1 | jq('[range(3)], [range(1; 7; 2)], [range(3; 0; -1)]') }}").as_deref(),
        Ok("[[0,1,2],[1,3,5],[3,2,1]]")
    );
}

#[test]
fn the_step_budget_is_configurable() {
    let engine = Engine::new().with_fuel(50);
    let err = engine
        .render("{% for i in 1..100 %}{{ i }}{% endfor %}", &Map::new())
        .expect_err("50 steps are not enough");
    assert_eq!(err.kind, ErrorKind::Limit);
    assert!(
        Engine::new()
            .render("{% for i in 1..100 %}{{ i }}{% endfor %}", &Map::new())
            .is_ok()
    );
}

#[test]
fn jq_cannot_read_the_instance_environment_or_write_its_logs() {
    for program in ["env", "env.PATH", "halt", "halt_error", "halt_error(1)"] {
        let err = render(&format!("{{{{ 1 | jq('{program}') }}}}")).expect_err(program);
        assert!(
            err.message.contains("not available in Atoll"),
            "{program}: {err}"
        );
    }
    assert_eq!(
        render("{{ 1 | jq('stderr, debug, debug(\"x\"), (stderr_empty), (debug_empty)') }}")
            .as_deref(),
        Ok("[1,1,1]")
    );
}

#[test]
fn values_cannot_nest_without_bound() {
    for source in [
        "{% set x = [] %}{% for i in 0..100000 %}{% set x = [x] %}{% endfor %}{{ x | length }}",
        "{% set x = {} %}{% for i in 0..100000 %}{% set x = {'a': x} %}{% endfor %}{{ x | length }}",
        "{% set x = [1] %}{% for i in 0..100000 %}{% set x = x | chunk(1) %}{% endfor %}{{ x | length }}",
    ] {
        let err = render(source).expect_err(source);
        assert_eq!(err.kind, ErrorKind::Limit, "{source}: {err}");
        assert!(err.message.contains("nest deeper"), "{err}");
    }
    assert_eq!(
        render("{% set x = [] %}{% for i in 0..50 %}{% set x = [x] %}{% endfor %}{{ x | length }}")
            .as_deref(),
        Ok("1")
    );
}

#[test]
fn nested_interpolations_and_date_sections_are_bounded() {
    let mut inner = String::from("1");
    for _ in 0..2000 {
        inner = format!("\"#{{{inner}}}\"");
    }
    let err = render(&format!("{{{{ {inner} }}}}")).expect_err("too deep");
    assert_eq!(err.kind, ErrorKind::Syntax);
    let err = render(&format!("{{{{ now('{}') }}}}", "[".repeat(100_000))).expect_err("too deep");
    assert!(err.message.contains("nest too deeply"), "{err}");
    assert_eq!(
        render(r##"{{ "a#{ "b#{ 1 + 1 }" }" }}"##).as_deref(),
        Ok("ab2")
    );
}
