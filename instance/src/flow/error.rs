//! Why a flow was refused.

use std::fmt;

/// A flow that cannot be stored. Nothing is saved when this is returned.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FlowError {
    /// The text is not YAML (or not a single YAML document).
    #[error("invalid YAML at line {line}, column {column}: {message}")]
    Yaml {
        line: usize,
        column: usize,
        message: String,
    },
    /// YAML that parses but is not a valid flow; every problem found is listed.
    #[error("invalid flow: {}", Problems(.problems))]
    Invalid { problems: Vec<Problem> },
}

impl FlowError {
    pub fn problems(&self) -> &[Problem] {
        match self {
            FlowError::Invalid { problems } => problems,
            FlowError::Yaml { .. } => &[],
        }
    }
}

/// One thing wrong with a flow, with where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where in the document: `tasks[0].then[1].format`.
    pub path: String,
    /// The id of the task the problem is in, when it is in a task.
    pub task: Option<String>,
    pub kind: ProblemKind,
    pub message: String,
}

/// Stable categories of problems, for API clients and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A property is missing, has the wrong type or a bad value.
    Field,
    /// A property that this kind of object does not have.
    UnknownField,
    /// A task `type` this engine does not know.
    UnknownType,
    /// A known Kestra feature this engine does not run yet.
    Unsupported,
    /// An id that is empty, too long or has characters outside the allowed set.
    InvalidId,
    DuplicateId,
    /// A `dependsOn` cycle.
    Cycle,
    /// A template or `dependsOn` names a task the flow does not have.
    MissingTask,
    /// A template names an input the flow does not declare.
    MissingInput,
}

impl ProblemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Field => "field",
            ProblemKind::UnknownField => "unknownField",
            ProblemKind::UnknownType => "unknownType",
            ProblemKind::Unsupported => "unsupported",
            ProblemKind::InvalidId => "invalidId",
            ProblemKind::DuplicateId => "duplicateId",
            ProblemKind::Cycle => "cycle",
            ProblemKind::MissingTask => "missingTask",
            ProblemKind::MissingInput => "missingInput",
        }
    }
}

/// A problem at `path` (`$` when empty), about `task` when given.
pub(crate) fn problem(
    path: &str,
    task: Option<&str>,
    kind: ProblemKind,
    message: String,
) -> Problem {
    Problem {
        path: if path.is_empty() {
            "$".into()
        } else {
            path.into()
        },
        task: task.map(str::to_owned),
        kind,
        message,
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.task {
            Some(task) => write!(f, "task `{task}` ({}): {}", self.path, self.message),
            None => write!(f, "{}: {}", self.path, self.message),
        }
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}
