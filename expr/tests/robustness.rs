//! Odd and hostile inputs end in an error or an output, never a panic.

use atoll_expr::{Engine, Map};

#[test]
fn odd_inputs_never_panic() {
    let engine = Engine::new();
    let context = Map::new();
    let sources = [
        "{{",
        "{%",
        "{#",
        "}}",
        "{{ }}",
        "{% %}",
        "{{ ( }}",
        "{{ [ }}",
        "{{ { }}",
        "{{ ) }}",
        "{{ 'é' ~ 'ü' | upper }}",
        "{{ -9223372036854775807 - 10 }}",
        "{{ 9223372036854775807 + 1 }}",
        "{{ 99999999999999999999 }}",
        "{{ (-9223372036854775807 - 1) / -1 }}",
        "{{ (-9223372036854775807 - 1) % -1 }}",
        "{{ 9223372036854775806..9223372036854775807 }}",
        "{{ range(-9223372036854775807, 9223372036854775807) }}",
        "{{ randomInt(-9223372036854775807, 9223372036854775807) is defined }}",
        "{{ '99-99-9999 99:99' | date('yyyy', existingFormat='dd-MM-yyyy HH:mm') }}",
        "{{ '9999999999-01-01' | date('yyyy', existingFormat='yyyyyyyyyy-MM-dd') }}",
        "{{ '2024-01-01 10:00:00.1234567891234' | date('SSS', existingFormat='yyyy-MM-dd HH:mm:ss.SSSSSSSSSSSSS') }}",
        "{{ 'x' | date('qqqqqq QQQQ') }}",
        "{{ now('[[[') }}",
        "{{ now(\"'\") }}",
        "{{ now('ppp') }}",
        "{{ 'é' | abbreviate(1) }}",
        "{{ 'ééé' | slice(1, 2) }}",
        "{{ 'a' | slice(5, 1) }}",
        "{{ 'a' | indent(-1) }}",
        "{{ 'é' | substringAfter('') }}",
        "{{ fromIon('{a:') }}",
        "{{ fromIon('\"é') }}",
        "{{ fromJson('[') }}",
        "{{ yaml('{') }}",
        "{{ 'é' | base64decode }}",
        "{{ '%E9' | urldecode }}",
        "{{ [1, 'a'] | sort }}",
        "{{ 1 | jq('.[') }}",
        "{{ '[' | jq('.') }}",
        "{{ {} | jq('error(\"boom\")') }}",
        "{{ 1 | jq('def') }}",
        "{% raw %}",
        "{% verbatim %}{{ x }}",
        "{% for %}",
        "{% for x in %}",
        "{% set %}",
        "{% macro %}",
        "{% block %}",
        "{% filter %}x{% endfilter %}",
        "{% endif %}",
        "{% if 1 %}{% else %}{% else %}{% endif %}",
        "{{ \"#{\" }}",
        "{{ \"#{ 1 + }\" }}",
        "{{ 'a' | numberFormat('#,##0.00;(#)') }}",
        "{{ 1e5 }}",
    ];
    for source in sources {
        let _ = engine.render(source, &context);
    }
}

#[test]
fn hostile_documents_fail_cleanly() {
    let engine = Engine::new();
    let mut context = Map::new();
    let deep_yaml = format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000));
    let deep_json = deep_yaml.clone();
    let laughs = "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n";
    context.insert("deepYaml".into(), deep_yaml.into());
    context.insert("deepJson".into(), deep_json.into());
    context.insert("laughs".into(), laughs.into());
    assert!(engine.render("{{ yaml(deepYaml) }}", &context).is_err());
    assert!(engine.render("{{ fromJson(deepJson) }}", &context).is_err());
    assert!(engine.render("{{ deepJson | jq('.') }}", &context).is_err());
    assert!(
        engine
            .render("{{ yaml(laughs) | length }}", &context)
            .is_err()
    );
}
