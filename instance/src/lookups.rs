//! Expression functions that need platform data (`secret()`, `kv()`,
//! `read()`, `fileExists()`, `fileSize()`, `isFileEmpty()`). The evaluator
//! stays pure: a render that calls one of them stops and names the call;
//! the render loop here answers it (secrets directory, KV store, internal
//! storage), adds the answer to the table and renders again, at most
//! [`MAX_LOOKUPS`] times per render.
//!
//! What a render may reach is bounded by its [`Resolver`]: this instance's
//! own data only (its database, its storage, its secrets directory);
//! `read()` and the file functions only the files of the same execution
//! and namespace files.

use std::sync::Arc;

use atoll_expr::{Call, ErrorKind, Lookups};
use serde_json::Value;

use crate::secrets::{Masker, Secrets};
use crate::storage::{Storage, StorageError, StoragePath};
use crate::store::{Store, check_kv_key};
use crate::template::{TemplateError, Templates, Vars};

/// Most lookups one render may make.
pub const MAX_LOOKUPS: usize = 32;

/// Largest file `read()` returns.
const MAX_READ_BYTES: usize = 16 * 1024 * 1024;

/// The execution a render is part of.
#[derive(Debug, Clone)]
struct Scope {
    namespace: String,
    flow_id: String,
    execution_id: String,
}

/// What the functions of one render may reach: the flow's namespace, the
/// execution and the instance's data. [`Resolver::none`] reaches nothing
/// (those functions then fail, naming what is missing).
#[derive(Debug, Clone, Default)]
pub struct Resolver {
    scope: Option<Scope>,
    store: Option<Store>,
    storage: Option<Storage>,
    secrets: Secrets,
    masker: Option<Arc<Masker>>,
}

impl Resolver {
    /// A resolver that reaches no data.
    pub fn none() -> Resolver {
        Resolver::default()
    }

    /// A resolver for the renders of execution `execution_id` of flow
    /// `namespace`/`flow_id`.
    pub fn for_execution(namespace: &str, flow_id: &str, execution_id: &str) -> Resolver {
        Resolver {
            scope: Some(Scope {
                namespace: namespace.into(),
                flow_id: flow_id.into(),
                execution_id: execution_id.into(),
            }),
            ..Resolver::default()
        }
    }

    /// Reads `kv()` from `store`.
    pub fn with_store(mut self, store: Store) -> Resolver {
        self.store = Some(store);
        self
    }

    /// Reads files from `storage`.
    pub fn with_storage(mut self, storage: Option<Storage>) -> Resolver {
        self.storage = storage;
        self
    }

    /// Reads `secret()` from `secrets`, adding every value read to `masker`.
    pub fn with_secrets(mut self, secrets: Secrets, masker: Arc<Masker>) -> Resolver {
        self.secrets = secrets;
        self.masker = Some(masker);
        self
    }

    /// The KV store the tasks of this execution use.
    pub(crate) fn kv_store(&self) -> Result<&Store, String> {
        self.store
            .as_ref()
            .ok_or_else(|| "the KV store is not available here".to_owned())
    }

    /// The namespace of the execution's flow.
    pub(crate) fn flow_namespace(&self) -> Option<&str> {
        self.scope.as_ref().map(|s| s.namespace.as_str())
    }

    /// The answer to one lookup call.
    pub async fn answer(&self, call: &Call) -> Result<Value, String> {
        match call.function.as_str() {
            "secret" => self.secret(call).await,
            "kv" => self.kv(call).await,
            "read" => self.read(call).await,
            "fileExists" | "fileSize" | "isFileEmpty" => self.file_info(call).await,
            other => Err(format!("{other}() is not available in this instance")),
        }
    }

    fn scope(&self, function: &str) -> Result<&Scope, String> {
        self.scope.as_ref().ok_or_else(|| {
            format!("{function}() is only available in the properties of a task of an execution")
        })
    }

    /// The `namespace` argument, or the flow's.
    fn namespace(&self, call: &Call) -> Result<String, String> {
        let scope = self.scope(&call.function)?;
        match call.text("namespace") {
            Some(ns) if crate::flow::is_valid_namespace(&ns) => Ok(ns),
            Some(ns) => Err(format!(
                "invalid namespace `{}`",
                ns.chars().take(100).collect::<String>()
            )),
            None => Ok(scope.namespace.clone()),
        }
    }

