//! Errors: what failed, where (line and column of the template), and for
//! builtins which filter, function or test.

use std::fmt;

use crate::lookup::Call;

/// A position in a template, 1-based.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

/// What kind of failure an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The template does not parse.
    Syntax,
    /// A variable or attribute is not defined (strict variables).
    Undefined,
    /// An operator, filter, function or test failed.
    Render,
    /// The render used up its step budget or nested too deeply.
    Limit,
    /// A builtin needs a platform feature this instance does not have.
    Unavailable,
    /// A lookup function (`secret()`, `kv()`, `read()`...) was called and
    /// the render has no answer for it yet: [`Error::lookup`] is the call.
    Lookup,
}

/// A template that did not render. The message never contains the values
/// being rendered beyond names and literals of the template itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub kind: ErrorKind,
    pub message: String,
    pub pos: Pos,
    /// The call to answer, for [`ErrorKind::Lookup`].
    call: Option<Box<Call>>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>, pos: Pos) -> Self {
        Error {
            kind,
            message: message.into(),
            pos,
            call: None,
        }
    }

    /// The render needs the answer to `call`.
    pub(crate) fn needs_lookup(call: Call, pos: Pos) -> Self {
        Error {
            kind: ErrorKind::Lookup,
            message: format!("{call} has no answer yet"),
            pos,
            call: Some(Box::new(call)),
        }
    }

    /// The lookup call to answer before rendering again
    /// ([`ErrorKind::Lookup`]).
    pub fn lookup(&self) -> Option<&Call> {
        self.call.as_deref()
    }

    pub(crate) fn syntax(message: impl Into<String>, pos: Pos) -> Self {
        Error::new(ErrorKind::Syntax, message, pos)
    }

    pub(crate) fn render(message: impl Into<String>, pos: Pos) -> Self {
        Error::new(ErrorKind::Render, message, pos)
    }

    pub(crate) fn undefined(name: &str, pos: Pos) -> Self {
        Error::new(
            ErrorKind::Undefined,
            format!(
                "Unable to find `{name}` used in the expression (undefined variable or attribute)"
            ),
            pos,
        )
    }

    pub fn is_undefined(&self) -> bool {
        self.kind == ErrorKind::Undefined
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (line {}, column {})",
            self.message, self.pos.line, self.pos.column
        )
    }
}

impl std::error::Error for Error {}
