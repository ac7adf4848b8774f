//! Kestra's query filters, as its clients send them to the `/by-query`
//! endpoints and the searches: `filters[field][OPERATION]=value` (labels as
//! `filters[labels][EQUALS][key]=value`), beside the older plain
//! parameters (`namespace`, `flowId`, `state`, `labels=key:value`).
//!
//! A filter this instance cannot apply answers 400 naming it: a bulk action
//! must never act on more than its caller selected.

use super::inputs::{form_pairs, parse_labels};
use super::{ApiError, ApiResult};
use crate::execution::{Execution, State as ExecState};
use crate::flow::Label;
use crate::store::{ExecutionFilter, MAX_LABEL_FILTERS};

/// One `filters[field][OPERATION]` leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Leaf {
    pub field: String,
    pub operation: String,
    /// The map key of `filters[labels][EQUALS][key]`.
    pub key: Option<String>,
    pub value: String,
}

fn invalid_filter(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalidFilter", message)
}

/// The bracketed segments of `filters[a][b][c]`, or `None` for another name.
fn segments(name: &str) -> Option<Vec<&str>> {
    let rest = name.strip_prefix("filters")?;
    let mut out = Vec::new();
    let mut rest = rest;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        out.push(&inner[..end]);
        rest = &inner[end + 1..];
    }
    Some(out)
}

/// A field as Kestra names it, whatever its case (1.x clients send
/// `flowid`, models `FLOW_ID`); unknown fields are kept as given.
fn canonical(field: &str) -> String {
    let folded: String = field
        .chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    let known = [
        "namespace",
        "flowId",
        "state",
        "labels",
        "scope",
        "triggerId",
        "q",
    ];
    if folded == "query" {
        return "q".into();
    }
    known
        .iter()
        .find(|k| k.to_ascii_lowercase() == folded)
        .map_or_else(|| field.to_owned(), |k| (*k).to_owned())
}

/// The pairs of a query string that are not filters.
type OtherPairs = Vec<(String, String)>;

/// Every `filters[...]` leaf of a raw query string, and the other pairs.
pub(super) fn parse(raw: Option<&str>) -> ApiResult<(Vec<Leaf>, OtherPairs)> {
    let pairs = form_pairs(raw.unwrap_or_default().as_bytes())
        .ok_or_else(|| invalid_filter("the query string is not URL-encoded"))?;
    let mut leaves = Vec::new();
    let mut others = Vec::new();
    for (name, value) in pairs {
        let Some(parts) = segments(&name) else {
            others.push((name, value));
            continue;
        };
        match parts.as_slice() {
            [field, operation] => leaves.push(Leaf {
                field: canonical(field),
                operation: operation.to_ascii_uppercase(),
                key: None,
                value,
            }),
            [field, operation, key] if canonical(field) == "labels" => leaves.push(Leaf {
                field: canonical(field),
                operation: operation.to_ascii_uppercase(),
                key: Some((*key).to_owned()),
                value,
            }),
            [logical, ..] if *logical == "and" || *logical == "or" => {
                return Err(invalid_filter(format!(
                    "{name}: filter groups (and/or) are not supported; send plain filters[field][OPERATION] filters"
                )));
            }
            _ => {
                return Err(invalid_filter(format!(
                    "{name}: filters are written filters[field][OPERATION]"
                )));
            }
        }
    }
    Ok((leaves, others))
}

fn unsupported(leaf: &Leaf, what: &str) -> ApiError {
    invalid_filter(format!(
        "filters[{}][{}]: {what}",
        leaf.field, leaf.operation
    ))
}

/// Which executions a `/by-query` call selects.
#[derive(Debug, Clone, Default)]
pub(super) struct ExecutionSelection {
    /// What the store is asked (its namespace is a prefix).
    pub filter: ExecutionFilter,
    /// `filters[namespace][EQUALS]`: only this namespace, not those below.
    pub exact_namespace: Option<String>,
}

