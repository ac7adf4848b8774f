//! The files a script starts with: `inputFiles` (inline contents or
//! `kestra://` files), the namespace's files, and the `kestra://` files its
//! commands name (fetched into the working directory, as Kestra does, and
//! the URI replaced by the local path).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::Value;

use super::job::PYTHON_SCRIPT_FILE;
use super::properties::NamespaceFiles;
use crate::flow::tasks::Context;
use crate::runner::{check_relative, glob};
use crate::storage::{SCHEME, Storage, StoragePath};

/// Most bytes of input and namespace files one attempt takes.
pub const MAX_INPUT_BYTES: u64 = 256 * 1024 * 1024;

/// Where the `kestra://` files a script names are written (one numbered
/// folder per file, keeping its name).
pub const FETCHED_DIR: &str = ".kestra/";

/// Most `kestra://` files one script may name.
const MAX_FETCHED: usize = 100;

/// `inputFiles`, rendered: each value is the file's content, or a
/// `kestra://` URI whose file is read from the internal storage.
pub async fn input_files(
    cx: &Context<'_>,
    declared: &Value,
) -> Result<BTreeMap<String, Bytes>, String> {
    let map = match declared {
        Value::Null => return Ok(BTreeMap::new()),
        Value::Object(map) => map.clone(),
        Value::String(template) => {
            let text = cx.render(template).await?;
            match serde_json::from_str(&text) {
                Ok(Value::Object(map)) => map,
                _ => {
                    return Err(
                        "inputFiles: expected a mapping of file names to contents (as JSON)".into(),
                    );
                }
            }
        }
        _ => return Err("inputFiles: expected a mapping of file names to contents".into()),
    };
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for (name, value) in map {
        check_relative(&name).map_err(|reason| format!("input file `{name}`: {reason}"))?;
        let text = match &value {
            Value::String(s) => cx.render(s).await?,
            other => other.to_string(),
        };
        let content = if text.trim().starts_with(SCHEME) {
            read_file(cx, text.trim()).await?
        } else {
            Bytes::from(text)
        };
        total += content.len() as u64;
        if total > MAX_INPUT_BYTES {
            return Err(too_large());
        }
        files.insert(name, content);
    }
    Ok(files)
}

/// A `kestra://` file of this flow's namespace.
async fn read_file(cx: &Context<'_>, uri: &str) -> Result<Bytes, String> {
    let storage = storage(cx)?;
    let path = StoragePath::from_uri(uri).map_err(|e| e.to_string())?;
    let namespace = StoragePath::namespace(cx.namespace).map_err(|e| e.to_string())?;
    if !path.starts_with(&namespace) {
        return Err(format!(
            "file `{uri}` is not in namespace `{}`'s storage",
            cx.namespace
        ));
    }
    storage.get(&path).await.map_err(|e| e.to_string())
}

/// The namespace's files that `namespaceFiles` selects, by their paths
/// relative to the namespace.
pub async fn namespace_files(
    cx: &Context<'_>,
    selection: &NamespaceFiles,
) -> Result<BTreeMap<String, Bytes>, String> {
    let storage = storage(cx)?;
    let folder = StoragePath::namespace_files(cx.namespace).map_err(|e| e.to_string())?;
    let mut files = BTreeMap::new();
    let mut total = 0u64;
    for (path, size) in storage.list(&folder).await.map_err(|e| e.to_string())? {
        let Some(name) = path.as_str().strip_prefix(&format!("{}/", folder.as_str())) else {
            continue;
        };
        let included = selection.include.is_empty()
            || selection.include.iter().any(|p| glob::matches(p, name));
        if !included || selection.exclude.iter().any(|p| glob::matches(p, name)) {
            continue;
        }
        total += size;
        if total > MAX_INPUT_BYTES {
            return Err(too_large());
        }
        let content = storage.get(&path).await.map_err(|e| e.to_string())?;
        files.insert(name.to_owned(), content);
    }
    Ok(files)
}

fn storage<'s>(cx: &Context<'s>) -> Result<&'s Storage, String> {
    Ok(cx.storage)
}

fn too_large() -> String {
    format!(
        "the input files exceed {} MiB",
        MAX_INPUT_BYTES / (1024 * 1024)
    )
}

/// Replaces each `kestra://` URI in the script (and in a Python script's
/// file) by the relative path of a copy of that file, written beside the
/// script.
pub async fn localize_uris(
    cx: &Context<'_>,
    script: String,
    input_files: &mut BTreeMap<String, Bytes>,
) -> Result<String, String> {
    let mut fetched: BTreeMap<String, String> = BTreeMap::new();
    let script = localize(cx, &script, &mut fetched, input_files).await?;
    if let Some(python) = input_files.get(PYTHON_SCRIPT_FILE).cloned() {
        let text = String::from_utf8_lossy(&python).into_owned();
        let text = localize(cx, &text, &mut fetched, input_files).await?;
        input_files.insert(PYTHON_SCRIPT_FILE.into(), Bytes::from(text));
    }
    let total: u64 = input_files.values().map(|c| c.len() as u64).sum();
    if total > MAX_INPUT_BYTES {
        return Err(too_large());
    }
    Ok(script)
}

async fn localize(
    cx: &Context<'_>,
    text: &str,
    fetched: &mut BTreeMap<String, String>,
    input_files: &mut BTreeMap<String, Bytes>,
) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(SCHEME) {
        out.push_str(&rest[..at]);
        let uri_len = rest[at..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || "-%._+~#=/:".contains(c)))
            .unwrap_or(rest.len() - at);
        let uri = &rest[at..at + uri_len];
        rest = &rest[at + uri_len..];
        if let Some(local) = fetched.get(uri) {
            out.push_str(local);
            continue;
        }
        if fetched.len() >= MAX_FETCHED {
            return Err(format!(
                "a script may name at most {MAX_FETCHED} kestra:// files"
            ));
        }
        let content = read_file(cx, uri).await?;
        let name = StoragePath::from_uri(uri).map_err(|e| e.to_string())?;
        let local = format!("{FETCHED_DIR}{}/{}", fetched.len(), name.file_name());
        input_files.insert(local.clone(), content);
        out.push_str(&local);
        fetched.insert(uri.to_owned(), local);
    }
    out.push_str(rest);
    Ok(out)
}
