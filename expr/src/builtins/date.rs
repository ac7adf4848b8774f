//! Dates (filled in below).

use super::{Def, FilterFn, FunctionFn};

pub(crate) const FILTERS: &[Def<FilterFn>] = &[];
pub(crate) const FUNCTIONS: &[Def<FunctionFn>] = &[];
