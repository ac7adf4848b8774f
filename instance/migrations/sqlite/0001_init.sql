-- Flows: every revision is kept; a deletion is a tombstone revision.
CREATE TABLE flows (
    namespace  TEXT    NOT NULL,
    id         TEXT    NOT NULL,
    revision   INTEGER NOT NULL,
    source     TEXT    NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (namespace, id, revision)
);

-- Executions double as the work queue: unfinished rows are claimed with a
-- lease (owner + expiry in microseconds since the epoch).
CREATE TABLE executions (
    id             TEXT    PRIMARY KEY,
    namespace      TEXT    NOT NULL,
    flow_id        TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    finished       INTEGER NOT NULL DEFAULT 0,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    lease_owner    TEXT,
    lease_until    INTEGER,
    kill_requested INTEGER NOT NULL DEFAULT 0,
    body           TEXT    NOT NULL
);
CREATE INDEX executions_queue ON executions (finished, created_at);
CREATE INDEX executions_flow ON executions (namespace, flow_id, created_at);
CREATE INDEX executions_created ON executions (created_at);

CREATE TABLE logs (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    execution_id   TEXT    NOT NULL,
    task_run_id    TEXT,
    task_id        TEXT,
    attempt_number INTEGER NOT NULL,
    level          TEXT    NOT NULL,
    message        TEXT    NOT NULL,
    ts             INTEGER NOT NULL
);
CREATE INDEX logs_execution ON logs (execution_id, seq);
