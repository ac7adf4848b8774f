//! The lookup loop: a render stops at a lookup call it has no answer for,
//! names the call, and renders once answered.

use atoll_expr::{Engine, ErrorKind, Lookups};
use serde_json::json;

fn context() -> atoll_expr::Map {
    Engine::context(&json!({"flow": {"namespace": "company.team"}, "name": "API_KEY"}))
}

#[test]
fn a_render_stops_at_each_unanswered_call_and_completes_once_answered() {
    let engine = Engine::new();
    let source = "{{ secret(name) }}-{{ kv('COUNT', namespace=flow.namespace) + 1 }}";
    let mut lookups = Lookups::new();
    let err = engine
        .render_with(source, &context(), &lookups)
        .expect_err("no answer yet");
    assert_eq!(err.kind, ErrorKind::Lookup);
    let call = err.lookup().expect("the call").clone();
    assert_eq!(call.function, "secret");
    assert_eq!(call.text("key").as_deref(), Some("API_KEY"));
    lookups.insert(&call, Ok(json!("s3cr3t")));

    let err = engine
        .render_with(source, &context(), &lookups)
        .expect_err("the second call");
    let call = err.lookup().expect("the call").clone();
    assert_eq!(
        call.to_string(),
        r#"kv(key="COUNT", namespace="company.team")"#
    );
    lookups.insert(&call, Ok(json!(41)));

    assert_eq!(
        engine.render_with(source, &context(), &lookups).as_deref(),
        Ok("s3cr3t-42")
    );
}

#[test]
fn an_answer_that_is_an_error_fails_the_render_with_it() {
    let engine = Engine::new();
    let mut lookups = Lookups::new();
    let source = "{{ secret('NOPE') }}";
    let call = engine
        .render_with(source, &context(), &lookups)
        .expect_err("no answer")
        .lookup()
        .cloned()
        .expect("the call");
    lookups.insert(&call, Err("secret `NOPE` not found".into()));
    let err = engine
        .render_with(source, &context(), &lookups)
        .expect_err("the answer is an error");
    assert_eq!(err.kind, ErrorKind::Render);
    assert!(err.message.contains("secret `NOPE` not found"), "{err}");
}

#[test]
fn typed_answers_keep_their_type_and_file_empty_is_is_file_empty() {
    let engine = Engine::new();
    let mut lookups = Lookups::new();
    let call = engine
        .evaluate_with("{{ fileEmpty('kestra:///a/b.txt') }}", &context(), &lookups)
        .expect_err("no answer")
        .lookup()
        .cloned()
        .expect("the call");
    assert_eq!(call.function, "isFileEmpty");
    lookups.insert(&call, Ok(json!(true)));
    let value = engine
        .evaluate_with(
            "{{ isFileEmpty('kestra:///a/b.txt') }}",
            &context(),
            &lookups,
        )
        .expect("answered");
    assert_eq!(value.to_serde(), json!(true));
}

#[test]
fn file_uri_is_pure_and_refuses_parent_paths() {
    let engine = Engine::new();
    assert_eq!(
        engine
            .render("{{ fileURI('dir/f.py') }}", &context())
            .as_deref(),
        Ok("kestra:///company/team/_files/dir/f.py")
    );
    let err = engine
        .render("{{ fileURI('../x') }}", &context())
        .expect_err("parent path");
    assert!(err.message.contains("not a path inside"), "{err}");
}

#[test]
fn lookups_inside_defaults_are_not_swallowed() {
    let engine = Engine::new();
    let err = engine
        .render("{{ kv('K') ?? 'fallback' }}", &context())
        .expect_err("the lookup must be answered, not defaulted");
    assert_eq!(err.kind, ErrorKind::Lookup);
}
