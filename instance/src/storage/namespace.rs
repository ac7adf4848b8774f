//! Namespace files as script tasks take them (`namespaceFiles: enabled:
//! true`): every file of a namespace with its path relative to the
//! namespace's files folder.

use bytes::Bytes;

use super::{Storage, StorageError, StoragePath};

/// Most files a namespace's files are read with at once.
pub const MAX_NAMESPACE_FILES: usize = 1000;

/// The name of the empty file that keeps an empty folder of namespace
/// files (object stores have no folders); never listed, read or exported.
pub const FOLDER_MARKER: &str = ".atoll-folder";

/// Whether a storage path is a folder marker.
pub fn is_folder_marker(path: &StoragePath) -> bool {
    path.file_name() == FOLDER_MARKER
}

/// Every file of `namespace`'s files (`company/team/_files/...`), as
/// (path relative to that folder, bytes), sorted by path. More than
/// [`MAX_NAMESPACE_FILES`] files is an error naming the limit.
pub async fn namespace_files(
    storage: &Storage,
    namespace: &str,
) -> Result<Vec<(String, Bytes)>, StorageError> {
    let root = StoragePath::namespace_files(namespace)?;
    let listed = storage.list(&root).await?;
    if listed.len() > MAX_NAMESPACE_FILES {
        return Err(StorageError::Io {
            path: root.uri(),
            reason: format!(
                "the namespace has {} files, more than the {MAX_NAMESPACE_FILES} a task can take",
                listed.len()
            ),
        });
    }
    let prefix = format!("{}/", root.as_str());
    let mut out = Vec::with_capacity(listed.len());
    for (path, _) in listed {
        if is_folder_marker(&path) {
            continue;
        }
        let Some(relative) = path.as_str().strip_prefix(&prefix) else {
            continue;
        };
        let relative = relative.to_owned();
        out.push((relative, storage.get(&path).await?));
    }
    Ok(out)
}

/// Whether an execution of `namespace`/`flow_id` may take the file at
/// `path` as a FILE input: a file of that execution, of another execution
/// of a flow of the same namespace (`<ns>/<flow>/executions/<id>/...`, as
/// a parent hands files to a subflow), or one of the namespace's files.
pub fn readable_by_execution(
    path: &StoragePath,
    namespace: &str,
    flow_id: &str,
    execution_id: &str,
) -> bool {
    let inside = |folder: StoragePath| path.starts_with(&folder) && *path != folder;
    if StoragePath::execution(namespace, flow_id, execution_id).is_ok_and(inside) {
        return true;
    }
    if StoragePath::namespace_files(namespace).is_ok_and(inside) {
        return true;
    }
    let Ok(ns) = StoragePath::namespace(namespace) else {
        return false;
    };
    let Some(rest) = path.as_str().strip_prefix(&format!("{}/", ns.as_str())) else {
        return false;
    };
    // `<flow>/executions/<execution>/<at least one more segment>`.
    let segments: Vec<&str> = rest.split('/').collect();
    segments.len() >= 4 && segments[1] == "executions" && crate::flow::is_valid_flow_id(segments[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_an_execution_may_take_as_a_file_input() {
        let may = |path: &str| {
            readable_by_execution(
                &StoragePath::new(path).expect("path"),
                "company.team",
                "flow",
                "e1",
            )
        };
        assert!(may("company/team/flow/executions/e1/inputs/f/a.txt"));
        assert!(may("company/team/_files/scripts/main.py"));
        assert!(may("company/team/other/executions/e2/tasks/t/r/out.csv"));
        assert!(
            !may("company/team/flow/executions/e1"),
            "a folder, not a file"
        );
        assert!(!may("company/other/flow/executions/e1/inputs/f/a.txt"));
        assert!(!may("company/_files/a.txt"), "the parent namespace's files");
        assert!(!may("company/team/flow/secrets/x/y"));
        assert!(!may("companyX/team/flow/executions/e1/inputs/f/a.txt"));
    }
}
