//! The UI's static files, embedded in the binary: served at
//! `/assets/<name>.<hash>.<ext>` (the hash is the first 16 hex digits of the
//! content's SHA-256), so they are cached for a year and a new build names
//! new files.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::api::AppState;

/// One embedded file.
pub struct Asset {
    /// `app`, `editor`…
    stem: &'static str,
    ext: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

/// The stylesheet of every page.
pub const CSS: &Asset = &Asset {
    stem: "app",
    ext: "css",
    content_type: "text/css; charset=utf-8",
    bytes: include_bytes!("../../ui/app.css"),
};

/// The small script of every page (live Gantt and logs, bulk selection).
pub const APP_JS: &Asset = &Asset {
    stem: "app",
    ext: "js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../../ui/app.js"),
};

/// The YAML editor (CodeMirror 6), built by `npm run build` in `instance/ui`.
pub const EDITOR_JS: &Asset = &Asset {
    stem: "editor",
    ext: "js",
    content_type: "text/javascript; charset=utf-8",
    bytes: include_bytes!("../../ui/dist/editor.js"),
};

/// The licence notices of the npm packages bundled into the editor, written
/// next to it by the same build. Also served unhashed at
/// `/assets/licenses.txt`, the address the editor's banner names.
pub const LICENSES: &Asset = &Asset {
    stem: "licenses",
    ext: "txt",
    content_type: "text/plain; charset=utf-8",
    bytes: include_bytes!("../../ui/dist/licenses.txt"),
};

const ALL: [&Asset; 4] = [CSS, APP_JS, EDITOR_JS, LICENSES];

/// Each asset's served name, computed once.
static NAMES: LazyLock<Vec<String>> = LazyLock::new(|| {
    ALL.iter()
        .map(|a| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, a.bytes);
            let hex: String = digest.as_ref()[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("{}.{hex}.{}", a.stem, a.ext)
        })
        .collect()
});

/// The URL path of `asset`.
pub fn path(asset: &Asset) -> String {
    let index = ALL
        .iter()
        .position(|a| a.stem == asset.stem && a.ext == asset.ext)
        .unwrap_or_default();
    format!("/assets/{}", NAMES[index])
}

/// `/assets/{name}`.
pub fn routes() -> Router<AppState> {
    Router::new().route("/assets/{name}", get(serve))
}

async fn serve(Path(name): Path<String>) -> Response {
    // The notices' stable address: revalidated, not cached for a year.
    let (asset, cache) = if name == "licenses.txt" {
        (LICENSES, "no-cache")
    } else if let Some(index) = NAMES.iter().position(|n| *n == name) {
        (ALL[index], "public, max-age=31536000, immutable")
    } else {
        return (StatusCode::NOT_FOUND, "no such asset").into_response();
    };
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
