//! Kestra's `filters[field][OPERATION]=value` query parameters (what its
//! clients send for searches), read into an execution filter. Only a flat
//! AND of the leaves Atoll can apply is accepted; anything else answers
//! 400 naming the filter, rather than searching wider than asked.

use super::inputs::form_pairs;
use super::{ApiError, ApiResult};
use crate::execution::State as ExecState;
use crate::flow::Label;
use crate::store::ExecutionFilter;

fn unsupported(name: &str, why: &str) -> ApiError {
    ApiError::bad_request("invalidQuery", format!("filter `{name}`: {why}"))
}

/// `filters[a][b][c]` → `["a", "b", "c"]`; `None` for other parameters.
fn segments(name: &str) -> Option<Vec<&str>> {
    let rest = name.strip_prefix("filters")?;
    let mut parts = Vec::new();
    let mut rest = rest;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[')?;
        let end = inner.find(']')?;
        parts.push(&inner[..end]);
        rest = &inner[end + 1..];
    }
    Some(parts)
}

/// Applies the `filters[…]` parameters of the raw query to `filter`.
pub(super) fn apply_filters(raw: Option<&str>, filter: &mut ExecutionFilter) -> ApiResult<()> {
    for (name, value) in form_pairs(raw.unwrap_or_default().as_bytes()).unwrap_or_default() {
        let Some(parts) = segments(&name) else {
            continue;
        };
        apply_leaf(&name, &parts, value, filter)?;
    }
    Ok(())
}

fn apply_leaf(
    name: &str,
    parts: &[&str],
    value: String,
    filter: &mut ExecutionFilter,
) -> ApiResult<()> {
    match parts {
        ["namespace", "EQUALS" | "STARTS_WITH" | "PREFIX"] => {
            super::extract::check_namespace(&value)?;
            filter.namespace = Some(value);
        }
        ["flowId", "EQUALS"] => filter.flow_id = Some(value),
        ["state", "EQUALS" | "IN"] => {
            for state in value.split(',').filter(|s| !s.is_empty()) {
                let state = ExecState::parse(state)
                    .ok_or_else(|| unsupported(name, &format!("unknown state `{state}`")))?;
                filter.states.push(state);
            }
        }
        ["labels", "EQUALS", key] => filter.labels.push(Label {
            key: (*key).to_owned(),
            value,
        }),
        ["and" | "or", ..] => {
            return Err(unsupported(name, "groups of filters are not supported"));
        }
        _ => {
            return Err(unsupported(
                name,
                "not supported: namespace (EQUALS, PREFIX), flowId (EQUALS), state (EQUALS, IN) and labels (EQUALS) are",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty() -> ExecutionFilter {
        ExecutionFilter {
            namespace: None,
            flow_id: None,
            states: Vec::new(),
            labels: Vec::new(),
            limit: 25,
            offset: 0,
        }
    }

    #[test]
    fn kestras_filter_parameters_narrow_the_search() {
        let mut filter = empty();
        let raw = "page=1&filters[namespace][EQUALS]=a.b&filters[flowId][EQUALS]=f\
                   &filters[state][IN]=SUCCESS,FAILED&filters[labels][EQUALS][team]=data";
        apply_filters(Some(raw), &mut filter).expect("filters");
        assert_eq!(filter.namespace.as_deref(), Some("a.b"));
        assert_eq!(filter.flow_id.as_deref(), Some("f"));
        assert_eq!(filter.states, vec![ExecState::Success, ExecState::Failed]);
        assert_eq!(filter.labels[0].key, "team");
    }

    #[test]
    fn filters_atoll_cannot_apply_are_refused_by_name() {
        for raw in [
            "filters[startDate][GREATER_THAN]=2024-01-01",
            "filters[or][0][flowId][EQUALS]=f",
            "filters[state][IN]=NOPE",
        ] {
            let err = apply_filters(Some(raw), &mut empty()).expect_err(raw);
            let ApiError::BadRequest { message, .. } = err else {
                panic!("{raw}: not a 400");
            };
            assert!(message.contains("filter `filters["), "{message}");
        }
    }
}
