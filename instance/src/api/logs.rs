//! `/logs/{executionId}`: an execution's log lines in bounded pages, and
//! `/logs/{executionId}/follow`, the same as server-sent events until the
//! execution ends.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::time::Duration;

use super::query::Query;
use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::header;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::Deserialize;

use super::extract::{ExecutionId, Viewer};
use super::kestra_shape::KestraLogEntry;
use super::{ApiError, ApiResult, AppState};
use crate::engine::Engine;
use crate::execution::{Execution, LogEntry};

/// Most log lines in one page of `/logs/{executionId}`.
const LOG_PAGE_SIZE: u32 = 1000;
/// Most bytes of log messages in one page (a page holds at least one line).
const LOG_PAGE_BYTES: usize = 4 * 1024 * 1024;
/// Longest message in a page (lines are stored at most this long).
const LOG_MESSAGE_BYTES: usize = 64 * 1024;
/// Lines read from the store at a time while filling a page.
const LOG_READ_BATCH: u32 = 100;

#[derive(Debug, Deserialize, JsonSchema)]
pub(super) struct LogsQuery {
    /// Only lines after this position (`seq`): the next page's start.
    after: Option<i64>,
    /// Most lines in the page (at most [`LOG_PAGE_SIZE`]).
    #[schemars(range(max = u32::MAX))]
    size: Option<u32>,
}

async fn require_execution(engine: &Engine, id: &str) -> ApiResult<Execution> {
    engine
        .execution(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such execution".into()))
}

/// One page: the lines after `after`, at most `size` and [`LOG_PAGE_BYTES`]
/// of messages; the position of the last, and whether more lines follow.
async fn log_page(
    engine: &Engine,
    id: &str,
    mut after: i64,
    size: u32,
) -> ApiResult<(Vec<LogEntry>, i64, bool)> {
    let mut page: Vec<LogEntry> = Vec::new();
    let mut bytes = 0usize;
    while page.len() < size as usize {
        let want = LOG_READ_BATCH.min(size - page.len() as u32);
        let batch = engine.logs(id, after, want).await?;
        let exhausted = batch.len() < want as usize;
        for mut entry in batch {
            truncate_message(&mut entry.message);
            let cost = entry.message.len();
            if !page.is_empty() && bytes + cost > LOG_PAGE_BYTES {
                return Ok((page, after, true));
            }
            bytes += cost;
            after = entry.seq;
            page.push(entry);
        }
        if exhausted {
            return Ok((page, after, false));
        }
    }
    let more = !engine.logs(id, after, 1).await?.is_empty();
    Ok((page, after, more))
}

/// The execution's log lines, in order, a bounded page at a time: at most
/// `size` lines and [`LOG_PAGE_BYTES`] of messages. When more lines
/// follow, a `Link: <…?after=<seq>&size=<n>>; rel="next"` header gives the
/// next page.
pub(super) async fn execution_logs(
    State(state): State<AppState>,
    Query(query): Query<LogsQuery>,
    OriginalUri(uri): OriginalUri,
    Viewer(_): Viewer,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Response> {
    let execution = require_execution(&state.engine, &id).await?;
    let size = query.size.unwrap_or(LOG_PAGE_SIZE).clamp(1, LOG_PAGE_SIZE);
    let after = query.after.unwrap_or(0).max(0);
    let (page, after, more) = log_page(&state.engine, &id, after, size).await?;
    let page: Vec<KestraLogEntry> = page
        .into_iter()
        .map(|entry| KestraLogEntry::of(entry, &execution))
        .collect();
    let mut response = Json(page).into_response();
    if more {
        let next = format!("<{}?after={after}&size={size}>; rel=\"next\"", uri.path());
        if let Ok(value) = header::HeaderValue::from_str(&next) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    Ok(response)
}

/// Most bytes of one download of an execution's logs.
const LOG_DOWNLOAD_BYTES: usize = 64 * 1024 * 1024;

/// `/logs/{executionId}/download`: the execution's log lines as plain text,
/// one `timestamp level message` line each (at most
/// [`LOG_DOWNLOAD_BYTES`]; a last line says when it was cut).
pub(super) async fn download_logs(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Response> {
    require_execution(&state.engine, &id).await?;
    let mut text = String::new();
    let mut after = 0;
    loop {
        let batch = state.engine.logs(&id, after, 500).await?;
        let Some(last) = batch.last() else { break };
        after = last.seq;
        for entry in batch {
            let line = format!("{} {} {}\n", entry.timestamp, entry.level, entry.message);
            if text.len() + line.len() > LOG_DOWNLOAD_BYTES {
                text.push_str("[logs cut: the download is limited to 64 MiB]\n");
                return Ok(text_response(text));
            }
            text.push_str(&line);
        }
    }
    Ok(text_response(text))
}

fn text_response(text: String) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}

fn truncate_message(message: &mut String) {
    if message.len() > LOG_MESSAGE_BYTES {
        let mut cut = LOG_MESSAGE_BYTES;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
    }
}

/// Where a follow stream is.
struct Follow {
    engine: Engine,
    id: String,
    after: i64,
    pending: VecDeque<LogEntry>,
    done: bool,
}

impl Follow {
    /// The next line, waiting for one while the execution runs; `None`
    /// once it has ended and every line was sent.
    async fn next(&mut self) -> Option<LogEntry> {
        loop {
            if let Some(entry) = self.pending.pop_front() {
                return Some(entry);
            }
            if self.done {
                return None;
            }
            // Read the state before the logs: logs written before the end are then all seen.
            let finished = match self.engine.execution(&self.id).await {
                Ok(Some(e)) => e.state.current.is_terminal(),
                _ => true,
            };
            match self.engine.logs(&self.id, self.after, 500).await {
                Ok(batch) if !batch.is_empty() => {
                    self.after = batch.last().map_or(self.after, |l| l.seq);
                    self.pending.extend(batch);
                }
                Ok(_) if finished => self.done = true,
                Ok(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                Err(_) => self.done = true,
            }
        }
    }
}

/// Server-sent events: every log line of the execution, then the stream
/// ends once the execution has finished and its logs are all sent.
pub(super) async fn follow_logs(
    State(state): State<AppState>,
    Viewer(_): Viewer,
    ExecutionId(id): ExecutionId,
) -> ApiResult<Response> {
    let execution = require_execution(&state.engine, &id).await?;
    let start = Follow {
        engine: state.engine.clone(),
        id,
        after: 0,
        pending: VecDeque::new(),
        done: false,
    };
    let stream = futures::stream::unfold(start, move |mut follow| {
        let execution = execution.clone();
        async move {
            let entry = follow.next().await?;
            let event = Event::default()
                .id(entry.seq.to_string())
                .json_data(KestraLogEntry::of(entry, &execution))
                .unwrap_or_default();
            Some((Ok::<Event, Infallible>(event), follow))
        }
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}
