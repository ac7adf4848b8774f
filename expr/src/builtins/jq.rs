//! jq (filled in below).

use super::{Def, FilterFn};

pub(crate) const FILTERS: &[Def<FilterFn>] = &[];
