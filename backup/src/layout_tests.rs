//! Unit tests of `layout`.
