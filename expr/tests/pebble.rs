//! Pebble behaviours beyond the catalogue that flows rely on: whitespace
//! control on tags, loop variables, scoping, macros, typed evaluation,
//! and syntax errors that point at the problem.

use atoll_expr::{Engine, ErrorKind, Map, Value};
use serde_json::json;

fn render_with(source: &str, context: serde_json::Value) -> Result<String, atoll_expr::Error> {
    Engine::new().render(source, &Engine::context(&context))
}

fn render(source: &str) -> String {
    render_with(source, json!({})).unwrap_or_else(|e| panic!("{source}: {e}"))
}

#[test]
fn whitespace_control_on_tags_strips_newlines() {
    assert_eq!(
        render("a\n  {%- if true -%}\n  yes\n  {%- endif -%}\n  b"),
        "ayesb"
    );
}

#[test]
fn loop_variables_count_from_zero() {
    assert_eq!(
        render(
            "{% for x in ['a', 'b', 'c'] %}{{ loop.index }}{{ loop.revindex }}{{ loop.length }} {% endfor %}"
        ),
        "023 113 203 "
    );
    assert_eq!(
        render("{% for row in [[1, 2], [3]] %}{% for x in row %}{{ x }}{% endfor %};{% endfor %}"),
        "12;3;"
    );
}

#[test]
fn set_inside_a_loop_updates_the_outer_variable() {
    assert_eq!(
        render(
            "{% set seen = [] %}{% for x in [1, 2] %}{% set seen = seen + [x * 10] %}{% endfor %}{{ seen }}"
        ),
        "[10,20]"
    );
}

#[test]
fn macros_see_only_their_arguments() {
    let err = render_with(
        "{% set a = 1 %}{% macro m() %}{{ a }}{% endmacro %}{{ m() }}",
        json!({}),
    )
    .expect_err("a macro does not see the template's variables");
    assert_eq!(err.kind, ErrorKind::Undefined);
    assert_eq!(
        render(
            "{% macro greet(name, greeting='Hello') %}{{ greeting }}, {{ name }}{% endmacro %}{{ greet('Ann') }}/{{ greet('Bob', greeting='Hi') }}"
        ),
        "Hello, Ann/Hi, Bob"
    );
}

#[test]
fn not_binds_tighter_than_and() {
    assert_eq!(render("{{ not true and false }}"), "false");
    assert_eq!(render("{{ not false and true }}"), "true");
    assert_eq!(render("{{ 'a' equals 'a' }}"), "true");
}

