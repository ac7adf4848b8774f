//! `GET /kv`: the keys of every namespace, paged as Kestra's
//! `PagedResults<KVEntry>` (`{"results", "total"}`), with Kestra's query
//! filters `filters[<field>][<operation>]=<value>` on `namespace`, `key`
//! and `q` (text in the key or description), and `sort=<field>:asc|desc`.

use std::cmp::Ordering;

use super::query::Query;
use axum::Json;
use axum::extract::{RawQuery, State};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::Viewer;
use super::inputs::form_pairs;
use super::kv::KvEntryView;
use super::{ApiError, ApiResult, AppState};

/// Largest page.
pub const MAX_PAGE_SIZE: usize = 1000;

/// The page and order of a search (the filters are read from the raw
/// query: `filters[namespace][EQUALS]=company.team`).
#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct KvSearchQuery {
    /// The page, from 1 (default 1).
    #[schemars(range(min = 1))]
    page: Option<usize>,
    /// Entries a page (default 10, at most 1000).
    #[schemars(range(min = 1, max = 1000))]
    size: Option<usize>,
    /// `key`, `namespace`, `description`, `creationDate`, `updateDate` or
    /// `expirationDate`, with `:asc` (default) or `:desc`.
    #[schemars(regex(
        pattern = r"^(key|namespace|description|creationDate|updateDate|expirationDate)(:(asc|desc))?(?!\n)$"
    ))]
    sort: Option<String>,
}

/// One page of entries and how many match in all.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct PagedKvEntries {
    results: Vec<KvEntryView>,
    total: usize,
}

/// One `filters[field][operation]=value`.
#[derive(Debug)]
struct Filter {
    field: String,
    operation: String,
    value: String,
}

fn invalid(message: String) -> ApiError {
    ApiError::bad_request("invalidQuery", message)
}

/// The filters of the raw query; other parameters are left alone.
fn filters(raw: Option<&str>) -> ApiResult<Vec<Filter>> {
    let mut out = Vec::new();
    for (name, value) in form_pairs(raw.unwrap_or_default().as_bytes()).unwrap_or_default() {
        let Some(rest) = name.strip_prefix("filters[") else {
            continue;
        };
        let parts: Vec<&str> = rest.trim_end_matches(']').split("][").collect::<Vec<_>>();
        let [field, operation] = parts.as_slice() else {
            return Err(invalid(format!(
                "filter `{}` is not written filters[field][OPERATION]",
                name.chars().take(100).collect::<String>()
            )));
        };
        out.push(Filter {
            field: (*field).to_owned(),
            operation: operation.to_ascii_uppercase(),
            value,
        });
    }
    Ok(out)
}

/// Whether `text` passes `operation` with `value`.
fn compare(text: &str, operation: &str, value: &str) -> Result<bool, String> {
    let list = || value.split(',').map(str::trim);
    Ok(match operation {
        "EQUALS" => text == value,
        "NOT_EQUALS" => text != value,
        "IN" => list().any(|v| v == text),
        "NOT_IN" => !list().any(|v| v == text),
        "CONTAINS" => text.to_lowercase().contains(&value.to_lowercase()),
        "STARTS_WITH" => text.starts_with(value),
        "ENDS_WITH" => text.ends_with(value),
        // Kestra's PREFIX on namespaces: the namespace or one of its children.
        "PREFIX" => text == value || text.starts_with(&format!("{value}.")),
        other => {
            return Err(format!(
                "operation `{}` is not supported here (EQUALS, NOT_EQUALS, IN, NOT_IN, CONTAINS, STARTS_WITH, ENDS_WITH, PREFIX)",
                other.chars().take(40).collect::<String>()
            ));
        }
    })
}

fn matches(entry: &KvEntryView, filter: &Filter) -> ApiResult<bool> {
    let text = match filter.field.as_str() {
        "namespace" => entry.namespace.as_str(),
        "key" => entry.key.as_str(),
        "q" | "query" => {
            let needle = filter.value.to_lowercase();
            let description = entry.description.as_deref().unwrap_or_default();
            return Ok(entry.key.to_lowercase().contains(&needle)
                || description.to_lowercase().contains(&needle));
        }
        other => {
            return Err(invalid(format!(
                "cannot filter KV entries on `{}` (namespace, key or q)",
                other.chars().take(40).collect::<String>()
            )));
        }
    };
    compare(text, &filter.operation, &filter.value).map_err(invalid)
}

/// How to order entries by `sort` (`field[:asc|:desc]`).
fn order(sort: Option<&str>) -> ApiResult<impl Fn(&KvEntryView, &KvEntryView) -> Ordering> {
    let sort = sort.unwrap_or("key:asc");
    let (field, direction) = sort.split_once(':').unwrap_or((sort, "asc"));
    let descending = match direction.to_ascii_lowercase().as_str() {
        "asc" => false,
        "desc" => true,
        _ => return Err(invalid("sort direction is `asc` or `desc`".into())),
    };
    let field = match field {
        "key" | "namespace" | "description" | "creationDate" | "updateDate" | "expirationDate" => {
            field.to_owned()
        }
        other => {
            return Err(invalid(format!(
                "cannot sort KV entries by `{}` (key, namespace, description, creationDate, updateDate or expirationDate)",
                other.chars().take(40).collect::<String>()
            )));
        }
    };
    Ok(move |a: &KvEntryView, b: &KvEntryView| {
        let by = |e: &KvEntryView| -> (String, String, String) {
            let first = match field.as_str() {
                "key" => e.key.clone(),
                "namespace" => e.namespace.clone(),
                "description" => e.description.clone().unwrap_or_default(),
                "creationDate" => e.creation_date.clone(),
                "updateDate" => e.update_date.clone(),
                _ => e.expiration_date.clone().unwrap_or_default(),
            };
            (first, e.namespace.clone(), e.key.clone())
        };
        let ordering = by(a).cmp(&by(b));
        if descending {
            ordering.reverse()
        } else {
            ordering
        }
    })
}

/// One page of the keys of every namespace that pass the filters.
pub(super) async fn search(
    _: Viewer,
    State(state): State<AppState>,
    Query(query): Query<KvSearchQuery>,
    RawQuery(raw): RawQuery,
) -> ApiResult<Json<PagedKvEntries>> {
    let filters = filters(raw.as_deref())?;
    let size = query.size.unwrap_or(10);
    if size == 0 || size > MAX_PAGE_SIZE {
        return Err(invalid(format!("size is 1 to {MAX_PAGE_SIZE}")));
    }
    let page = query.page.unwrap_or(1);
    if page == 0 {
        return Err(invalid("page counts from 1".into()));
    }
    let order = order(query.sort.as_deref())?;
    // Every filter is checked even when nothing is stored.
    let probe = KvEntryView {
        namespace: String::new(),
        key: String::new(),
        description: None,
        creation_date: String::new(),
        update_date: String::new(),
        expiration_date: None,
    };
    for filter in &filters {
        matches(&probe, filter)?;
    }
    let mut entries = Vec::new();
    for entry in state.engine.kv_list_all().await? {
        let view = KvEntryView::from(&entry);
        let mut keep = true;
        for filter in &filters {
            keep &= matches(&view, filter)?;
        }
        if keep {
            entries.push(view);
        }
    }
    entries.sort_by(&order);
    let total = entries.len();
    let results = entries
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    Ok(Json(PagedKvEntries { results, total }))
}
