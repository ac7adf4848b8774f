//! Unit tests of `settings`.
