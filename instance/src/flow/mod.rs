//! Flows: the Kestra-shaped YAML model, its parser and save-time validation,
//! and the resolution of execution inputs against a flow's declarations.

pub mod archive;
mod error;
pub mod graph;
mod inputs;
mod model;
mod parse;
mod redact;
pub mod tasks;
mod types;
mod validate;

pub use crate::vocabulary::Label;
pub use error::{FlowError, Problem, ProblemKind};
pub use inputs::{InputError, resolve_inputs, typed_output};
pub use model::*;
pub use parse::{MAX_FLOW_NESTING, MAX_SOURCE_BYTES, parse_duration};
pub use redact::{REDACTED, redact_webhook_keys};
pub use types::supported_task_types;

/// Parses and validates flow YAML. Every problem found is reported at once;
/// on error nothing about the flow should be stored.
pub fn parse(source: &str) -> Result<Flow, FlowError> {
    let flow = parse::parse_flow(source)?;
    let problems = validate::validate(&flow);
    if problems.is_empty() {
        Ok(flow)
    } else {
        Err(FlowError::Invalid { problems })
    }
}

/// Whether `id` is acceptable as a flow id (for path parameters).
pub fn is_valid_flow_id(id: &str) -> bool {
    validate::is_valid_id(id, validate::IdRule::Flow)
}

/// Whether `namespace` is acceptable as a namespace (for path parameters).
pub fn is_valid_namespace(namespace: &str) -> bool {
    validate::is_valid_namespace(namespace)
}