#[test]
fn string_literals_unescape_only_their_quote() {
    assert_eq!(render(r#"{{ "say \"hi\"" }}"#), r#"say "hi""#);
    assert_eq!(render(r"{{ 'a\tb' }}"), r"a\tb");
}

#[test]
fn arguments_bind_by_position_or_by_name() {
    assert_eq!(render("{{ 'a.b' | substringAfter(separator='.') }}"), "b");
    let err = render_with("{{ 'a.b' | substringAfter(sep='.') }}", json!({}))
        .expect_err("unknown argument");
    assert!(err.message.contains("has no argument named `sep`"), "{err}");
    let err = render_with("{{ 'a' | upper(1) }}", json!({})).expect_err("too many arguments");
    assert!(
        err.message.contains("`upper` takes at most 0 arguments"),
        "{err}"
    );
}

#[test]
fn syntax_errors_say_where() {
    let err = render_with("ok\n{{ 1 + }}", json!({})).expect_err("missing operand");
    assert_eq!(err.kind, ErrorKind::Syntax);
    assert_eq!(err.pos.line, 2);
    let err = render_with("{% if true %}never closed", json!({})).expect_err("unclosed if");
    assert!(err.message.contains("endif"), "{err}");
    let err = render_with("{{ 'open }}", json!({})).expect_err("unclosed string");
    assert!(err.message.contains("unclosed string"), "{err}");
}

#[test]
fn context_maps_keep_their_order() {
    let mut map = Map::new();
    map.insert("zeta".into(), Value::Int(1));
    map.insert("alpha".into(), Value::Int(2));
    let mut context = Map::new();
    context.insert("m".into(), Value::map(map));
    let out = Engine::new()
        .render("{{ m }} {{ m | keys }}", &context)
        .expect("renders");
    assert_eq!(out, r#"{"zeta":1,"alpha":2} ["zeta","alpha"]"#);
}

#[test]
fn a_single_expression_evaluates_to_a_typed_value() {
    let engine = Engine::new();
    let context = Engine::context(&json!({"n": 41, "items": [1, 2]}));
    assert!(matches!(
        engine.evaluate("{{ n + 1 }}", &context),
        Ok(Value::Long(42))
    ));
    assert!(matches!(engine.evaluate("{{ items }}", &context), Ok(Value::List(l)) if l.len() == 2));
    assert!(
        matches!(engine.evaluate("n = {{ n }}", &context), Ok(Value::String(s)) if &*s == "n = 41")
    );
}

#[test]
fn render_json_renders_every_string() {
    let engine = Engine::new();
    let context = Engine::context(&json!({"name": "x"}));
    let out = engine
        .render_json(
            &json!({"a": ["{{ name }}", 1], "b": {"c": "{{ name | upper }}"}}),
            &context,
        )
        .expect("renders");
    assert_eq!(out, json!({"a": ["x", 1], "b": {"c": "X"}}));
}

#[test]
fn java_methods_and_properties_pebble_reaches() {
    let context = json!({"users": [{"name": "a"}], "s": " Hello ", "m": {"size": "key wins"}});
    let out = render_with(
        "{{ users.size }} {{ users.size() }} {{ users.empty }} {{ s.trim().toUpperCase() }} {{ s.length }} \
         {{ 'a,b'.split is defined }} {{ 'kestra'.substring(1, 3) }} {{ m.size }} {{ m.containsKey('size') }}",
        context.clone(),
    );
    assert_eq!(
        out.as_deref(),
        Ok("1 1 false HELLO 7 false es key wins true")
    );
    let err = render_with("{{ s.getClass() }}", context).expect_err("not on the list");
    assert!(
        err.message.contains("method `getClass` is not available"),
        "{err}"
    );
    let err =
        render_with("{{ users.length }}", json!({"users": []})).expect_err("lists have no length");
    assert_eq!(err.kind, ErrorKind::Undefined);
}

#[test]
fn is_in_compares_text_with_list_items_and_map_keys_or_values() {
    let context = json!({"m": {"a": "x"}, "n": 1});
    let out = render_with(
        "{{ n isIn ['1', 2] }} {{ 'a' isIn m }} {{ 'x' isIn m }} {{ 'b' isIn m }} {{ 'a' isIn 'abc' }} {{ null isIn [null] }}",
        context,
    );
    assert_eq!(out.as_deref(), Ok("true true true false false false"));
}

#[test]
fn kestra_filters_outside_the_documentation() {
    let out = render(
        "{{ 'order-12345-done' | regexExtract('\\d+') }} {{ 'a1b2' | regexExtract('([a-z])(\\d)', 2) }} \
         {{ 'hello world' | regexMatch(regex='wor') }} {{ 'hello world' | regexReplace('o', '0') }} \
         {{ [1, 1, 2] | uniq }} {{ 'x' | uniq }} {{ [1] | jsonEncode }} {{ jsonDecode('[2]')[0] }} \
         {{ isDateAfter('2024-01-02', '2024-01-01T23:00:00Z') }} {{ isDateBefore('2024-01-02T00:00:00+02:00', '2024-01-01T23:00:00Z') }}",
    );
    assert_eq!(out, "12345 1 true hell0 w0rld [1,2] x [1] 2 true true");
}

#[test]
fn the_engine_is_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
    shared::<Value>();
    shared::<atoll_expr::Error>();
}

#[test]
fn verbatim_honours_whitespace_control_and_raw_ignores_it() {
    assert_eq!(
        render("a {%- verbatim -%} {{ x }} {%- endverbatim -%} b"),
        "a{{ x }}b"
    );
    assert_eq!(
        render("a {%- raw -%} {{ x }} {%- endraw -%} b"),
        "a  {{ x }}  b"
    );
    assert_eq!(render("{% raw %}{% if %}{% endraw %}"), "{% if %}");
}

#[test]
fn slugify_follows_kestra() {
    assert_eq!(
        render("{{ 'Café crème_brûlée 2.0!' | slugify }}"),
        "cafe-creme-brulee-20"
    );
    assert_eq!(render("{{ ' -a--b- ' | slugify }}"), "a-b");
}
