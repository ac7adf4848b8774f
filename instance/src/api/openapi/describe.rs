//! What aide cannot read from a handler's types: bodies read raw (flow
//! YAML, inputs, uploads) and answers built by hand (downloads, empty
//! statuses, event streams). Each function edits one operation; routes use
//! them as `post_with(handler, describe::flow_source)`.

use aide::openapi::{
    Header, MediaType, Operation, Parameter, ParameterData, ParameterSchemaOrContent, QueryStyle,
    ReferenceOr, RequestBody, Response, SchemaObject, StatusCode,
};
use aide::transform::TransformOperation;
use indexmap::IndexMap;
use schemars::{JsonSchema, Schema, json_schema};

fn media(entries: Vec<(&str, Schema)>) -> IndexMap<String, MediaType> {
    entries
        .into_iter()
        .map(|(name, schema)| {
            let media = MediaType {
                schema: Some(SchemaObject {
                    json_schema: schema,
                    example: None,
                    external_docs: None,
                }),
                ..Default::default()
            };
            (name.to_owned(), media)
        })
        .collect()
}

fn schema_of<T: JsonSchema>() -> Schema {
    aide::generate::in_context(|ctx| ctx.schema.subschema_for::<T>())
}

fn set_body(op: &mut Operation, description: &str, required: bool, content: Vec<(&str, Schema)>) {
    op.request_body = Some(ReferenceOr::Item(RequestBody {
        description: Some(description.to_owned()),
        content: media(content),
        required,
        extensions: IndexMap::new(),
    }));
}

fn set_response(op: &mut Operation, status: u16, description: &str, content: Vec<(&str, Schema)>) {
    let responses = op.responses.get_or_insert_with(Default::default);
    responses.responses.insert(
        StatusCode::Code(status),
        ReferenceOr::Item(Response {
            description: description.to_owned(),
            content: media(content),
            ..Default::default()
        }),
    );
}

fn text() -> Schema {
    json_schema!({"type": "string"})
}

fn binary() -> Schema {
    json_schema!({"type": "string", "format": "binary"})
}

fn object() -> Schema {
    json_schema!({"type": "object"})
}

/// A flow's YAML source as the body.
pub fn flow_source(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let yaml = [("application/x-yaml", text()), ("text/plain", text())];
    set_body(t.inner_mut(), "The flow's YAML source.", true, yaml.into());
    t
}

/// Flow sources to validate: YAML documents (none: nothing to validate).
/// Any text is accepted: what is wrong with it is the answer.
pub fn flow_sources(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let any = json_schema!(true);
    let yaml = [("application/x-yaml", any.clone()), ("text/plain", any)];
    set_body(
        t.inner_mut(),
        "Flows as YAML documents.",
        false,
        yaml.into(),
    );
    t
}

/// Inputs: a JSON object, a URL-encoded form or a multipart form (FILE
/// inputs as file parts); none at all is no inputs.
pub fn inputs(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![
        ("application/json", object()),
        ("application/x-www-form-urlencoded", object()),
        ("multipart/form-data", object()),
    ];
    set_body(t.inner_mut(), "The inputs, by name.", false, content);
    t
}

/// An answer with no body.
fn empty<'t>(
    mut t: TransformOperation<'t>,
    status: u16,
    description: &str,
) -> TransformOperation<'t> {
    set_response(t.inner_mut(), status, description, Vec::new());
    t
}