    async fn secret(&self, call: &Call) -> Result<Value, String> {
        let name = call.text("key").ok_or("the argument `key` is required")?;
        let value = self.secrets.get(&name).await?;
        if let Some(masker) = &self.masker {
            masker.add(&value);
        }
        let value = match call.text("subkey") {
            None => value,
            Some(subkey) => {
                let found = serde_json::from_str::<Value>(&value)
                    .ok()
                    .and_then(|v| v.get(&subkey).cloned())
                    .ok_or_else(|| format!("secret `{name}` has no subkey `{subkey}`"))?;
                let text = match found {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                if let Some(masker) = &self.masker {
                    masker.add(&text);
                }
                text
            }
        };
        if call.arg("full") == Some(&Value::Bool(true)) {
            return Ok(serde_json::json!({"value": value, "metadata": {}}));
        }
        Ok(Value::String(value))
    }

    async fn kv(&self, call: &Call) -> Result<Value, String> {
        let key = call.text("key").ok_or("the argument `key` is required")?;
        check_kv_key(&key)?;
        let namespace = self.namespace(call)?;
        let store = self
            .store
            .as_ref()
            .ok_or("kv() needs the KV store, which is not available here")?;
        // As Kestra: without `namespace`, the flow's namespace and then its
        // parents (`company.team`, then `company`); with it, that one only.
        let entry = if call.text("namespace").is_some() {
            store.kv_get(&namespace, &key).await
        } else {
            store.kv_get_inherited(&namespace, &key).await
        };
        let entry = entry.map_err(|e| format!("the KV store could not be read: {e}"))?;
        match entry {
            Some(entry) => Ok(entry.value),
            None if call.arg("errorOnMissing") == Some(&Value::Bool(false)) => Ok(Value::Null),
            None => Err(crate::flow::tasks::kv_missing(&namespace, &key)),
        }
    }

    /// The storage path a `path` argument names: a `kestra://` URI of this
    /// execution's files or of namespace files, or a namespace file's path.
    fn file_path(&self, call: &Call) -> Result<StoragePath, String> {
        let scope = self.scope(&call.function)?;
        let path = call.text("path").ok_or("the argument `path` is required")?;
        let namespace = self.namespace(call)?;
        let text = |e: StorageError| e.to_string();
        let files = StoragePath::namespace_files(&namespace).map_err(text)?;
        if !path.starts_with(crate::storage::SCHEME) {
            return files.join(&path).map_err(text);
        }
        let file = StoragePath::from_uri(&path).map_err(text)?;
        let own = StoragePath::execution(&scope.namespace, &scope.flow_id, &scope.execution_id)
            .map_err(text)?;
        if file.starts_with(&own) || file.starts_with(&files) {
            Ok(file)
        } else {
            Err(format!(
                "`{}` is neither a file of this execution nor a namespace file of `{namespace}`",
                path.chars().take(200).collect::<String>()
            ))
        }
    }

    fn storage(&self, function: &str) -> Result<&Storage, String> {
        self.storage.as_ref().ok_or_else(|| {
            format!("{function}() needs the internal storage, which is not available here")
        })
    }

    async fn read(&self, call: &Call) -> Result<Value, String> {
        let path = self.file_path(call)?;
        let bytes = self
            .storage("read")?
            .get(&path)
            .await
            .map_err(|e| e.to_string())?;
        if bytes.len() > MAX_READ_BYTES {
            return Err(format!(
                "{} is larger than {MAX_READ_BYTES} bytes",
                path.uri()
            ));
        }
        String::from_utf8(bytes.to_vec())
            .map(Value::String)
            .map_err(|_| format!("{} is not UTF-8 text", path.uri()))
    }

    async fn file_info(&self, call: &Call) -> Result<Value, String> {
        let path = self.file_path(call)?;
        let found = self.storage(&call.function)?.get(&path).await;
        match (call.function.as_str(), found) {
            ("fileExists", Ok(_)) => Ok(Value::Bool(true)),
            ("fileExists", Err(StorageError::NotFound(_))) => Ok(Value::Bool(false)),
            ("fileSize", Ok(bytes)) => Ok(Value::from(bytes.len())),
            (_, Ok(bytes)) => Ok(Value::Bool(bytes.is_empty())),
            (_, Err(e)) => Err(e.to_string()),
        }
    }
}

/// Runs `render` until it needs no more lookups, answering each with
/// `resolver`.
async fn resolve<T>(
    resolver: &Resolver,
    render: impl Fn(&Lookups) -> Result<T, atoll_expr::Error>,
) -> Result<T, TemplateError> {
    let mut lookups = Lookups::new();
    loop {
        match render(&lookups) {
            Err(e) if e.kind == ErrorKind::Lookup => {
                let Some(call) = e.lookup().cloned() else {
                    return Err(e.into());
                };
                if lookups.len() >= MAX_LOOKUPS {
                    return Err(TemplateError(format!(
                        "more than {MAX_LOOKUPS} calls of secret(), kv(), read() and the file functions in one template"
                    )));
                }
                let answer = resolver.answer(&call).await;
                lookups.insert(&call, answer);
            }
            other => return other.map_err(TemplateError::from),
        }
    }
}

/// Renders one template string, resolving its lookups.
pub async fn render(
    templates: &Templates,
    resolver: &Resolver,
    source: &str,
    vars: &Vars,
) -> Result<String, TemplateError> {
    resolve(resolver, |l| {
        templates.engine().render_with(source, vars, l)
    })
    .await
}

/// Renders every string inside a JSON value, resolving its lookups.
pub async fn render_json(
    templates: &Templates,
    resolver: &Resolver,
    value: &Value,
    vars: &Vars,
) -> Result<Value, TemplateError> {
    resolve(resolver, |l| {
        templates.engine().render_json_with(value, vars, l)
    })
    .await
}

/// [`Templates::evaluate_json`], resolving lookups.
pub async fn evaluate_json(
    templates: &Templates,
    resolver: &Resolver,
    value: &Value,
    vars: &Vars,
) -> Result<Value, TemplateError> {
    resolve(resolver, |l| templates.evaluate_json_with(value, vars, l)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vars() -> Vars {
        Templates::vars(
            json!({"flow": {"namespace": "company.team"}})
                .as_object()
                .expect("an object"),
        )
    }

    fn resolver(dir: &std::path::Path) -> (Resolver, Arc<Masker>) {
        let masker = Arc::new(Masker::new());
        let resolver = Resolver::for_execution("company.team", "f", "e1")
            .with_storage(Some(Storage::dir(dir.join("storage"))))
            .with_secrets(Secrets::new(Some(dir.to_owned())), masker.clone());
        (resolver, masker)
    }

    #[tokio::test]
    async fn the_render_loop_answers_each_call_and_records_secrets_to_mask() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("A"), "alpha-secret").expect("secret");
        let (resolver, masker) = resolver(dir.path());
        let out = render(
            &Templates::new(),
            &resolver,
            "{{ secret('A') | upper }}",
            &vars(),
        )
        .await;
        assert_eq!(out.as_deref(), Ok("ALPHA-SECRET"));
        assert_eq!(masker.mask("x alpha-secret"), "x ******");
    }

