//! Unit tests of `store`.
