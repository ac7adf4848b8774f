//! Moving a namespace's flows in and out: `/flows/export/by-query` (a tar
//! archive) and `/flows/import` (a tar archive or YAML, raw or multipart).

use super::query::Query;
use axum::Json;
use axum::extract::{FromRequest, Multipart, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::extract::{Editor, Viewer, check_namespace};
use super::flows::visible_source;
use super::{ApiError, ApiResult, AppState, is_multipart};
use crate::flow::archive;

/// Largest import accepted (an archive of many flows).
const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct ExportQuery {
    namespace: String,
}

/// The namespace's flows (and those below it) as a tar archive of
/// `<namespace>/<id>.yml` files holding each flow's source as saved (with
/// the webhook keys redacted for Viewers).
pub(super) async fn export_flows(
    State(state): State<AppState>,
    Query(query): Query<ExportQuery>,
    Viewer(principal): Viewer,
) -> ApiResult<Response> {
    check_namespace(&query.namespace)?;
    let flows = state.engine.flows().list(Some(&query.namespace)).await?;
    let files: Vec<archive::ArchiveFile> = flows
        .into_iter()
        .map(|f| archive::ArchiveFile {
            path: format!("{}/{}.yml", f.namespace, f.id),
            text: visible_source(f.source, &principal),
        })
        .collect();
    let tar = archive::write_tar(&files, jiff::Timestamp::now().as_second());
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.tar\"", query.namespace),
            ),
        ],
        tar,
    )
        .into_response())
}

fn invalid_import(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("invalidImport", message)
}

/// The uploaded files: each multipart field, or the whole body.
async fn uploads(request: Request) -> ApiResult<Vec<(String, Vec<u8>)>> {
    if !is_multipart(&request) {
        let bytes = axum::body::to_bytes(request.into_body(), MAX_IMPORT_BYTES)
            .await
            .map_err(|_| ApiError::PayloadTooLarge)?;
        return Ok(vec![("body".into(), bytes.to_vec())]);
    }
    let not_valid = || invalid_import("the multipart body is not valid");
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(|_| not_valid())?;
    let mut uploads = Vec::new();
    while let Some(field) = multipart.next_field().await.map_err(|_| not_valid())? {
        let name = field
            .file_name()
            .or(field.name())
            .unwrap_or("upload")
            .to_owned();
        let bytes = field
            .bytes()
            .await
            .map_err(|_| invalid_import("a multipart field could not be read"))?;
        uploads.push((name, bytes.to_vec()));
    }
    Ok(uploads)
}

/// Flow sources from an import body: a tar archive (its .yml/.yaml files),
/// or YAML text with one or several flows; either may come as the file of
/// a multipart form (Kestra's `fileUpload`). Each source is named
/// `<file>#<document>`.
async fn import_sources(request: Request) -> ApiResult<Vec<(String, String)>> {
    let mut sources = Vec::new();
    for (name, bytes) in uploads(request).await? {
        let is_tar = bytes.get(257..262) == Some(b"ustar");
        if is_tar {
            let files = archive::read_tar(&bytes).map_err(|e| invalid_import(e.to_string()))?;
            for file in files.into_iter().filter(|f| archive::is_flow_file(&f.path)) {
                for (i, doc) in archive::split_documents(&file.text).into_iter().enumerate() {
                    sources.push((format!("{}#{i}", file.path), doc));
                }
            }
        } else {
            let text = String::from_utf8(bytes).map_err(|_| {
                invalid_import(format!("`{name}` is neither a tar archive nor UTF-8 YAML"))
            })?;
            for (i, doc) in archive::split_documents(&text).into_iter().enumerate() {
                sources.push((format!("{name}#{i}"), doc));
            }
        }
    }
    Ok(sources)
}

/// What an import did: each flow with the revision it now has.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct Imported {
    imported: Vec<ImportedFlow>,
    total: u64,
}

/// One imported flow.
#[derive(Debug, Serialize, JsonSchema)]
pub(super) struct ImportedFlow {
    namespace: String,
    id: String,
    revision: i64,
}

/// Imports flows: every one is checked first and nothing is stored unless
/// all are valid; each then becomes the flow's next revision (unchanged
/// flows keep theirs).
pub(super) async fn import_flows(
    State(state): State<AppState>,
    Editor(_): Editor,
    request: Request,
) -> ApiResult<Json<Imported>> {
    let sources = import_sources(request).await?;
    if sources.is_empty() {
        return Err(invalid_import("no flow found in the upload"));
    }
    let imported: Vec<ImportedFlow> = state
        .engine
        .flows()
        .import(&sources)
        .await?
        .into_iter()
        .map(|r| ImportedFlow {
            namespace: r.namespace,
            id: r.id,
            revision: r.revision,
        })
        .collect();
    let total = imported.len() as u64;
    Ok(Json(Imported { imported, total }))
}