/// `204 No Content` when done.
pub fn no_content(t: TransformOperation<'_>) -> TransformOperation<'_> {
    empty(t, 204, "done")
}

/// A file download.
pub fn download(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![("application/octet-stream", binary())];
    set_response(t.inner_mut(), 200, "the file's bytes", content);
    t
}

/// A tar archive of flows.
pub fn tar_download(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![("application/x-tar", binary())];
    set_response(
        t.inner_mut(),
        200,
        "a tar archive of the flows' YAML",
        content,
    );
    t
}

/// Flows to import: a tar archive or YAML, raw or as a multipart file.
pub fn import(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let multipart = json_schema!({"type": "object",
        "properties": {"fileUpload": {"type": "string", "format": "binary"}}});
    let content = vec![
        ("multipart/form-data", multipart),
        ("application/x-yaml", text()),
        ("application/x-tar", binary()),
    ];
    set_body(
        t.inner_mut(),
        "A tar archive of flows, or YAML.",
        true,
        content,
    );
    t
}

/// A namespace file upload (`fileContent`), answered `200` with no body.
pub fn upload(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    // No file with a path ending in `/`: a new directory.
    let multipart = json_schema!({"type": "object",
        "properties": {"fileContent": {"type": "string", "format": "binary"}}});
    set_body(
        t.inner_mut(),
        "The file.",
        true,
        vec![("multipart/form-data", multipart)],
    );
    empty(t, 200, "stored")
}

/// A KV value: JSON, or text (a string); `200` with no body.
pub fn kv_value(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![
        ("application/json", json_schema!(true)),
        ("text/plain", text()),
    ];
    set_body(
        t.inner_mut(),
        "The value (none: an empty string).",
        false,
        content,
    );
    empty(t, 200, "stored")
}

/// A page of log lines; a `Link` header gives the next.
pub fn log_page(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let lines = schema_of::<Vec<crate::execution::LogEntry>>();
    let op = t.inner_mut();
    set_response(
        op,
        200,
        "the log lines, in order",
        vec![("application/json", lines)],
    );
    let link = Header {
        description: Some("`<…?after=<seq>&size=<n>>; rel=\"next\"` when more lines follow".into()),
        style: Default::default(),
        required: false,
        deprecated: None,
        format: ParameterSchemaOrContent::Schema(SchemaObject {
            json_schema: text(),
            example: None,
            external_docs: None,
        }),
        example: None,
        examples: IndexMap::new(),
        extensions: IndexMap::new(),
    };
    if let Some(ReferenceOr::Item(ok)) = op
        .responses
        .as_mut()
        .and_then(|r| r.responses.get_mut(&StatusCode::Code(200)))
    {
        ok.headers.insert("Link".into(), ReferenceOr::Item(link));
    }
    t
}

/// The `labels` filter of a search, read from the raw query: `key:value`,
/// repeated or comma-separated.
pub fn label_filter(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    // At most `MAX_LABEL_FILTERS` labels in all, which a schema cannot
    // count across comma-separated values: more are refused (400).
    let schema = json_schema!({"type": "array", "items": {"type": "string",
        "pattern": "^([^,:]*:[^,]*)?(,([^,:]*:[^,]*)?)*$"}});
    let labels = Parameter::Query {
        parameter_data: ParameterData {
            name: "labels".into(),
            description: Some("`key:value` labels every result carries.".into()),
            required: false,
            format: ParameterSchemaOrContent::Schema(SchemaObject {
                json_schema: schema,
                example: None,
                external_docs: None,
            }),
            extensions: IndexMap::new(),
            deprecated: None,
            example: None,
            examples: IndexMap::new(),
            explode: Some(true),
        },
        allow_reserved: false,
        style: QueryStyle::Form,
        allow_empty_value: None,
    };
    t.inner_mut().parameters.push(ReferenceOr::Item(labels));
    t
}

/// Server-sent events, one log line (JSON) each.
pub fn event_stream(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let event = json_schema!({"type": "object", "properties": {
        "data": {"type": "string", "description": "the log line as JSON"},
        "id": {"type": "string"}, "event": {"type": "string"}, "retry": {"type": "integer"}}});
    let content = vec![("text/event-stream", event)];
    set_response(
        t.inner_mut(),
        200,
        "log lines as server-sent events",
        content,
    );
    t
}

/// A webhook call: any body; the answer is the execution, or the flow's
/// outputs when the trigger says `returnOutputs`.
pub fn webhook(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let any = json_schema!(true);
    let content = vec![
        ("application/json", any.clone()),
        ("application/x-www-form-urlencoded", object()),
        ("text/plain", text()),
    ];
    let op = t.inner_mut();
    set_body(
        op,
        "Anything: the flow reads it as `trigger.body`.",
        false,
        content,
    );
    set_response(
        op,
        200,
        "the execution started, or its outputs",
        vec![("application/json", object())],
    );
    t
}

/// `200 OK` with no body.
pub fn ok_empty(t: TransformOperation<'_>) -> TransformOperation<'_> {
    empty(t, 200, "done")
}

/// A plain-text download (a log).
pub fn text_download(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![("text/plain", text())];
    set_response(t.inner_mut(), 200, "the text", content);
    t
}

/// A bulk action's count of executions or triggers acted on.
fn bulk_count(op: &mut Operation) {
    let count = schema_of::<crate::api::bulk::BulkResponse>();
    let content = vec![("application/json", count)];
    set_response(op, 200, "how many were acted on", content);
}

/// A bulk action on executions chosen by id: a JSON list of ids. A 400
/// names each id that cannot take the action (`invalids`).
pub fn bulk_by_ids(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let ids = json_schema!({"type": "array", "items": {"type": "string"}});
    let op = t.inner_mut();
    set_body(
        op,
        "The execution ids.",
        true,
        vec![("application/json", ids)],
    );
    bulk_count(op);
    t
}

/// A bulk action on the executions the query's filters select (the
/// search's filters; none selects every execution).
pub fn bulk_by_query(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    bulk_count(t.inner_mut());
    t
}

/// `202 Accepted` with the execution as it is: the kill is under way.
pub fn kill(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let execution = schema_of::<crate::api::kestra_shape::KestraExecution>();
    let content = vec![("application/json", execution)];
    set_response(t.inner_mut(), 202, "the execution is being killed", content);
    t
}

/// A JSON body read into `T` (the handler reads it raw, to say what it
/// expected when it does not parse).
pub fn json_body<T: JsonSchema>(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![("application/json", schema_of::<T>())];
    set_body(t.inner_mut(), "The request.", true, content);
    t
}

/// Like [`json_body`], but none at all is allowed (an empty request).
pub fn optional_json_body<T: JsonSchema>(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![("application/json", schema_of::<T>())];
    set_body(t.inner_mut(), "The request (none: empty).", false, content);
    t
}

/// A task or trigger as a JSON object (what is wrong with it is the
/// answer, not a refusal).
pub fn plugin_object(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![("application/json", object())];
    set_body(t.inner_mut(), "The task or trigger.", true, content);
    t
}

/// An expression as text.
pub fn expression(mut t: TransformOperation<'_>) -> TransformOperation<'_> {
    let content = vec![("text/plain", text())];
    set_body(
        t.inner_mut(),
        "The expression (none: empty).",
        false,
        content,
    );
    t
}
