//! Server-side apply: conflicts with other managers, taking fields over
//! (forced) or sharing them (same value), removing what the manager no
//! longer applies, and merging the rest.

use serde_json::{Value, json};

use super::{
    Conflict, Entry, FieldSet, Part, Path, Writer, dotted, entries, field_set, merge_applied,
    remove_at, set_entries, value_at,
};

/// Server-side apply of `applied` (the configuration the manager wants)
/// onto `current` (`None` when creating). Returns the new object.
pub fn apply(
    current: Option<&Value>,
    applied: &Value,
    schema: Option<&Value>,
    writer: &Writer<'_>,
    force: bool,
) -> Result<Value, Vec<Conflict>> {
    let mut list = current.map(entries).unwrap_or_default();
    let mut object = current.cloned().unwrap_or_else(|| json!({}));
    let applied_fields = field_set(applied, schema, writer.part);
    let conflicts = conflicts(&list, &object, applied, &applied_fields, writer);
    if !conflicts.is_empty() && !force {
        return Err(conflicts);
    }
    let sub = writer.subresource();
    let is_own_apply =
        |e: &Entry| e.manager == writer.manager && e.operation == "Apply" && e.subresource == sub;
    // Fields applied with a different value are taken over (forced); with
    // the same value they become shared.
    for e in list.iter_mut().filter(|e| e.subresource == sub) {
        if is_own_apply(e) {
            continue;
        }
        let before = e.fields.len();
        e.fields.retain(|p| {
            if !applied_fields.contains(p) {
                return true;
            }
            value_at(current.unwrap_or(&Value::Null), p) == value_at(applied, p)
        });
        if before != e.fields.len() {
            e.time = writer.now.into();
        }
    }
    remove_dropped(&mut object, &list, &applied_fields, writer);
    let mut to_merge = applied.clone();
    if let Some(m) = to_merge.as_object_mut() {
        match writer.part {
            Part::Status => m.retain(|k, _| k == "status"),
            Part::Main => {
                m.remove("status");
            }
        }
    }
    merge_applied(&mut object, &to_merge, "", schema, false);
    writer.upsert(&mut list, "Apply", applied_fields);
    set_entries(&mut object, &list);
    Ok(object)
}

/// Fields others own (on the same subresource) whose current value
/// differs from the applied one.
fn conflicts(
    list: &[Entry],
    object: &Value,
    applied: &Value,
    applied_fields: &FieldSet,
    writer: &Writer<'_>,
) -> Vec<Conflict> {
    let sub = writer.subresource();
    let mut conflicts = Vec::new();
    for e in list {
        if e.subresource != sub || (e.manager == writer.manager && e.operation == "Apply") {
            continue;
        }
        for p in e.fields.intersection(applied_fields) {
            if value_at(object, p) != value_at(applied, p) {
                conflicts.push(Conflict {
                    manager: e.manager.clone(),
                    field: dotted(p),
                });
            }
        }
    }
    conflicts
}

/// Removes the fields this manager applied before, no longer applies, and
/// nobody else owns.
fn remove_dropped(
    object: &mut Value,
    list: &[Entry],
    applied_fields: &FieldSet,
    writer: &Writer<'_>,
) {
    let sub = writer.subresource();
    let own = |e: &Entry| e.manager == writer.manager && e.operation == "Apply";
    let previous = list
        .iter()
        .find(|e| own(e) && e.subresource == sub)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    let others: FieldSet = list
        .iter()
        .filter(|e| e.subresource == sub && !own(e))
        .flat_map(|e| e.fields.iter().cloned())
        .collect();
    let mut dropped: Vec<&Path> = previous
        .iter()
        .filter(|p| !applied_fields.contains(*p) && !others.contains(*p))
        .filter(|p| !others.iter().any(|o| o.starts_with(p)))
        .collect();
    // A dropped list item (or map) takes its dropped fields with it. Removing
    // those fields first would remove the item's key fields too, and the
    // item could then no longer be found by its key: it would stay, empty.
    let whole: Vec<Path> = dropped.iter().map(|p| (*p).clone()).collect();
    dropped.retain(|p| !whole.iter().any(|w| w.len() < p.len() && p.starts_with(w)));
    // Deepest first, so list items go after their fields.
    dropped.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in dropped {
        remove_at(object, p);
    }
}
