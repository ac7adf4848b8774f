use super::*;

fn writer(manager: &str) -> Writer<'_> {
    Writer {
        manager,
        api_version: "v1",
        part: Part::Main,
        now: "2026-01-01T00:00:00Z",
    }
}

#[test]
fn fields_v1_round_trips() {
    let object = json!({"metadata": {"labels": {"a": "1"}}, "spec": {"containers": [{"name": "c", "image": "i"}], "x": [1, 2]}});
    let set = field_set(&object, None, Part::Main);
    let mut back = FieldSet::new();
    from_fields_v1(&to_fields_v1(&set), &mut Vec::new(), &mut back);
    assert_eq!(set, back);
}

#[test]
fn a_dropped_field_is_removed_and_others_fields_stay() {
    let first = json!({"data": {"a": "1", "b": "2"}});
    let obj = apply(None, &first, None, &writer("one"), false).expect("applies");
    let obj = apply(
        Some(&obj),
        &json!({"data": {"c": "3"}}),
        None,
        &writer("two"),
        false,
    )
    .expect("no overlap");
    let obj = apply(
        Some(&obj),
        &json!({"data": {"a": "1"}}),
        None,
        &writer("one"),
        false,
    )
    .expect("applies");
    assert_eq!(obj["data"], json!({"a": "1", "c": "3"}));
}

#[test]
fn a_different_value_owned_by_another_manager_conflicts_unless_forced() {
    let obj = apply(
        None,
        &json!({"data": {"a": "1"}}),
        None,
        &writer("one"),
        false,
    )
    .expect("applies");
    let conflicts = apply(
        Some(&obj),
        &json!({"data": {"a": "2"}}),
        None,
        &writer("two"),
        false,
    )
    .expect_err("conflict");
    assert_eq!(conflicts[0].field, ".data.a");
    let forced = apply(
        Some(&obj),
        &json!({"data": {"a": "2"}}),
        None,
        &writer("two"),
        true,
    )
    .expect("forced");
    assert_eq!(forced["data"]["a"], "2");
    let owners = entries(&forced);
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(owners[0].manager, "two");
}

#[test]
fn an_item_dropped_from_a_keyed_list_is_removed_whole() {
    let schema = json!({"properties": {"spec": {"properties": {"members": {
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["user"],
        "items": {"properties": {"user": {}, "role": {}}},
    }}}}});
    let both = json!({"spec": {"members": [
        {"user": "alice", "role": "Admin"},
        {"user": "bob", "role": "Viewer"},
    ]}});
    let obj = apply(None, &both, Some(&schema), &writer("git"), false).expect("applies");
    let alice = json!({"spec": {"members": [{"user": "alice", "role": "Admin"}]}});
    let obj = apply(Some(&obj), &alice, Some(&schema), &writer("git"), false).expect("applies");
    assert_eq!(obj["spec"]["members"], alice["spec"]["members"]);
}

#[test]
fn applying_the_same_thing_again_changes_nothing() {
    let cfg = json!({"metadata": {"labels": {"x": "y"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
    let obj = apply(None, &cfg, None, &writer("one"), false).expect("applies");
    let again = apply(Some(&obj), &cfg, None, &writer("one"), false).expect("applies");
    assert_eq!(obj, again);
}