impl ExecutionSelection {
    /// Whether a stored execution the filter returned is selected.
    pub fn keeps(&self, execution: &Execution) -> bool {
        self.exact_namespace
            .as_ref()
            .is_none_or(|ns| *ns == execution.namespace)
    }
}

fn states(text: &str) -> ApiResult<Vec<ExecState>> {
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| ExecState::parse(s).ok_or_else(|| invalid_filter(format!("unknown state {s}"))))
        .collect()
}

fn label_of(leaf: &Leaf) -> ApiResult<Vec<Label>> {
    match &leaf.key {
        Some(key) => Ok(vec![Label {
            key: key.clone(),
            value: leaf.value.clone(),
        }]),
        None => parse_labels(Some(&leaf.value)),
    }
}

/// The executions selected by a raw query string: Kestra's filters and
/// the legacy parameters (both may be given; all must hold).
pub(super) fn execution_selection(raw: Option<&str>) -> ApiResult<ExecutionSelection> {
    let (leaves, others) = parse(raw)?;
    let mut sel = ExecutionSelection::default();
    for leaf in &leaves {
        apply_execution_leaf(&mut sel, leaf)?;
    }
    for (name, value) in &others {
        match name.as_str() {
            "namespace" if !value.is_empty() => sel.filter.namespace = Some(value.clone()),
            "flowId" if !value.is_empty() => sel.filter.flow_id = Some(value.clone()),
            "state" => sel.filter.states.extend(states(value)?),
            "labels" => sel.filter.labels.extend(parse_labels(Some(value))?),
            _ => {}
        }
    }
    if sel.filter.labels.len() > MAX_LABEL_FILTERS {
        return Err(invalid_filter(format!(
            "at most {MAX_LABEL_FILTERS} labels can be filtered on at once"
        )));
    }
    Ok(sel)
}

/// Applies the `filters[...]` leaves of a raw query to a search's filter
/// (the search reads the plain parameters itself). Unlike a bulk action's
/// selection, `namespace EQUALS` searches the namespace and those below it,
/// as the plain `namespace` parameter does.
pub(super) fn apply_filters(raw: Option<&str>, filter: &mut ExecutionFilter) -> ApiResult<()> {
    let (leaves, _) = parse(raw)?;
    let mut sel = ExecutionSelection {
        filter: std::mem::take(filter),
        exact_namespace: None,
    };
    for leaf in &leaves {
        apply_execution_leaf(&mut sel, leaf)?;
    }
    *filter = sel.filter;
    Ok(())
}

fn apply_execution_leaf(sel: &mut ExecutionSelection, leaf: &Leaf) -> ApiResult<()> {
    let op = leaf.operation.as_str();
    match (leaf.field.as_str(), op) {
        ("namespace", "EQUALS") => {
            sel.filter.namespace = Some(leaf.value.clone());
            sel.exact_namespace = Some(leaf.value.clone());
        }
        ("namespace", "PREFIX" | "STARTS_WITH") => sel.filter.namespace = Some(leaf.value.clone()),
        ("flowId", "EQUALS") => sel.filter.flow_id = Some(leaf.value.clone()),
        ("state", "EQUALS" | "IN") => sel.filter.states.extend(states(&leaf.value)?),
        ("labels", "EQUALS") => sel.filter.labels.extend(label_of(leaf)?),
        // USER/SYSTEM executions: every execution here is a user's.
        ("scope", _) => {}
        ("namespace" | "flowId" | "state" | "labels", _) => {
            return Err(unsupported(
                leaf,
                "this operation is not supported on this field",
            ));
        }
        _ => {
            return Err(unsupported(
                leaf,
                "executions can be selected by namespace, flowId, state and labels only",
            ));
        }
    }
    Ok(())
}

/// Which triggers a `/by-query` call or a trigger search selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TriggerSelection {
    /// Prefix (this namespace and those below).
    pub namespace_prefix: Option<String>,
    pub namespace: Option<String>,
    pub flow_id: Option<String>,
    pub trigger_id: Option<String>,
    /// Free text found in the namespace, flow id or trigger id.
    pub q: Option<String>,
}

