//! The flows service: the one place flows are saved, deleted and imported,
//! so the engine's caches (parsed flows are keyed by revision; the flow
//! trigger index and the schedules are not) are invalidated with every
//! change, and the checks a change depends on are made by the store in
//! the same transaction as the write.

use std::collections::HashSet;

use super::{Engine, Inner};
use crate::flow::{self, FlowError};
use crate::store::{FlowExpect, FlowRecord, Repository, StoreError};

/// Why a flow change was refused.
#[derive(Debug, thiserror::Error)]
pub enum FlowChangeError {
    #[error(transparent)]
    Invalid(#[from] FlowError),
    #[error("flow {namespace}/{id} already exists; update it with PUT")]
    Exists { namespace: String, id: String },
    #[error("no such flow")]
    NotFound,
    /// An update's source names another flow than the one it replaces.
    #[error("the flow's namespace and id must match the URL")]
    KeyMismatch,
    /// An import with flows that do not parse (or appear twice): nothing
    /// was saved.
    #[error("{} of {total} flows are not valid; nothing was imported", problems.len())]
    ImportInvalid {
        problems: Vec<ImportProblem>,
        total: usize,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One refused flow of an import: the file (and document) it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportProblem {
    pub file: String,
    pub message: String,
}

/// Reads and changes of flows (from [`Engine::flows`]).
#[derive(Debug, Clone, Copy)]
pub struct Flows<'a> {
    inner: &'a Inner,
}

impl Engine {
    /// The flows service.
    pub fn flows(&self) -> Flows<'_> {
        Flows { inner: &self.inner }
    }
}

impl Flows<'_> {
    /// Saves a new flow; refused when a live flow has its namespace and id
    /// (checked in the save's transaction, so of two concurrent creates
    /// exactly one succeeds).
    pub async fn create(&self, source: &str) -> Result<FlowRecord, FlowChangeError> {
        let parsed = flow::parse(source)?;
        let saved = self
            .inner
            .store
            .save_flow(&parsed.namespace, &parsed.id, source, FlowExpect::Absent)
            .await?;
        let record = saved.ok_or_else(|| FlowChangeError::Exists {
            namespace: parsed.namespace.clone(),
            id: parsed.id.clone(),
        })?;
        self.inner.flows_changed();
        Ok(record)
    }

    /// Saves the next revision of an existing flow.
    pub async fn update(
        &self,
        namespace: &str,
        id: &str,
        source: &str,
    ) -> Result<FlowRecord, FlowChangeError> {
        let parsed = flow::parse(source)?;
        if parsed.namespace != namespace || parsed.id != id {
            return Err(FlowChangeError::KeyMismatch);
        }
        let saved = self
            .inner
            .store
            .save_flow(namespace, id, source, FlowExpect::Live)
            .await?;
        let record = saved.ok_or(FlowChangeError::NotFound)?;
        self.inner.flows_changed();
        Ok(record)
    }

    /// Saves a flow whether or not it exists (the next revision, or the
    /// latest unchanged when the source is the same).
    pub async fn save(&self, source: &str) -> Result<FlowRecord, FlowChangeError> {
        let parsed = flow::parse(source)?;
        let record = self.save_parsed(&parsed, source).await?;
        self.inner.flows_changed();
        Ok(record)
    }

    /// Saves every flow of an import: all are parsed first and nothing is
    /// stored unless all are valid and no flow appears twice; each then
    /// becomes its flow's next revision (unchanged flows keep theirs).
    /// `sources` are (where the source came from, source) pairs.
    pub async fn import(
        &self,
        sources: &[(String, String)],
    ) -> Result<Vec<FlowRecord>, FlowChangeError> {
        let mut parsed = Vec::new();
        let mut problems = Vec::new();
        let mut seen = HashSet::new();
        for (file, source) in sources {
            match flow::parse(source) {
                Ok(flow) => {
                    if !seen.insert((flow.namespace.clone(), flow.id.clone())) {
                        problems.push(ImportProblem {
                            file: file.clone(),
                            message: format!("flow {}/{} appears twice", flow.namespace, flow.id),
                        });
                    }
                    parsed.push((flow, source));
                }
                Err(err) => problems.push(ImportProblem {
                    file: file.clone(),
                    message: err.to_string(),
                }),
            }
        }
        if !problems.is_empty() {
            return Err(FlowChangeError::ImportInvalid {
                problems,
                total: sources.len(),
            });
        }
        let mut imported = Vec::new();
        let mut result = Ok(());
        for (flow, source) in parsed {
            match self.save_parsed(&flow, source).await {
                Ok(record) => imported.push(record),
                Err(err) => {
                    result = Err(err);
                    break;
                }
            }
        }
        if !imported.is_empty() {
            self.inner.flows_changed();
        }
        result.map(|()| imported)
    }

    async fn save_parsed(
        &self,
        parsed: &flow::Flow,
        source: &str,
    ) -> Result<FlowRecord, FlowChangeError> {
        let saved = self
            .inner
            .store
            .save_flow(&parsed.namespace, &parsed.id, source, FlowExpect::Any)
            .await?;
        // `Any` is always met; an answer without a record is a store fault.
        saved.ok_or(FlowChangeError::NotFound)
    }

    /// Deletes a flow (a tombstone revision); false if it did not exist.
    pub async fn delete(&self, namespace: &str, id: &str) -> Result<bool, StoreError> {
        let deleted = self.inner.store.delete_flow(namespace, id).await?;
        if deleted {
            self.inner.flows_changed();
        }
        Ok(deleted)
    }

    /// The given revision, or the latest live one when `revision` is `None`.
    pub async fn get(
        &self,
        namespace: &str,
        id: &str,
        revision: Option<i64>,
    ) -> Result<Option<FlowRecord>, StoreError> {
        self.inner.store.get_flow(namespace, id, revision).await
    }

    /// Every revision of a flow, oldest first (deletions included).
    pub async fn revisions(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Vec<FlowRecord>, StoreError> {
        self.inner.store.flow_revisions(namespace, id).await
    }

    /// The latest live revision of every flow, optionally under a namespace.
    pub async fn list(&self, namespace: Option<&str>) -> Result<Vec<FlowRecord>, StoreError> {
        self.inner.store.list_flows(namespace).await
    }
}