    #[tokio::test]
    async fn a_render_makes_at_most_max_lookups() {
        let dir = tempfile::tempdir().expect("temp dir");
        for i in 0..=MAX_LOOKUPS {
            std::fs::write(dir.path().join(format!("S{i}")), "v").expect("secret");
        }
        let (resolver, _) = resolver(dir.path());
        // Pebble's range includes its end.
        let calls = |n: usize| {
            format!("{{% for i in range(1, {n}) %}}{{{{ secret('S' ~ i) }}}}{{% endfor %}}")
        };
        let out = render(&Templates::new(), &resolver, &calls(MAX_LOOKUPS), &vars()).await;
        assert_eq!(out.map(|s| s.len()), Ok(MAX_LOOKUPS));
        let source = calls(MAX_LOOKUPS + 1);
        let err = render(&Templates::new(), &resolver, &source, &vars())
            .await
            .expect_err("too many lookups");
        assert!(err.0.contains("more than 32"), "{err}");
    }

    #[test]
    fn files_are_namespace_files_or_this_executions() {
        let (resolver, _) = resolver(std::path::Path::new("/nonexistent"));
        let call = |path: &str| Call {
            function: "read".into(),
            args: vec![("path".into(), json!(path))],
        };
        let path = |p: &str| resolver.file_path(&call(p)).map(|p| p.as_str().to_owned());
        assert_eq!(
            path("dir/a.txt").as_deref(),
            Ok("company/team/_files/dir/a.txt")
        );
        assert!(path("../x").is_err());
        assert!(path("kestra:///company/team/f/executions/e1/tasks/t/r/o.txt").is_ok());
        assert!(path("kestra:///company/team/f/executions/e2/tasks/t/r/o.txt").is_err());
        assert!(path("kestra:///other/_files/a.txt").is_err());
        assert!(path("kestra:///company/team/_files/a.txt").is_ok());
    }
}