impl TriggerSelection {
    /// Whether a trigger of `namespace/flow_id` named `trigger_id` is selected.
    pub fn keeps(&self, namespace: &str, flow_id: &str, trigger_id: &str) -> bool {
        let under = |prefix: &String| {
            namespace == prefix
                || namespace
                    .strip_prefix(prefix.as_str())
                    .is_some_and(|rest| rest.starts_with('.'))
        };
        self.namespace_prefix.as_ref().is_none_or(under)
            && self.namespace.as_ref().is_none_or(|n| n == namespace)
            && self.flow_id.as_ref().is_none_or(|f| f == flow_id)
            && self.trigger_id.as_ref().is_none_or(|t| t == trigger_id)
            && self.q.as_ref().is_none_or(|q| {
                let q = q.to_lowercase();
                [namespace, flow_id, trigger_id]
                    .iter()
                    .any(|s| s.to_lowercase().contains(&q))
            })
    }
}

/// The triggers selected by a raw query string.
pub(super) fn trigger_selection(raw: Option<&str>) -> ApiResult<TriggerSelection> {
    let (leaves, others) = parse(raw)?;
    let mut sel = TriggerSelection::default();
    for leaf in &leaves {
        let value = Some(leaf.value.clone());
        match (leaf.field.as_str(), leaf.operation.as_str()) {
            ("namespace", "EQUALS") => sel.namespace = value,
            ("namespace", "PREFIX" | "STARTS_WITH") => sel.namespace_prefix = value,
            ("flowId", "EQUALS") => sel.flow_id = value,
            ("triggerId", "EQUALS") => sel.trigger_id = value,
            ("q", "EQUALS") => sel.q = value,
            ("scope", _) => {}
            _ => {
                return Err(unsupported(
                    leaf,
                    "triggers can be selected by namespace (EQUALS, PREFIX), flowId, triggerId (EQUALS) and q only",
                ));
            }
        }
    }
    for (name, value) in others {
        if value.is_empty() {
            continue;
        }
        match name.as_str() {
            "namespace" => sel.namespace_prefix = Some(value),
            "flowId" => sel.flow_id = Some(value),
            "q" => sel.q = Some(value),
            _ => {}
        }
    }
    Ok(sel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kestra_filters_and_legacy_parameters_select_executions() {
        let sel = execution_selection(Some(
            "filters%5Bnamespace%5D%5BEQUALS%5D=acme&filters[STATE][IN]=FAILED,KILLED&filters[flowid][EQUALS]=load&filters[labels][EQUALS][team]=data&labels=env:prod&size=3",
        ))
        .expect("parses");
        assert_eq!(sel.filter.namespace.as_deref(), Some("acme"));
        assert_eq!(sel.exact_namespace.as_deref(), Some("acme"));
        assert_eq!(sel.filter.flow_id.as_deref(), Some("load"));
        assert_eq!(
            sel.filter.states,
            vec![ExecState::Failed, ExecState::Killed]
        );
        assert_eq!(sel.filter.labels.len(), 2);
    }

    #[test]
    fn unknown_filters_are_refused_by_name() {
        for raw in [
            "filters[startDate][GREATER_THAN]=2020-01-01",
            "filters[flowId][CONTAINS]=x",
            "filters[or][0][namespace][EQUALS]=a",
            "filters[state][EQUALS]=NOPE",
        ] {
            let err = execution_selection(Some(raw)).expect_err(raw);
            let ApiError::BadRequest { message, .. } = err else {
                panic!("{raw}: not a 400");
            };
            assert!(!message.is_empty(), "{raw}");
        }
    }

    #[test]
    fn trigger_selection_matches_prefixes_on_dots() {
        let sel =
            trigger_selection(Some("filters[namespace][PREFIX]=acme&q=nightly")).expect("parses");
        assert!(sel.keeps("acme.data", "load", "nightly"));
        assert!(!sel.keeps("acmes", "load", "nightly"));
        assert!(!sel.keeps("acme", "load", "hourly"));
    }
}
